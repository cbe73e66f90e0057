package limit_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/limit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRatesAllow(t *testing.T) {
	r := limit.NewRates[string](limit.RatesOptions{Rate: 10, Burst: 3})
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := r.Allow("a", now, 1); !ok {
			t.Fatalf("take %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := r.Allow("a", now, 1)
	if ok || wait != 100*time.Millisecond {
		t.Errorf("4th at once: got %v, wait %v; want refused, wait 100ms", ok, wait)
	}
	if ok, _ := r.Allow("b", now, 3); !ok {
		t.Error("another key shares a's bucket")
	}
	if ok, _ := r.Allow("a", now.Add(100*time.Millisecond), 1); !ok {
		t.Error("a token 100 ms later at 10/s refused")
	}
	if ok, wait := r.Allow("a", now, 4); ok || wait != 0 {
		t.Errorf("more than the burst: got %v, wait %v; want refused with no wait", ok, wait)
	}
	off := limit.NewRates[string](limit.RatesOptions{})
	if ok, _ := off.Allow("a", now, 1<<20); !ok || off.On() {
		t.Error("a zero rate limits")
	}
}

// TestRatesEvict checks that memory follows active keys: buckets that are
// full again are forgotten by a later insert, and the set never holds more
// than MaxKeys.
func TestRatesEvict(t *testing.T) {
	r := limit.NewRates[int](limit.RatesOptions{Rate: 100, Burst: 10, MaxKeys: 1600})
	now := time.Unix(1000, 0)
	for k := range 1000 {
		r.Allow(k, now, 1)
	}
	if n := r.Len(); n != 1000 {
		t.Fatalf("%d buckets after 1000 keys, want 1000", n)
	}
	// A minute later every bucket is full again: new keys sweep them out.
	later := now.Add(time.Minute)
	for k := 1000; k < 1100; k++ {
		r.Allow(k, later, 1)
	}
	if n := r.Len(); n > 200 {
		t.Errorf("%d buckets after the old ones went idle, want about 100", n)
	}
	// A flood of busy keys stays within the cap.
	for k := range 100_000 {
		r.Allow(k, later, 10)
	}
	if n := r.Len(); n > 1600 {
		t.Errorf("%d buckets, over MaxKeys 1600", n)
	}
}

func TestPublish(t *testing.T) {
	p := limit.NewPublish(limit.PublishOptions{
		PerKey:        limit.RatesOptions{Rate: 1, Burst: 2},
		PerUser:       limit.RatesOptions{Rate: 1, Burst: 1},
		PerIP:         limit.RatesOptions{Rate: 1, Burst: 1},
		PerConnection: limit.RatesOptions{Rate: 1, Burst: 3},
		Exempt:        []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	id := func(method, sub, addr string) context.Context {
		return hub.WithIdentity(context.Background(), &hub.Identity{Method: method, Subject: sub, RemoteAddr: addr, Transport: "rest"})
	}
	client := func(ctx context.Context) context.Context { return hub.WithOrigin(ctx, hub.OriginClient) }
	tests := []struct {
		name    string
		ctx     context.Context
		n       int
		wantKey string // "" allowed
	}{
		{"key first", id("api_key", "billing", "192.0.2.1:1"), 2, ""},
		{"key over", id("api_key", "billing", "192.0.2.1:2"), 1, limit.KeyPublishRatePerKey},
		{"other key", id("api_key", "ops", "192.0.2.1:2"), 1, ""},
		{"user first", id("jwt", "alice", "192.0.2.2:1"), 1, ""},
		{"user over", id("jwt", "alice", "192.0.2.3:1"), 1, limit.KeyPublishRatePerUser},
		{"user batch over burst", id("jwt", "bob", "192.0.2.3:1"), 2, "limits.publish_burst_per_user"},
		{"anonymous first", id("anonymous", "", "192.0.2.4:1"), 1, ""},
		{"anonymous same address", id("anonymous", "", "192.0.2.4:2"), 1, limit.KeyPublishRatePerIP},
		{"anonymous exempt", id("anonymous", "", "10.1.2.3:2"), 1, ""},
		{"anonymous exempt again", id("anonymous", "", "10.1.2.3:2"), 1, ""},
		{"anonymous v6 same /64", id("anonymous", "", "[2001:db8::1]:1"), 1, ""},
		{"anonymous v6 same /64 over", id("anonymous", "", "[2001:db8::2]:1"), 1, limit.KeyPublishRatePerIP},
		{"connection", client(id("jwt", "carol", "192.0.2.5:1")), 1, ""},
		{"connection's user over", client(id("jwt", "carol", "192.0.2.5:1")), 1, limit.KeyPublishRatePerUser},
		{"connection anonymous", client(id("anonymous", "", "10.0.0.1:1")), 3, ""},
		{"connection over", client(id("anonymous", "", "10.0.0.1:1")), 1, limit.KeyPublishRatePerConnection},
		{"no identity", context.Background(), 100, ""},
	}
	for _, tt := range tests {
		err := p.Allow(tt.ctx, "chat.a", tt.n)
		var le *hub.LimitError
		switch {
		case tt.wantKey == "" && err != nil:
			t.Errorf("%s: %v, want allowed", tt.name, err)
		case tt.wantKey != "" && !errors.As(err, &le):
			t.Errorf("%s: %v, want a *hub.LimitError", tt.name, err)
		case tt.wantKey != "" && (le.Key != tt.wantKey || !errors.Is(err, hub.ErrLimit) || !strings.Contains(err.Error(), tt.wantKey)):
			t.Errorf("%s: %v (key %s), want %s named", tt.name, err, le.Key, tt.wantKey)
		}
	}
}

func TestPublishRetryAfter(t *testing.T) {
	p := limit.NewPublish(limit.PublishOptions{PerUser: limit.RatesOptions{Rate: 2, Burst: 1}})
	ctx := hub.WithIdentity(context.Background(), &hub.Identity{Method: "jwt", Subject: "alice"})
	if err := p.Allow(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	err := p.Allow(ctx, "t", 1)
	if d := hub.RetryAfter(err); d <= 0 || d > 500*time.Millisecond {
		t.Errorf("retry after %v (%v), want (0, 500ms] at 2/s", d, err)
	}
	err = p.Allow(ctx, "t", 5)
	if d := hub.RetryAfter(err); d != 0 || !strings.Contains(fmt.Sprint(err), "limits.publish_burst_per_user") {
		t.Errorf("a batch over the burst: %v, retry %v; want the burst key named and no retry", err, d)
	}
}
