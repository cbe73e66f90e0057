package hub_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func pull(t testing.TB, h *hub.Hub, req hub.PullRequest) hub.PullResult {
	t.Helper()
	res, err := h.Pull(bg, req)
	if err != nil {
		t.Fatalf("Pull(%+v): %v", req, err)
	}
	return res
}

func eventNames(evs []*event.Event) []string {
	items := make([]hub.Item, len(evs))
	for i, ev := range evs {
		items[i] = hub.Item{Event: ev}
	}
	return describe(items)
}

func gapNames(gaps []hub.Gap) []string {
	items := make([]hub.Item, len(gaps))
	for i := range gaps {
		items[i] = hub.Item{Gap: &gaps[i]}
	}
	return describe(items)
}

func cursorOf(entries ...cursor.Entry) cursor.Cursor {
	var c cursor.Cursor
	for _, e := range entries {
		c.Set(e.Topic, e.Position)
	}
	return c
}

func entry(topic string, p event.Position) cursor.Entry {
	return cursor.Entry{Topic: topic, Position: p}
}

func sameCursor(a, b cursor.Cursor) bool { return slices.Equal(a.Entries(), b.Entries()) }

func TestPullLimitAndContinuation(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	publish(t, h, "a", 10)
	e := epochOf(t, h, "a")
	req := hub.PullRequest{Topics: []string{"a"}, From: hub.FromEarliest, Limit: 3}
	var got []string
	for i := 0; i < 10; i++ {
		res := pull(t, h, req)
		if len(res.Gaps) != 0 {
			t.Fatalf("unexpected gaps %v", gapNames(res.Gaps))
		}
		if len(res.Events) > 3 {
			t.Fatalf("%d events over the limit of 3", len(res.Events))
		}
		if len(res.Events) > 0 {
			last := res.Events[len(res.Events)-1]
			if p, _ := res.Cursor.Get("a"); p != last.Position() {
				t.Errorf("cursor at %+v, want the last event's position %+v", p, last.Position())
			}
		} else if !sameCursor(res.Cursor, req.Cursor) {
			t.Errorf("empty pull moved the cursor from %v to %v", req.Cursor.Entries(), res.Cursor.Entries())
		}
		got = append(got, eventNames(res.Events)...)
		if len(res.Events) == 0 {
			break
		}
		req.Cursor = res.Cursor
	}
	if want := events("a", 1, 10); !equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if p, _ := req.Cursor.Get("a"); p != at(e, 10) {
		t.Errorf("final cursor %+v, want %+v", p, at(e, 10))
	}
}

func TestPullDefaultAndMaxLimit(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	publish(t, h, "a", 150)
	if res := pull(t, h, hub.PullRequest{Topics: []string{"a"}, From: hub.FromEarliest}); len(res.Events) != 100 {
		t.Errorf("default limit: %d events, want 100", len(res.Events))
	}
	if res := pull(t, h, hub.PullRequest{Topics: []string{"a"}, From: hub.FromEarliest, Limit: hub.MaxPullLimit}); len(res.Events) != 150 {
		t.Errorf("limit MaxPullLimit: %d events, want 150", len(res.Events))
	}
}

func TestPullStart(t *testing.T) {
	h := newHub(t, hub.Options{}, retain(5))
	publish(t, h, "a", 8)
	e := epochOf(t, h, "a")
	tests := []struct {
		name       string
		earliest   bool
		want       []string
		wantCursor event.Position
	}{
		{"latest", false, nil, at(e, 8)},
		{"earliest", true, events("a", 4, 8), at(e, 8)},
	}
	for _, tt := range tests {
		res := pull(t, h, hub.PullRequest{Topics: []string{"a"}, From: fromOf(tt.earliest)})
		if got := eventNames(res.Events); !equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
		if p, ok := res.Cursor.Get("a"); !ok || p != tt.wantCursor {
			t.Errorf("%s: cursor %+v, want %+v", tt.name, p, tt.wantCursor)
		}
		if len(res.Gaps) != 0 {
			t.Errorf("%s: gaps %v", tt.name, gapNames(res.Gaps))
		}
	}
	// From latest, the cursor then picks up what comes next.
	res := pull(t, h, hub.PullRequest{Topics: []string{"a"}})
	publish(t, h, "a", 2)
	if got, want := eventNames(pull(t, h, hub.PullRequest{Topics: []string{"a"}, Cursor: res.Cursor}).Events), events("a", 9, 10); !equal(got, want) {
		t.Errorf("after latest: got %v, want %v", got, want)
	}
}

func TestPullNewTopic(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	for _, earliest := range []bool{false, true} {
		res := pull(t, h, hub.PullRequest{Topics: []string{"fresh"}, From: fromOf(earliest)})
		p, ok := res.Cursor.Get("fresh")
		if len(res.Events) != 0 || !ok || p.Offset != 0 || p.Epoch == 0 {
			t.Errorf("earliest=%v: %d events, cursor %+v %v; want none and offset 0 of a real epoch", earliest, len(res.Events), p, ok)
		}
	}
}

func TestPullMergesByTime(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}
	h := newHub(t, hub.Options{}, memory.Options{Now: clk.Now})
	for _, topic := range []string{"a", "b", "a", "c", "b", "a", "c"} {
		clk.Advance(time.Millisecond)
		publish(t, h, topic, 1)
	}
	req := hub.PullRequest{Topics: []string{"c", "b", "a"}, From: hub.FromEarliest, Limit: 4}
	res := pull(t, h, req)
	if got, want := eventNames(res.Events), []string{"a/1", "b/1", "a/2", "c/1"}; !equal(got, want) {
		t.Fatalf("first page: got %v, want %v", got, want)
	}
	for topic, off := range map[string]uint64{"a": 2, "b": 1, "c": 1} {
		if p, _ := res.Cursor.Get(topic); p.Offset != off {
			t.Errorf("cursor of %s at %d, want %d", topic, p.Offset, off)
		}
	}
	req.Cursor = res.Cursor
	if got, want := eventNames(pull(t, h, req).Events), []string{"b/2", "a/3", "c/2"}; !equal(got, want) {
		t.Errorf("second page: got %v, want %v", got, want)
	}
}

func TestPullMergeKeepsTopicOrder(t *testing.T) {
	// Several publishers on several topics; whatever the interleaving, each
	// topic's events come out in offset order and paging loses nothing.
	h := newHub(t, hub.Options{}, memory.Options{})
	topics := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := h.Publish(bg, topic, []event.Record{{Data: []byte("1")}, {Data: []byte("2")}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	req := hub.PullRequest{Topics: topics, From: hub.FromEarliest, Limit: 7}
	last := map[string]uint64{}
	for n := 0; n < 1000; n++ {
		res := pull(t, h, req)
		if len(res.Events) == 0 {
			break
		}
		for _, ev := range res.Events {
			if ev.Offset != last[ev.Topic]+1 {
				t.Fatalf("%s/%d after %d", ev.Topic, ev.Offset, last[ev.Topic])
			}
			last[ev.Topic] = ev.Offset
		}
		req.Cursor = res.Cursor
	}
	for _, topic := range topics {
		if last[topic] != 200 {
			t.Errorf("%s: read up to %d, want 200", topic, last[topic])
		}
	}
}

func TestPullKeepsOtherCursorEntries(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	publish(t, h, "a", 2)
	other := entry("elsewhere", at(7, 42))
	res := pull(t, h, hub.PullRequest{Topics: []string{"a"}, From: hub.FromEarliest, Cursor: cursorOf(other)})
	if p, ok := res.Cursor.Get("elsewhere"); !ok || p != other.Position {
		t.Errorf("cursor entry of an unrequested topic became %+v, %v", p, ok)
	}
}

func TestPullGaps(t *testing.T) {
	h := newHub(t, hub.Options{}, retain(5))
	publish(t, h, "a", 10) // 6..10 retained
	e := epochOf(t, h, "a")
	tests := []struct {
		name       string
		pos        event.Position
		limit      int
		want       []string
		wantGap    string
		wantCursor event.Position
	}{
		{"trimmed", at(e, 2), 0, events("a", 6, 10), "gap a trimmed 2>5 (6)", at(e, 10)},
		{"trimmed, limited", at(e, 0), 2, events("a", 6, 7), "gap a trimmed 0>5 (6)", at(e, 7)},
		{"just retained", at(e, 5), 0, events("a", 6, 10), "", at(e, 10)},
		{"other epoch", at(e^1, 3), 0, events("a", 6, 10), "gap a epoch_changed 3>5 (6)", at(e, 10)},
		{"other epoch, far ahead", at(e^1, 300), 2, events("a", 6, 7), "gap a epoch_changed 300>5 (6)", at(e, 7)},
		{"ahead", at(e, 20), 0, nil, "gap a ahead 20>10 (6)", at(e, 10)},
		{"at head", at(e, 10), 0, nil, "", at(e, 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := hub.PullRequest{Topics: []string{"a"}, Cursor: cursorOf(entry("a", tt.pos)), Limit: tt.limit}
			res := pull(t, h, req)
			if got := eventNames(res.Events); !equal(got, tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
			var wantGaps []string
			if tt.wantGap != "" {
				wantGaps = []string{tt.wantGap}
			}
			if got := gapNames(res.Gaps); !equal(got, wantGaps) {
				t.Errorf("gaps %v, want %v", got, wantGaps)
			}
			if len(res.Gaps) == 1 {
				g := res.Gaps[0]
				if g.Requested != tt.pos || g.Resumed.Epoch != e {
					t.Errorf("gap %+v: want requested %+v, resumed in epoch %v", g, tt.pos, e)
				}
			}
			if p, _ := res.Cursor.Get("a"); p != tt.wantCursor {
				t.Errorf("cursor %+v, want %+v", p, tt.wantCursor)
			}
			// The returned cursor continues without another gap.
			req.Cursor = res.Cursor
			again := pull(t, h, req)
			if len(again.Gaps) != 0 {
				t.Errorf("the returned cursor gives gaps again: %v", gapNames(again.Gaps))
			}
			if len(again.Events) > 0 && again.Events[0].Offset != tt.wantCursor.Offset+1 {
				t.Errorf("continuation starts at %d, want %d", again.Events[0].Offset, tt.wantCursor.Offset+1)
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	tests := []struct {
		name string
		req  hub.PullRequest
		want error
	}{
		{"no topics", hub.PullRequest{}, hub.ErrBadInput},
		{"limit over max", hub.PullRequest{Topics: []string{"a"}, Limit: hub.MaxPullLimit + 1}, hub.ErrBadInput},
		{"duplicate topics", hub.PullRequest{Topics: []string{"a", "b", "a"}}, hub.ErrBadInput},
		{"bad topic", hub.PullRequest{Topics: []string{"a", "b c"}}, event.ErrBadTopic},
		{"empty topic", hub.PullRequest{Topics: []string{""}}, event.ErrBadTopic},
		{"long topic", hub.PullRequest{Topics: []string{strings.Repeat("x", 201)}}, event.ErrBadTopic},
	}
	for _, tt := range tests {
		if _, err := h.Pull(bg, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: Pull = %v, want %v", tt.name, err, tt.want)
		}
	}
	if topics, _ := h.Topics(bg); len(topics) != 0 {
		t.Errorf("refused pulls created topics: %v", topics)
	}
}

type pullAnswer struct {
	res hub.PullResult
	err error
}

// newWaitHub returns a hub whose Observer reports new subscriptions, so a
// test knows when a long poll is waiting.
func newWaitHub(t *testing.T, mopts memory.Options) (*hub.Hub, signal) {
	t.Helper()
	waiting := newSignal()
	h := newHub(t, hub.Options{Observer: hub.Observer{Subscriptions: func(delta int) {
		if delta > 0 {
			waiting.set()
		}
	}}}, mopts)
	return h, waiting
}

func startPull(ctx context.Context, h *hub.Hub, req hub.PullRequest) chan pullAnswer {
	done := make(chan pullAnswer, 1)
	go func() {
		res, err := h.Pull(ctx, req)
		done <- pullAnswer{res, err}
	}()
	return done
}

func (a pullAnswer) String() string { return strings.Join(eventNames(a.res.Events), ",") }

func waitAnswer(t *testing.T, done chan pullAnswer, what string) pullAnswer {
	t.Helper()
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("%s: Pull: %v", what, a.err)
		}
		return a
	case <-time.After(guard):
		t.Fatalf("%s: the long poll did not return", what)
	}
	panic("unreachable")
}

func TestLongPollReturnsOnEvent(t *testing.T) {
	for _, topic := range []string{"a", "b"} {
		t.Run(topic, func(t *testing.T) {
			h, waiting := newWaitHub(t, memory.Options{})
			publish(t, h, "a", 3)
			done := startPull(bg, h, hub.PullRequest{Topics: []string{"a", "b"}, Wait: time.Hour})
			waiting.wait(t, "the long poll to wait")
			publish(t, h, topic, 1)
			a := waitAnswer(t, done, "after an event")
			want := map[string]string{"a": "a/4", "b": "b/1"}[topic]
			if got := a.String(); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
			if n := h.Subscribers("a") + h.Subscribers("b"); n != 0 {
				t.Errorf("the long poll left %d subscriptions", n)
			}
		})
	}
}

func TestLongPollReadyAtOnce(t *testing.T) {
	h, waiting := newWaitHub(t, memory.Options{})
	publish(t, h, "a", 3)
	done := startPull(bg, h, hub.PullRequest{Topics: []string{"a"}, From: hub.FromEarliest, Wait: time.Hour})
	if got := waitAnswer(t, done, "with events ready").String(); got != "a/1,a/2,a/3" {
		t.Errorf("got %s", got)
	}
	select {
	case <-waiting:
		t.Error("a long poll with events ready registered a waiter")
	default:
	}
}

func TestLongPollTimesOut(t *testing.T) {
	h, _ := newWaitHub(t, memory.Options{})
	publish(t, h, "a", 3)
	e := epochOf(t, h, "a")
	req := hub.PullRequest{Topics: []string{"a"}, Cursor: cursorOf(entry("a", at(e, 3))), Wait: 20 * time.Millisecond}
	a := waitAnswer(t, startPull(bg, h, req), "after Wait")
	if len(a.res.Events) != 0 || len(a.res.Gaps) != 0 {
		t.Errorf("got %s and %d gaps, want nothing", a, len(a.res.Gaps))
	}
	if !sameCursor(a.res.Cursor, req.Cursor) {
		t.Errorf("cursor %v, want the same as sent, %v", a.res.Cursor.Entries(), req.Cursor.Entries())
	}
	if h.Subscribers("a") != 0 {
		t.Error("the long poll left a subscription")
	}
}

func TestLongPollContextCancelled(t *testing.T) {
	h, waiting := newWaitHub(t, memory.Options{})
	ctx, cancel := context.WithCancel(bg)
	done := startPull(ctx, h, hub.PullRequest{Topics: []string{"a"}, Wait: time.Hour})
	waiting.wait(t, "the long poll to wait")
	cancel()
	select {
	case a := <-done:
		if len(a.res.Events) != 0 {
			t.Errorf("got events %s", a)
		}
	case <-time.After(guard):
		t.Fatal("the long poll did not end with its context")
	}
	if h.Subscribers("a") != 0 {
		t.Error("the long poll left a subscription")
	}
}

func TestLongPollHubClose(t *testing.T) {
	h, waiting := newWaitHub(t, memory.Options{})
	done := startPull(bg, h, hub.PullRequest{Topics: []string{"a", "b"}, Wait: time.Hour})
	waiting.wait(t, "the long poll to wait")
	h.Close()
	if a := waitAnswer(t, done, "after hub.Close"); len(a.res.Events) != 0 {
		t.Errorf("got events %s", a)
	}
	if h.Subscribers("a")+h.Subscribers("b") != 0 {
		t.Error("the long poll left a subscription")
	}
	// A long poll on a closed hub does not wait.
	waitAnswer(t, startPull(bg, h, hub.PullRequest{Topics: []string{"a"}, Wait: time.Hour}), "on a closed hub")
}

func TestLongPollGapAnswersAtOnce(t *testing.T) {
	h, _ := newWaitHub(t, retain(2))
	publish(t, h, "a", 5)
	e := epochOf(t, h, "a")
	req := hub.PullRequest{Topics: []string{"a"}, Cursor: cursorOf(entry("a", at(e, 50))), Wait: time.Hour}
	a := waitAnswer(t, startPull(bg, h, req), "with a gap")
	if got := gapNames(a.res.Gaps); !equal(got, []string{"gap a ahead 50>5 (4)"}) {
		t.Errorf("gaps %v", got)
	}
}

// fakeClock is a settable time source for memory.Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestLongPollWaitsThroughStaleWakes follows a topic with long polls while
// it is published to. Fan-out runs behind the engine, so the fan-out of an
// event an earlier poll already read can wake the next poll's waiter. That
// wake is stale: the poll must wait on rather than answer empty.
func TestLongPollWaitsThroughStaleWakes(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	// Subscribers make each fan-out take a while, so fan-outs lag behind.
	for i := 0; i < 200; i++ {
		newSub(t, h, hub.SubscriberOptions{MaxQueueBytes: 1 << 30}).subscribe(t, "a", hub.Start{})
	}
	const total = 1000
	done := make(chan struct{})
	go func() { // slower than the poller, so that polls catch up and wait
		defer close(done)
		for i := 0; i < total; i++ {
			if _, err := h.Publish(bg, "a", []event.Record{{Data: []byte(`{}`)}}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Microsecond)
		}
	}()
	defer func() { <-done }()
	const wait = 10 * time.Second
	var cur cursor.Cursor
	for got := 0; got < total; {
		start := time.Now()
		res := pull(t, h, hub.PullRequest{Topics: []string{"a"}, Cursor: cur, From: hub.FromEarliest, Wait: wait})
		if len(res.Events) == 0 && len(res.Gaps) == 0 && time.Since(start) < wait {
			t.Fatalf("a long poll answered empty after %v while events were being published (after %d)", time.Since(start), got)
		}
		got += len(res.Events)
		cur = res.Cursor
	}
}

func fromOf(earliest bool) hub.From {
	if earliest {
		return hub.FromEarliest
	}
	return hub.FromLatest
}
