package group

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// rueidis closes the connections a Cluster topology refresh replaced five
// seconds later, in a goroutine of its own that outlives Close (as in
// internal/engine/redis).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1")) // rueidis: see internal/engine/redis TestMain
}

// sharedFlag runs the single-node tests in shared mode (shared.go), which
// must not change what they see: go test ./internal/group/ -args -shared.
var sharedFlag = flag.Bool("shared", false, "run the Managers of the single-node tests in shared mode")

// guard is how long a test waits for something that should happen at once
// before it calls it a failure. It never orders events.
const guard = 10 * time.Second

var bg = context.Background()

// fakeClock is a Clock whose time moves when the test says; timers due at
// or before the new time fire then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: at, c: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// advance moves the clock by d and fires the timers due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			select {
			case t.c <- c.now:
			default:
			}
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return true }

// fixture is a hub over an engine with a Manager on a fake clock.
type fixture struct {
	eng   hub.Engine
	close func()
	h     *hub.Hub
	m     *Manager
	clock *fakeClock
	dead  chan string // "group:reason" of each event dead-lettered, by the observer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	eng := memory.New(memory.Options{})
	f := newFixtureOn(t, eng, newFakeClock())
	closeM := f.close
	f.close = func() { closeM(); eng.Close() }
	t.Cleanup(f.close)
	return f
}

// newFixtureOn starts a hub and a Manager over eng; f.close stops them
// (not eng).
func newFixtureOn(t *testing.T, eng hub.Engine, clock *fakeClock) *fixture {
	t.Helper()
	f := &fixture{eng: eng, clock: clock, dead: make(chan string, 1000)}
	f.h = hub.New(eng, hub.Options{})
	m, err := New(bg, f.h, Options{Shared: *sharedFlag, Clock: clock, TopicRefresh: 20 * time.Millisecond, Observer: Observer{DeadLettered: func(g, why string) { f.dead <- g + ":" + why }}})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	var once sync.Once
	f.close = func() {
		once.Do(func() {
			m.Close()
			f.h.Close()
		})
	}
	return f
}

func openDurable(t *testing.T, dir string) *durable.Engine {
	t.Helper()
	eng, err := durable.Open(dir, durable.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func (f *fixture) publish(t *testing.T, topic string, recs ...event.Record) {
	t.Helper()
	if _, err := f.h.Publish(hub.Internal(bg), topic, recs); err != nil {
		t.Fatal(err)
	}
}

// publishN publishes n events "0".."n-1" to topic.
func (f *fixture) publishN(t *testing.T, topic string, n int) {
	t.Helper()
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(fmt.Sprint(i)), Encoding: event.EncodingJSON}
	}
	f.publish(t, topic, recs...)
}

func (f *fixture) put(t *testing.T, cfg Config) Info {
	t.Helper()
	in, _, err := f.m.Put(bg, cfg)
	if err != nil {
		t.Fatalf("Put(%+v): %v", cfg, err)
	}
	return in
}

func (f *fixture) fetch(t *testing.T, group, member string, limit int, wait time.Duration) []Message {
	t.Helper()
	msgs, err := f.m.Fetch(hub.Internal(bg), group, member, limit, wait)
	if err != nil {
		t.Fatalf("Fetch(%s, %s): %v", group, member, err)
	}
	return msgs
}

func (f *fixture) ack(t *testing.T, group, member string, msgs ...Message) {
	t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	res, err := f.m.Ack(hub.Internal(bg), group, member, ids)
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for i, err := range res {
		if err != nil {
			t.Fatalf("Ack of %s: %v", ids[i], err)
		}
	}
}

func (f *fixture) info(t *testing.T, group string) Info {
	t.Helper()
	in, err := f.m.Get(bg, group)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// datas returns the payloads of messages.
func datas(msgs []Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Event.Data)
	}
	return out
}

// offsetsOf returns the offsets of messages.
func offsetsOf(msgs []Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Event.Offset
	}
	return out
}

// pullOne waits for the next event of topic after offset after.
func (f *fixture) pullOne(t *testing.T, topic string, after uint64) *event.Event {
	t.Helper()
	b, err := f.eng.Read(bg, topic, after, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) == 0 {
		t.Fatalf("no event in %s after %d", topic, after)
	}
	return b.Events[0]
}

// deadLettered waits for the next dead-lettering and returns its
// "group:reason".
func (f *fixture) deadLettered(t *testing.T) string {
	t.Helper()
	select {
	case s := <-f.dead:
		return s
	case <-time.After(guard):
		t.Fatal("nothing was dead-lettered")
		return ""
	}
}

// cursorAfter returns a cursor at offset off of ev's topic and epoch.
func cursorAfter(ev *event.Event, off uint64) string {
	var c cursor.Cursor
	c.Set(ev.Topic, event.Position{Epoch: ev.Epoch, Offset: off})
	return c.String()
}

func bgInternal() context.Context { return hub.Internal(bg) }
