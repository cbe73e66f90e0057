// Command webhook-receiver is herald's outbound-webhook example: a shop
// publishes orders to herald, a webhook subscription sends each to a
// receiver (receiver.go) — an ordinary HTTP handler, as a service that
// cannot hold a connection open would have — which verifies the Standard
// Webhooks signature, deduplicates by webhook-id and checks the order.
//
//	go run ./examples/webhook-receiver        # until Ctrl-C
//	go run ./examples/webhook-receiver 20     # stop after 20 orders
//
// README.md has the details.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/examples/internal/demo"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/webhook"
)

var example = demo.Example{
	Name: "webhook-receiver",
	// The receiver is on 127.0.0.1, which the outbound guard refuses
	// unless allowed: a development setting.
	Config: func(c *config.Config) { c.Outbound.AllowNetworks = []string{"127.0.0.1"} },
	Work:   run,
}

func main() { demo.Main(example) }

// run starts the receiver, subscribes it to shop.orders, and publishes an
// order every 300 ms until the receiver has the number asked for (the
// first argument; none: until ctx ends).
func run(ctx context.Context, n demo.Node, out io.Writer) error {
	limit := 0
	if len(n.Args) > 0 {
		v, err := strconv.Atoi(n.Args[0])
		if err != nil || v < 1 {
			return fmt.Errorf("the argument is how many orders to receive, got %q", n.Args[0])
		}
		limit = v
	}
	secret := webhook.NewSecret() // give it to herald and to the receiver
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r := newReceiver(secret, out, limit)
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	endpoint := "http://" + ln.Addr().String() + "/hooks/herald"
	fmt.Fprintf(out, "receiver: %s\n", endpoint)

	// The subscription, as `herald webhook add` or a config file would
	// make it: ordered (the default), from the topic's first event.
	sub := fmt.Sprintf(`{"url":%q,"topics":["shop.orders"],"start":"earliest","secrets":[%q]}`, endpoint, secret)
	if err := call(ctx, http.MethodPut, n.HTTP+"/v1/webhooks/shop", sub); err != nil {
		return fmt.Errorf("make the webhook: %w", err)
	}
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for i := 1; ; i++ {
		order := fmt.Sprintf(`{"order":%d,"item":"%s","amount":%d}`, i, []string{"tea", "mug", "kettle"}[i%3], 300+i*7%900)
		if err := call(ctx, http.MethodPost, n.HTTP+"/v1/topics/shop.orders/events", order); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.done:
			return nil
		case <-t.C:
		}
	}
}

// call makes one JSON request of herald's API.
func call(ctx context.Context, method, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s %s: %s %s", method, url, res.Status, b)
	}
	return nil
}
