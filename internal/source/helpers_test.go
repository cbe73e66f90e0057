package source

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/clock/clocktest"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// guard is how long a test waits for something that should happen at once
// before it calls it a failure. It never orders events.
const guard = 10 * time.Second

var bg = context.Background()

// fakeClock is the tests' Clock: each timer a poller sets is handed to
// the test (next), so the test knows a poll has ended, and what wait came
// after it, without sleeping.
type fakeClock struct{ *clocktest.Fake }

func newFakeClock() *fakeClock { return &fakeClock{clocktest.New()} }

// next returns the next timer a poller sets: its poll has ended.
func (c *fakeClock) next(t *testing.T) *clocktest.Timer {
	t.Helper()
	return c.Next(t, guard, "poll end")
}

// poll fires tm and returns the timer set after the poll it starts.
func (c *fakeClock) poll(t *testing.T, tm *clocktest.Timer) *clocktest.Timer {
	t.Helper()
	c.Fire(tm)
	return c.next(t)
}

// origin is a test HTTP server whose answers the test sets, and which
// records the requests it got.
type origin struct {
	*httptest.Server
	mu       sync.Mutex
	body     string
	ctype    string
	etag     string // answered, and honoured in If-None-Match
	modified string // Last-Modified answered, and honoured in If-Modified-Since
	status   int    // answered instead when set
	header   http.Header
	reqs     []http.Header
}

func newOrigin(t *testing.T) *origin {
	o := &origin{ctype: "application/json"}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reqs = append(o.reqs, r.Header.Clone())
	for k, v := range o.header {
		w.Header()[k] = v
	}
	if o.status != 0 {
		w.WriteHeader(o.status)
		return
	}
	if o.etag != "" {
		w.Header().Set("ETag", o.etag)
		if r.Header.Get("If-None-Match") == o.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if o.modified != "" {
		w.Header().Set("Last-Modified", o.modified)
		if r.Header.Get("If-Modified-Since") == o.modified {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", o.ctype)
	fmt.Fprint(w, o.body)
}

// set changes what the origin answers.
func (o *origin) set(f func(o *origin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

// requests returns the headers of the requests so far.
func (o *origin) requests() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.reqs...)
}

// localGuard lets connections reach 127.0.0.1 (the test servers) only.
func localGuard() *netguard.Guard {
	return netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
}

// fixture is a hub over an engine and a Manager over it with a fake
// clock.
type fixture struct {
	hub   *hub.Hub
	m     *Manager
	clock *fakeClock
	polls *pollLog
}

// pollLog records the observer's calls.
type pollLog struct {
	mu        sync.Mutex
	results   []string // "result" or "error:kind"
	published int
	removed   []string
}

func (l *pollLog) observer() Observer {
	return Observer{
		Polled: func(_ string, r Result, kind string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if kind != "" {
				l.results = append(l.results, "error:"+kind)
			} else {
				l.results = append(l.results, string(r))
			}
		},
		Published: func(_ string, n int) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.published += n
		},
		Removed: func(s string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.removed = append(l.removed, s)
		},
	}
}

func (l *pollLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.results) == 0 {
		return ""
	}
	return l.results[len(l.results)-1]
}

// engine is what a fixture runs on: a hub.Engine with consumer state.
type engine interface {
	hub.Engine
	hub.StateStore
}

// newFixture starts a Manager over a fresh memory engine.
func newFixture(t *testing.T, opts ...func(*Options)) *fixture {
	t.Helper()
	eng := memory.New(memory.Options{})
	t.Cleanup(func() { eng.Close() })
	return newFixtureOn(t, eng, opts...)
}

// newFixtureOn starts a hub and a Manager over eng; both are closed when
// the test ends (or earlier with close).
func newFixtureOn(t *testing.T, eng engine, opts ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{hub: hub.New(eng, hub.Options{}), clock: newFakeClock(), polls: &pollLog{}}
	o := Options{Guard: localGuard(), Clock: f.clock, Observer: f.polls.observer()}
	for _, fn := range opts {
		fn(&o)
	}
	m, err := New(bg, f.hub, o)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	f.m.Close()
	f.hub.Close()
}

// put creates a source, failing the test on an error.
func (f *fixture) put(t *testing.T, cfg Config) Info {
	t.Helper()
	in, _, err := f.m.Put(bg, cfg)
	if err != nil {
		t.Fatalf("Put(%s): %v", cfg.Name, err)
	}
	return in
}

// events returns every event of topic.
func (f *fixture) events(t *testing.T, topic string) []*event.Event {
	t.Helper()
	b, err := f.hub.Engine().Read(bg, topic, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return b.Events
}

// datas returns the payloads of topic's events, as strings.
func (f *fixture) datas(t *testing.T, topic string) []string {
	t.Helper()
	var out []string
	for _, ev := range f.events(t, topic) {
		out = append(out, string(ev.Data))
	}
	return out
}
