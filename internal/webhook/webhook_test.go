package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// Every delivery verifies with the reference library, under each secret
// during a rotation; a changed body, another secret or an old timestamp
// do not.
func TestSignaturesVerifyWithReferenceLibrary(t *testing.T) {
	f := newFixture(t, nil)
	oldSecret, newSecret := NewSecret(), NewSecret()
	r := newReceiver(t, newSecret, oldSecret)
	acks := f.publish(t, "orders", 5)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Secrets: []string{newSecret, oldSecret}, Ordered: true, Enabled: true})
	for i := range acks {
		d := r.wait(t)
		want := fmt.Sprintf("orders:%s:%d", acks[i].Epoch, acks[i].Offset)
		if d.ID != want {
			t.Errorf("delivery %d: webhook-id %q, want %q", i, d.ID, want)
		}
		if sigs := strings.Fields(d.Header.Get(HeaderSignature)); len(sigs) != 2 {
			t.Errorf("delivery %d: %d signatures during a rotation, want 2: %q", i, len(sigs), sigs)
		}
		if d.Event.Topic != "orders" || d.Event.Offset != acks[i].Offset || string(d.Event.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("delivery %d: body %s", i, d.Body)
		}
		other, _ := standardwebhooks.NewWebhook(NewSecret())
		if other.Verify(d.Body, d.Header) == nil {
			t.Error("another secret verifies")
		}
		wh, _ := standardwebhooks.NewWebhook(newSecret)
		if wh.Verify(append(d.Body, ' '), d.Header) == nil {
			t.Error("a changed body verifies")
		}
		h := d.Header.Clone()
		ts, _ := time.Parse(time.RFC3339, "2020-01-01T00:00:00Z")
		h.Set(HeaderTimestamp, fmt.Sprint(ts.Unix()))
		if wh.Verify(d.Body, h) == nil {
			t.Error("an old timestamp verifies")
		}
	}
}

// The signature is the spec's: the reference library's Sign gives the
// same for one secret.
func TestSignMatchesReference(t *testing.T) {
	secret := NewSecret()
	wh, _ := standardwebhooks.NewWebhook(secret)
	body := []byte(`{"topic":"a","offset":1}`)
	ts := time.Unix(1700000000, 0)
	want, err := wh.Sign("a:e:1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := newSigner([]string{secret}).sign("a:e:1", ts.Unix(), body); got != want {
		t.Errorf("sign = %q, want %q", got, want)
	}
}

// An ordered subscription retries on the schedule, with jitter, honours
// Retry-After on a 429, and sends nothing after the failing event until it
// is delivered; the webhook-id stays the same.
func TestRetryScheduleAndRetryAfter(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, clock)
	f.m.opts.Rand = func() float64 { return 1 } // +20%
	secret := NewSecret()
	r := newReceiver(t, secret)
	r.ignoreTS = true
	r.setAnswer(func(n int, d delivery) (int, http.Header) {
		switch {
		case n <= 3:
			return http.StatusInternalServerError, nil
		case n == 4:
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"7200"}}
		case n == 5:
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
		}
		return http.StatusOK, nil
	})
	f.publish(t, "orders", 2)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Secrets: []string{secret}, Ordered: true, Enabled: true, Jitter: 0.2})
	first := r.wait(t)
	wants := []time.Duration{
		6 * time.Second,   // 5s +20%
		6 * time.Minute,   // 5m +20%
		36 * time.Minute,  // 30m +20%
		144 * time.Minute, // 2h +20%: longer than the 429's Retry-After of 2h
		6 * time.Hour,     // 5h +20%: longer than the 503's Retry-After of 1s
	}
	for i, want := range wants {
		tm := clock.next(t)
		if tm.D != want {
			t.Errorf("wait %d = %v, want %v", i+1, tm.D, want)
		}
		select {
		case d := <-r.notify:
			t.Fatalf("a request (%s) during the wait", d.ID)
		default:
		}
		clock.Fire(tm)
		if d := r.wait(t); d.ID != first.ID {
			t.Fatalf("attempt %d is of %s, want %s (ordered)", i+2, d.ID, first.ID)
		}
	}
	second := r.wait(t)
	if second.Event.Offset != 2 {
		t.Errorf("then offset %d, want 2", second.Event.Offset)
	}
	waitFor(t, "7 attempts logged", func() bool { l, _ := f.m.Log("shop"); return len(l) == 7 })
	log, _ := f.m.Log("shop")
	if len(log) != 7 || log[0].Next != "delivered" || log[1].Next != "delivered" || log[2].Status != http.StatusServiceUnavailable || log[2].Next != "retry" {
		t.Errorf("log: %+v", log)
	}
}

// Retry-After longer than the schedule's wait wins.
func TestRetryDelay(t *testing.T) {
	c := Config{Retry: DefaultRetry, Jitter: 0.2}
	tests := []struct {
		n          int
		retryAfter time.Duration
		r          float64
		want       time.Duration
		ok         bool
	}{
		{1, 0, 0.5, 5 * time.Second, true},
		{1, 0, 0, 4 * time.Second, true},
		{1, 0, 1, 6 * time.Second, true},
		{1, 120 * time.Second, 0.5, 120 * time.Second, true},
		{2, time.Second, 0.5, 5 * time.Minute, true},
		{7, 0, 0.5, 10 * time.Hour, true},
		{8, 0, 0.5, 0, false},
		{1, 48 * time.Hour, 0.5, MaxRetryDelay, true},
	}
	for _, tt := range tests {
		got, ok := c.retryDelay(tt.n, tt.retryAfter, tt.r)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryDelay(%d, %v, %v) = %v, %v; want %v, %v", tt.n, tt.retryAfter, tt.r, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"120", 120 * time.Second}, {" 5 ", 5 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Hour}, {now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"999999999", MaxRetryDelay},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// After the schedule the event goes to the dead-letter topic, and the
// next one is sent.
func TestExhaustedScheduleDeadLetters(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, clock)
	r := newReceiver(t)
	r.setAnswer(func(n int, d delivery) (int, http.Header) {
		if d.Event.Offset == 1 {
			return http.StatusBadRequest, nil
		}
		return http.StatusOK, nil
	})
	f.publish(t, "orders", 2)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Ordered: true, Enabled: true, Retry: []time.Duration{time.Second}})
	r.wait(t)
	clock.Fire(clock.next(t))
	r.wait(t)
	if d := r.wait(t); d.Event.Offset != 2 {
		t.Fatalf("then offset %d, want 2", d.Event.Offset)
	}
	res, err := f.hub.Pull(hub.Internal(bg), hub.PullRequest{Topics: []string{"webhook.shop.dead"}, From: hub.FromEarliest})
	if err != nil || len(res.Events) != 1 || string(res.Events[0].Data) != `{"i":0}` {
		t.Fatalf("dead letters: %v, %v", res.Events, err)
	}
	waitFor(t, "the counters", func() bool {
		in, _ := f.m.Get("shop")
		return in.Status.Failed == 1 && in.Status.Delivered == 1
	})
}

// An endpoint that fails for disable_after is disabled, reported, and
// enabled again by a PUT; a 410 disables at once.
func TestAutoDisable(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, clock)
	var (
		mu       sync.Mutex
		disabled []bool
	)
	f.m.opts.Observer.Disabled = func(_ string, d bool) { mu.Lock(); disabled = append(disabled, d); mu.Unlock() }
	r := newReceiver(t)
	r.setAnswer(func(n int, d delivery) (int, http.Header) { return http.StatusBadGateway, nil })
	f.publish(t, "orders", 1)
	cfg := Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Ordered: true, Enabled: true,
		Retry: []time.Duration{time.Hour, time.Hour, time.Hour}, DisableAfter: 90 * time.Minute}
	f.put(t, cfg)
	r.wait(t)
	clock.Fire(clock.next(t)) // 1h later: failing for 1h
	r.wait(t)
	clock.Fire(clock.next(t)) // 2h: over 90m
	r.wait(t)
	waitFor(t, "disabled", func() bool {
		in, _ := f.m.Get("shop")
		return in.Status.State == "disabled"
	})
	in, _ := f.m.Get("shop")
	if !strings.Contains(in.Status.DisabledReason, "every attempt failed for 2h0m0s") || in.Status.FailingSince == nil {
		t.Errorf("status %+v", in.Status)
	}
	mu.Lock()
	if !slices.Equal(disabled, []bool{false, true}) {
		t.Errorf("observer saw %v", disabled)
	}
	mu.Unlock()
	// A PUT of the same settings enables it again.
	r.setAnswer(func(n int, d delivery) (int, http.Header) { return http.StatusGone, nil })
	// (It runs again, and the event handed back when it was disabled
	// comes at once, to be answered 410 Gone.)
	f.put(t, cfg)
	r.wait(t)
	waitFor(t, "disabled by 410", func() bool {
		in, _ := f.m.Get("shop")
		return in.Status.State == "disabled" && strings.Contains(in.Status.DisabledReason, "410")
	})
}

// A replay from a cursor sends the events after it again, with their
// webhook-ids.
func TestReplayFromCursor(t *testing.T) {
	f := newFixture(t, nil)
	r := newReceiver(t)
	acks := f.publish(t, "orders", 10)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Ordered: true, Enabled: true})
	var ids []string
	for range 10 {
		ids = append(ids, r.wait(t).ID)
	}
	var c cursor.Cursor
	c.Set("orders", event.Position{Epoch: acks[5].Epoch, Offset: acks[5].Offset})
	if _, err := f.m.Replay(bg, "shop", ReplayRequest{From: c.String()}); err != nil {
		t.Fatal(err)
	}
	for i := 6; i < 10; i++ {
		if d := r.wait(t); d.ID != ids[i] {
			t.Errorf("replay sent %s, want %s", d.ID, ids[i])
		}
	}
	waitFor(t, "the replay's end", func() bool {
		in, _ := f.m.Get("shop")
		return in.Status.Replay != nil && in.Status.Replay.Finished != nil
	})
	in, _ := f.m.Get("shop")
	if rp := in.Status.Replay; rp.Sent != 4 || rp.Delivered != 4 || rp.Error != "" {
		t.Errorf("replay %+v", rp)
	}
	if _, err := f.m.Replay(bg, "shop", ReplayRequest{From: "yesterday"}); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("a bad from: %v", err)
	}
	// From a time: all ten.
	if _, err := f.m.Replay(bg, "shop", ReplayRequest{From: time.Now().Add(-time.Hour).Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if d := r.wait(t); d.ID != ids[i] {
			t.Errorf("replay sent %s, want %s", d.ID, ids[i])
		}
	}
}

// The guard refuses loopback, private, link-local and metadata targets:
// address literals when the subscription is made, names on connection.
func TestSSRFRefusals(t *testing.T) {
	eng := newFixture(t, nil)
	m, err := New(bg, eng.hub, eng.groups, Options{Guard: netguard.New(netguard.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, u := range []string{"http://127.0.0.1:9/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/", "http://100.64.0.1/"} {
		_, _, err := m.Put(bg, Config{Name: "x", URL: u, Topics: []string{"a"}, Enabled: true, Ordered: true})
		if !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), "refused by the outbound network guard") {
			t.Errorf("%s: %v", u, err)
		}
	}
	eng.publish(t, "a", 1)
	r := newReceiver(t)
	port := r.URL[strings.LastIndex(r.URL, ":")+1:]
	if _, _, err := m.Put(bg, Config{Name: "local", URL: "http://localhost:" + port + "/", Topics: []string{"a"}, Enabled: true, Ordered: true}); err != nil {
		t.Fatal(err)
	}
	a, err := m.Test(bg, "local")
	if err != nil || a.Result != ResultRefused || !strings.Contains(a.Error, "loopback") {
		t.Errorf("a name resolving to loopback: %+v, %v", a, err)
	}
	if len(r.deliveries()) != 0 {
		t.Error("the receiver got a request")
	}
}

// Unordered subscriptions send concurrently, retry each event on its own
// with a nak, and deliver everything.
func TestUnorderedRetriesWithNak(t *testing.T) {
	f := newFixture(t, nil)
	r := newReceiver(t)
	tries := make(map[string]int)
	r.setAnswer(func(n int, d delivery) (int, http.Header) {
		tries[d.ID]++
		if tries[d.ID] == 1 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	f.publish(t, "orders", 50)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Concurrency: 8, Enabled: true, Retry: []time.Duration{10 * time.Millisecond}})
	waitFor(t, "50 deliveries", func() bool {
		in, _ := f.m.Get("shop")
		return in.Status.Delivered == 50
	})
	in, _ := f.m.Get("shop")
	if in.Status.Attempts != 100 || in.Status.RetriesPending != 0 {
		t.Errorf("status %+v", in.Status)
	}
}

// The type filter skips other events.
func TestTypeFilter(t *testing.T) {
	f := newFixture(t, nil)
	r := newReceiver(t)
	for _, typ := range []string{"a", "b", "a"} {
		if _, err := f.hub.Publish(hub.Internal(bg), "orders", []event.Record{{Type: typ, Data: []byte(`1`)}}); err != nil {
			t.Fatal(err)
		}
	}
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Types: []string{"a"}, Start: "earliest", Ordered: true, Enabled: true})
	if d := r.wait(t); d.Event.Offset != 1 {
		t.Errorf("got %d", d.Event.Offset)
	}
	if d := r.wait(t); d.Event.Offset != 3 {
		t.Errorf("got %d", d.Event.Offset)
	}
	waitFor(t, "skipped", func() bool { in, _ := f.m.Get("shop"); return in.Status.Skipped == 1 })
}

// A Retry-After on a 429 longer than the schedule's wait is honoured.
func TestRetryAfterHonoured(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, clock)
	r := newReceiver(t)
	r.setAnswer(func(n int, d delivery) (int, http.Header) {
		if n == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}}
		}
		return http.StatusOK, nil
	})
	f.publish(t, "orders", 1)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"orders"}, Start: "earliest", Ordered: true, Enabled: true, Jitter: 0.2})
	r.wait(t)
	tm := clock.next(t)
	if tm.D != 120*time.Second {
		t.Errorf("wait %v, want 2m (Retry-After)", tm.D)
	}
	clock.Fire(tm)
	r.wait(t)
}

// A subscription to a topic that does not exist yet waits for it, and
// then sends its every event.
func TestTopicNotYetThere(t *testing.T) {
	f := newFixture(t, nil)
	r := newReceiver(t)
	in := f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"later"}, Ordered: true, Enabled: true})
	if in.Status.State != "active" && in.Status.State != "waiting" {
		t.Errorf("state %q", in.Status.State)
	}
	waitFor(t, "waiting", func() bool { in, _ := f.m.Get("shop"); return in.Status.State == "waiting" })
	f.publish(t, "later", 3)
	for i := uint64(1); i <= 3; i++ {
		if d := r.wait(t); d.Event.Offset != i {
			t.Errorf("got offset %d, want %d", d.Event.Offset, i)
		}
	}
	if in, _ := f.m.Get("shop"); in.Status.State != "active" {
		t.Errorf("state %q (%s)", in.Status.State, in.Status.Waiting)
	}
}

// After a restart, a subscription whose group was made from the earliest
// event (its topic did not exist) goes on with that group.
func TestTopicNotYetThereRestart(t *testing.T) {
	f := newFixture(t, nil)
	r := newReceiver(t)
	f.put(t, Config{Name: "shop", URL: r.URL, Topics: []string{"later"}, Ordered: true, Enabled: true})
	waitFor(t, "waiting", func() bool { in, _ := f.m.Get("shop"); return in.Status.State == "waiting" })
	f.publish(t, "later", 1)
	r.wait(t)
	waitFor(t, "delivered", func() bool { in, _ := f.m.Get("shop"); return in.Status.Delivered == 1 })
	f.m.Close()
	m, err := New(bg, f.hub, f.groups, f.m.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	f.publish(t, "later", 1)
	if d := r.wait(t); d.Event.Offset != 2 {
		t.Errorf("after a restart: offset %d", d.Event.Offset)
	}
	cfg := Config{Name: "shop", URL: r.URL + "/v2", Topics: []string{"later"}, Ordered: true, Enabled: true}
	if _, _, err := m.Put(bg, cfg); err != nil {
		t.Errorf("a change keeping the group: %v", err)
	}
}
