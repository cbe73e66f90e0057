package hub_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func presenceIn(ns string) func(string) bool {
	return func(topic string) bool { return event.Namespace(topic) == ns }
}

func TestPresenceJoinLeave(t *testing.T) {
	h := newHub(t, hub.Options{Presence: presenceIn("room")}, memory.Options{})
	ann := newSub(t, h, hub.SubscriberOptions{})
	bob := newSub(t, h, hub.SubscriberOptions{})
	a, b := ann.Client(), bob.Client()
	if len(a) != 16 || a == b {
		t.Fatalf("client ids %q %q", a, b)
	}
	ann.subscribe(t, "room.1", hub.Start{Info: []byte(` { "name" : "ann" } `)})
	ann.expect(t, []string{"join room.1 " + a + `{"name":"ann"}`}) // its own join, info compacted
	bob.subscribe(t, "room.1", hub.Start{})
	want := "join room.1 " + b
	bob.expect(t, []string{want})
	ann.expect(t, []string{want})

	p, err := h.Presence(bg, "room.1")
	if err != nil || p.Count != 2 || len(p.Members) != 2 || p.Members[0].Client != a || string(p.Members[0].Info) != `{"name":"ann"}` ||
		p.Members[1].Info != nil || p.Members[0].Since == 0 {
		t.Fatalf("Presence: %+v %v", p, err)
	}
	info, ok, err := h.Info(bg, "room.1")
	if err != nil || !ok || info.Presence == nil || info.Presence.Count != 2 || info.Last != 0 {
		t.Fatalf("Info: %+v %v %v (presence must consume no offsets)", info, ok, err)
	}

	bob.Unsubscribe("room.1")
	ann.expect(t, []string{"leave room.1 " + b})
	bob.subscribe(t, "room.1", hub.Start{})
	bob.expect(t, []string{"join room.1 " + b})
	ann.expect(t, []string{"join room.1 " + b})
	bob.Close(hub.CloseClient) // ending leaves every topic
	ann.expect(t, []string{"leave room.1 " + b})
	if p, _ := h.Presence(bg, "room.1"); p.Count != 1 {
		t.Errorf("presence after bob left: %+v", p)
	}

	// Topics without presence: no notices, no list.
	ann.subscribe(t, "other", hub.Start{})
	ann.expect(t, nil)
	if _, err := h.Presence(bg, "other"); !errors.Is(err, hub.ErrPresenceOff) || !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("Presence of a topic without presence: %v", err)
	}
	if info, _, _ := h.Info(bg, "other"); info.Presence != nil {
		t.Errorf("Info of a topic without presence has %+v", info.Presence)
	}
	// Bad info refuses the subscription.
	for _, bad := range []string{`[1]`, `"x"`, `{`, `{"a":"` + string(make([]byte, hub.MaxPresenceInfo)) + `"}`} {
		if _, err := ann.SubscribeTopic(bg, "room.2", hub.Start{Info: []byte(bad)}); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("info %.20q: %v, want ErrBadInput", bad, err)
		}
	}
}

// TestPresenceOverflow: a subscriber that does not take its queue is
// ended as a slow consumer by presence notices too, without deadlock.
func TestPresenceOverflow(t *testing.T) {
	h := newHub(t, hub.Options{Presence: presenceIn("room"), MaxQueueBytes: 1024}, memory.Options{})
	idle := newSub(t, h, hub.SubscriberOptions{})
	idle.subscribe(t, "room.x", hub.Start{})
	for i := 0; idle.Reason() == hub.CloseNone; i++ {
		if i > 100 {
			t.Fatal("the idle subscriber was not ended")
		}
		s := newSub(t, h, hub.SubscriberOptions{})
		s.subscribe(t, "room.x", hub.Start{Info: []byte(`{"pad":"` + fmt.Sprint(make([]byte, 50)) + `"}`)})
	}
	if r := idle.Reason(); r != hub.CloseSlow {
		t.Errorf("ended with %v, want slow_consumer", r)
	}
}

// TestPresenceConcurrent: clients join and leave concurrently; an observer
// sees each client's notices alternate join, leave, ..., and the final
// list is who is still subscribed.
func TestPresenceConcurrent(t *testing.T) {
	h := newHub(t, hub.Options{Presence: presenceIn("room")}, memory.Options{})
	obs := newSub(t, h, hub.SubscriberOptions{})
	obs.subscribe(t, "room.c", hub.Start{})
	var wg sync.WaitGroup
	stay := make([]*sub, 8)
	for i := range stay {
		stay[i] = newSub(t, h, hub.SubscriberOptions{})
		wg.Go(func() {
			for j := range 20 {
				if _, err := stay[i].SubscribeTopic(bg, "room.c", hub.Start{}); err != nil {
					t.Error(err)
					return
				}
				if j < 19 {
					stay[i].Unsubscribe("room.c")
				}
			}
		})
	}
	wg.Wait()
	// Every client joined 20 times and left 19 times, plus obs's own join.
	items := obs.take(t, 1+8*39)
	state := map[string]bool{}
	for _, it := range items {
		p := it.Presence
		if p == nil {
			t.Fatalf("item %v", describe([]hub.Item{it}))
		}
		if state[p.Member.Client] == !p.Leave {
			t.Fatalf("client %s: %v twice in a row", p.Member.Client, describe([]hub.Item{it}))
		}
		state[p.Member.Client] = !p.Leave
	}
	pr, _ := h.Presence(bg, "room.c")
	if pr.Count != 9 {
		t.Errorf("presence count %d, want 9", pr.Count)
	}
	for _, s := range stay {
		if !state[s.Client()] {
			t.Errorf("client %s should be present", s.Client())
		}
	}
}

func TestEnqueue(t *testing.T) {
	h := newHub(t, hub.Options{MaxQueueBytes: 4096}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "q", hub.Start{})
	s.expect(t, nil)
	publish(t, h, "q", 1)
	s.take(t, 0)
	waitQueued(t, s, 1)
	if !s.Enqueue("reply", 100) {
		t.Fatal("Enqueue refused")
	}
	publish(t, h, "q", 1)
	s.expect(t, []string{"q/1", "note reply", "q/2"})
	if s.Enqueue("big", 5000) {
		t.Error("a note over the queue cap was queued")
	}
	if r := s.Reason(); r != hub.CloseSlow {
		t.Errorf("reason %v, want slow_consumer", r)
	}
	if s.Enqueue("late", 1) {
		t.Error("a note was queued after the end")
	}
}

// waitQueued waits until s has at least n items' bytes queued.
func waitQueued(t *testing.T, s *sub, n int) {
	t.Helper()
	for s.QueuedBytes() < n {
		s.wake.wait(t, "an item")
	}
}

func TestClientPublishPolicy(t *testing.T) {
	h := newHub(t, hub.Options{ClientPublish: func(topic string) bool { return event.Namespace(topic) != "ro" }}, memory.Options{})
	rec := []event.Record{{Data: []byte("1")}}
	client := hub.WithOrigin(bg, hub.OriginClient)
	if hub.OriginOf(bg) != hub.OriginService || hub.OriginOf(client) != hub.OriginClient {
		t.Fatal("OriginOf")
	}
	if _, err := h.Publish(client, "ro.a", rec); !errors.Is(err, hub.ErrForbidden) {
		t.Errorf("client publish to ro.a: %v, want ErrForbidden", err)
	}
	if err := h.CheckPublish(client, "ro.a", rec); !errors.Is(err, hub.ErrForbidden) {
		t.Errorf("CheckPublish: %v", err)
	}
	if _, err := h.Publish(client, "rw.a", rec); err != nil {
		t.Errorf("client publish to rw.a: %v", err)
	}
	if _, err := h.Publish(bg, "ro.a", rec); err != nil {
		t.Errorf("service publish to ro.a: %v", err)
	}
}
