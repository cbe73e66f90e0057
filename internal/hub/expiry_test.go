package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
)

// TestExpireEndsTheSubscriber: a subscriber whose credentials expire ends
// with CloseExpired, at the time; a new expiry replaces the old one.
func TestExpireEndsTheSubscriber(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{})
	s.Expire(time.Now().Add(time.Hour))
	start := time.Now()
	s.Expire(time.Now().Add(50 * time.Millisecond)) // replaces the hour
	for s.Reason() == hub.CloseNone {
		if time.Since(start) > guard {
			t.Fatal("the subscriber did not expire")
		}
		s.wake.wait(t, "the end")
	}
	if r := s.Reason(); r != hub.CloseExpired || r.String() != "token_expired" {
		t.Fatalf("ended with %v", r)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("expired after %v, before its time", d)
	}
	if h.Subscribers("a") != 0 {
		t.Error("an expired subscriber still holds its subscription")
	}
}

// denyTopics refuses subscribing to the topics a caller's subject is not
// granted: subject "wide" may take a and b, "narrow" only a.
type denyTopics struct{}

func (denyTopics) Allow(ctx context.Context, a hub.Action, topic string) error {
	if hub.IdentityOf(ctx).Subject == "narrow" && topic == "b" {
		return fmt.Errorf("%w: b", hub.ErrForbidden)
	}
	return nil
}

// TestReauthorize: refreshed credentials keep the subscriptions they
// allow, without a gap, end the others, and move the expiry.
func TestReauthorize(t *testing.T) {
	h := newHub(t, hub.Options{Gate: denyTopics{}}, memory.Options{})
	wide := hub.WithIdentity(context.Background(), &hub.Identity{Subject: "wide", Method: "test", Expires: time.Now().Add(100 * time.Millisecond)})
	s := newSub(t, h, hub.SubscriberOptions{})
	for _, topic := range []string{"a", "b"} {
		if _, err := s.SubscribeTopic(wide, topic, hub.Start{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Expire(hub.IdentityOf(wide).Expires)
	publish(t, h, "a", 1)
	narrow := hub.WithIdentity(context.Background(), &hub.Identity{Subject: "narrow", Method: "test", Expires: time.Now().Add(time.Hour)})
	dropped, err := s.Reauthorize(narrow)
	if err != nil || len(dropped) != 1 || dropped[0] != "b" {
		t.Fatalf("Reauthorize = %v, %v; want [b]", dropped, err)
	}
	publish(t, h, "a", 1)
	publish(t, h, "b", 1)
	s.expect(t, events("a", 1, 2))
	time.Sleep(200 * time.Millisecond) // past the first credentials' expiry
	if r := s.Reason(); r != hub.CloseNone {
		t.Fatalf("ended with %v after a refresh", r)
	}
	if n := h.Subscribers("b"); n != 0 {
		t.Errorf("%d subscribers of b after the refresh", n)
	}
}
