package enginetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

// The consumer group cases: groups keep their state in the engine's
// StateStore, so every engine that keeps consumer state runs them. Run
// runs those of one engine's life; RunRestart those across a restart, for
// engines whose state outlives the process.

var groupTests = []struct {
	name string
	fn   func(*testing.T, hub.Engine)
}{
	{"FetchAckCommits", testGroupFetchAck},
	{"LeaseEndRedeliversThenDeadLetters", testGroupDeadLetter},
}

// runGroups runs the group cases on the engines newEngine makes; an
// engine that keeps no state skips them.
func runGroups(t *testing.T, newEngine Factory) {
	for _, tt := range groupTests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			if _, ok := e.(hub.StateStore); !ok {
				t.Skipf("%T keeps no consumer state (does not implement hub.StateStore)", e)
			}
			tt.fn(t, e)
		})
	}
}

// groupFixture is a hub and a group Manager over an engine.
type groupFixture struct {
	h *hub.Hub
	m *group.Manager
}

func newGroupFixture(t *testing.T, e hub.Engine) *groupFixture {
	t.Helper()
	h := hub.New(e, hub.Options{})
	m, err := group.New(context.Background(), h, group.Options{})
	if err != nil {
		h.Close()
		t.Fatalf("group.New: %v", err)
	}
	return &groupFixture{h: h, m: m}
}

func (f *groupFixture) close() {
	f.m.Close()
	f.h.Close()
}

var internal = hub.Internal(context.Background())

func (f *groupFixture) fetch(t *testing.T, name, member string, limit int, wait time.Duration) []group.Message {
	t.Helper()
	msgs, err := f.m.Fetch(internal, name, member, limit, wait)
	if err != nil {
		t.Fatalf("Fetch(%s, %s): %v", name, member, err)
	}
	return msgs
}

func (f *groupFixture) ack(t *testing.T, name, member string, msgs []group.Message) {
	t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	res, err := f.m.Ack(internal, name, member, ids)
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for i, err := range res {
		if err != nil {
			t.Fatalf("Ack of %s: %v", ids[i], err)
		}
	}
}

func msgOffsets(msgs []group.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Event.Offset
	}
	return out
}

// testGroupFetchAck: two members share 20 events; each is delivered once;
// once all are acked the committed position is the head.
func testGroupFetchAck(t *testing.T, e hub.Engine) {
	f := newGroupFixture(t, e)
	defer f.close()
	recs := make([]event.Record, 20)
	for i := range recs {
		recs[i] = rec(fmt.Sprint(i))
	}
	mustAppend(t, e, "jobs", recs...)
	if _, _, err := f.m.Put(context.Background(), group.Config{Name: "g", Topics: []string{"jobs"}, Start: group.StartEarliest}); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for member := 0; len(seen) < 20; member = 1 - member {
		msgs := f.fetch(t, "g", fmt.Sprint("w", member), 7, 0)
		if len(msgs) == 0 {
			t.Fatalf("nothing to fetch after %d events", len(seen))
		}
		for _, m := range msgs {
			if seen[m.Event.Offset] || m.Delivery != 1 {
				t.Fatalf("offset %d delivered again (delivery %d)", m.Event.Offset, m.Delivery)
			}
			seen[m.Event.Offset] = true
		}
		f.ack(t, "g", fmt.Sprint("w", member), msgs)
	}
	in, err := f.m.Get(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Topics) != 1 || in.Topics[0].Committed != 20 || in.Topics[0].Head != 20 || in.Pending != 0 || in.InFlight != 0 {
		t.Errorf("after every ack: %+v, want committed 20 at the head", in)
	}
}

// testGroupDeadLetter: a lease that runs out is redelivered; after
// MaxDeliveries the event goes to the dead-letter topic, once.
func testGroupDeadLetter(t *testing.T, e hub.Engine) {
	f := newGroupFixture(t, e)
	defer f.close()
	mustAppend(t, e, "jobs", rec("x"))
	cfg := group.Config{Name: "g", Topics: []string{"jobs"}, Start: group.StartEarliest, AckWait: 20 * time.Millisecond, MaxDeliveries: 2}
	if _, _, err := f.m.Put(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 1 || got[0].Delivery != 1 {
		t.Fatalf("first fetch: %+v", got)
	}
	if got := f.fetch(t, "g", "w2", 1, 10*time.Second); len(got) != 1 || got[0].Delivery != 2 {
		t.Fatalf("after the lease ended: %+v, want the second delivery", got)
	}
	res, err := f.h.Pull(internal, hub.PullRequest{Topics: []string{"g.dead"}, From: hub.FromEarliest, Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || res.Events[0].Headers[group.HeaderReason] != group.ReasonMaxDeliveries || res.Events[0].Headers[group.HeaderDeliveries] != "2" {
		t.Fatalf("dead-letter topic: %+v, want the event with its headers", res.Events)
	}
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 0 {
		t.Errorf("delivered after the dead-lettering: %+v", got)
	}
}

// Opener opens the engine kept in dir, which the test closes.
type Opener func(t *testing.T, dir string) hub.Engine

// RunRestart runs the group cases across restarts of an engine whose
// state outlives the process (the durable engine): acked events are never
// delivered again, unacked ones are, with their delivery counts.
func RunRestart(t *testing.T, open Opener) {
	t.Run("GroupStateSurvivesRestart", func(t *testing.T) {
		dir := t.TempDir()
		e := open(t, dir)
		f := newGroupFixture(t, e)
		recs := make([]event.Record, 10)
		for i := range recs {
			recs[i] = rec(fmt.Sprint(i))
		}
		mustAppend(t, e, "jobs", recs...)
		if _, _, err := f.m.Put(context.Background(), group.Config{Name: "g", Topics: []string{"jobs"}, Start: group.StartEarliest, AckWait: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		msgs := f.fetch(t, "g", "w1", 5, 0) // 1..5
		f.ack(t, "g", "w1", []group.Message{msgs[0], msgs[1], msgs[3]})
		f.close()
		closeEngine(t, e)

		e = open(t, dir)
		defer closeEngine(t, e)
		f = newGroupFixture(t, e)
		defer f.close()
		var got []group.Message
		for len(got) < 7 {
			batch := f.fetch(t, "g", "w2", 10, 10*time.Second)
			if len(batch) == 0 {
				t.Fatalf("after the restart got only %v", msgOffsets(got))
			}
			got = append(got, batch...)
			f.ack(t, "g", "w2", batch)
		}
		offs := msgOffsets(got)
		slices.Sort(offs)
		if want := []uint64{3, 5, 6, 7, 8, 9, 10}; !slices.Equal(offs, want) {
			t.Fatalf("after the restart delivered %v, want %v (never 1, 2, 4)", offs, want)
		}
		for _, m := range got {
			if want := map[uint64]int{3: 2, 5: 2}[m.Event.Offset]; want != 0 && m.Delivery != want {
				t.Errorf("offset %d: delivery %d, want %d", m.Event.Offset, m.Delivery, want)
			}
		}
		if got := f.fetch(t, "g", "w2", 10, 0); len(got) != 0 {
			t.Errorf("more after everything was acked: %v", msgOffsets(got))
		}
	})
}

func closeEngine(t *testing.T, e hub.Engine) {
	t.Helper()
	if c, ok := e.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
