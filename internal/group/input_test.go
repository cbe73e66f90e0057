package group

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestPutValidation(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	ok := Config{Name: "g", Topics: []string{"jobs"}}
	tests := []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"bad name", func(c *Config) { c.Name = "a..b" }, "group name"},
		{"long name", func(c *Config) { c.Name = strings.Repeat("a", MaxNameLen+1) }, "group name"},
		{"no topics", func(c *Config) { c.Topics = nil }, "topics"},
		{"bad pattern", func(c *Config) { c.Topics = []string{"jobs.a*"} }, "topics"},
		{"twice", func(c *Config) { c.Topics = []string{"jobs", "jobs"} }, "topics"},
		{"start", func(c *Config) { c.Start = "yesterday" }, "start"},
		{"ack_wait negative", func(c *Config) { c.AckWait = -time.Second }, "ack_wait"},
		{"ack_wait long", func(c *Config) { c.AckWait = 13 * time.Hour }, "ack_wait"},
		{"max_deliveries", func(c *Config) { c.MaxDeliveries = -1 }, "max_deliveries"},
		{"dead_letter", func(c *Config) { c.DeadLetter = "a b" }, "dead_letter"},
		{"dead_letter consumed", func(c *Config) { c.Topics = []string{"g.>"} }, "dead_letter"},
		{"max_in_flight", func(c *Config) { c.MaxInFlight = -5 }, "max_in_flight"},
		{"member_max_in_flight", func(c *Config) { c.MemberMaxInFlight = MaxInFlightLimit + 1 }, "member_max_in_flight"},
		{"backoff", func(c *Config) { c.Backoff = []time.Duration{time.Second, 0} }, "backoff"},
		{"ordering_key", func(c *Config) { c.OrderingKey = "header:" }, "ordering_key"},
	}
	for _, tt := range tests {
		cfg := ok
		tt.change(&cfg)
		_, _, err := f.m.Put(bg, cfg)
		if !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: %v, want a bad input error naming %s", tt.name, err, tt.field)
		}
	}
	if list, _ := f.m.List(bg); len(list) != 0 {
		t.Errorf("refused settings made groups: %+v", list)
	}
}

func TestPutMissingTopic(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.m.Put(bg, Config{Name: "g", Topics: []string{"nothing.here"}})
	if !errors.Is(err, ErrNoTopic) || !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("group over a missing topic: %v, want ErrNoTopic", err)
	}
	if _, err := f.m.Get(bg, "g"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("Get after the refusal: %v, want ErrNoGroup", err)
	}
	// Declare (the configuration's groups) takes it, and a pattern matching
	// nothing is fine with Put.
	if _, created, err := f.m.Declare(bg, Config{Name: "g", Topics: []string{"nothing.here"}}); err != nil || !created {
		t.Errorf("Declare: %v, %v", created, err)
	}
	if _, _, err := f.m.Put(bg, Config{Name: "h", Topics: []string{"nothing.*"}}); err != nil {
		t.Errorf("Put over a pattern: %v", err)
	}
}

func TestPutExisting(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	cfg := Config{Name: "g", Topics: []string{"jobs"}, AckWait: time.Minute}
	if _, created, err := f.m.Put(bg, cfg); err != nil || !created {
		t.Fatalf("first Put: %v, %v", created, err)
	}
	if _, created, err := f.m.Put(bg, cfg); err != nil || created {
		t.Fatalf("same Put again: created %v, %v; want unchanged", created, err)
	}
	cfg.AckWait = time.Hour
	if _, _, err := f.m.Put(bg, cfg); !errors.Is(err, ErrExists) || !errors.Is(err, hub.ErrConflict) {
		t.Fatalf("Put with other settings: %v, want ErrExists", err)
	}
	if in := f.info(t, "g"); in.Config.AckWait != time.Minute {
		t.Errorf("the refused Put changed ack_wait to %v", in.Config.AckWait)
	}
	if err := f.m.Delete(bg, "g"); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Delete(bg, "g"); !errors.Is(err, ErrNoGroup) {
		t.Errorf("second Delete: %v, want ErrNoGroup", err)
	}
	if _, _, err := f.m.Put(bg, cfg); err != nil {
		t.Errorf("Put after Delete: %v", err)
	}
}

func TestFetchBadInput(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest})
	ctx := hub.Internal(bg)
	if _, err := f.m.Fetch(ctx, "missing", "w", 1, 0); !errors.Is(err, ErrNoGroup) {
		t.Errorf("fetch on a missing group: %v, want ErrNoGroup", err)
	}
	for _, tt := range []struct {
		member string
		limit  int
		wait   time.Duration
	}{{"", 1, 0}, {"w\n", 1, 0}, {strings.Repeat("w", MaxMemberLen+1), 1, 0}, {"w", -1, 0}, {"w", MaxFetch + 1, 0}, {"w", 1, -time.Second}} {
		if _, err := f.m.Fetch(ctx, "g", tt.member, tt.limit, tt.wait); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("Fetch(%q, %d, %v): %v, want bad input", tt.member, tt.limit, tt.wait, err)
		}
	}
	if _, err := f.m.Ack(ctx, "g", "w", nil); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("ack of no ids: %v, want bad input", err)
	}
	if err := f.m.Nak(ctx, "g", "w", "x", -time.Second); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("nak with a negative delay: %v, want bad input", err)
	}
	if err := f.m.Term(ctx, "g", "w", "x", strings.Repeat("x", MaxTermReason+1)); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("term with a long reason: %v, want bad input", err)
	}
	if _, err := f.m.InProgress(ctx, "g", "w", "x"); !errors.Is(err, ErrUnknownDelivery) {
		t.Errorf("in_progress of an unknown id: %v, want ErrUnknownDelivery", err)
	}
	// Nothing of that touched the group: the event is still there.
	if got := f.fetch(t, "g", "w", 10, 0); !slices.Equal(offsetsOf(got), []uint64{1}) {
		t.Errorf("after the bad calls fetched %v, want [1]", offsetsOf(got))
	}
}

func TestNeedsIdentityAndConsume(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest})
	if _, err := f.m.Fetch(bg, "g", "w", 1, 0); !errors.Is(err, hub.ErrUnauthenticated) {
		t.Errorf("fetch without an identity: %v, want unauthenticated", err)
	}
}

func TestPatternPicksUpNewTopics(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "orders.eu", 1)
	f.put(t, Config{Name: "g", Topics: []string{"orders.*"}, Start: StartEarliest})
	if got := f.fetch(t, "g", "w", 10, 0); len(got) != 1 || got[0].Event.Topic != "orders.eu" {
		t.Fatalf("fetched %+v, want the event of orders.eu", got)
	}
	f.publishN(t, "orders.us", 2)
	f.publishN(t, "g.dead", 1) // the dead-letter topic never matches
	var got []Message
	for len(got) < 2 {
		msgs := f.fetch(t, "g", "w", 10, guard)
		if len(msgs) == 0 {
			t.Fatal("the new topic's events did not come")
		}
		got = append(got, msgs...)
	}
	for _, m := range got {
		if m.Event.Topic != "orders.us" {
			t.Errorf("fetched an event of %s", m.Event.Topic)
		}
	}
	if in := f.info(t, "g"); len(in.Topics) != 2 {
		t.Errorf("info topics %+v, want orders.eu and orders.us", in.Topics)
	}
}

func TestStartCursor(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 5)
	ev := f.pullOne(t, "jobs", 2)
	// a cursor after offset 3
	in := f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: cursorAfter(ev, 3)})
	if in.Topics[0].Committed != 3 {
		t.Fatalf("committed %d, want 3", in.Topics[0].Committed)
	}
	if got := offsetsOf(f.fetch(t, "g", "w", 10, 0)); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("fetched %v, want [4 5]", got)
	}
}

// TestTrimmedBeforeRead: events retention dropped before the group read
// them are counted, not delivered, and the position moves past them.
func TestTrimmedBeforeRead(t *testing.T) {
	eng := memory.New(memory.Options{Retention: func(string) event.Retention { return event.Retention{MaxEvents: 3} }})
	f := newFixtureOn(t, eng, newFakeClock())
	defer eng.Close()
	defer f.close()
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest})
	f.publishN(t, "jobs", 5) // offsets 2..6; 1..3 are dropped
	got := f.fetch(t, "g", "w", 10, 0)
	if offs := offsetsOf(got); !slices.Equal(offs, []uint64{4, 5, 6}) {
		t.Fatalf("fetched %v, want [4 5 6]", offs)
	}
	f.ack(t, "g", "w", got...)
	if in := f.info(t, "g"); in.Trimmed != 3 || in.Topics[0].Committed != 6 {
		t.Errorf("info %+v: want 3 trimmed, committed 6", in)
	}
}

// TestStartTime starts a group at a time: the first event stored at or
// after it.
func TestStartTime(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	eng := memory.New(memory.Options{Now: func() time.Time { return now }})
	f := newFixtureOn(t, eng, newFakeClock())
	defer eng.Close()
	defer f.close()
	for i := 0; i < 10; i++ { // offsets 1..10, a minute apart
		f.publishN(t, "jobs", 1)
		now = now.Add(time.Minute)
	}
	at := time.Date(2030, 1, 1, 0, 4, 30, 0, time.UTC) // between offsets 5 and 6
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: at.Format(time.RFC3339)})
	if got := offsetsOf(f.fetch(t, "g", "w", 100, 0)); !slices.Equal(got, []uint64{6, 7, 8, 9, 10}) {
		t.Errorf("a group starting at %v fetched %v, want [6 … 10]", at, got)
	}
	f.put(t, Config{Name: "h", Topics: []string{"jobs"}, Start: "2020-01-01T00:00:00Z"})
	if got := f.fetch(t, "h", "w", 100, 0); len(got) != 10 {
		t.Errorf("a group starting before the history fetched %d, want 10", len(got))
	}
	f.put(t, Config{Name: "k", Topics: []string{"jobs"}, Start: "2040-01-01T00:00:00Z"})
	if got := f.fetch(t, "k", "w", 100, 0); len(got) != 0 {
		t.Errorf("a group starting after the history fetched %d, want 0", len(got))
	}
}
