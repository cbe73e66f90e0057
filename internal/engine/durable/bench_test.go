package durable_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
)

// BenchmarkAppendDurable measures fsync'd appends from 64 concurrent
// appenders, each on its own topic or all on one, in single events and in
// batches of 100. Every acknowledged event is on disk; events/s is the
// number to compare with issue 6's target of 100,000.
func BenchmarkAppendDurable(b *testing.B) {
	const appenders = 64
	for _, c := range []struct{ batch, topics int }{{1, appenders}, {100, appenders}, {1, 1}, {100, 1}} {
		batch := c.batch
		b.Run(fmt.Sprintf("batch=%d/topics=%d", c.batch, c.topics), func(b *testing.B) {
			e := open(b, b.TempDir(), durable.Options{})
			recs := make([]event.Record, batch)
			for i := range recs {
				recs[i] = event.Record{Data: []byte(`{"user":"ada","text":"hello, world","n":12345}`)}
			}
			var next atomic.Int64
			b.SetParallelism((appenders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				topic := fmt.Sprintf("bench.t%d", next.Add(1)%int64(c.topics))
				for pb.Next() {
					if _, err := e.Append(context.Background(), topic, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReadDurable measures catch-up reads of retained history from a
// warm store, in pages of 256 as the hub reads them.
func BenchmarkReadDurable(b *testing.B) {
	const total, page = 10000, 256
	e := open(b, b.TempDir(), durable.Options{Retention: retain(event.Retention{MaxEvents: total})})
	recs := make([]event.Record, 100)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(`{"user":"ada","text":"hello, world","n":12345}`)}
	}
	for i := 0; i < total/len(recs); i++ {
		if _, err := e.Append(context.Background(), "history", recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for i := 0; i < b.N; i++ {
		after := uint64(i*page) % (total - page)
		batch, err := e.Read(context.Background(), "history", after, page)
		if err != nil || len(batch.Events) != page {
			b.Fatalf("Read: %d events, %v", len(batch.Events), err)
		}
		events += len(batch.Events)
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
