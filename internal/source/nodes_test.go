package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/hub"
)

// The multi-node tests run Managers over their own hubs and Redis engines
// on one real redis-server, as herald nodes do (shared mode, shared.go),
// polling a real HTTP origin on the real clock.

// node is one herald node.
type node struct {
	eng  *redis.Engine
	h    *hub.Hub
	m    *Manager
	ua   string
	once sync.Once
}

func startNodes(t *testing.T, k int) []*node {
	t.Helper()
	url := redistest.Start(t, redistest.Options{}).URL()
	out := make([]*node, k)
	for i := range out {
		eng, err := redis.New(bg, redis.Options{URL: url, Prefix: "t" + t.Name()})
		if err != nil {
			t.Fatalf("redis.New: %v", err)
		}
		n := &node{eng: eng, h: hub.New(eng, hub.Options{}), ua: fmt.Sprintf("node-%d", i)}
		t.Cleanup(n.stop)
		n.m, err = New(bg, n.h, Options{Guard: localGuard(), UserAgent: n.ua, Poll: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("source.New: %v", err)
		}
		if !n.m.shared {
			t.Fatal("a Manager on the Redis engine is not in shared mode")
		}
		out[i] = n
	}
	return out
}

// stop stops the node: its Manager gives its leases up.
func (n *node) stop() {
	n.once.Do(func() {
		n.m.Close()
		n.h.Close()
		n.eng.Close()
	})
}

// crash stops the node as a crash would: the engine goes first, so the
// Manager writes nothing more, its leases included.
func (n *node) crash() {
	n.once.Do(func() {
		n.eng.Close()
		n.m.Close()
		n.h.Close()
	})
}

// pollers returns the user agents (nodes) of the origin's requests from
// the from-th on, in order.
func pollers(o *origin, from int) []string {
	var out []string
	for _, h := range o.requests()[from:] {
		out = append(out, h.Get("User-Agent"))
	}
	return out
}

// itemsOf returns how many times each item id was published to topic.
func itemsOf(t *testing.T, h *hub.Hub, topic string) map[string]int {
	t.Helper()
	b, err := h.Engine().Read(bg, topic, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range b.Events {
		var v struct{ ID string }
		if err := json.Unmarshal(ev.Data, &v); err != nil {
			t.Fatalf("event %s: %v", ev.Data, err)
		}
		out[v.ID]++
	}
	return out
}

// itemsBody is a JSON array of items with the ids given.
func itemsBody(ids ...string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf(`{"id":%q}`, id)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestNodesPollEachSourceFromOneNode: of three nodes, one polls a source
// at a time, the others stand by; when it stops, another takes over at
// its next try, and when that one crashes (its lease left behind), the
// last takes over once the lease lapses. Every item is published once.
func TestNodesPollEachSourceFromOneNode(t *testing.T) {
	redistest.Require(t)
	nodes := startNodes(t, 3)
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = itemsBody("a") })
	cfg := Config{Name: "feed", URL: o.URL, Topic: "feed", Mode: ModeJSONItems, Interval: time.Second, Timeout: time.Second}
	if _, _, err := nodes[0].m.Put(bg, cfg); err != nil {
		t.Fatal(err)
	}
	byUA := map[string]*node{}
	for _, n := range nodes {
		byUA[n.ua] = n
	}
	ids := []string{"a"}
	// phase lets the source poll for a while, adding an item each second,
	// and returns the node that polled: the only one.
	phase := func(what string, polls int) *node {
		t.Helper()
		from := len(o.requests())
		for range polls {
			ids = append(ids, fmt.Sprint("i", len(ids)))
			o.set(func(o *origin) { o.body = itemsBody(ids...) })
			time.Sleep(time.Second)
		}
		who := pollers(o, from)
		if len(who) < polls-1 || len(who) > polls+2 {
			t.Errorf("%s: %d polls in %d intervals", what, len(who), polls)
		}
		first := -1
		for i, ua := range who {
			if ua != who[len(who)-1] {
				first = i
			}
		}
		// A takeover's first polls may come from the node taking over
		// only after the last of the old holder's.
		for _, ua := range who[first+1:] {
			if ua != who[len(who)-1] {
				t.Fatalf("%s: polls by %v, want one node at a time", what, who)
			}
		}
		if first >= 0 {
			t.Logf("%s: polls by %v", what, who)
		}
		return byUA[who[len(who)-1]]
	}
	holder := phase("first holder", 4)
	for _, n := range nodes {
		in, err := n.m.Get("feed")
		if err != nil {
			t.Fatalf("%s: %v", n.ua, err)
		}
		if want := map[bool]string{true: "ok", false: "standby"}[n == holder]; in.Status.State() != want {
			t.Errorf("%s: state %s, want %s", n.ua, in.Status.State(), want)
		}
	}

	// Stopped: the lease is given up, another node polls within about an
	// interval.
	from := len(o.requests())
	holder.stop()
	stopped := time.Now()
	// Count only polls by another node: one the holder had in flight when
	// it stopped may still arrive.
	pollsBy := func(from int, not *node) func() bool {
		return func() bool {
			for _, ua := range pollers(o, from) {
				if ua != not.ua {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, "another node polls", pollsBy(from, holder))
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("taken over after %v, want within about an interval", d)
	}
	second := phase("after a stop", 3)
	if second == holder {
		t.Fatalf("%s polls after it stopped", holder.ua)
	}
	for _, ua := range pollers(o, from) {
		if ua == holder.ua {
			t.Errorf("%s polled after it stopped", ua)
		}
	}

	// Crashed: the lease lapses (timeout + 3 intervals) and the last node
	// takes over.
	from = len(o.requests())
	second.crash()
	crashed := time.Now()
	waitFor(t, "the last node polls", pollsBy(from, second))
	if d := time.Since(crashed); d > 7*time.Second {
		t.Errorf("taken over %v after a crash, want within the lease and an interval", d)
	}
	last := phase("after a crash", 2)
	if last == holder || last == second {
		t.Fatalf("%s polls after it stopped", last.ua)
	}
	// The item added last is published by the poll after it.
	waitFor(t, "every item published", func() bool { return len(itemsOf(t, last.h, "feed")) >= len(ids) })
	for id, n := range itemsOf(t, last.h, "feed") {
		if n != 1 {
			t.Errorf("item %s published %d times, want 1", id, n)
		}
	}
	if got := len(itemsOf(t, last.h, "feed")); got != len(ids) {
		t.Errorf("%d items published, want %d", got, len(ids))
	}
}

// TestNodesPublishAChangeOnce: two nodes that poll one source with the
// same state (a lease lost midway) publish its changes under the same
// idempotency keys, which the engine dedupes; the one that comes second
// writes no state over the first's, and reads it again.
func TestNodesPublishAChangeOnce(t *testing.T) {
	redistest.Require(t)
	nodes := startNodes(t, 2)
	o := newOrigin(t)
	cfg := Config{Name: "feed", URL: o.URL, Topic: "feed", Mode: ModeJSONItems, Interval: time.Second, Timeout: time.Second}.WithDefaults()
	// Pollers that are not in the registry: no run loop, no lease.
	p1, p2 := newPoller(nodes[0].m, cfg, nil), newPoller(nodes[1].m, cfg, nil)
	poll := func(p *poller, want Result) {
		t.Helper()
		out := p.poll(bg)
		if out.result != want {
			t.Fatalf("poll: %s (%v), want %s", out.result, out.err, want)
		}
		if out.result == ResultError && (out.kind != ErrKindState || !errors.Is(out.err, hub.ErrStateConflict)) {
			t.Fatalf("poll: %s %v, want a state conflict", out.kind, out.err)
		}
		if out.result == ResultError {
			p.st = nil // as run does after a failed write
		}
	}
	ids := []string{"a"}
	o.set(func(o *origin) { o.body = itemsBody(ids...) })
	poll(p1, ResultChanged)
	poll(p2, ResultUnchanged) // both now hold the same state
	for i, pair := range [][2]*poller{{p1, p2}, {p2, p1}, {p1, p2}} {
		ids = append(ids, fmt.Sprint("i", i))
		o.set(func(o *origin) { o.body = itemsBody(ids...) })
		poll(pair[0], ResultChanged)
		poll(pair[1], ResultError)     // published again (deduped), state refused
		poll(pair[1], ResultUnchanged) // read again: nothing new
		poll(pair[0], ResultUnchanged) // its state is the store's still
	}
	got := itemsOf(t, nodes[0].h, "feed")
	if len(got) != len(ids) {
		t.Errorf("%d items published, want %d: %v", len(got), len(ids), got)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("item %s published %d times, want 1", id, n)
		}
	}
}

// waitFor polls cond until it holds, for at most 15 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodesFollowRegistryChanges: a source created, changed or deleted on
// one node is so on the other within a bound, and the polling follows.
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
	o1, o2 := newOrigin(t), newOrigin(t)
	for _, o := range []*origin{o1, o2} {
		o.set(func(o *origin) { o.body = itemsBody("a") })
	}
	cfg := Config{Name: "feed", URL: o1.URL, Topic: "feed", Mode: ModeJSONItems, Interval: time.Second, Timeout: time.Second}
	if _, _, err := a.m.Put(bg, cfg); err != nil {
		t.Fatal(err)
	}
	within("created on A, known on B", func() bool { _, err := b.m.Get("feed"); return err == nil })
	waitFor(t, "a poll of o1", func() bool { return len(o1.requests()) > 0 })

	cfg.URL = o2.URL
	if _, _, err := b.m.Put(bg, cfg); err != nil {
		t.Fatal(err)
	}
	within("changed on B, seen on A", func() bool { in, err := a.m.Get("feed"); return err == nil && in.Config.URL == o2.URL })
	n1 := len(o1.requests())
	waitFor(t, "a poll of o2", func() bool { return len(o2.requests()) > 0 })
	time.Sleep(1500 * time.Millisecond)
	if n := len(o1.requests()) - n1; n > 0 {
		t.Errorf("o1 polled %d times after the change", n)
	}

	if err := a.m.Delete(bg, "feed"); err != nil {
		t.Fatal(err)
	}
	within("deleted on A, gone on B", func() bool { _, err := b.m.Get("feed"); return errors.Is(err, ErrNotFound) })
	n2 := len(o2.requests())
	time.Sleep(1500 * time.Millisecond)
	if n := len(o2.requests()) - n2; n > 0 {
		t.Errorf("o2 polled %d times after the deletion", n)
	}
	// The lease went with the source.
	if _, ok, err := a.eng.LoadState(bg, leaseSpace, "feed"); err != nil || ok {
		t.Errorf("the lease of a deleted source: present %v, error %v", ok, err)
	}
}
