package source

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/hub"
)

func openDurable(t *testing.T, dir string) *durable.Engine {
	t.Helper()
	eng, err := durable.Open(dir, durable.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestRestartNoDuplicates runs a source on the durable engine, closes
// everything, and opens it again: the source is back, its change detection
// too, and its first poll publishes nothing.
func TestRestartNoDuplicates(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `[{"id":1,"v":"a"},{"id":2,"v":"b"}]` })
	lm := newOrigin(t)
	lm.set(func(o *origin) { o.body, o.etag = `{"whole":1}`, `"e1"` })
	dir := t.TempDir()

	eng := openDurable(t, dir)
	f := newFixtureOn(t, eng)
	f.put(t, items("list", o, ""))
	f.clock.next(t)
	f.put(t, whole("doc", lm))
	f.clock.next(t)
	f.close()
	eng.Close()

	eng = openDurable(t, dir)
	defer eng.Close()
	f = newFixtureOn(t, eng)
	defer f.close()
	// Both sources are back and poll at once (jitter 0).
	f.clock.next(t)
	f.clock.next(t)
	if got := f.datas(t, "items.list"); !slices.Equal(got, []string{`{"id":1,"v":"a"}`, `{"id":2,"v":"b"}`}) {
		t.Errorf("after the restart: %q, want the two items once", got)
	}
	if got := len(f.datas(t, "feeds.doc")); got != 1 {
		t.Errorf("after the restart: %d events of the whole source, want 1", got)
	}
	reqs := lm.requests()
	if got := reqs[len(reqs)-1].Get("If-None-Match"); got != `"e1"` {
		t.Errorf("the first request after the restart sent If-None-Match %q, want the stored ETag", got)
	}
	if got := len(f.m.List()); got != 2 {
		t.Errorf("%d sources after the restart, want 2", got)
	}
}

// failingState is a durable engine whose ApplyState fails on the spaces
// of sources while fail is set: a crash between a poll's publish and its
// state write.
type failingState struct {
	*durable.Engine
	fail atomic.Bool
}

func (e *failingState) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	if e.fail.Load() && space == spaceOf("list") {
		return errors.New("disk gone")
	}
	return e.Engine.ApplyState(ctx, space, ops)
}

// TestCrashBetweenPublishAndState: the poll that published but could not
// remember it is repeated after the restart with the same idempotency
// keys, and the engine stores nothing twice.
func TestCrashBetweenPublishAndState(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `[{"id":1,"v":"a"},{"id":2,"v":"b"}]` })
	dir := t.TempDir()

	eng := &failingState{Engine: openDurable(t, dir)}
	f := newFixtureOn(t, eng)
	f.put(t, items("list", o, ""))
	tm := f.clock.next(t)
	o.set(func(o *origin) { o.body = `[{"id":1,"v":"a2"},{"id":2,"v":"b"},{"id":3,"v":"c"}]` })
	eng.fail.Store(true)
	f.clock.poll(t, tm)
	if got := f.polls.last(); got != "error:state" {
		t.Fatalf("poll result %s, want error:state", got)
	}
	want := []string{`{"id":1,"v":"a"}`, `{"id":2,"v":"b"}`, `{"id":1,"v":"a2"}`, `{"id":3,"v":"c"}`}
	if got := f.datas(t, "items.list"); !slices.Equal(got, want) {
		t.Fatalf("before the restart: %q, want %q", got, want)
	}
	f.close()
	eng.Engine.Close()

	eng2 := openDurable(t, dir)
	defer eng2.Close()
	f = newFixtureOn(t, eng2)
	defer f.close()
	tm = f.clock.next(t)
	if got := f.polls.last(); got != string(ResultChanged) {
		t.Errorf("first poll after the restart: %s, want changed (published again, deduped)", got)
	}
	if got := f.datas(t, "items.list"); !slices.Equal(got, want) {
		t.Fatalf("after the restart: %q, want %q: no duplicates", got, want)
	}
	// The state is written now: the next poll finds nothing new.
	f.clock.poll(t, tm)
	if got := f.polls.last(); got != string(ResultUnchanged) {
		t.Errorf("second poll after the restart: %s, want unchanged", got)
	}
	if got := len(f.datas(t, "items.list")); got != len(want) {
		t.Errorf("%d events, want %d", got, len(want))
	}
}
