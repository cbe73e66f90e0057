package group

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// gate holds a node's first write to the registry of groups (the one that
// creates a group) until the test opens it.
type gate struct {
	mu      sync.Mutex
	armed   bool
	holding chan struct{} // closed once the write waits
	open    chan struct{} // the write goes on once closed
}

func newGate() *gate {
	return &gate{armed: true, holding: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) pass(space string) {
	if space != registrySpace {
		return
	}
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.holding)
		<-g.open
	}
}

// gatedMemory is one node's view of a memory engine that several nodes
// share, with a gate on its registry writes. Only the first node's hub
// receives the engine's deliveries (the memory engine has one receiver).
type gatedMemory struct {
	*memory.Engine
	gate   *gate
	attach bool
}

func (e *gatedMemory) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	e.gate.pass(space)
	return e.Engine.ApplyState(ctx, space, ops)
}

func (e *gatedMemory) Attach(deliver func(*event.Event)) {
	if e.attach {
		e.Engine.Attach(deliver)
	}
}

// gatedRedis is a Redis engine with a gate on its registry writes.
type gatedRedis struct {
	*redis.Engine
	gate *gate
}

func (e *gatedRedis) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	e.gate.pass(space)
	return e.Engine.ApplyState(ctx, space, ops)
}

// Two nodes create the same group at once with different settings (a
// start position, a lease): one wins, the other answers ErrExists and
// writes nothing, so the group that exists has the winner's settings and
// the winner's start position, on every node. The race is forced: each
// node computes its start positions, then waits at its registry write; the
// first node's write goes first.
func TestCreateRaceKeepsTheWinnersPositions(t *testing.T) {
	backends := []struct {
		name string
		// nodes returns k engines sharing one store, each with a gate
		// (nil: none), and a function publishing to the store.
		nodes func(t *testing.T, gates []*gate) []hub.Engine
	}{
		{"memory", func(t *testing.T, gates []*gate) []hub.Engine {
			mem := memory.New(memory.Options{})
			t.Cleanup(func() { mem.Close() })
			out := make([]hub.Engine, len(gates))
			for i, g := range gates {
				if g == nil {
					g = &gate{}
				}
				out[i] = &gatedMemory{Engine: mem, gate: g, attach: i == 0}
			}
			return out
		}},
		{"redis", func(t *testing.T, gates []*gate) []hub.Engine {
			url := redistest.Start(t, redistest.Options{}).URL()
			out := make([]hub.Engine, len(gates))
			for i, g := range gates {
				eng, err := redis.New(bg, redis.Options{URL: url, Prefix: "create-race"})
				if err != nil {
					t.Fatalf("redis.New: %v", err)
				}
				t.Cleanup(func() { eng.Close() })
				if g == nil {
					g = &gate{}
				}
				out[i] = &gatedRedis{Engine: eng, gate: g}
			}
			return out
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			gates := []*gate{newGate(), newGate(), nil}
			engs := b.nodes(t, gates)
			ms := make([]*Manager, len(engs))
			hs := make([]*hub.Hub, len(engs))
			for i, eng := range engs {
				hs[i] = hub.New(eng, hub.Options{})
				m, err := New(bg, hs[i], Options{Shared: true, Poll: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				ms[i] = m
			}
			t.Cleanup(func() {
				for i := range ms {
					ms[i].Close()
					hs[i].Close()
				}
			})
			recs := make([]event.Record, 5)
			for i := range recs {
				recs[i] = event.Record{Data: []byte(`1`), Encoding: event.EncodingJSON}
			}
			if _, err := hs[0].Publish(bgInternal(), "jobs", recs); err != nil {
				t.Fatal(err)
			}

			cfgs := []Config{
				{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: 10 * time.Second},
				{Name: "g", Topics: []string{"jobs"}, Start: StartLatest, AckWait: 20 * time.Second},
			}
			errs := make([]error, 2)
			created := make([]bool, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, created[i], errs[i] = ms[i].Put(bg, cfgs[i])
				}()
				select {
				case <-gates[i].holding:
				case <-time.After(guard):
					t.Fatalf("node %d's create did not reach the registry", i)
				}
			}
			close(gates[0].open)
			for deadline := time.Now().Add(guard); ; time.Sleep(time.Millisecond) {
				if _, ok, err := ms[2].lookupStored(bg, "g"); err != nil {
					t.Fatal(err)
				} else if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("node 0's create did not store the group")
				}
			}
			close(gates[1].open)
			wg.Wait()
			if errs[0] != nil || !created[0] {
				t.Errorf("node 0's Put, which won: created %v, %v; want created", created[0], errs[0])
			}
			if !errors.Is(errs[1], ErrExists) {
				t.Errorf("node 1's Put, which lost with other settings: %v; want ErrExists", errs[1])
			}
			for i, m := range ms {
				in, err := m.Get(bg, "g")
				if err != nil {
					t.Fatalf("node %d: Get: %v", i, err)
				}
				if in.Config.Start != StartEarliest || in.Config.AckWait != 10*time.Second {
					t.Errorf("node %d: the group's settings are start %q, ack_wait %v; want the winner's, earliest and 10s", i, in.Config.Start, in.Config.AckWait)
				}
				if len(in.Topics) != 1 || in.Topics[0].Committed != 0 || in.Pending != 5 {
					t.Errorf("node %d: the group's position is %+v, %d pending; want the winner's start: committed 0, 5 pending", i, in.Topics, in.Pending)
				}
			}
			// A fetch on the third node delivers from the winner's start.
			msgs, err := ms[2].Fetch(bgInternal(), "g", "a", 10, 0)
			if err != nil || len(msgs) != 5 {
				t.Errorf("Fetch on a third node: %d messages, %v; want 5", len(msgs), err)
			}
		})
	}
}

// Two nodes creating the same group at once with the same settings both
// succeed: one creates it, the other gets it unchanged (Put is idempotent).
func TestCreateRaceSameSettings(t *testing.T) {
	f := newRivalFixture(t)
	m2, err := New(bg, f.h, Options{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	if _, err := f.h.Publish(bgInternal(), "jobs", []event.Record{{Data: []byte(`1`), Encoding: event.EncodingJSON}}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest}
	var wg sync.WaitGroup
	created := make([]bool, 2)
	errs := make([]error, 2)
	for i, m := range []*Manager{f.m, m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created[i], errs[i] = m.Put(bg, cfg)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || created[0] == created[1] {
		t.Errorf("two Puts of the same settings at once: created %v, errors %v; want one created, both nil", created, errs)
	}
	for i, m := range []*Manager{f.m, m2} {
		if in, err := m.Get(bg, "g"); err != nil || in.Topics[0].Committed != 0 || in.Pending != 1 {
			t.Errorf("node %d: Get: %+v, %v; want committed 0, 1 pending", i, in, err)
		}
	}
}

// A group created where a deleted group of the same name left state (its
// node stopped between the registry's delete and the clearing) starts
// afresh: the leftovers are cleared first.
func TestCreateClearsLeftovers(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 5)
	info, ok, err := f.eng.Info(bg, "jobs")
	if err != nil || !ok {
		t.Fatalf("Info: %v, %v", ok, err)
	}
	store, _ := f.h.State()
	left := []hub.StateOp{
		setOp(prefixPos+"jobs", mustJSON(jsonPos{E: info.Epoch.String(), F: 3})),
		setOp(offKey(prefixSpan, "jobs", 5), []byte(hex16(5))),
		setOp(keyVersion, []byte(newID())),
	}
	if err := store.ApplyState(bg, spaceOf("g"), left); err != nil {
		t.Fatal(err)
	}
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest})
	if in := f.info(t, "g"); in.Topics[0].Committed != 0 || in.Pending != 5 {
		t.Errorf("info: committed %d, %d pending; want 0, 5", in.Topics[0].Committed, in.Pending)
	}
	if got := f.fetch(t, "g", "a", 10, 0); len(got) != 5 {
		t.Errorf("fetched %d events, want 5", len(got))
	}
}

// Clearing the space before a create leaves alone a group that another
// node created meanwhile, and reports it.
func TestClearSpaceSparesALiveGroup(t *testing.T) {
	f := newRivalFixture(t)
	f.setUp(t, 5)
	if msgs, err := f.m.Fetch(bgInternal(), "g", "a", 2, 0); err != nil || len(msgs) != 2 {
		t.Fatalf("Fetch: %d messages, %v; want 2", len(msgs), err)
	}
	m2, err := New(bg, f.h, Options{Shared: true, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	late := newGroup(m2, jsonStored{Config: Config{Name: "g", Topics: []string{"jobs"}}.WithDefaults()})
	exists, err := m2.clearSpace(bg, late)
	if err != nil || !exists {
		t.Errorf("clearSpace: %v, %v; want the group reported, no error", exists, err)
	}
	if in, err := f.m.Get(bg, "g"); err != nil || in.InFlight != 2 || in.Pending != 3 {
		t.Errorf("Get: %d in flight, %d pending, %v; want 2, 3", in.InFlight, in.Pending, err)
	}
}
