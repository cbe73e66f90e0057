package hub_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestRecoveryStress has several goroutines publish to one topic without
// pause while subscribers join with cursors at random offsets (and a few
// from earliest or latest). Each subscriber is driven like a transport's
// writer: Next in its own goroutine, woken by Wake. When publishing is over,
// every subscriber must have seen one contiguous run of offsets from its
// starting position to the last event: no gap and no duplicate at the seam
// between history and live delivery.
func TestRecoveryStress(t *testing.T) {
	const (
		publishers  = 4
		perPub      = 1500
		subscribers = 30
		topic       = "stress.seam"
	)
	// CatchupBatch is small so recovery takes many steps and overlaps with
	// live deliveries; the queue cap is high so nobody is cut off as slow.
	h := newHub(t, hub.Options{CatchupBatch: 8, MaxQueueBytes: 64 << 20}, retain(1<<20))
	ctx := bg
	publish(t, h, topic, 20)
	epoch := epochOf(t, h, topic)

	// Publisher 0 hands over a join request every so often and waits for it
	// to be taken, so joins are spread over the time the topic is busy.
	join := make(chan struct{})
	stop := make(chan struct{}) // closed when the test ends, to free publishers
	defer close(stop)
	var pubs sync.WaitGroup
	for p := 0; p < publishers; p++ {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			r := rand.New(rand.NewPCG(uint64(p), 7))
			for n := 0; n < perPub; {
				recs := make([]event.Record, min(1+r.IntN(4), perPub-n))
				for i := range recs {
					recs[i] = event.Record{Data: []byte(fmt.Sprintf(`{"p":%d,"n":%d}`, p, n+i))}
				}
				if _, err := h.Publish(ctx, topic, recs); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				n += len(recs)
				if p == 0 && n%(perPub/subscribers) < len(recs) {
					select {
					case join <- struct{}{}:
					case <-stop:
						return
					}
				}
			}
		}()
	}

	finished := make(chan struct{}) // closed when every Publish has returned
	var total uint64                // the last offset; written before finished is closed
	type result struct {
		from, last uint64
		count      int
	}
	results := make([]result, subscribers)
	var readers sync.WaitGroup
	r := rand.New(rand.NewPCG(42, 42))
	for i := 0; i < subscribers; i++ {
		select {
		case <-join:
		case <-time.After(guard):
			t.Fatal("publishers stopped asking for subscribers")
		}
		s := newSub(t, h, hub.SubscriberOptions{})
		in, _, err := h.Info(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var start hub.Start
		switch i % 10 {
		case 0:
			start = hub.Start{Earliest: true}
		case 1:
			start = hub.Start{} // latest
		default:
			start = hub.Start{Set: true, Position: at(epoch, r.Uint64N(in.Last+1))}
		}
		pos := s.subscribe(t, topic, start)
		if start.Set && pos != start.Position {
			t.Fatalf("Subscribe returned %+v, want %+v", pos, start.Position)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			res := result{from: pos.Offset, last: pos.Offset}
			defer func() { results[i] = res }()
			fin := (<-chan struct{})(finished)
			known := false // total is known
			var buf []hub.Item
			for {
				var reason hub.CloseReason
				buf, reason = s.Next(ctx, buf)
				if reason != hub.CloseNone {
					t.Errorf("subscriber %d closed: %v", i, reason)
					return
				}
				for _, it := range buf {
					if it.Gap != nil {
						t.Errorf("subscriber %d: unexpected gap %+v", i, *it.Gap)
						return
					}
					if it.Event.Offset != res.last+1 || it.Event.Epoch != epoch {
						t.Errorf("subscriber %d (from %d): got offset %d after %d", i, res.from, it.Event.Offset, res.last)
						return
					}
					res.last = it.Event.Offset
					res.count++
				}
				if known && res.last == total {
					return
				}
				if len(buf) > 0 {
					continue
				}
				select {
				case <-s.wake:
				case <-fin:
					fin, known = nil, true
				case <-time.After(guard):
					t.Errorf("subscriber %d (from %d): nothing after offset %d", i, res.from, res.last)
					return
				}
			}
		}()
	}
	pubs.Wait()
	in, _, err := h.Info(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	total = in.Last
	close(finished)
	readers.Wait() // each reader gives up after the guard time
	if want := uint64(20 + publishers*perPub); total != want {
		t.Fatalf("topic ends at %d, want %d", total, want)
	}
	for i, res := range results {
		if res.last != total || res.count != int(total-res.from) {
			t.Errorf("subscriber %d: from %d saw %d events up to %d; want %d up to %d", i, res.from, res.count, res.last, total-res.from, total)
		}
	}
}
