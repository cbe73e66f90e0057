package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// topicGate refuses every action on one topic.
type topicGate string

func (g topicGate) Allow(_ context.Context, _ hub.Action, topic string) error {
	if topic == string(g) {
		return fmt.Errorf("%w: %s", hub.ErrForbidden, topic)
	}
	return nil
}

// TestSubscribeRequestChecks: a request is checked once, in the hub, the
// same for every transport; a refused one subscribes to nothing.
func TestSubscribeRequestChecks(t *testing.T) {
	many := make([]string, cursor.MaxTopics+1)
	for i := range many {
		many[i] = fmt.Sprintf("t.%d", i)
	}
	for _, tt := range []struct {
		name   string
		topics []string
		want   error
	}{
		{"no topics", nil, hub.ErrBadInput},
		{"bad topic", []string{"a", "a..b"}, event.ErrBadTopic},
		{"twice", []string{"a", "b", "a"}, hub.ErrBadInput},
		{"too many in one request", many, hub.ErrBadInput},
		{"over the subscriber's cap", []string{"a", "b", "c", "d"}, hub.ErrLimit},
		{"a refused topic", []string{"a", "secret", "b"}, hub.ErrForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, hub.Options{Gate: topicGate("secret")}, memory.Options{})
			s := newSub(t, h, hub.SubscriberOptions{MaxTopics: 3})
			_, err := s.Subscribe(bg, &hub.SubscribeRequest{Topics: tt.topics}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Subscribe(%v) = %v, want %v", tt.topics, err, tt.want)
			}
			if n := s.Topics(); n != 0 {
				t.Errorf("%d topics subscribed after a refusal", n)
			}
			for _, topic := range []string{"a", "b"} {
				if n := h.Subscribers(topic); n != 0 {
					t.Errorf("%d subscribers of %s after a refusal", n, topic)
				}
			}
		})
	}
}

// TestSubscribeReplyComesFirst: the reply a transport builds is queued
// ahead of everything the new subscriptions queue (here a gap), and a
// refused request's reply comes with nothing of its topics behind it.
func TestSubscribeReplyComesFirst(t *testing.T) {
	h := newHub(t, hub.Options{Gate: topicGate("secret")}, retain(2))
	publish(t, h, "a", 5)
	e := epochOf(t, h, "a")
	s := newSub(t, h, hub.SubscriberOptions{})
	reply := func(starts []event.Position, err error) (any, int) {
		if err != nil {
			return "refused", 8
		}
		return fmt.Sprintf("ok %v", starts), 8
	}
	req := &hub.SubscribeRequest{Topics: []string{"a"}}
	req.Cursor.Set("a", at(e, 1)) // trimmed: a gap is queued
	if _, err := s.Subscribe(bg, req, reply); err != nil {
		t.Fatal(err)
	}
	got := describe(s.take(t, 4))
	if !strings.HasPrefix(got[0], "note ok") || got[1] != "gap a trimmed 1>3 (4)" {
		t.Fatalf("items %v: want the reply, then the gap, then a/4, a/5", got)
	}

	// A refused request: b is subscribed first (queueing a gap of its
	// own), then secret is refused; b is taken out again and its gap goes.
	req = &hub.SubscribeRequest{Topics: []string{"b", "secret"}}
	req.Cursor.Set("b", at(e+1, 9))
	if _, err := s.Subscribe(bg, req, reply); !errors.Is(err, hub.ErrForbidden) {
		t.Fatalf("Subscribe = %v, want forbidden", err)
	}
	publish(t, h, "a", 1)
	if got := describe(s.take(t, 2)); !equal(got, []string{"note refused", "a/6"}) {
		t.Errorf("items %v, want the refusal then a/6", got)
	}
	if n := s.Topics(); n != 1 {
		t.Errorf("following %d topics, want 1", n)
	}
}
