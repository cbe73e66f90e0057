package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/clock/clocktest"
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

// fakeClock is the tests' Clock: each timer a dispatcher sets (a wait
// before a retry) is handed to the test (next), which fires it.
type fakeClock struct{ *clocktest.Fake }

func newFakeClock() *fakeClock { return &fakeClock{clocktest.New()} }

// next returns the next timer a dispatcher sets.
func (c *fakeClock) next(t *testing.T) *clocktest.Timer {
	t.Helper()
	return c.Next(t, guard, "retry wait")
}

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
	groups *group.Manager
	eng    *memory.Engine
	m      *Manager
	clock  *fakeClock
}

// newFixture starts a Manager; clock nil runs on the real clock.
func newFixture(t *testing.T, clock *fakeClock) *fixture {
	t.Helper()
	eng := memory.New(memory.Options{})
	f := &fixture{hub: hub.New(eng, hub.Options{}), clock: clock, eng: eng}
	groups, err := group.New(bg, f.hub, group.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.groups = groups
	opts := Options{
		Guard:     netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
		FetchWait: 200 * time.Millisecond,
		Rand:      func() float64 { return 0.5 },
	}
	if clock != nil {
		opts.Clock = clock
	}
	m, err := New(bg, f.hub, groups, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(func() {
		f.m.Close()
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

var _ Groups = (*group.Manager)(nil)
