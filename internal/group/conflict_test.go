package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// rivalEngine is a memory engine on which another node, the rival, wins
// the race for a group's writes when the test says so: a write to space
// that the rival beats finds the group's version moved, as if another
// node had written the group between this node's load and its commit.
type rivalEngine struct {
	stateEngine

	mu      sync.Mutex    // guards the following fields
	space   string        // the group's space; "" until the test arms the rival
	skip    int           // how many writes to space pass before the rival beats any
	beat    int           // how many of the next writes to space the rival beats; -1: all of them
	hold    chan struct{} // when non-nil, the next write to space waits until it is closed (and is not beaten)
	holding chan struct{} // closed once that write waits
	beaten  int           // the writes the rival beat
}

func (e *rivalEngine) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	e.mu.Lock()
	mine := space != "" && space == e.space
	hold, holding := e.hold, e.holding
	if !mine {
		hold = nil
	}
	if hold != nil {
		e.hold = nil
	}
	beat := mine && hold == nil && e.beat != 0
	if beat && e.skip > 0 {
		e.skip--
		beat = false
	}
	if beat {
		if e.beat > 0 {
			e.beat--
		}
		e.beaten++
	}
	e.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	if beat {
		rival := []hub.StateOp{{Key: keyVersion, Set: true, Value: []byte(newID())}}
		if err := e.stateEngine.ApplyState(ctx, space, rival); err != nil {
			return err
		}
	}
	return e.stateEngine.ApplyState(ctx, space, ops)
}

// stateEngine is an engine with a state store, which the rival wraps.
type stateEngine interface {
	hub.Engine
	hub.StateStore
	Close() error
}

// arm makes the rival beat the next n writes to space (-1: all).
func (e *rivalEngine) arm(space string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.space, e.beat = space, n
}

func (e *rivalEngine) beatenWrites() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.beaten
}

// rivalFixture is a Manager in shared mode over a rivalEngine, on the
// real clock.
type rivalFixture struct {
	eng   *rivalEngine
	h     *hub.Hub
	m     *Manager
	acked atomic.Int64 // the acks the Manager's observer counted
}

func newRivalFixture(t *testing.T) *rivalFixture {
	t.Helper()
	return newRivalFixtureOn(t, memory.New(memory.Options{}))
}

// newRivalFixtureOn is newRivalFixture over eng, which the test's end
// closes.
func newRivalFixtureOn(t *testing.T, eng stateEngine) *rivalFixture {
	t.Helper()
	f := &rivalFixture{eng: &rivalEngine{stateEngine: eng}}
	f.h = hub.New(f.eng, hub.Options{})
	m, err := New(bg, f.h, Options{Shared: true, Observer: Observer{Acked: func(_ string, n int) { f.acked.Add(int64(n)) }}})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(func() {
		m.Close()
		f.h.Close()
		f.eng.Close()
	})
	return f
}

// rivalBackends are the engines the rival tests that matter most on Redis
// run on: the memory engine, and a Redis engine on a real redis-server.
var rivalBackends = []struct {
	name string
	new  func(t *testing.T) *rivalFixture
}{
	{"memory", newRivalFixture},
	{"redis", func(t *testing.T) *rivalFixture {
		eng, err := redis.New(bg, redis.Options{URL: redistest.Start(t, redistest.Options{}).URL(), Prefix: "rival"})
		if err != nil {
			t.Fatalf("redis.New: %v", err)
		}
		return newRivalFixtureOn(t, eng)
	}},
}

// group returns the group name, served by f.m.
func (f *rivalFixture) group(t *testing.T, name string) *group {
	t.Helper()
	g, err := f.m.group(bg, name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// setUp publishes n events to "jobs" and creates group "g" over them.
func (f *rivalFixture) setUp(t *testing.T, n int) *group {
	t.Helper()
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(fmt.Sprint(i)), Encoding: event.EncodingJSON}
	}
	if _, err := f.h.Publish(bgInternal(), "jobs", recs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest}); err != nil {
		t.Fatal(err)
	}
	return f.group(t, "g")
}

// A commit that another node's write makes conflict fails every change it
// held; the operations that queued those changes (an ack, a nak, an
// in_progress, a term, a fetch) each run again on the reloaded state and
// succeed: none sees the conflict.
func TestConflictingCommitRetriesItsRiders(t *testing.T) {
	f := newRivalFixture(t)
	g := f.setUp(t, 7)
	msgs, err := f.m.Fetch(bgInternal(), "g", "a", 6, 0)
	if err != nil || len(msgs) != 6 {
		t.Fatalf("Fetch: %d messages, %v; want 6", len(msgs), err)
	}

	// The first ack's write waits in the store while the others queue
	// theirs behind it; they then ride one commit, which the rival beats.
	f.eng.mu.Lock()
	f.eng.hold, f.eng.holding = make(chan struct{}), make(chan struct{})
	holding, hold := f.eng.holding, f.eng.hold
	f.eng.mu.Unlock()
	f.eng.arm(g.space, 1)
	first := make(chan error, 1)
	go func() {
		res, err := f.m.Ack(bgInternal(), "g", "a", []string{msgs[0].ID})
		first <- errors.Join(err, errors.Join(res...))
	}()
	select {
	case <-holding:
	case <-time.After(guard):
		t.Fatal("the first ack's write did not reach the store")
	}

	riders := []struct {
		name string
		run  func() error
	}{
		{"ack", func() error {
			res, err := f.m.Ack(bgInternal(), "g", "a", []string{msgs[1].ID})
			return errors.Join(err, errors.Join(res...))
		}},
		{"nak", func() error { return f.m.Nak(bgInternal(), "g", "a", msgs[2].ID, time.Minute) }},
		{"in_progress", func() error {
			_, err := f.m.InProgress(bgInternal(), "g", "a", msgs[3].ID)
			return err
		}},
		{"term", func() error { return f.m.Term(bgInternal(), "g", "a", msgs[4].ID, "bad") }},
		{"fetch", func() error {
			got, err := f.m.Fetch(bgInternal(), "g", "b", 1, 0)
			if err == nil && len(got) != 1 {
				return errors.New("fetched nothing")
			}
			return err
		}},
	}
	errs := make([]error, len(riders))
	var wg sync.WaitGroup
	for i, r := range riders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.run()
		}()
	}
	for deadline := time.Now().Add(guard); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		queued := len(g.queue)
		g.mu.Unlock()
		if queued == len(riders) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes queued behind the first ack, want %d", queued, len(riders))
		}
	}
	close(hold)
	if err := <-first; err != nil {
		t.Errorf("the first ack: %v", err)
	}
	wg.Wait()
	for i, r := range riders {
		if errs[i] != nil {
			t.Errorf("%s, which rode the commit the rival beat: %v", r.name, errs[i])
		}
	}
	if n := f.eng.beatenWrites(); n != 1 {
		t.Errorf("the rival beat %d writes, want 1", n)
	}
	in, err := f.m.Get(bg, "g")
	if err != nil {
		t.Fatal(err)
	}
	// Offsets 1 and 2 acked, 5 dead-lettered; 4, 6 and b's in flight.
	if in.Topics[0].Committed != 2 || in.DeadLettered != 1 || in.InFlight != 3 {
		t.Errorf("info: committed %d, %d dead-lettered, %d in flight; want 2, 1, 3", in.Topics[0].Committed, in.DeadLettered, in.InFlight)
	}
}

// An operation whose every write conflicts fails, once its attempts run
// out, with ErrContended, which clients see as unavailable (retry later):
// not as a conflict (final for them), nor as an internal error. Once the
// other nodes let it, the same operation succeeds.
func TestConflictsOutlastingRetriesAreUnavailable(t *testing.T) {
	ops := []struct {
		name string
		run  func(m *Manager, id string) error
	}{
		{"fetch", func(m *Manager, _ string) error {
			_, err := m.Fetch(bgInternal(), "g", "b", 1, 0)
			return err
		}},
		{"ack", func(m *Manager, id string) error {
			res, err := m.Ack(bgInternal(), "g", "a", []string{id})
			return errors.Join(err, errors.Join(res...))
		}},
		{"nak", func(m *Manager, id string) error { return m.Nak(bgInternal(), "g", "a", id, time.Minute) }},
		{"in_progress", func(m *Manager, id string) error {
			_, err := m.InProgress(bgInternal(), "g", "a", id)
			return err
		}},
		{"term", func(m *Manager, id string) error { return m.Term(bgInternal(), "g", "a", id, "bad") }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			f := newRivalFixture(t)
			g := f.setUp(t, 2)
			msgs, err := f.m.Fetch(bgInternal(), "g", "a", 1, 0)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("Fetch: %d messages, %v; want 1", len(msgs), err)
			}
			f.eng.arm(g.space, -1)
			err = op.run(f.m, msgs[0].ID)
			if got := wire.Classify(err); !errors.Is(err, ErrContended) || got.Code != reason.Unavailable || got.HTTP != 503 {
				t.Errorf("%s against a rival that wins every write: %v (%s, %d); want ErrContended, %s, 503", op.name, err, got.Code, got.HTTP, reason.Unavailable)
			}
			if errors.Is(err, hub.ErrConflict) || errors.Is(err, hub.ErrStateConflict) {
				t.Errorf("%s: %v wraps a conflict", op.name, err)
			}
			if n := f.eng.beatenWrites(); n != maxAttempts {
				t.Errorf("%s: the rival beat %d writes, want one per attempt, %d", op.name, n, maxAttempts)
			}
			f.eng.arm(g.space, 0)
			if err := op.run(f.m, msgs[0].ID); err != nil {
				t.Errorf("%s again, the rival gone: %v", op.name, err)
			}
		})
	}
}

// An ack too large for one write is stored in several; when another
// node's write lands between two of them, the ids whose writes were
// stored stay acked and the rest are acked on the reloaded state: every id
// answers acked, and the acks are counted once.
func TestLargeAckSplitByAConflict(t *testing.T) {
	for _, b := range rivalBackends {
		t.Run(b.name, func(t *testing.T) { testLargeAckSplitByAConflict(t, b.new(t)) })
	}
}

// leaseAll publishes n events to jobs, creates group g over it and leases
// them all to member a, returning the group and the message ids.
func leaseAll(t *testing.T, f *rivalFixture, n int) (*group, []string) {
	t.Helper()
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(fmt.Sprint(i)), Encoding: event.EncodingJSON}
	}
	if _, err := f.h.Publish(bgInternal(), "jobs", recs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.m.Put(bg, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, MaxInFlight: n, MemberMaxInFlight: n}); err != nil {
		t.Fatal(err)
	}
	g := f.group(t, "g")
	var ids []string
	for len(ids) < n {
		msgs, err := f.m.Fetch(bgInternal(), "g", "a", n-len(ids), 0)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("Fetch after %d messages: %d, %v; want more", len(ids), len(msgs), err)
		}
		for _, msg := range msgs {
			ids = append(ids, msg.ID)
		}
	}
	return g, ids
}

func testLargeAckSplitByAConflict(t *testing.T, f *rivalFixture) {
	const n = 2500 // over two ApplyState calls of acks
	g, ids := leaseAll(t, f, n)
	// The rival beats the ack's second write: the first is stored.
	f.eng.mu.Lock()
	f.eng.skip = 1
	f.eng.mu.Unlock()
	f.eng.arm(g.space, 1)
	res, err := f.m.Ack(bgInternal(), "g", "a", ids)
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	bad := 0
	for i, r := range res {
		if r != nil {
			if bad < 3 {
				t.Errorf("ids[%d]: %v; want acked", i, r)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d ids answered other than acked", bad, n)
	}
	if got := f.acked.Load(); got != n {
		t.Errorf("the observer counted %d acks, want %d", got, n)
	}
	if k := f.eng.beatenWrites(); k != 1 {
		t.Errorf("the rival beat %d writes, want 1", k)
	}
	in, err := f.m.Get(bg, "g")
	if err != nil {
		t.Fatal(err)
	}
	if in.Topics[0].Committed != n || in.InFlight != 0 {
		t.Errorf("info: committed %d, %d in flight; want %d, 0", in.Topics[0].Committed, in.InFlight, n)
	}
}

// An ack whose first chunk is stored and whose other chunks conflict on
// every attempt answers per id: the stored ids acked, the others
// ErrContended (unavailable: retry them). Retried, those are acked.
func TestLargeAckPartlyContended(t *testing.T) {
	for _, b := range rivalBackends {
		t.Run(b.name, func(t *testing.T) { testLargeAckPartlyContended(t, b.new(t)) })
	}
}

func testLargeAckPartlyContended(t *testing.T, f *rivalFixture) {
	const n = 1500
	g, ids := leaseAll(t, f, n)
	f.eng.mu.Lock()
	f.eng.skip = 1
	f.eng.mu.Unlock()
	f.eng.arm(g.space, -1)
	res, err := f.m.Ack(bgInternal(), "g", "a", ids)
	if err != nil {
		t.Fatalf("Ack: %v; want per-id results", err)
	}
	var acked, contended []string
	for i, r := range res {
		switch {
		case r == nil:
			acked = append(acked, ids[i])
		case errors.Is(r, ErrContended):
			contended = append(contended, ids[i])
		default:
			t.Fatalf("ids[%d]: %v; want acked or ErrContended", i, r)
		}
	}
	if len(acked) == 0 || len(contended) == 0 || len(acked)+len(contended) != n {
		t.Fatalf("%d acked, %d contended; want some of each, %d in all", len(acked), len(contended), n)
	}
	if got := f.acked.Load(); got != int64(len(acked)) {
		t.Errorf("the observer counted %d acks, want %d", got, len(acked))
	}
	f.eng.arm(g.space, 0)
	res, err = f.m.Ack(bgInternal(), "g", "a", contended)
	if err != nil || errors.Join(res...) != nil {
		t.Fatalf("the contended ids acked again, the rival gone: %v, %v", err, errors.Join(res...))
	}
	in, err := f.m.Get(bg, "g")
	if err != nil {
		t.Fatal(err)
	}
	if in.Topics[0].Committed != n || in.InFlight != 0 {
		t.Errorf("info: committed %d, %d in flight; want %d, 0", in.Topics[0].Committed, in.InFlight, n)
	}
}
