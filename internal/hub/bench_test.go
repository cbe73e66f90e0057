package hub_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// fanoutRig is a hub with n live subscribers on one topic and a way to
// wait until published events have been offered to all of them: fan-out
// may run on another goroutine, and Observer.Delivered is called once per
// event after every subscriber has been offered it.
type fanoutRig struct {
	h      *hub.Hub
	subs   []*hub.Subscriber
	recs   []event.Record
	fanned atomic.Int64 // events fanned out so far
	target atomic.Int64 // signal done when fanned reaches this
	done   chan struct{}
	buf    []hub.Item
}

const fanoutTopic = "bench.fanout"

func newFanoutRig(tb testing.TB, n int) *fanoutRig {
	tb.Helper()
	r := &fanoutRig{done: make(chan struct{}, 1), recs: []event.Record{{Data: []byte(`{"price":"42.17","size":3,"side":"buy"}`)}}}
	r.target.Store(-1)
	obs := hub.Observer{Delivered: func(int) {
		if r.fanned.Add(1) == r.target.Load() {
			r.done <- struct{}{}
		}
	}}
	eng := memory.New(memory.Options{Retention: func(string) event.Retention { return event.Retention{MaxEvents: 4096} }})
	r.h = hub.New(eng, hub.Options{Observer: obs})
	tb.Cleanup(func() {
		r.h.Close()
		eng.Close()
	})
	ctx := bg
	r.subs = make([]*hub.Subscriber, n)
	for i := range r.subs {
		s, err := r.h.NewSubscriber(hub.SubscriberOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := s.SubscribeTopic(ctx, fanoutTopic, hub.Start{}); err != nil {
			tb.Fatal(err)
		}
		s.Next(ctx, nil) // ends recovery: from now on events are queued as they come
		r.subs[i] = s
	}
	return r
}

// publish publishes k events and waits until all are fanned out.
func (r *fanoutRig) publish(tb testing.TB, k int) {
	r.target.Store(r.fanned.Load() + int64(k))
	for i := 0; i < k; i++ {
		if _, err := r.h.Publish(bg, fanoutTopic, r.recs); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-r.done:
	case <-time.After(guard):
		tb.Fatalf("fan-out of %d events did not finish", k)
	}
}

// drain empties every subscriber's queue, checking each got k events.
func (r *fanoutRig) drain(tb testing.TB, k int) {
	for i, s := range r.subs {
		var reason hub.CloseReason
		r.buf, reason = s.Next(bg, r.buf)
		if reason != hub.CloseNone || len(r.buf) != k {
			tb.Fatalf("subscriber %d: %d items, reason %v; want %d", i, len(r.buf), reason, k)
		}
	}
}

// BenchmarkFanout publishes one event per iteration through hub.Publish to
// a topic with 1, 100 or 10,000 subscribers, and counts the time until
// every subscriber's queue has it. Queues are emptied outside the timer
// every drainEvery events, so none overflows and queue storage is reused.
//
// allocs/op is per publish and should not grow with the subscriber count;
// allocs/delivery divides every allocation in the timed part (the
// per-publish ones included) by the deliveries, so it tends to 0 as the
// subscriber count grows when delivery itself allocates nothing.
func BenchmarkFanout(b *testing.B) {
	const drainEvery = 256
	for _, n := range []int{1, 100, 10000} {
		var r *fanoutRig // built once: b.Run calls the function once per b.N tried
		b.Run(fmt.Sprintf("subs=%d", n), func(sb *testing.B) {
			if r == nil {
				// Closed when BenchmarkFanout ends. The warm-up grows queues
				// and history to size.
				r = newFanoutRig(b, n)
				r.publish(sb, drainEvery)
				r.drain(sb, drainEvery)
			}
			b := sb
			var ms runtime.MemStats
			var mallocs uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.StopTimer()
			for done := 0; done < b.N; {
				k := min(drainEvery, b.N-done)
				runtime.ReadMemStats(&ms)
				before := ms.Mallocs
				b.StartTimer()
				r.publish(b, k)
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				mallocs += ms.Mallocs - before
				r.drain(b, k)
				done += k
			}
			deliveries := float64(b.N) * float64(n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
			b.ReportMetric(float64(mallocs)/deliveries, "allocs/delivery")
		})
	}
}

// TestFanoutAllocsPerDelivery checks the goal BenchmarkFanout measures:
// fan-out allocates nothing per subscriber, so a publish allocates as much
// with 200 subscribers as with one.
func TestFanoutAllocsPerDelivery(t *testing.T) {
	const runs = 200
	perPublish := func(n int) float64 {
		r := newFanoutRig(t, n)
		r.publish(t, runs+50) // grow queues beyond what the runs need
		r.drain(t, runs+50)
		allocs := testing.AllocsPerRun(runs, func() { r.publish(t, 1) })
		r.drain(t, runs+1)
		return allocs
	}
	one, many := perPublish(1), perPublish(200)
	if many > one {
		t.Errorf("a publish allocates %v times with 200 subscribers and %v with one; delivery should not allocate", many, one)
	}
}

// BenchmarkPublish measures Publish with no subscribers from parallel
// publishers, on one shared topic and on a topic per publisher.
func BenchmarkPublish(b *testing.B) {
	recs := []event.Record{{Data: []byte(`{"price":"42.17","size":3,"side":"buy"}`)}}
	for _, shared := range []bool{true, false} {
		name := "topic-per-goroutine"
		if shared {
			name = "one-topic"
		}
		b.Run(name, func(b *testing.B) {
			eng := memory.New(memory.Options{})
			defer eng.Close()
			h := hub.New(eng, hub.Options{})
			defer h.Close()
			var ids atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				topic := "bench.publish"
				if !shared {
					topic = fmt.Sprintf("bench.publish-%d", ids.Add(1))
				}
				ctx := bg
				for pb.Next() {
					if _, err := h.Publish(ctx, topic, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
