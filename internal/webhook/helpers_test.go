package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// guard is how long a test waits for something that should happen at once
// before it calls it a failure. It never orders events.
const guard = 10 * time.Second

var bg = context.Background()

// fakeClock is a Clock whose timers fire when the test says: each timer a
// dispatcher sets (a wait before a retry) is handed to the test through
// timers.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers chan *fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), timers: make(chan *fakeTimer, 64)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{d: d, c: make(chan time.Time, 1)}
	c.timers <- t
	return t
}

// next returns the next timer a dispatcher sets.
func (c *fakeClock) next(t *testing.T) *fakeTimer {
	t.Helper()
	select {
	case tm := <-c.timers:
		return tm
	case <-time.After(guard):
		t.Fatal("no retry wait began")
		return nil
	}
}

// fire advances the clock by the timer's wait and fires it.
func (c *fakeClock) fire(tm *fakeTimer) {
	c.advance(tm.d)
	tm.c <- c.Now()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return true }

// receiver is a webhook endpoint: it verifies every request with the
// reference Standard Webhooks library (never with herald's code), records
// what it got, and answers what the test sets.
type receiver struct {
	*httptest.Server
	t        *testing.T
	verify   []*standardwebhooks.Webhook
	ignoreTS bool // verify without the 5-minute tolerance (a fake clock signs)

	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) (status int, header http.Header)
	notify chan delivery
}

// delivery is one request a receiver got.
type delivery struct {
	ID     string
	Header http.Header
	Event  struct {
		Topic  string          `json:"topic"`
		Offset uint64          `json:"offset"`
		Epoch  string          `json:"epoch"`
		Type   string          `json:"type"`
		Data   json.RawMessage `json:"data"`
	}
	Body []byte
}

func newReceiver(t *testing.T, secrets ...string) *receiver {
	t.Helper()
	r := &receiver{t: t, notify: make(chan delivery, 100000)}
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		r.verify = append(r.verify, wh)
	}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	for i, wh := range r.verify {
		var err error
		if r.ignoreTS {
			err = wh.VerifyIgnoringTimestamp(body, req.Header)
		} else {
			err = wh.Verify(body, req.Header)
		}
		if err != nil {
			r.t.Errorf("secret %d: signature of %s does not verify: %v", i, req.Header.Get(HeaderID), err)
		}
	}
	d := delivery{ID: req.Header.Get(HeaderID), Header: req.Header.Clone(), Body: body}
	if err := json.Unmarshal(body, &d.Event); err != nil {
		r.t.Errorf("body %q: %v", body, err)
	}
	r.mu.Lock()
	r.got = append(r.got, d)
	status := http.StatusNoContent
	if r.answer != nil {
		var h http.Header
		status, h = r.answer(len(r.got), d)
		for k, v := range h {
			w.Header()[k] = v
		}
	}
	r.mu.Unlock()
	w.WriteHeader(status)
	r.notify <- d
}

func (r *receiver) setAnswer(f func(n int, d delivery) (int, http.Header)) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// wait returns the next request the receiver gets.
func (r *receiver) wait(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.notify:
		return d
	case <-time.After(guard):
		t.Fatal("the receiver got no request")
		return delivery{}
	}
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// fixture is a hub on the memory engine with a webhook Manager allowed to
// reach 127.0.0.1.
type fixture struct {
	hub    *hub.Hub
	groups *stubGroups
	m      *Manager
	clock  *fakeClock
}

// newFixture starts a Manager; clock nil runs on the real clock.
func newFixture(t *testing.T, clock *fakeClock) *fixture {
	t.Helper()
	eng := memory.New(memory.Options{})
	f := &fixture{hub: hub.New(eng, hub.Options{}), clock: clock}
	f.groups = newStubGroups(f.hub)
	opts := Options{
		Guard:     netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
		FetchWait: 200 * time.Millisecond,
		Rand:      func() float64 { return 0.5 },
	}
	if clock != nil {
		opts.Clock = clock
	}
	m, err := New(bg, f.hub, f.groups, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(func() {
		m.Close()
		f.groups.Close()
		f.hub.Close()
		eng.Close()
	})
	return f
}

func (f *fixture) publish(t *testing.T, topic string, n int) []event.Ack {
	t.Helper()
	var acks []event.Ack
	for i := range n {
		a, err := f.hub.Publish(hub.Internal(bg), topic, []event.Record{{Type: "t", Data: fmt.Appendf(nil, `{"i":%d}`, i)}})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a...)
	}
	return acks
}

func (f *fixture) put(t *testing.T, cfg Config) Info {
	t.Helper()
	in, _, err := f.m.Put(bg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// waitFor polls cond (a state with no signal to wait on: a counter of the
// Manager) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stubGroups stands in for package group's Manager, which is being built
// on another branch, with the same contract for what webhooks use: leases,
// nak delays, terms to the dead-letter topic, MaxInFlight. The tests
// switch to *group.Manager once it is merged.
type stubGroups struct {
	h *hub.Hub

	mu     sync.Mutex
	groups map[string]*stubGroup
	closed bool
}

type stubGroup struct {
	cfg      group.Config
	cur      cursor.Cursor
	from     hub.From
	inflight map[string]*stubMsg
	ready    []*stubMsg
	count    map[string]int
	seq      int
}

type stubMsg struct {
	ev       *event.Event
	at       time.Time
	deadline time.Time
	n        int
}

func newStubGroups(h *hub.Hub) *stubGroups {
	return &stubGroups{h: h, groups: make(map[string]*stubGroup)}
}

func (s *stubGroups) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (s *stubGroups) Put(ctx context.Context, cfg group.Config) (group.Info, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[cfg.Name]; ok {
		return group.Info{Config: g.cfg}, false, nil
	}
	if cfg.DeadLetter == "" {
		cfg.DeadLetter = cfg.Name + ".dead"
	}
	g := &stubGroup{cfg: cfg, inflight: make(map[string]*stubMsg), count: make(map[string]int), from: hub.FromEarliest}
	switch cfg.Start {
	case "earliest":
	case "latest":
		res, err := s.h.Pull(ctx, hub.PullRequest{Topics: cfg.Topics, From: hub.FromLatest, Limit: 1})
		if err != nil {
			return group.Info{}, false, err
		}
		g.cur = res.Cursor
	default:
		c, err := cursor.Parse(cfg.Start)
		if err != nil {
			return group.Info{}, false, fmt.Errorf("%w: start: %v", hub.ErrBadInput, err)
		}
		g.cur = c
	}
	s.groups[cfg.Name] = g
	return group.Info{Config: cfg}, true, nil
}

func (s *stubGroups) Delete(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[name] == nil {
		return group.ErrNoGroup
	}
	delete(s.groups, name)
	return nil
}

func (s *stubGroups) Fetch(ctx context.Context, name, member string, limit int, wait time.Duration) ([]group.Message, error) {
	deadline := time.Now().Add(wait)
	for {
		msgs, err := s.fetchOnce(ctx, name, limit)
		if err != nil || len(msgs) > 0 || time.Now().After(deadline) {
			return msgs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (s *stubGroups) fetchOnce(ctx context.Context, name string, limit int) ([]group.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, hub.ErrClosed
	}
	g := s.groups[name]
	if g == nil {
		return nil, group.ErrNoGroup
	}
	now := time.Now()
	for id, m := range g.inflight {
		if now.After(m.deadline) {
			delete(g.inflight, id)
			m.at = now
			g.ready = append(g.ready, m)
		}
	}
	sort.Slice(g.ready, func(i, j int) bool { return g.ready[i].ev.Offset < g.ready[j].ev.Offset })
	var out []*stubMsg
	for i := 0; i < len(g.ready) && len(out) < limit && len(g.inflight)+len(out) < g.cfg.MaxInFlight; {
		if m := g.ready[i]; !m.at.After(now) {
			out = append(out, m)
			g.ready = append(g.ready[:i], g.ready[i+1:]...)
			continue
		}
		i++
	}
	if free := min(limit-len(out), g.cfg.MaxInFlight-len(g.inflight)-len(g.ready)-len(out)); free > 0 {
		res, err := s.h.Pull(ctx, hub.PullRequest{Topics: g.cfg.Topics, Cursor: g.cur, From: g.from, Limit: free})
		if err != nil {
			return nil, err
		}
		g.cur = res.Cursor
		for _, ev := range res.Events {
			out = append(out, &stubMsg{ev: ev})
		}
	}
	msgs := make([]group.Message, 0, len(out))
	for _, m := range out {
		key := MessageID(m.ev)
		g.count[key]++
		m.n = g.count[key]
		if m.n > g.cfg.MaxDeliveries {
			s.deadLetter(ctx, g, m, "max_deliveries")
			continue
		}
		m.deadline = now.Add(g.cfg.AckWait)
		g.seq++
		id := strconv.Itoa(g.seq)
		g.inflight[id] = m
		msgs = append(msgs, group.Message{ID: id, Event: m.ev, Delivery: m.n, Deadline: m.deadline})
	}
	return msgs, nil
}

func (s *stubGroups) deadLetter(ctx context.Context, g *stubGroup, m *stubMsg, why string) {
	rec := m.ev.Record
	rec.Headers = map[string]string{"herald-dead-letter-reason": why, "herald-dead-letter-id": MessageID(m.ev)}
	rec.Key = ""
	if _, err := s.h.Publish(hub.Internal(context.WithoutCancel(ctx)), g.cfg.DeadLetter, []event.Record{rec}); err != nil {
		panic(err)
	}
}

func (s *stubGroups) take(name, id string) (*stubGroup, *stubMsg, error) {
	g := s.groups[name]
	if g == nil {
		return nil, nil, group.ErrNoGroup
	}
	m := g.inflight[id]
	if m == nil {
		return nil, nil, group.ErrUnknownDelivery
	}
	return g, m, nil
}

func (s *stubGroups) Ack(ctx context.Context, name, member string, ids []string) ([]error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]error, len(ids))
	for i, id := range ids {
		g, _, err := s.take(name, id)
		if err != nil {
			res[i] = err
			continue
		}
		delete(g.inflight, id)
	}
	return res, nil
}

func (s *stubGroups) Nak(ctx context.Context, name, member, id string, delay time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, m, err := s.take(name, id)
	if err != nil {
		return err
	}
	delete(g.inflight, id)
	m.at = time.Now().Add(delay)
	g.ready = append(g.ready, m)
	return nil
}

func (s *stubGroups) InProgress(ctx context.Context, name, member, id string) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, m, err := s.take(name, id)
	if err != nil {
		return time.Time{}, err
	}
	m.deadline = time.Now().Add(g.cfg.AckWait)
	return m.deadline, nil
}

func (s *stubGroups) Term(ctx context.Context, name, member, id, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, m, err := s.take(name, id)
	if err != nil {
		return err
	}
	delete(g.inflight, id)
	s.deadLetter(ctx, g, m, "term: "+why)
	return nil
}

var _ Groups = (*stubGroups)(nil)
var _ Groups = (*group.Manager)(nil)

// expireAll ends every lease now.
func (s *stubGroups) expireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		for _, m := range g.inflight {
			m.deadline = time.Time{}
		}
	}
}
