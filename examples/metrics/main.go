// Command metrics is herald's live-metrics example: a Go process publishes
// its own runtime figures (and a simulated load) to the topic
// metrics.host-1 twice a second, and a browser dashboard follows them over
// Server-Sent Events, drawing the last minute from the topic's history.
//
//	go run ./examples/metrics
//
// then open http://127.0.0.1:8000/ (README.md).
package main

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/examples/internal/demo"
	"github.com/heraldhq/herald/internal/config"
)

//go:embed index.html app.js
var pages embed.FS

// topic is where the samples go; its history (the last 120 samples, a
// minute) is what a page that opens draws first.
const topic = "metrics.host-1"

var example = demo.Example{
	Name:  "metrics",
	Pages: pages,
	Config: func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"metrics": {History: config.Retention{MaxEvents: 120}}}
	},
	Work: publish,
}

func main() { demo.Main(example) }

// sample is one reading, the payload of one event.
type sample struct {
	Seq        int     `json:"seq"`
	Time       string  `json:"time"`
	Load       float64 `json:"load"` // a simulated CPU load, 0–100
	Goroutines int     `json:"goroutines"`
	HeapMiB    float64 `json:"heap_mib"`
	GCs        uint32  `json:"gcs"`
}

// publish samples the process every interval and publishes the sample
// with herald's Go client over HTTP.
func publish(ctx context.Context, n demo.Node, out io.Writer) error {
	c, err := client.New(n.HTTP)
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t := float64(seq) / 10
		s := sample{
			Seq:        seq,
			Time:       time.Now().UTC().Format(time.RFC3339Nano),
			Load:       math.Round((50+30*math.Sin(t)+15*math.Sin(t*3.7))*10) / 10,
			Goroutines: runtime.NumGoroutine(),
			HeapMiB:    math.Round(float64(ms.HeapAlloc)/(1<<20)*100) / 100,
			GCs:        ms.NumGC,
		}
		body, _ := json.Marshal(s)
		if _, err := c.Publish(ctx, topic, body, client.WithContentType("application/json")); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(out, "publish sample %d: %v\n", seq, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
