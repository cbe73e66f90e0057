package redis_test

import (
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/hub"
)

// TestCatchupWaitsOutRestart stops Redis (AOF on) while consumers are
// reading history and starts it again: they are not closed, and each gets
// every event once, in order, with no gap.
func TestCatchupWaitsOutRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true})
	a := startNode(t, srv.URL())
	a.publish(t, "room", 1, 20)
	subs := []*sub{a.subscribe(t, "room", hub.Start{Earliest: true}), a.subscribe(t, "room", hub.Start{Earliest: true})}
	srv.Stop()
	// The writers, woken to recover history, read while Redis is down
	// (each read gives up after the engine's read timeout).
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if items, r := s.s.Next(bg, nil); r != hub.CloseNone || len(items) != 0 {
				t.Errorf("subscriber %d: Next while Redis is down = %d items, %v; want none, still open", i, len(items), r)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	srv.Start()
	for _, s := range subs {
		wantEvents(t, s.take(t, 20), 1, 20)
	}
	a.publishAgain(t, "room", 21)
	for _, s := range subs {
		wantEvents(t, s.take(t, 1), 21, 21)
	}
}
