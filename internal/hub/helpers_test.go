package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// guard is how long a test waits for something that should happen at once
// before it calls it a failure. It is never used to order events.
const guard = 10 * time.Second

// newHub returns a hub over a fresh memory engine; both are closed when
// the test ends.
func newHub(t testing.TB, hopts hub.Options, mopts memory.Options) *hub.Hub {
	t.Helper()
	eng := memory.New(mopts)
	h := hub.New(eng, hopts)
	t.Cleanup(func() {
		h.Close()
		eng.Close()
	})
	return h
}

func retain(maxEvents int) memory.Options {
	return memory.Options{Retention: func(string) event.Retention { return event.Retention{MaxEvents: maxEvents} }}
}

// publish appends n events to topic, one per call, and returns their acks.
func publish(t testing.TB, h *hub.Hub, topic string, n int) []event.Ack {
	t.Helper()
	acks := make([]event.Ack, 0, n)
	for i := 0; i < n; i++ {
		a, err := h.Publish(bg, topic, []event.Record{{Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}})
		if err != nil {
			t.Fatalf("Publish(%s): %v", topic, err)
		}
		acks = append(acks, a...)
	}
	return acks
}

func epochOf(t testing.TB, h *hub.Hub, topic string) event.Epoch {
	t.Helper()
	b, err := h.Engine().Read(bg, topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b.Info.Epoch
}

func at(epoch event.Epoch, offset uint64) event.Position {
	return event.Position{Epoch: epoch, Offset: offset}
}

// sub is a Subscriber with channels for its Wake and Kick callbacks.
type sub struct {
	*hub.Subscriber
	wake  signal
	kicks chan hub.CloseReason
}

func newSub(t testing.TB, h *hub.Hub, opts hub.SubscriberOptions) *sub {
	t.Helper()
	s := &sub{wake: newSignal(), kicks: make(chan hub.CloseReason, 4)}
	opts.Wake = s.wake.set
	opts.Kick = func(r hub.CloseReason) { s.kicks <- r }
	var err error
	if s.Subscriber, err = h.NewSubscriber(opts); err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { s.Close(hub.CloseClient) })
	return s
}

func (s *sub) subscribe(t testing.TB, topic string, start hub.Start) event.Position {
	t.Helper()
	p, err := s.SubscribeTopic(bg, topic, start)
	if err != nil {
		t.Fatalf("Subscribe(%s, %+v): %v", topic, start, err)
	}
	return p
}

// next makes one Next call, as a transport's writer does when woken.
func (s *sub) next(t testing.TB) []hub.Item {
	t.Helper()
	s.wake.clear()
	items, r := s.Next(bg, nil)
	if r != hub.CloseNone {
		t.Fatalf("Next: subscriber closed: %v", r)
	}
	return items
}

// take returns at least n items, calling Next as a transport's writer does
// and waiting for Wake when Next has nothing. Fan-out is asynchronous, so
// this is how a test waits for live events.
func (s *sub) take(t testing.TB, n int) []hub.Item {
	t.Helper()
	deadline := time.After(guard)
	var all, buf []hub.Item
	for len(all) < n {
		var r hub.CloseReason
		s.wake.clear() // a Wake from now on is news
		buf, r = s.Next(bg, buf)
		if r != hub.CloseNone {
			t.Fatalf("Next: subscriber closed: %v (after %v)", r, describe(all))
		}
		all = append(all, buf...)
		if len(buf) == 0 {
			select {
			case <-s.wake:
			case <-deadline:
				t.Fatalf("timed out with %v, waiting for %d items", describe(all), n)
			}
		}
	}
	return all
}

// expect takes len(want) items and compares them with want. With want
// empty it checks that one Next call has nothing (history recovery happens
// within Next, so this checks that recovery found nothing). A later
// expectation catches items that arrive late: they come first.
func (s *sub) expect(t testing.TB, want []string) []hub.Item {
	t.Helper()
	var items []hub.Item
	if len(want) == 0 {
		items = s.next(t)
	} else {
		items = s.take(t, len(want))
	}
	if got := describe(items); !equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	return items
}

// describe renders items compactly for comparisons: "a/3" for an event,
// "gap a trimmed 2>5 (6)" for a gap (requested offset > resumed offset,
// earliest). Epochs are checked separately where they matter.
func describe(items []hub.Item) []string {
	out := []string{}
	for _, it := range items {
		switch {
		case it.Event != nil:
			out = append(out, fmt.Sprintf("%s/%d", it.Event.Topic, it.Event.Offset))
		case it.Gap != nil:
			g := it.Gap
			out = append(out, fmt.Sprintf("gap %s %v %d>%d (%d)", g.Topic, g.Reason, g.Requested.Offset, g.Resumed.Offset, g.Earliest))
		case it.Presence != nil:
			verb := "join"
			if it.Presence.Leave {
				verb = "leave"
			}
			out = append(out, fmt.Sprintf("%s %s %s%s", verb, it.Presence.Topic, it.Presence.Member.Client, it.Presence.Member.Info))
		case it.Note != nil:
			out = append(out, fmt.Sprintf("note %v", it.Note))
		default:
			out = append(out, "empty item")
		}
	}
	return out
}

// events returns "topic/offset" for each offset in from..to.
func events(topic string, from, to uint64) []string {
	out := []string{}
	for o := from; o <= to; o++ {
		out = append(out, fmt.Sprintf("%s/%d", topic, o))
	}
	return out
}

func join(parts ...[]string) []string {
	out := []string{}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }

// signal is a channel-backed flag for callbacks: set never blocks, wait
// fails the test if nothing came within the guard time.
type signal chan struct{}

func newSignal() signal { return make(signal, 1) }

func (s signal) set() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// clear drops a pending signal.
func (s signal) clear() {
	select {
	case <-s:
	default:
	}
}

func (s signal) wait(t testing.TB, what string) {
	t.Helper()
	select {
	case <-s:
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func timeAfterGuard() <-chan time.Time { return time.After(guard) }

// gate refuses one action, or every action when all is set.
type gate struct {
	mu     sync.Mutex
	refuse map[hub.Action]bool
	asked  []string
}

var errRefused = errors.New("forbidden by the test gate")

func (g *gate) Allow(_ context.Context, a hub.Action, topic string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, a.String()+" "+topic)
	if g.refuse[a] {
		return errRefused
	}
	return nil
}

// bg is the context of the tests' hub calls: an anonymous caller, as a
// transport would have authenticated it (the hub refuses calls without an
// identity).
var bg = hub.WithIdentity(context.Background(), &hub.Identity{Method: "anonymous"})
