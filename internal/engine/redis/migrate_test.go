package redis_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestClusterSlotMigration moves a topic's slot to another master while a
// node publishes to it without pause and a consumer on another node
// follows it. Every publish succeeds (retried, with its idempotency key,
// when it meets the slot between nodes: TRYAGAIN is unavailable), offsets
// stay dense with no duplicate, and the consumer sees every event once,
// in order: the node resubscribes on the new owner when Redis ends its
// sharded subscription (sunsubscribe), and catch-up covers what pub/sub
// lost meanwhile.
func TestClusterSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t)
	a, b := startNode(t, cl.URL()), startNode(t, cl.URL())
	const topic = "moving"
	slot, err := strconv.Atoi(cl.Nodes[0].CLI("cluster", "keyslot", "{"+topic+"}"))
	if err != nil {
		t.Fatal(err)
	}
	from := cl.Owner(slot)
	to := cl.Nodes[0]
	if to == from {
		to = cl.Nodes[1]
	}
	s := a.subscribe(t, topic, hub.Start{})
	if got := numsubOn(t, from, a.eng.Channel(topic)); got != "1" {
		t.Fatalf("subscribers on the slot's owner: %s, want 1", got)
	}

	var (
		published atomic.Int64 // events acknowledged so far
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		acks      []event.Ack
		retried   int
	)
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	wg.Add(1)
	go func() { // the publisher: event i, in order, until stopped
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ack, failed, err := b.tryPublishKeyed(topic, i)
			if err != nil {
				t.Error(err)
				return
			}
			acks = append(acks, ack)
			retried += failed
			published.Store(int64(i))
			// Paced, so that the consumer's queue (1 MiB; the test reads
			// it at the end) holds everything: a few hundred a second.
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(halt) // before the nodes close, should the test end early
	// waitMore waits until n more events are acknowledged.
	waitMore := func(n int64) {
		want := published.Load() + n
		eventually(t, "publishes to go on", func() bool { return published.Load() >= want || t.Failed() })
	}
	waitMore(20)
	cl.MigrateSlot(slot, to, func(string) { waitMore(20) })
	waitMore(20)
	eventually(t, "the node to subscribe on the slot's new owner", func() bool { return numsubOn(t, to, a.eng.Channel(topic)) == "1" })
	waitMore(20)
	halt()
	if t.Failed() {
		t.FailNow()
	}
	if got := cl.Owner(slot); got != to {
		t.Fatalf("slot %d is on %s, want %s", slot, got.Addr(), to.Addr())
	}
	ep := acks[0].Epoch
	for i, ack := range acks {
		if ack.Offset != uint64(i+1) || ack.Epoch != ep || ack.Duplicate {
			t.Fatalf("publish %d: %+v, want offset %d of epoch %v, not a duplicate", i+1, ack, i+1, ep)
		}
	}
	t.Logf("%d events published across the migration, %d attempts retried", len(acks), retried)
	if got := wantEvents(t, s.take(t, len(acks)), 1, len(acks)); got != ep {
		t.Fatalf("delivered in epoch %v, want %v", got, ep)
	}
	if info, _, err := b.eng.Info(bg, topic); err != nil || info.Last != uint64(len(acks)) {
		t.Fatalf("Info after the migration = %+v, %v; want last %d", info, err, len(acks))
	}
}

// numsubOn returns how many clients of node srv follow the sharded channel.
func numsubOn(t *testing.T, srv *redistest.Server, channel string) string {
	t.Helper()
	return numsub(t, srv, true, channel)
}
