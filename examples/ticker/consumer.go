package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/heraldhq/herald/client"
)

// consume is the Go service of the example: it follows prices.SYMBOL for
// each symbol as one gRPC stream (herald's Go client reconnects and
// resumes by itself), and prints every tick with the moving average of
// the symbol's last 10 prices. It closes ready once subscribed, and
// returns after limit ticks (0: when ctx ends).
func consume(ctx context.Context, grpcAddr string, symbols []string, limit int, out io.Writer, ready chan<- struct{}) error {
	c, err := client.NewGRPC(grpcAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	topics := make([]string, len(symbols))
	for i, s := range symbols {
		topics[i] = "prices." + s
	}
	sub, err := c.Subscribe(ctx, topics, client.WithTransport(client.TransportGRPC))
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()
	close(ready)
	window := map[string][]float64{}
	for n := 0; limit == 0 || n < limit; {
		m, err := sub.Next(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		switch {
		case m.Gap != nil:
			fmt.Fprintf(out, "gap in %s: %s; the average starts again\n", m.Gap.Topic, m.Gap.Reason)
			delete(window, m.Gap.Topic)
		case m.Event != nil:
			var t tick
			if err := json.Unmarshal(m.Event.Data, &t); err != nil {
				return fmt.Errorf("tick %s #%d: %w", m.Event.Topic, m.Event.Offset, err)
			}
			w := append(window[m.Event.Topic], t.Price)
			if len(w) > 10 {
				w = w[1:]
			}
			window[m.Event.Topic] = w
			sum := 0.0
			for _, p := range w {
				sum += p
			}
			fmt.Fprintf(out, "%-8s %10.2f  avg10 %10.2f  #%d\n", t.Symbol, t.Price, sum/float64(len(w)), m.Event.Offset)
			n++
		}
	}
	return nil
}
