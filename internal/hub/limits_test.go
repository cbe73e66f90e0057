package hub_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// countingLimiter allows the first allow events and refuses the rest,
// recording every call.
type countingLimiter struct {
	mu    sync.Mutex
	allow int
	calls []int
}

func (l *countingLimiter) Allow(_ context.Context, _ string, n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, n)
	if l.allow < n {
		return &hub.LimitError{Key: "limits.test", RetryAfter: time.Second, Message: "over the test's limit (limits.test)"}
	}
	l.allow -= n
	return nil
}

func TestPublishLimiter(t *testing.T) {
	lim := &countingLimiter{allow: 3}
	var refused []string
	h := newHub(t, hub.Options{PublishLimiter: lim, Observer: hub.Observer{Refused: func(k string) { refused = append(refused, k) }}}, memory.Options{})
	recs := func(n int) []event.Record {
		r := make([]event.Record, n)
		for i := range r {
			r[i].Data = []byte("1")
		}
		return r
	}
	if _, err := h.Publish(bg, "l.a", recs(2)); err != nil {
		t.Fatal(err)
	}
	// A batch over topics: CheckPublish counts each topic's events, and
	// Publish with PublishCounted does not count them again.
	if err := h.CheckPublish(bg, "l.b", recs(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(hub.PublishCounted(bg), "l.b", recs(1)); err != nil {
		t.Fatal(err)
	}
	_, err := h.Publish(bg, "l.a", recs(1))
	if !errors.Is(err, hub.ErrLimit) || hub.RetryAfter(err) != time.Second || !strings.Contains(err.Error(), "limits.test") {
		t.Errorf("over the limit: %v (retry %v)", err, hub.RetryAfter(err))
	}
	// herald's own publishes take nothing.
	if _, err := h.Publish(hub.Internal(context.Background()), "l.a", recs(5)); err != nil {
		t.Errorf("an internal publish was limited: %v", err)
	}
	if got := lim.calls; len(got) != 3 || got[0] != 2 || got[1] != 1 || got[2] != 1 {
		t.Errorf("limiter calls %v, want [2 1 1]", got)
	}
	if len(refused) != 1 || refused[0] != "limits.test" {
		t.Errorf("refusals observed %v", refused)
	}
	if b, _ := h.Engine().Read(bg, "l.a", 0, 0); b.Info.Last != 7 {
		t.Errorf("l.a holds %d events, want 7 (2 + 5 internal)", b.Info.Last)
	}
}

func TestEventLimitPerTopic(t *testing.T) {
	var refused []string
	h := newHub(t, hub.Options{
		MaxEventBytes: 10,
		EventLimit: func(topic string) (int, string) {
			if event.Namespace(topic) == "big" {
				return 100, "namespaces.big.max_event_bytes"
			}
			return 0, "" // the default
		},
		Observer: hub.Observer{Refused: func(k string) { refused = append(refused, k) }},
	}, memory.Options{})
	tests := []struct {
		topic   string
		size    int
		wantKey string // "" allowed
	}{
		{"small.a", 10, ""},
		{"small.a", 11, "limits.max_event_bytes"},
		{"big.a", 100, ""},
		{"big.a", 101, "namespaces.big.max_event_bytes"},
	}
	for _, tt := range tests {
		_, err := h.Publish(bg, tt.topic, []event.Record{{Data: make([]byte, tt.size)}})
		switch {
		case tt.wantKey == "" && err != nil:
			t.Errorf("%d bytes to %s: %v", tt.size, tt.topic, err)
		case tt.wantKey != "" && (!errors.Is(err, hub.ErrTooLarge) || !strings.Contains(err.Error(), tt.wantKey)):
			t.Errorf("%d bytes to %s: %v, want too large naming %s", tt.size, tt.topic, err, tt.wantKey)
		}
	}
	if strings.Join(refused, ",") != "limits.max_event_bytes,namespaces.big.max_event_bytes" {
		t.Errorf("refusals observed %v", refused)
	}
}

func TestMaxSubscriptions(t *testing.T) {
	var refused []string
	h := newHub(t, hub.Options{MaxSubscriptions: 2, Observer: hub.Observer{Refused: func(k string) { refused = append(refused, k) }}}, memory.Options{})
	s := newSub(t, h, hub.SubscriberOptions{})
	if _, err := s.Subscribe(bg, &hub.SubscribeRequest{Topics: []string{"m.a", "m.b"}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.Subscribe(bg, &hub.SubscribeRequest{Topics: []string{"m.c"}}, nil)
	var le *hub.LimitError
	if !errors.As(err, &le) || le.Key != hub.KeyMaxSubscriptions || !strings.Contains(err.Error(), hub.KeyMaxSubscriptions) {
		t.Errorf("a third topic: %v, want a LimitError of %s", err, hub.KeyMaxSubscriptions)
	}
	many := make([]string, 65)
	for i := range many {
		many[i] = "m.x" + strings.Repeat("y", i)
	}
	if _, err := s.Subscribe(bg, &hub.SubscribeRequest{Topics: many}, nil); !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), hub.KeyTopicsPerRequest) {
		t.Errorf("65 topics: %v", err)
	}
	if strings.Join(refused, ",") != hub.KeyMaxSubscriptions+","+hub.KeyTopicsPerRequest {
		t.Errorf("refusals observed %v", refused)
	}
}

// TestMaxConnectionsPerUser: a user (a JWT's subject) holds at most
// MaxConnectionsPerUser push subscribers; other users, anonymous callers
// and API keys are not counted against it; a closed subscriber frees its
// place; a stream given credentials later (SetIdentity) is counted then,
// once.
func TestMaxConnectionsPerUser(t *testing.T) {
	var refused []string
	h := newHub(t, hub.Options{MaxConnectionsPerUser: 2, Observer: hub.Observer{Refused: func(k string) { refused = append(refused, k) }}}, memory.Options{})
	ann := &hub.Identity{Method: "jwt", Subject: "ann"}
	open := func(id *hub.Identity) (*hub.Subscriber, error) {
		return h.NewSubscriber(hub.SubscriberOptions{Identity: id})
	}
	overCap := func(err error) bool {
		var le *hub.LimitError
		return errors.As(err, &le) && le.Key == hub.KeyMaxConnectionsPerUser && le.RetryAfter > 0 && strings.Contains(err.Error(), `"ann"`)
	}
	first, err := open(ann)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(ann); err != nil {
		t.Fatal(err)
	}
	if _, err := open(ann); !overCap(err) {
		t.Fatalf("ann's third: %v, want a LimitError of %s", err, hub.KeyMaxConnectionsPerUser)
	}
	for _, id := range []*hub.Identity{{Method: "jwt", Subject: "bob"}, nil, {Method: "anonymous"}, {Method: "api_key", Subject: "svc"}, {Method: "api_key", Subject: "svc"}, {Method: "api_key", Subject: "svc"}} {
		if _, err := open(id); err != nil {
			t.Errorf("%+v while ann is at her cap: %v", id, err)
		}
	}
	first.Close(hub.CloseClient)
	third, err := open(ann)
	if err != nil {
		t.Fatalf("ann after closing one: %v", err)
	}

	// Opened without credentials, refreshed to ann's: counted then.
	late, err := open(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.SetIdentity(ann); !overCap(err) {
		t.Fatalf("ann's refresh over her cap: %v", err)
	}
	third.Close(hub.CloseClient)
	if err := late.SetIdentity(ann); err != nil {
		t.Fatalf("ann's refresh under her cap: %v", err)
	}
	if err := late.SetIdentity(ann); err != nil { // a second refresh: counted once
		t.Fatalf("ann's second refresh: %v", err)
	}
	if _, err := open(ann); !overCap(err) {
		t.Fatalf("ann's third after the refresh: %v", err)
	}
	late.Close(hub.CloseClient)
	if _, err := open(ann); err != nil {
		t.Fatalf("ann after the refreshed one closed: %v", err)
	}
	if strings.Join(refused, ",") != strings.Repeat(hub.KeyMaxConnectionsPerUser+",", 3)[:3*len(hub.KeyMaxConnectionsPerUser)+2] {
		t.Errorf("refusals told %q", refused)
	}
}
