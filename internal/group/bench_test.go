package group

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// BenchmarkFetchAck measures fetch + ack throughput: 8 members fetch
// batches of 100 and ack each batch in one call. b.N events are published
// first; the figure is events/s (docs/benchmarks.md).
func BenchmarkFetchAck(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		eng := memory.New(memory.Options{Retention: func(string) event.Retention { return event.Retention{MaxEvents: 10_000_000} }})
		defer eng.Close()
		benchFetchAck(b, eng)
	})
	b.Run("durable", func(b *testing.B) {
		eng, err := durable.Open(b.TempDir(), durable.Options{Retention: func(string) event.Retention { return event.Retention{MaxEvents: 10_000_000} }})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		benchFetchAck(b, eng)
	})
}

func benchFetchAck(b *testing.B, eng hub.Engine) {
	const members, batch = 8, 100
	h := hub.New(eng, hub.Options{})
	defer h.Close()
	m, err := New(bg, h, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := hub.Internal(bg)
	recs := make([]event.Record, 1000)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(`{"n":1}`)}
	}
	for n := 0; n < b.N; n += len(recs) {
		if _, err := h.Publish(ctx, "bench", recs[:min(len(recs), b.N-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if _, _, err := m.Put(bg, Config{Name: "bench", Topics: []string{"bench"}, Start: StartEarliest, MaxInFlight: 10_000}); err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			member := fmt.Sprint("w", w)
			ids := make([]string, 0, batch)
			for done.Load() < int64(b.N) {
				msgs, err := m.Fetch(ctx, "bench", member, batch, 10*time.Millisecond)
				if err != nil {
					b.Error(err)
					return
				}
				if len(msgs) == 0 {
					continue
				}
				ids = ids[:0]
				for _, msg := range msgs {
					ids = append(ids, msg.ID)
				}
				if _, err := m.Ack(ctx, "bench", member, ids); err != nil {
					b.Error(err)
					return
				}
				done.Add(int64(len(msgs)))
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
