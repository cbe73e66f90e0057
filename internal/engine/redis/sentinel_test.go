package redis_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// publishKeyed publishes event i with idempotency key "k<i>", retrying
// while Redis is unavailable (failing over, a slot moving), so that a
// retry of a publish whose answer was lost is not stored twice. It returns
// the ack and how many attempts failed.
func (n *node) publishKeyed(t *testing.T, topic string, i int) (event.Ack, int) {
	t.Helper()
	ack, failed, err := n.tryPublishKeyed(topic, i)
	if err != nil {
		t.Fatal(err)
	}
	return ack, failed
}

// tryPublishKeyed is publishKeyed for goroutines other than the test's:
// it returns the error that ended the retries.
func (n *node) tryPublishKeyed(topic string, i int) (event.Ack, int, error) {
	deadline := time.Now().Add(guard)
	for failed := 0; ; failed++ {
		acks, err := n.h.Publish(hub.Internal(bg), topic, []event.Record{{Data: data(i), Key: fmt.Sprint("k", i)}})
		if err == nil {
			return acks[0], failed, nil
		}
		if !errors.Is(err, hub.ErrUnavailable) || time.Now().After(deadline) {
			return event.Ack{}, failed, fmt.Errorf("publish %d: %w", i, err)
		}
		time.Sleep(20 * time.Millisecond) // the client follows the topology: no signal to wait on
	}
}

// TestSentinelFailover runs two nodes on a Sentinel deployment (a master,
// a replica, three Sentinels): they connect through the Sentinels,
// publish and deliver; after a failover to the replica (which had every
// write), publishes go to the new master with the next offsets of the
// same epoch, and a consumer on the other node sees every event once, in
// order, with no gap. A second failover goes back.
func TestSentinelFailover(t *testing.T) {
	sn := redistest.StartSentinel(t, 3)
	a, b := startNode(t, sn.URL()), startNode(t, sn.URL())
	s := a.subscribe(t, "room", hub.Start{})
	b.publish(t, "room", 1, 5)
	ep := wantEvents(t, s.take(t, 5), 1, 5)
	last := 5
	for round := 0; round < 2; round++ {
		start := time.Now()
		next := sn.Failover()
		for i := last + 1; i <= last+5; i++ {
			ack, _ := b.publishKeyed(t, "room", i)
			if ack.Epoch != ep || ack.Offset != uint64(i) || ack.Duplicate {
				t.Fatalf("failover %d: publish %d: %+v, want offset %d of epoch %v", round+1, i, ack, i, ep)
			}
		}
		t.Logf("failover %d to %s: publishing again after %v", round+1, next.Addr(), time.Since(start))
		wantEvents(t, s.take(t, 5), last+1, last+5)
		last += 5
		if info, _, err := b.eng.Info(bg, "room"); err != nil || info.Last != uint64(last) {
			t.Fatalf("failover %d: Info = %+v, %v; want last %d", round+1, info, err, last)
		}
		if got := next.CLI("exists", b.eng.TopicKeys("room")[0]); got != "1" {
			t.Fatalf("failover %d: the topic is not on the new master %s", round+1, next.Addr())
		}
	}
}
