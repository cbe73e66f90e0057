package hub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestSubscribeRecoversThenLive(t *testing.T) {
	for after := uint64(0); after <= 5; after++ {
		t.Run(fmt.Sprint("after ", after), func(t *testing.T) {
			h := newHub(t, hub.Options{}, memory.Options{})
			publish(t, h, "a", 5)
			e := epochOf(t, h, "a")
			s := newSub(t, h, hub.SubscriberOptions{})
			if got := s.subscribe(t, "a", hub.Start{Set: true, Position: at(e, after)}); got != at(e, after) {
				t.Errorf("Subscribe returned %+v, want %+v", got, at(e, after))
			}
			publish(t, h, "a", 2) // live while recovery has not started
			s.expect(t, events("a", after+1, 7))
			publish(t, h, "a", 3)
			s.expect(t, events("a", 8, 10))
		})
	}
}

func TestSubscribeCatchupInBatches(t *testing.T) {
	// A small batch and a small queue make Next return before recovery is
	// over, and live events arrive between the calls.
	h := newHub(t, hub.Options{CatchupBatch: 3, MaxQueueBytes: 4096}, memory.Options{})
	publish(t, h, "a", 50)
	e := epochOf(t, h, "a")
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{Set: true, Position: at(e, 10)})
	var got []hub.Item
	for i := 0; i < 10; i++ {
		items := s.next(t)
		if len(items) > 40 {
			t.Errorf("one Next returned %d items; recovery should be paced by the queue cap", len(items))
		}
		got = append(got, items...)
		publish(t, h, "a", 1)
	}
	got = append(got, s.take(t, 50-len(got))...)
	if want := events("a", 11, 60); !equal(describe(got), want) {
		t.Fatalf("got %v, want %v", describe(got), want)
	}
	publish(t, h, "a", 1)
	s.expect(t, events("a", 61, 61))
}

func TestSubscribeStart(t *testing.T) {
	tests := []struct {
		name      string
		published int
		start     hub.Start
		wantPos   uint64
		want      []string // what recovery gives, before anything else is published
	}{
		{"latest", 10, hub.Start{}, 10, nil},
		{"latest of a new topic", 0, hub.Start{}, 0, nil},
		{"earliest", 10, hub.Start{Earliest: true}, 5, events("a", 6, 10)},
		{"earliest of a new topic", 0, hub.Start{Earliest: true}, 0, nil},
		{"earliest, fewer than retained", 3, hub.Start{Earliest: true}, 0, events("a", 1, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, hub.Options{}, retain(5))
			publish(t, h, "a", tt.published)
			s := newSub(t, h, hub.SubscriberOptions{})
			pos := s.subscribe(t, "a", tt.start)
			e := epochOf(t, h, "a")
			if pos != at(e, tt.wantPos) {
				t.Errorf("Subscribe returned %+v, want %+v", pos, at(e, tt.wantPos))
			}
			s.expect(t, tt.want)
			publish(t, h, "a", 1)
			next := uint64(tt.published) + 1
			s.expect(t, events("a", next, next))
		})
	}
}

func TestSubscribeGaps(t *testing.T) {
	// Retention keeps 5 events; 10 are published, so offsets 6..10 remain.
	tests := []struct {
		name    string
		pos     func(e event.Epoch) event.Position
		want    []string
		wantGap *hub.Gap // epochs filled in by the test
	}{
		{"just retained", func(e event.Epoch) event.Position { return at(e, 5) }, events("a", 6, 10), nil},
		{"at head", func(e event.Epoch) event.Position { return at(e, 10) }, nil, nil},
		{"trimmed", func(e event.Epoch) event.Position { return at(e, 2) },
			join([]string{"gap a trimmed 2>5 (6)"}, events("a", 6, 10)), &hub.Gap{Reason: hub.GapTrimmed}},
		{"trimmed by one", func(e event.Epoch) event.Position { return at(e, 4) },
			join([]string{"gap a trimmed 4>5 (6)"}, events("a", 6, 10)), &hub.Gap{Reason: hub.GapTrimmed}},
		{"trimmed from zero", func(e event.Epoch) event.Position { return at(e, 0) },
			join([]string{"gap a trimmed 0>5 (6)"}, events("a", 6, 10)), &hub.Gap{Reason: hub.GapTrimmed}},
		{"other epoch", func(e event.Epoch) event.Position { return at(e^0xff, 7) },
			join([]string{"gap a epoch_changed 7>5 (6)"}, events("a", 6, 10)), &hub.Gap{Reason: hub.GapEpoch}},
		{"zero epoch", func(e event.Epoch) event.Position { return at(0, 0) },
			join([]string{"gap a epoch_changed 0>5 (6)"}, events("a", 6, 10)), &hub.Gap{Reason: hub.GapEpoch}},
		{"ahead", func(e event.Epoch) event.Position { return at(e, 15) },
			[]string{"gap a ahead 15>10 (6)"}, &hub.Gap{Reason: hub.GapAhead}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, hub.Options{}, retain(5))
			publish(t, h, "a", 10)
			e := epochOf(t, h, "a")
			s := newSub(t, h, hub.SubscriberOptions{})
			req := tt.pos(e)
			if got := s.subscribe(t, "a", hub.Start{Set: true, Position: req}); got != req {
				// With a gap, the returned position is the requested one, so
				// that a cursor taken before the gap item shows the gap again.
				t.Errorf("Subscribe returned %+v, want %+v", got, req)
			}
			items := s.expect(t, tt.want)
			if tt.wantGap != nil {
				g := items[0].Gap
				if g.Topic != "a" || g.Reason != tt.wantGap.Reason || g.Requested != req || g.Resumed.Epoch != e {
					t.Errorf("gap %+v: want topic a, reason %v, requested %+v, resumed in epoch %v", g, tt.wantGap.Reason, req, e)
				}
			}
			publish(t, h, "a", 1)
			s.expect(t, events("a", 11, 11))
		})
	}
}

func TestGapWhileRecovering(t *testing.T) {
	// The position is retained when Subscribe runs, but history moves on
	// before the writer gets to read it.
	h := newHub(t, hub.Options{}, retain(5))
	publish(t, h, "a", 10)
	e := epochOf(t, h, "a")
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{Set: true, Position: at(e, 6)})
	publish(t, h, "a", 10) // 16..20 retained
	items := s.expect(t, join([]string{"gap a trimmed 6>15 (16)"}, events("a", 16, 20)))
	if g := items[0].Gap; g.Requested != at(e, 6) || g.Resumed != at(e, 15) {
		t.Errorf("gap %+v", g)
	}
	publish(t, h, "a", 1)
	s.expect(t, events("a", 21, 21))
}

func TestSubscribeSeveralTopics(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	publish(t, h, "a", 3)
	publish(t, h, "b", 2)
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{Earliest: true})
	s.subscribe(t, "b", hub.Start{Earliest: true})
	s.subscribe(t, "c", hub.Start{})
	if got := s.Topics(); got != 3 {
		t.Errorf("Topics() = %d, want 3", got)
	}
	s.expect(t, join(events("a", 1, 3), events("b", 1, 2)))
	publish(t, h, "d", 1) // not subscribed
	publish(t, h, "c", 1)
	publish(t, h, "a", 1)
	// Topics fan out independently, so their relative order is not fixed.
	got := describe(s.take(t, 2))
	slices.Sort(got)
	if want := []string{"a/4", "c/1"}; !equal(got, want) {
		t.Fatalf("live: got %v, want %v", got, want)
	}
}

func TestWake(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	s.wake.wait(t, "Wake after Subscribe")
	s.expect(t, nil)
	publish(t, h, "a", 1)
	s.wake.wait(t, "Wake after a live event")
	s.expect(t, events("a", 1, 1))
	s.Close(hub.CloseClient)
	s.wake.wait(t, "Wake after Close")
}

func TestSlowConsumer(t *testing.T) {
	var mu sync.Mutex
	var slow int
	var reasons []hub.CloseReason
	obs := hub.Observer{
		SlowConsumers: func() { mu.Lock(); slow++; mu.Unlock() },
		Disconnects:   func(r hub.CloseReason) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() },
	}
	h := newHub(t, hub.Options{MaxQueueBytes: 4096, Observer: obs}, memory.Options{})
	// Fan-out offers an event to subscribers in the order they subscribed,
	// so once the last one (fast) has an event, the others were offered it.
	stuck := newSub(t, h, hub.SubscriberOptions{})
	stuck.subscribe(t, "a", hub.Start{})
	// stuck's writer runs once, then blocks in a write forever.
	stuck.expect(t, nil)
	// other never reads either, but has room.
	other := newSub(t, h, hub.SubscriberOptions{MaxQueueBytes: 1 << 20})
	other.subscribe(t, "a", hub.Start{})
	other.expect(t, nil)
	fast := newSub(t, h, hub.SubscriberOptions{})
	fast.subscribe(t, "a", hub.Start{})
	fast.expect(t, nil)
	if got := h.Subscribers("a"); got != 3 {
		t.Fatalf("Subscribers = %d, want 3", got)
	}

	const size = 200 + 1 + 128 // what an item counts against the cap: payload, topic, overhead
	payload := strings.Repeat("x", 200)
	for i := 1; i <= 50; i++ {
		if _, err := h.Publish(bg, "a", []event.Record{{Data: []byte(payload)}}); err != nil {
			t.Fatal(err)
		}
		fast.expect(t, events("a", uint64(i), uint64(i)))
		switch {
		case i <= 12: // 12*329 = 3948 bytes fit under 4096
			if stuck.Reason() != hub.CloseNone || stuck.QueuedBytes() != i*size {
				t.Fatalf("after %d events: reason %v, Pending %d; want open with %d", i, stuck.Reason(), stuck.QueuedBytes(), i*size)
			}
		case i == 13:
			if stuck.Reason() != hub.CloseSlow {
				t.Fatalf("not closed with %d bytes over a 4096 cap: reason %v", 13*size, stuck.Reason())
			}
		}
	}
	if p := stuck.QueuedBytes(); p != 0 {
		t.Errorf("Pending after the slow close = %d, want 0 (queue released)", p)
	}
	select {
	case r := <-stuck.kicks:
		if r != hub.CloseSlow {
			t.Errorf("Kick(%v), want Kick(CloseSlow)", r)
		}
	default:
		t.Error("Kick was not called")
	}
	if len(stuck.kicks) != 0 {
		t.Error("Kick called more than once")
	}
	if items, r := stuck.Next(bg, nil); r != hub.CloseSlow || len(items) != 0 {
		t.Errorf("Next after the close = %d items, %v; want none, CloseSlow", len(items), r)
	}
	if got := h.Subscribers("a"); got != 2 {
		t.Errorf("Subscribers = %d, want 2", got)
	}
	if got := stuck.Topics(); got != 0 {
		t.Errorf("closed subscriber still has %d topics", got)
	}
	if other.Reason() != hub.CloseNone || other.QueuedBytes() != 50*size {
		t.Errorf("the other subscriber: reason %v, pending %d; want open with %d", other.Reason(), other.QueuedBytes(), 50*size)
	}
	mu.Lock()
	defer mu.Unlock()
	if slow != 1 || len(reasons) != 1 || reasons[0] != hub.CloseSlow {
		t.Errorf("observer: %d slow consumers, disconnects %v; want 1, [slow_consumer]", slow, reasons)
	}
}

func TestUnsubscribe(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	s.subscribe(t, "b", hub.Start{})
	s.expect(t, nil)
	publish(t, h, "a", 1)
	s.wake.wait(t, "a/1 to be queued")
	if !s.Unsubscribe("a") {
		t.Fatal("Unsubscribe(a) = false")
	}
	if s.Unsubscribe("a") {
		t.Error("second Unsubscribe(a) = true")
	}
	if s.Unsubscribe("never") {
		t.Error("Unsubscribe of an unknown topic = true")
	}
	if h.Subscribers("a") != 0 || h.Subscribers("b") != 1 || s.Topics() != 1 {
		t.Errorf("Subscribers a=%d b=%d, Topics %d; want 0, 1, 1", h.Subscribers("a"), h.Subscribers("b"), s.Topics())
	}
	probe := newSub(t, h, hub.SubscriberOptions{})
	probe.subscribe(t, "a", hub.Start{})
	probe.expect(t, nil)
	publish(t, h, "a", 1)
	probe.expect(t, events("a", 2, 2)) // a/2 has been fanned out
	publish(t, h, "b", 1)
	// What was queued before Unsubscribe stays; a/2 never comes.
	s.expect(t, []string{"a/1", "b/1"})
	s.expect(t, nil)
	// The topic can be subscribed to again.
	s.subscribe(t, "a", hub.Start{Set: true, Position: at(epochOf(t, h, "a"), 1)})
	s.expect(t, []string{"a/2"})
	publish(t, h, "a", 1)
	s.expect(t, []string{"a/3"})
}

func TestCloseClient(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	s.subscribe(t, "b", hub.Start{})
	s.expect(t, nil)
	publish(t, h, "a", 3)
	s.wake.wait(t, "an event to be queued")
	s.Close(hub.CloseClient)
	s.Close(hub.CloseSlow) // the first reason stays
	if r := s.Reason(); r != hub.CloseClient {
		t.Errorf("Reason = %v, want client_closed", r)
	}
	if p := s.QueuedBytes(); p != 0 {
		t.Errorf("Pending = %d, want 0", p)
	}
	if h.Subscribers("a")+h.Subscribers("b") != 0 {
		t.Error("closed subscriber still registered")
	}
	if len(s.kicks) != 0 {
		t.Error("Kick called for a client close")
	}
	if _, r := s.Next(bg, nil); r != hub.CloseClient {
		t.Errorf("Next = %v, want client_closed", r)
	}
	if _, err := s.SubscribeTopic(bg, "c", hub.Start{}); !errors.Is(err, hub.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if h.Subscribers("c") != 0 {
		t.Error("Subscribe after Close registered")
	}
}

func TestHubClose(t *testing.T) {
	var mu sync.Mutex
	var reasons []hub.CloseReason
	h := newHub(t, hub.Options{Observer: hub.Observer{Disconnects: func(r hub.CloseReason) {
		mu.Lock()
		reasons = append(reasons, r)
		mu.Unlock()
	}}}, memory.Options{})
	subs := []*sub{newSub(t, h, hub.SubscriberOptions{}), newSub(t, h, hub.SubscriberOptions{}), newSub(t, h, hub.SubscriberOptions{})}
	for i, s := range subs[:2] {
		s.subscribe(t, "a", hub.Start{})
		s.subscribe(t, fmt.Sprint("t", i), hub.Start{})
	}
	h.Close()
	select {
	case <-h.Done():
	default:
		t.Error("Done not closed")
	}
	for i, s := range subs {
		if r := s.Reason(); r != hub.CloseShutdown {
			t.Errorf("subscriber %d: Reason %v, want shutting_down", i, r)
		}
		select {
		case r := <-s.kicks:
			if r != hub.CloseShutdown {
				t.Errorf("subscriber %d: Kick(%v)", i, r)
			}
		default:
			t.Errorf("subscriber %d: no Kick", i)
		}
		if _, r := s.Next(bg, nil); r != hub.CloseShutdown {
			t.Errorf("subscriber %d: Next = %v", i, r)
		}
	}
	if h.Subscribers("a") != 0 {
		t.Errorf("Subscribers(a) = %d after Close", h.Subscribers("a"))
	}
	if _, err := h.NewSubscriber(hub.SubscriberOptions{}); !errors.Is(err, hub.ErrClosed) {
		t.Errorf("NewSubscriber after Close = %v, want ErrClosed", err)
	}
	h.Close() // twice is fine
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 3 {
		t.Errorf("observer saw %d disconnects, want 3", len(reasons))
	}
}

func TestSubscribeErrors(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	tests := []struct {
		name  string
		topic string
		want  error
	}{
		{"twice", "a", hub.ErrBadInput},
		{"empty topic", "", event.ErrBadTopic},
		{"bad topic", "a/b", event.ErrBadTopic},
		{"long topic", strings.Repeat("a", 201), event.ErrBadTopic},
	}
	for _, tt := range tests {
		if _, err := s.SubscribeTopic(bg, tt.topic, hub.Start{}); !errors.Is(err, tt.want) {
			t.Errorf("%s: Subscribe = %v, want %v", tt.name, err, tt.want)
		}
	}
	if h.Subscribers("a") != 1 || s.Topics() != 1 {
		t.Errorf("failed Subscribes changed the state: Subscribers %d, Topics %d", h.Subscribers("a"), s.Topics())
	}
	topics, _ := h.Topics(bg)
	if len(topics) != 1 || topics[0].Name != "a" {
		t.Errorf("Topics = %v, want only a (which has a subscriber)", topics)
	}
}

func TestGateRefuses(t *testing.T) {
	ctx := bg
	for _, a := range []hub.Action{hub.ActionPublish, hub.ActionSubscribe, hub.ActionHistory} {
		t.Run(a.String(), func(t *testing.T) {
			g := &gate{refuse: map[hub.Action]bool{a: true}}
			h := newHub(t, hub.Options{Gate: g}, memory.Options{})
			_, pubErr := h.Publish(ctx, "secret", []event.Record{{Data: []byte("1")}})
			s := newSub(t, h, hub.SubscriberOptions{})
			_, subErr := s.SubscribeTopic(ctx, "secret", hub.Start{})
			_, pullErr := h.Pull(ctx, hub.PullRequest{Topics: []string{"secret"}, From: hub.FromEarliest})
			errs := map[hub.Action]error{hub.ActionPublish: pubErr, hub.ActionSubscribe: subErr, hub.ActionHistory: pullErr}
			for b, err := range errs {
				if b == a && !errors.Is(err, errRefused) {
					t.Errorf("%v: error %v, want the gate's refusal", b, err)
				}
				if b != a && err != nil {
					t.Errorf("%v: error %v, want nil", b, err)
				}
			}
			if a == hub.ActionSubscribe && (h.Subscribers("secret") != 0 || s.Topics() != 0) {
				t.Error("refused Subscribe registered the subscriber")
			}
			in, ok, _ := h.Info(ctx, "secret")
			if a == hub.ActionPublish && ok && in.Last != 0 {
				t.Errorf("refused Publish stored events: %+v", in)
			}
			if err := h.CheckPublish(ctx, "secret", nil); (a == hub.ActionPublish) != errors.Is(err, errRefused) {
				t.Errorf("CheckPublish = %v", err)
			}
		})
	}
}

func TestGateRefusesEverythingStoresNothing(t *testing.T) {
	g := &gate{refuse: map[hub.Action]bool{hub.ActionPublish: true, hub.ActionSubscribe: true, hub.ActionHistory: true}}
	h := newHub(t, hub.Options{Gate: g}, memory.Options{})
	ctx := bg
	h.Publish(ctx, "a", []event.Record{{Data: []byte("1")}})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.SubscribeTopic(ctx, "b", hub.Start{})
	h.Pull(ctx, hub.PullRequest{Topics: []string{"c"}})
	if topics, _ := h.Topics(ctx); len(topics) != 0 {
		t.Errorf("refused calls created topics: %v", topics)
	}
	if h.Subscribers("b") != 0 {
		t.Error("refused Subscribe registered")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := []string{"publish a", "subscribe b", "history c", "admin "}; !equal(g.asked, want) {
		t.Errorf("gate asked %v, want %v", g.asked, want)
	}
}

func TestPublishErrors(t *testing.T) {
	h := newHub(t, hub.Options{MaxEventBytes: 10}, memory.Options{})
	ctx := bg
	tests := []struct {
		name  string
		topic string
		recs  []event.Record
		want  error
	}{
		{"bad topic", "a b", []event.Record{{Data: []byte("1")}}, event.ErrBadTopic},
		{"empty topic", "", []event.Record{{Data: []byte("1")}}, event.ErrBadTopic},
		{"too large", "a", []event.Record{{Data: []byte("12345678901")}}, hub.ErrTooLarge},
		{"one of a batch too large", "a", []event.Record{{Data: []byte("1")}, {Data: []byte("12345678901")}}, hub.ErrTooLarge},
	}
	for _, tt := range tests {
		if _, err := h.Publish(ctx, tt.topic, tt.recs); !errors.Is(err, tt.want) {
			t.Errorf("%s: Publish = %v, want %v", tt.name, err, tt.want)
		}
	}
	if topics, _ := h.Topics(ctx); len(topics) != 0 {
		t.Errorf("failed publishes stored something: %v", topics)
	}
	acks, err := h.Publish(ctx, "a", []event.Record{{Data: []byte("1234567890")}, {Data: []byte("x"), Key: "k"}, {Data: []byte("y"), Key: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 3 || acks[0].Offset != 1 || acks[1].Offset != 2 || acks[2] != (event.Ack{Position: acks[1].Position, Duplicate: true}) {
		t.Errorf("acks %+v", acks)
	}
}

func TestInfoAndTopics(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	ctx := bg
	publish(t, h, "b", 2)
	publish(t, h, "a", 1)
	if _, _, err := h.Info(ctx, "a..b"); !errors.Is(err, event.ErrBadTopic) {
		t.Errorf("Info(bad) = %v", err)
	}
	if _, ok, err := h.Info(ctx, "none"); ok || err != nil {
		t.Errorf("Info(none) = %v, %v", ok, err)
	}
	in, ok, err := h.Info(ctx, "b")
	if !ok || err != nil || in.Last != 2 || in.First != 1 {
		t.Errorf("Info(b) = %+v, %v, %v", in, ok, err)
	}
	topics, err := h.Topics(ctx)
	if err != nil || len(topics) != 2 || topics[0].Name != "a" || topics[1].Name != "b" {
		t.Errorf("Topics = %+v, %v", topics, err)
	}
}

// TestStaleDeliveryAfterResubscribe holds a fan-out in the middle of a
// topic's subscriber list (in another subscriber's Wake) while a subscriber
// later in that list unsubscribes and subscribes again from its cursor. The
// fan-out still holds the old list; the old subscription must not queue the
// event, or the consumer gets it twice: once from the stale delivery and
// once from its recovery.
func TestStaleDeliveryAfterResubscribe(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	ctx := bg
	inWake, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the hub's cleanup
	var armed atomic.Bool
	first, err := h.NewSubscriber(hub.SubscriberOptions{Wake: func() {
		if armed.CompareAndSwap(true, false) {
			close(inWake)
			<-release
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(hub.CloseClient)
	if _, err := first.SubscribeTopic(ctx, "a", hub.Start{}); err != nil {
		t.Fatal(err)
	}
	first.Next(ctx, nil)
	// The list is [first, s, probe]: when probe has an event, s was offered it.
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	s.expect(t, nil)
	probe := newSub(t, h, hub.SubscriberOptions{})
	probe.subscribe(t, "a", hub.Start{})
	probe.expect(t, nil)
	publish(t, h, "a", 1)
	s.expect(t, []string{"a/1"})
	probe.expect(t, []string{"a/1"})
	first.Next(ctx, nil) // empty its queue, so that the next event wakes it
	e := epochOf(t, h, "a")

	armed.Store(true)
	// Publish in a goroutine: the fan-out may run within Publish.
	published := make(chan error, 1)
	go func() {
		_, err := h.Publish(ctx, "a", []event.Record{{Data: []byte("2")}})
		published <- err
	}()
	select {
	case <-inWake: // the fan-out of a/2 is held between first and s
	case <-time.After(guard):
		t.Fatal("the first subscriber was not woken")
	}
	if !s.Unsubscribe("a") {
		t.Fatal("Unsubscribe = false")
	}
	s.subscribe(t, "a", hub.Start{Set: true, Position: at(e, 1)})
	releaseOnce.Do(func() { close(release) })
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	probe.expect(t, []string{"a/2"}) // the held fan-out is over
	s.expect(t, []string{"a/2"})     // from recovery, and only once
	publish(t, h, "a", 1)
	s.expect(t, []string{"a/3"})
}

// hookEngine is the memory engine with a hook in Watch, which the hub
// calls in Subscribe after registering the subscription and before reading
// the topic's head.
type hookEngine struct {
	*memory.Engine
	onWatch func(topic string)
}

func (e *hookEngine) Watch(ctx context.Context, topic string) error {
	if e.onWatch != nil {
		e.onWatch(topic)
	}
	return e.Engine.Watch(ctx, topic)
}

func TestUnsubscribeDuringSubscribe(t *testing.T) {
	for _, end := range []string{"unsubscribe", "close"} {
		t.Run(end, func(t *testing.T) {
			mem := memory.New(memory.Options{})
			defer mem.Close()
			eng := &hookEngine{Engine: mem}
			h := hub.New(eng, hub.Options{})
			defer h.Close()
			s := newSub(t, h, hub.SubscriberOptions{})
			eng.onWatch = func(topic string) {
				if end == "close" {
					s.Close(hub.CloseClient)
				} else if !s.Unsubscribe(topic) {
					t.Error("Unsubscribe during Subscribe = false")
				}
			}
			publish(t, h, "a", 3)
			_, err := s.SubscribeTopic(bg, "a", hub.Start{Earliest: true})
			eng.onWatch = nil
			if err == nil {
				t.Error("Subscribe reported success for a subscription ended while it ran")
			}
			if end == "close" && !errors.Is(err, hub.ErrClosed) {
				t.Errorf("Subscribe = %v, want ErrClosed", err)
			}
			if h.Subscribers("a") != 0 || s.Topics() != 0 {
				t.Errorf("left registered: Subscribers %d, Topics %d", h.Subscribers("a"), s.Topics())
			}
			// Next must not spin on a subscription that is gone.
			done := make(chan []hub.Item, 1)
			go func() {
				items, _ := s.Next(bg, nil)
				done <- items
			}()
			select {
			case items := <-done:
				if len(items) != 0 {
					t.Errorf("Next returned %v for an ended subscription", describe(items))
				}
			case <-timeAfterGuard():
				t.Fatal("Next does not return")
			}
		})
	}
}

// TestSubscribeCloseRace races Subscribe against the subscriber's end and
// checks that no subscription outlives its subscriber.
func TestSubscribeCloseRace(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	ctx := bg
	for i := 0; i < 300; i++ {
		s, err := h.NewSubscriber(hub.SubscriberOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, topic := range []string{"a", "b", "c", "d"} {
				s.SubscribeTopic(ctx, topic, hub.Start{})
			}
		}()
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				s.Close(hub.CloseClient)
			} else {
				s.Unsubscribe("b")
				s.Unsubscribe("c")
				s.Close(hub.CloseSlow)
			}
		}()
		wg.Wait()
		for _, topic := range []string{"a", "b", "c", "d"} {
			if n := h.Subscribers(topic); n != 0 {
				t.Fatalf("round %d: %d subscriptions to %s outlive their subscriber", i, n, topic)
			}
		}
	}
}

// TestDeliveredCountsLiveAndRecovered checks Observer.Delivered (the
// herald_events_delivered_total metric): an event counts once per
// subscription, whether fan-out queued it live or the subscriber read it
// from history while recovering.
func TestDeliveredCountsLiveAndRecovered(t *testing.T) {
	var mu sync.Mutex
	delivered := 0
	count := func() int { mu.Lock(); defer mu.Unlock(); return delivered }
	h := newHub(t, hub.Options{Observer: hub.Observer{Delivered: func(n int) { mu.Lock(); delivered += n; mu.Unlock() }}}, memory.Options{})
	publish(t, h, "a", 5)

	// Recovered: resuming from offset 2 reads 3, 4 and 5 from history.
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{Set: true, Position: at(epochOf(t, h, "a"), 2)})
	s.expect(t, events("a", 3, 5))
	if got := count(); got != 3 {
		t.Fatalf("after recovery: Delivered total %d, want 3", got)
	}

	// Live: two more events reach the now caught-up subscriber.
	publish(t, h, "a", 2)
	s.expect(t, events("a", 6, 7))
	deadline := time.Now().Add(guard)
	for count() != 5 { // fan-out counts just after queueing
		if time.Now().After(deadline) {
			t.Fatalf("after live events: Delivered total %d, want 5", count())
		}
		time.Sleep(time.Millisecond)
	}
}
