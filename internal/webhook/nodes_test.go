package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// The multi-node tests run webhook Managers over their own hubs, group
// Managers and Redis engines on one real redis-server, as herald nodes
// do (shared mode, shared.go), and send to real HTTP receivers.

// node is one herald node.
type node struct {
	eng    *redis.Engine
	h      *hub.Hub
	groups *group.Manager
	m      *Manager
	once   sync.Once
}

func startNodes(t *testing.T, k int) []*node {
	t.Helper()
	url := redistest.Start(t, redistest.Options{}).URL()
	out := make([]*node, k)
	for i := range out {
		out[i] = startNode(t, url, i)
	}
	return out
}

// startNode starts node i on the Redis at url; its requests carry the
// user agent "node-i". The test's end stops it.
func startNode(t *testing.T, url string, i int) *node {
	t.Helper()
	eng, err := redis.New(bg, redis.Options{URL: url, Prefix: "t" + t.Name()})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	n := &node{eng: eng, h: hub.New(eng, hub.Options{})}
	t.Cleanup(n.stop)
	n.groups, err = group.New(bg, n.h, group.Options{Poll: 100 * time.Millisecond, TopicRefresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("group.New: %v", err)
	}
	n.m, err = New(bg, n.h, n.groups, Options{
		Guard:     netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
		FetchWait: 200 * time.Millisecond,
		Poll:      100 * time.Millisecond,
		UserAgent: fmt.Sprintf("node-%d", i),
	})
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	if !n.m.shared {
		t.Fatal("a Manager on the Redis engine is not in shared mode")
	}
	return n
}

func (n *node) stop() {
	n.once.Do(func() {
		if n.m != nil {
			n.m.Close()
		}
		if n.groups != nil {
			n.groups.Close()
		}
		n.h.Close()
		n.eng.Close()
	})
}

// waitAll waits until cond holds on every node.
func waitAll(t *testing.T, nodes []*node, what string, cond func(*node) bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		for _, n := range nodes {
			if !cond(n) {
				return false
			}
		}
		return true
	})
}

func known(name string) func(*node) bool {
	return func(n *node) bool { _, err := n.m.Get(name); return err == nil }
}

// publishAcross publishes events {"i":0}..{"i":k-1} to topic, each
// through the next node's hub.
func publishAcross(t *testing.T, nodes []*node, topic string, k int) {
	t.Helper()
	for i := range k {
		_, err := nodes[i%len(nodes)].h.Publish(hub.Internal(bg), topic, []event.Record{{Type: "t", Data: fmt.Appendf(nil, `{"i":%d}`, i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// index returns the "i" of a delivery's event.
func index(t *testing.T, d delivery) int {
	var v struct{ I int }
	if err := json.Unmarshal(d.Event.Data, &v); err != nil {
		t.Fatalf("data %s: %v", d.Event.Data, err)
	}
	return v.I
}

// TestNodesDeliverEachEventOnce: three nodes each run a dispatcher for
// every subscription; events published through all of them reach each
// endpoint once, and an ordered subscription never has two requests in
// flight, across the nodes.
func TestNodesDeliverEachEventOnce(t *testing.T) {
	redistest.Require(t)
	nodes := startNodes(t, 3)
	if _, err := nodes[0].h.Publish(hub.Internal(bg), "orders", []event.Record{{Type: "t", Data: []byte(`{"i":-1}`)}}); err != nil {
		t.Fatal(err)
	}
	const k = 120
	var inFlight, most atomic.Int32
	recvs := map[string]*receiver{"unordered": newReceiver(t), "ordered": newReceiver(t)}
	// The ordered receiver counts the requests in flight, outside the
	// receiver's lock.
	ordered := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(3 * time.Millisecond)
		recvs["ordered"].serve(w, req)
	}))
	t.Cleanup(ordered.Close)
	urls := map[string]string{"unordered": recvs["unordered"].URL, "ordered": ordered.URL}
	for name := range recvs {
		if _, _, err := nodes[0].m.Put(bg, Config{Name: name, URL: urls[name], Topics: []string{"orders"}, Ordered: name == "ordered", Concurrency: map[bool]int{true: 1, false: 4}[name == "ordered"], Enabled: true}); err != nil {
			t.Fatal(err)
		}
		waitAll(t, nodes, name+" known on every node", known(name))
	}
	publishAcross(t, nodes, "orders", k)
	for name, r := range recvs {
		waitFor(t, name+": every event", func() bool { return len(r.deliveries()) >= k })
	}
	time.Sleep(500 * time.Millisecond) // duplicates would come now
	for name, r := range recvs {
		ds := r.deliveries()
		ids := map[string]int{}
		seen := map[int]int{}
		byNode := map[string]int{}
		for _, d := range ds {
			ids[d.ID]++
			seen[index(t, d)]++
			byNode[d.Header.Get("User-Agent")]++
		}
		if len(ds) != k || len(ids) != k {
			t.Errorf("%s: %d requests, %d webhook-ids; want %d of each (each event once)", name, len(ds), len(ids), k)
		}
		for i := range k {
			if seen[i] != 1 {
				t.Errorf("%s: event %d delivered %d times, want 1", name, i, seen[i])
			}
		}
		t.Logf("%s: requests by node: %v", name, byNode)
		if name == "ordered" {
			for i := 1; i < len(ds); i++ {
				if a, b := ds[i-1].Event.Offset, ds[i].Event.Offset; a >= b {
					t.Errorf("ordered: offset %d delivered after %d", b, a)
					break
				}
			}
		}
	}
	if n := most.Load(); n != 1 {
		t.Errorf("ordered: %d requests in flight at once, want 1", n)
	}
}

// TestNodesFollowRegistryChanges: a subscription created, changed,
// disabled (410) or deleted on one node is so on the others within a
// bound, and their dispatchers follow.
func TestNodesFollowRegistryChanges(t *testing.T) {
	redistest.Require(t)
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	const bound = 2 * time.Second
	within := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > bound {
				t.Fatalf("%s: not within %v", what, bound)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := a.h.Publish(hub.Internal(bg), "orders", []event.Record{{Type: "t", Data: []byte(`{"i":-1}`)}}); err != nil {
		t.Fatal(err)
	}
	r1, r2 := newReceiver(t), newReceiver(t)
	if _, _, err := a.m.Put(bg, Config{Name: "w", URL: r1.URL, Topics: []string{"orders"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	within("created on A, known on B", func() bool { return known("w")(b) })

	// A change on B (another URL) reaches A: every event goes to r2.
	if _, _, err := b.m.Put(bg, Config{Name: "w", URL: r2.URL, Topics: []string{"orders"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	within("changed on B, seen on A", func() bool { in, err := a.m.Get("w"); return err == nil && in.Config.URL == r2.URL })
	publishAcross(t, nodes, "orders", 20)
	waitFor(t, "20 events at r2", func() bool { return len(r2.deliveries()) >= 20 })
	if n := len(r1.deliveries()); n != 0 {
		t.Errorf("r1 got %d requests after the URL changed", n)
	}

	// 410 on whichever node sends: the subscription is disabled on both,
	// and nothing more is sent.
	r2.setAnswer(func(int, delivery) (int, http.Header) { return http.StatusGone, nil })
	publishAcross(t, nodes, "orders", 1)
	within("disabled on both nodes", func() bool {
		ia, erra := a.m.Get("w")
		ib, errb := b.m.Get("w")
		return erra == nil && errb == nil && ia.Status.State == "disabled" && ib.Status.State == "disabled"
	})
	before := len(r2.deliveries())
	publishAcross(t, nodes, "orders", 10)
	time.Sleep(500 * time.Millisecond)
	if n := len(r2.deliveries()) - before; n != 0 {
		t.Errorf("%d requests after the subscription was disabled", n)
	}

	// Re-enabled on B (put again): both nodes send again.
	r2.setAnswer(nil)
	if _, _, err := b.m.Put(bg, Config{Name: "w", URL: r2.URL, Topics: []string{"orders"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	within("re-enabled on both nodes", func() bool {
		ia, erra := a.m.Get("w")
		return erra == nil && ia.Status.State == "active"
	})
	waitFor(t, "the events held back", func() bool { return len(r2.deliveries()) >= before+11 })

	// Deleted on A: gone from B within the bound, and nothing is sent.
	if err := a.m.Delete(bg, "w"); err != nil {
		t.Fatal(err)
	}
	within("deleted on A, gone on B", func() bool { _, err := b.m.Get("w"); return errors.Is(err, ErrNotFound) })
	before = len(r2.deliveries())
	publishAcross(t, nodes, "orders", 10)
	time.Sleep(500 * time.Millisecond)
	if n := len(r2.deliveries()) - before; n != 0 {
		t.Errorf("%d requests after the subscription was deleted", n)
	}
	if err := b.m.Delete(bg, "w"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete on B after A's: %v, want ErrNotFound", err)
	}
}

// TestNodesOrderedRetryMovesOn: an ordered subscription's event that
// failed on one node, which then stops, is sent by another node as its
// next attempt (the retry state is read again), not as a first one.
func TestNodesOrderedRetryMovesOn(t *testing.T) {
	redistest.Require(t)
	nodes := startNodes(t, 2)
	if _, err := nodes[0].h.Publish(hub.Internal(bg), "orders", []event.Record{{Type: "t", Data: []byte(`{"i":-1}`)}}); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t)
	r.setAnswer(func(n int, _ delivery) (int, http.Header) {
		if n == 1 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusNoContent, nil
	})
	if _, _, err := nodes[0].m.Put(bg, Config{Name: "w", URL: r.URL, Topics: []string{"orders"}, Ordered: true, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	waitAll(t, nodes, "w known on every node", known("w"))
	publishAcross(t, nodes, "orders", 1)
	var first, other *node
	waitFor(t, "the first attempt logged", func() bool {
		for i, n := range nodes {
			if log, _ := n.m.Log("w"); len(log) > 0 {
				first, other = n, nodes[1-i]
				return true
			}
		}
		return false
	})
	first.stop() // hands the event back
	waitFor(t, "the second attempt", func() bool { return len(r.deliveries()) >= 2 })
	waitFor(t, "the second attempt logged", func() bool { log, _ := other.m.Log("w"); return len(log) > 0 })
	log, _ := other.m.Log("w")
	if a := log[0]; a.Attempt != 2 || a.Next != "delivered" {
		t.Errorf("the other node's attempt: number %d, next %q; want 2, delivered", a.Attempt, a.Next)
	}
	if ds := r.deliveries(); ds[0].ID != ds[1].ID {
		t.Errorf("two webhook-ids for one event: %s, %s", ds[0].ID, ds[1].ID)
	}
}
