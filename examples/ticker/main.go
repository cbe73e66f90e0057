// Command ticker is herald's stock-ticker example: a price feed publishes
// ticks of three symbols over gRPC, and a Go service (consumer.go) follows
// them as a gRPC stream with herald's Go client, printing each tick and a
// moving average.
//
//	go run ./examples/ticker          # until Ctrl-C
//	go run ./examples/ticker 30       # stop after 30 ticks
//
// README.md has the details.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/examples/internal/demo"
)

// symbols are the instruments of the feed; each has its topic prices.SYMBOL.
var symbols = []string{"BTC-USD", "ETH-USD", "SOL-USD"}

var example = demo.Example{
	Name: "ticker",
	GRPC: true,
	Work: run,
}

func main() { demo.Main(example) }

// run starts the consumer service, then the feed, and returns when the
// consumer has printed the ticks asked for (the first argument; none:
// until ctx ends).
func run(ctx context.Context, n demo.Node, out io.Writer) error {
	limit := 0
	if len(n.Args) > 0 {
		v, err := strconv.Atoi(n.Args[0])
		if err != nil || v < 1 {
			return fmt.Errorf("the argument is how many ticks to print, got %q", n.Args[0])
		}
		limit = v
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- consume(ctx, n.GRPC, symbols, limit, out, ready) }()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	feedDone := make(chan error, 1)
	go func() { feedDone <- feed(ctx, n.GRPC) }()
	err := <-done
	cancel()
	if ferr := <-feedDone; err == nil && ferr != nil && ctx.Err() == nil {
		err = ferr
	}
	return err
}

// tick is the payload of one event.
type tick struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
	Time   string  `json:"time"`
}

// feed publishes a random walk of each symbol's price every 300 ms over
// herald's gRPC API.
func feed(ctx context.Context, grpcAddr string) error {
	c, err := client.NewGRPC(grpcAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	price := map[string]float64{"BTC-USD": 97000, "ETH-USD": 3600, "SOL-USD": 240}
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		var batch []client.BatchEvent
		for _, s := range symbols {
			price[s] = math.Round(price[s]*(1+(rand.Float64()-0.5)*0.002)*100) / 100
			b, _ := json.Marshal(tick{Symbol: s, Price: price[s], Time: time.Now().UTC().Format(time.RFC3339Nano)})
			batch = append(batch, client.BatchEvent{Topic: "prices." + s, Data: b})
		}
		if _, err := c.PublishBatch(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("publish ticks: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
