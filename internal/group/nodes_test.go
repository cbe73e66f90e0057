package group

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// The multi-node tests run Managers over their own hubs and Redis engines
// on one real redis-server, as herald nodes do (shared mode, shared.go).

// node is one herald node: an engine, a hub and a Manager.
type node struct {
	eng  *redis.Engine
	h    *hub.Hub
	m    *Manager
	once sync.Once
}

// startNode starts a node on the Redis at url, under the test's key
// prefix (the same for every node of the test); the test's end stops it.
func startNode(t *testing.T, url string) *node {
	t.Helper()
	eng, err := redis.New(bg, redis.Options{URL: url, Prefix: "t" + t.Name()})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	n := &node{eng: eng, h: hub.New(eng, hub.Options{})}
	n.m, err = New(bg, n.h, Options{Poll: 100 * time.Millisecond, TopicRefresh: 50 * time.Millisecond})
	if err != nil {
		n.h.Close()
		eng.Close()
		t.Fatalf("group.New: %v", err)
	}
	if !n.m.shared {
		t.Fatal("a Manager on the Redis engine is not in shared mode")
	}
	t.Cleanup(n.stop)
	return n
}

// stop stops the node without answering what it holds, as a crash would
// (its Manager stores nothing more: shared mode has nothing queued).
func (n *node) stop() {
	n.once.Do(func() {
		n.m.Close()
		n.h.Close()
		n.eng.Close()
	})
}

func startNodes(t *testing.T, k int) []*node {
	t.Helper()
	return startNodesOn(t, redistest.Start(t, redistest.Options{}).URL(), k)
}

func startNodesOn(t *testing.T, url string, k int) []*node {
	t.Helper()
	out := make([]*node, k)
	for i := range out {
		out[i] = startNode(t, url)
	}
	return out
}

// publishBatches publishes n events "0".."n-1" to topic, 500 a call.
func publishBatches(t *testing.T, h *hub.Hub, topic string, n int) {
	t.Helper()
	for lo := 0; lo < n; lo += 500 {
		recs := make([]event.Record, 0, 500)
		for i := lo; i < min(n, lo+500); i++ {
			recs = append(recs, event.Record{Data: []byte(fmt.Sprint(i)), Encoding: event.EncodingJSON})
		}
		if _, err := h.Publish(hub.Internal(bg), topic, recs); err != nil {
			t.Fatal(err)
		}
	}
}

// ledger records every delivery and ack of a multi-node run, to check
// that no event is leased to two members at once and each is acked once.
type ledger struct {
	mu     sync.Mutex
	leases map[uint64][]delivery
	acks   map[uint64]int
}

type delivery struct {
	node, member string
	n            int
	got          time.Time // when the fetch returned it
	deadline     time.Time
	nakked       time.Time // when a nak took it back; zero when none
}

func newLedger() *ledger {
	return &ledger{leases: map[uint64][]delivery{}, acks: map[uint64]int{}}
}

func (lg *ledger) delivered(node, member string, msgs []Message) {
	now := time.Now()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for _, m := range msgs {
		lg.leases[m.Event.Offset] = append(lg.leases[m.Event.Offset], delivery{node: node, member: member, n: m.Delivery, got: now, deadline: m.Deadline})
	}
}

func (lg *ledger) acked(off uint64) int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.acks[off]++
	return len(lg.acks)
}

// check fails t unless each of n events (offsets 1..n) was acked once
// and each delivery after the first came after the previous one's
// deadline, with delivery counts 1, 2, ...
func (lg *ledger) check(t *testing.T, n int) {
	t.Helper()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for off := uint64(1); off <= uint64(n); off++ {
		if c := lg.acks[off]; c != 1 {
			t.Errorf("offset %d acked %d times, want once", off, c)
		}
		ds := lg.leases[off]
		sort.Slice(ds, func(i, j int) bool { return ds[i].n < ds[j].n })
		for i, d := range ds {
			if d.n != i+1 {
				t.Errorf("offset %d: deliveries %+v, want counts 1, 2, ...", off, ds)
				break
			}
			// A delivery's lease is stored before the fetch returns, so
			// the next one begins after its deadline: allow the time a
			// fetch takes to return (the got times are measured after).
			if prev := ds[max(i-1, 0)]; i > 0 && d.got.Before(prev.deadline) && prev.nakked.IsZero() {
				t.Errorf("offset %d: delivery %d (%s/%s) at %v, before delivery %d's deadline %v (%s/%s): leased twice at once",
					off, d.n, d.node, d.member, d.got.Format(time.StampMicro), prev.n, prev.deadline.Format(time.StampMicro), prev.node, prev.member)
			}
		}
	}
}

// TestNodesShareGroup: three nodes on one Redis, two members on each,
// fetch and ack one group's 5,000 events at once (1,000 in a Cluster);
// some acks go through another node than the fetch. Every event is acked
// once, no event is leased to two members at once, and every node reports
// the same state.
func TestNodesShareGroup(t *testing.T) {
	for _, tt := range []struct {
		name  string
		total int
		url   func(t *testing.T) string
	}{
		{"standalone", 5000, func(t *testing.T) string { return redistest.Start(t, redistest.Options{}).URL() }},
		{"cluster", 1000, func(t *testing.T) string { return redistest.StartCluster(t).URL() }},
	} {
		t.Run(tt.name, func(t *testing.T) { testNodesShareGroup(t, startNodesOn(t, tt.url(t), 3), tt.total) })
	}
}

func testNodesShareGroup(t *testing.T, nodes []*node, total int) {
	publishBatches(t, nodes[0].h, "jobs", total)
	if _, _, err := nodes[0].m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	lg := newLedger()
	var done atomic.Bool
	var wg sync.WaitGroup
	stopAt := time.Now().Add(2 * time.Minute)
	for i, n := range nodes {
		for j := range 2 {
			member := fmt.Sprintf("n%d-w%d", i, j)
			other := nodes[(i+1)%len(nodes)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; !done.Load(); k++ {
					if time.Now().After(stopAt) {
						t.Errorf("%s: not done after 2 minutes", member)
						done.Store(true)
						return
					}
					msgs, err := n.m.Fetch(bgInternal(), "g", member, 50, 100*time.Millisecond)
					if err != nil {
						t.Errorf("%s: Fetch: %v", member, err)
						done.Store(true)
						return
					}
					lg.delivered(fmt.Sprint(i), member, msgs)
					if len(msgs) == 0 {
						continue
					}
					// Every third batch is acked through the next node.
					via := n
					if k%3 == 2 {
						via = other
					}
					ids := make([]string, len(msgs))
					for x, m := range msgs {
						ids[x] = m.ID
					}
					res, err := via.m.Ack(bgInternal(), "g", member, ids)
					if err != nil {
						t.Errorf("%s: Ack: %v", member, err)
						done.Store(true)
						return
					}
					for x, err := range res {
						if err != nil {
							t.Errorf("%s: Ack of offset %d: %v", member, msgs[x].Event.Offset, err)
							continue
						}
						if lg.acked(msgs[x].Event.Offset) == total {
							done.Store(true)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	lg.check(t, total)
	var first Info
	for i, n := range nodes {
		in, err := n.m.Get(bg, "g")
		if err != nil {
			t.Fatal(err)
		}
		if in.InFlight != 0 || in.Pending != 0 || in.Waiting != 0 || len(in.Topics) != 1 || in.Topics[0].Committed != uint64(total) {
			t.Errorf("node %d: %+v; want everything committed, nothing in flight", i, in)
		}
		if i == 0 {
			first = in
		} else if in.Redelivered != first.Redelivered || in.DeadLettered != first.DeadLettered {
			t.Errorf("node %d counts %d redelivered, %d dead-lettered; node 0 %d, %d", i, in.Redelivered, in.DeadLettered, first.Redelivered, first.DeadLettered)
		}
	}
	t.Logf("redelivered %d", first.Redelivered)
}

// TestNodeStopsMidStream: a node leases events and stops without
// answering; the other nodes deliver them again once their leases end,
// and the group ends with every event acked once.
func TestNodeStopsMidStream(t *testing.T) {
	const total, held = 300, 20
	const ackWait = 300 * time.Millisecond
	nodes := startNodes(t, 3)
	publishBatches(t, nodes[0].h, "jobs", total)
	if _, _, err := nodes[0].m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait}); err != nil {
		t.Fatal(err)
	}
	lg := newLedger()
	msgs, err := nodes[2].m.Fetch(bgInternal(), "g", "doomed", held, 0)
	if err != nil || len(msgs) != held {
		t.Fatalf("the node to stop fetched %d events (%v), want %d", len(msgs), err, held)
	}
	lg.delivered("2", "doomed", msgs)
	heldOffs := offsetsOf(msgs)
	nodes[2].stop()

	var done atomic.Bool
	var wg sync.WaitGroup
	stopAt := time.Now().Add(time.Minute)
	for i, n := range nodes[:2] {
		member := fmt.Sprintf("n%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				if time.Now().After(stopAt) {
					t.Errorf("%s: not done after a minute", member)
					done.Store(true)
					return
				}
				msgs, err := n.m.Fetch(bgInternal(), "g", member, 10, 200*time.Millisecond)
				if err != nil {
					t.Errorf("%s: Fetch: %v", member, err)
					done.Store(true)
					return
				}
				lg.delivered(fmt.Sprint(i), member, msgs)
				for _, m := range msgs {
					res, err := n.m.Ack(bgInternal(), "g", member, []string{m.ID})
					switch {
					case err != nil:
						t.Errorf("%s: Ack: %v", member, err)
					case errors.Is(res[0], ErrLeaseLost):
						// Slow under load: its lease ran out and another
						// member got it; that one acks.
					case res[0] != nil:
						t.Errorf("%s: Ack of offset %d: %v", member, m.Event.Offset, res[0])
					default:
						if lg.acked(m.Event.Offset) == total {
							done.Store(true)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	lg.check(t, total)
	lg.mu.Lock()
	for _, off := range heldOffs {
		ds := lg.leases[off]
		if len(ds) < 2 || ds[1].node == "2" {
			t.Errorf("offset %d, held by the stopped node: deliveries %+v; want one more on another node", off, ds)
		}
	}
	lg.mu.Unlock()
	for i, n := range nodes[:2] {
		in, err := n.m.Get(bg, "g")
		if err != nil {
			t.Fatal(err)
		}
		if in.InFlight != 0 || in.Topics[0].Committed != total || in.Redelivered < held {
			t.Errorf("node %d: %+v; want everything committed, at least %d redelivered", i, in, held)
		}
	}
}

// TestNodesAnswerEachOther: answers go to any node. A group created on
// node A is served by node B at once; an ack, an in_progress, a nak and a
// term sent to B for deliveries fetched on A take effect; a long poll on
// A wakes for the event B took back; Info agrees on both.
func TestNodesAnswerEachOther(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	publishBatches(t, a.h, "jobs", 4)
	if _, _, err := a.m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// B learns of the group from the store on first use.
	if _, err := b.m.Get(bg, "g"); err != nil {
		t.Fatalf("node B: Get of a group created on A: %v", err)
	}
	msgs, err := a.m.Fetch(bgInternal(), "g", "w1", 3, 0)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Fetch on A: %d messages, %v", len(msgs), err)
	}
	res, err := b.m.Ack(bgInternal(), "g", "w1", []string{msgs[0].ID})
	if err != nil || res[0] != nil {
		t.Fatalf("Ack on B of a delivery fetched on A: %v, %v", err, res)
	}
	if res, err := a.m.Ack(bgInternal(), "g", "w1", []string{msgs[0].ID}); err != nil || !errors.Is(res[0], ErrUnknownDelivery) {
		t.Fatalf("Ack on A of what B acked: %v, %v; want ErrUnknownDelivery", err, res)
	}
	deadline, err := b.m.InProgress(bgInternal(), "g", "w1", msgs[1].ID)
	if err != nil || !deadline.After(msgs[1].Deadline) {
		t.Fatalf("InProgress on B: %v, %v; want a deadline after %v", deadline, err, msgs[1].Deadline)
	}
	if _, err := b.m.InProgress(bgInternal(), "g", "w2", msgs[1].ID); !errors.Is(err, ErrOtherMember) {
		t.Fatalf("InProgress on B by another member: %v, want ErrOtherMember", err)
	}

	// A long poll on A for another member: B naks offset 3, which A's
	// poll wakes for.
	got := make(chan []Message, 1)
	go func() {
		m, err := a.m.Fetch(bgInternal(), "g", "w2", 1, guard)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	// Offset 4 is free: w2 takes it at once; fetch again for the nak.
	first := <-got
	if offs := offsetsOf(first); !slices.Equal(offs, []uint64{4}) {
		t.Fatalf("A fetched %v, want [4]", offs)
	}
	go func() {
		m, err := a.m.Fetch(bgInternal(), "g", "w2", 1, guard)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	time.Sleep(50 * time.Millisecond)
	if err := b.m.Nak(bgInternal(), "g", "w1", msgs[2].ID, 0); err != nil {
		t.Fatalf("Nak on B: %v", err)
	}
	select {
	case m := <-got:
		if len(m) != 1 || m[0].Event.Offset != 3 || m[0].Delivery != 2 {
			t.Fatalf("the long poll on A got %+v, want offset 3, delivery 2", m)
		}
		if err := b.m.Term(bgInternal(), "g", "w2", m[0].ID, "bad"); err != nil {
			t.Fatalf("Term on B: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("the long poll on A did not wake for B's nak")
	}
	for name, n := range map[string]*node{"A": a, "B": b} {
		in, err := n.m.Get(bg, "g")
		if err != nil {
			t.Fatal(err)
		}
		if in.InFlight != 2 || in.Members["w1"] != 1 || in.Members["w2"] != 1 || in.DeadLettered != 1 || in.Redelivered != 1 || in.Topics[0].Committed != 1 {
			t.Errorf("node %s: %+v; want 2 in flight (w1, w2), 1 dead-lettered, 1 redelivered, committed 1", name, in)
		}
	}
	// Deleted on B: A stops serving it.
	if err := b.m.Delete(bg, "g"); err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(guard)
	for {
		_, err := a.m.Fetch(bgInternal(), "g", "w1", 1, 0)
		if errors.Is(err, ErrNoGroup) {
			break
		}
		if time.Now().After(stop) {
			t.Fatalf("A still serves the group B deleted: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Created again on A: a new group, which B serves.
	if _, created, err := a.m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest}); err != nil || !created {
		t.Fatalf("Put on A after the delete: created %v, %v; want a new group", created, err)
	}
	again, err := b.m.Fetch(bgInternal(), "g", "w1", 10, 0)
	if err != nil || !slices.Equal(offsetsOf(again), []uint64{1, 2, 3, 4}) || again[0].Delivery != 1 {
		t.Fatalf("Fetch on B from the new group: %v, %v; want offsets 1 to 4, first deliveries", offsetsOf(again), err)
	}
}

// TestNodesDeadLetterOnce: a lease that runs out on its last delivery
// ends on every node's timers at once; the event goes to the dead-letter
// topic once, and both nodes count it once.
func TestNodesDeadLetterOnce(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	publishBatches(t, a.h, "jobs", 1)
	if _, _, err := a.m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: 200 * time.Millisecond, MaxDeliveries: 1}); err != nil {
		t.Fatal(err)
	}
	if msgs, err := a.m.Fetch(bgInternal(), "g", "w1", 1, 0); err != nil || len(msgs) != 1 {
		t.Fatalf("Fetch: %d messages, %v", len(msgs), err)
	}
	if in, err := b.m.Get(bg, "g"); err != nil || in.InFlight != 1 {
		t.Fatalf("node B: %+v, %v; want 1 in flight", in, err)
	}
	stop := time.Now().Add(guard)
	for {
		ina, erra := a.m.Get(bg, "g")
		inb, errb := b.m.Get(bg, "g")
		if erra != nil || errb != nil {
			t.Fatal(erra, errb)
		}
		if ina.DeadLettered == 1 && inb.DeadLettered == 1 && ina.Topics[0].Committed == 1 && inb.Topics[0].Committed == 1 {
			break
		}
		if ina.DeadLettered > 1 || inb.DeadLettered > 1 {
			t.Fatalf("dead-lettered %d (A), %d (B), want 1", ina.DeadLettered, inb.DeadLettered)
		}
		if time.Now().After(stop) {
			t.Fatalf("not dead-lettered: A %+v, B %+v", ina, inb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a second dead-lettering would have come by now
	rb, err := a.eng.Read(bg, "g.dead", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Events) != 1 || rb.Events[0].Headers[HeaderReason] != ReasonMaxDeliveries {
		t.Fatalf("dead-letter topic holds %d events, want 1 (max_deliveries)", len(rb.Events))
	}
	if in, _ := a.m.Get(bg, "g"); in.DeadLettered != 1 {
		t.Fatalf("dead-lettered %d, want 1", in.DeadLettered)
	}
}
