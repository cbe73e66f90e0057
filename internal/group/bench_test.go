package group

import (
	"fmt"
	"slices"
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

// BenchmarkRedeliveryLatency measures how long after a lease's deadline
// a waiting fetch gets the event again (ack_wait 100 ms, real clock). It
// reports the median and the worst in ms; run it with -benchtime 50x.
func BenchmarkRedeliveryLatency(b *testing.B) {
	eng := memory.New(memory.Options{})
	defer eng.Close()
	h := hub.New(eng, hub.Options{})
	defer h.Close()
	m, err := New(bg, h, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := hub.Internal(bg)
	if _, err := h.Publish(ctx, "lat", []event.Record{{Data: []byte(`0`)}}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := m.Put(bg, Config{Name: "lat", Topics: []string{"lat"}, AckWait: 100 * time.Millisecond, MaxDeliveries: MaxMaxDeliveries}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Publish(ctx, "lat", []event.Record{{Data: []byte(`1`)}}); err != nil {
			b.Fatal(err)
		}
		first, err := m.Fetch(ctx, "lat", "w1", 1, time.Second)
		if err != nil || len(first) != 1 {
			b.Fatalf("fetch: %v %v", first, err)
		}
		again, err := m.Fetch(ctx, "lat", "w2", 1, 5*time.Second)
		got := time.Now()
		if err != nil || len(again) != 1 || again[0].Event.Offset != first[0].Event.Offset {
			b.Fatalf("redelivery: %v %v", again, err)
		}
		lat = append(lat, got.Sub(first[0].Deadline))
		if _, err := m.Ack(ctx, "lat", "w2", []string{again[0].ID}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
