package group

import (
	"slices"
	"testing"
)

// TestRestartDurable acks some events and leaves others in flight, closes
// everything, and opens the durable engine again: the acked events are
// never delivered again, those in flight are, once their leases end, with
// their delivery counts; the rest come fresh.
func TestRestartDurable(t *testing.T) {
	dir := t.TempDir()
	eng := openDurable(t, dir)
	clock := newFakeClock()
	f := newFixtureOn(t, eng, clock)
	f.publishN(t, "jobs", 10)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	msgs := f.fetch(t, "g", "w1", 6, 0) // offsets 1..6
	f.ack(t, "g", "w1", msgs[0], msgs[1], msgs[2], msgs[4])
	f.close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng = openDurable(t, dir)
	defer eng.Close()
	f = newFixtureOn(t, eng, clock)
	defer f.close()
	in := f.info(t, "g")
	if in.InFlight != 2 || in.Members["w1"] != 2 || in.Topics[0].Committed != 3 {
		t.Fatalf("after the restart: %+v; want 4 and 6 in flight to w1, committed 3", in)
	}
	fresh := f.fetch(t, "g", "w2", 10, 0)
	if got := offsetsOf(fresh); !slices.Equal(got, []uint64{7, 8, 9, 10}) {
		t.Fatalf("fresh events after the restart: %v, want [7 8 9 10]", got)
	}
	f.ack(t, "g", "w2", fresh...)
	clock.advance(ackWait)
	again := f.fetch(t, "g", "w2", 10, guard)
	if got := offsetsOf(again); !slices.Equal(got, []uint64{4, 6}) {
		t.Fatalf("redelivered after the restart: %v, want [4 6]", got)
	}
	for _, m := range again {
		if m.Delivery != 2 {
			t.Errorf("offset %d: delivery %d, want 2", m.Event.Offset, m.Delivery)
		}
	}
	f.ack(t, "g", "w2", again...)
	if in := f.info(t, "g"); in.Topics[0].Committed != 10 || in.Redelivered != 2 || in.InFlight != 0 {
		t.Errorf("at the end: %+v; want committed 10, 2 redelivered", in)
	}
}

// TestRestartKeepsDeadLetterAndNak checks that a nak's delay and the
// counters survive a restart.
func TestRestartKeepsCounters(t *testing.T) {
	dir := t.TempDir()
	eng := openDurable(t, dir)
	clock := newFakeClock()
	f := newFixtureOn(t, eng, clock)
	f.publishN(t, "jobs", 2)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	msgs := f.fetch(t, "g", "w1", 2, 0)
	if err := f.m.Term(bgInternal(), "g", "w1", msgs[0].ID, "bad"); err != nil {
		t.Fatal(err)
	}
	f.close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	eng = openDurable(t, dir)
	defer eng.Close()
	f = newFixtureOn(t, eng, clock)
	defer f.close()
	if in := f.info(t, "g"); in.DeadLettered != 1 || in.Topics[0].Committed != 1 || in.InFlight != 1 {
		t.Errorf("after the restart: %+v; want 1 dead-lettered, committed 1, 1 in flight", in)
	}
}

// TestRestartAckBeforeReadingAgain acks the redeliveries that follow a
// restart before the group has read the topic again: the floor then moves
// past events the group reads next, which it must skip.
func TestRestartAckBeforeReadingAgain(t *testing.T) {
	dir := t.TempDir()
	eng := openDurable(t, dir)
	clock := newFakeClock()
	f := newFixtureOn(t, eng, clock)
	f.publishN(t, "jobs", 6)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	msgs := f.fetch(t, "g", "w1", 3, 0)
	f.ack(t, "g", "w1", msgs[0], msgs[2]) // 2 stays in flight
	f.close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	eng = openDurable(t, dir)
	defer eng.Close()
	clock.advance(ackWait)
	f = newFixtureOn(t, eng, clock)
	defer f.close()
	again := f.fetch(t, "g", "w2", 10, 0)
	if got := offsetsOf(again); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("first fetch after the restart: %v, want the redelivery of 2 alone", got)
	}
	f.ack(t, "g", "w2", again...)
	if got := offsetsOf(f.fetch(t, "g", "w2", 10, 0)); !slices.Equal(got, []uint64{4, 5, 6}) {
		t.Fatalf("then: %v, want [4 5 6]", got)
	}
}

// TestCloseStoresLeases: the leases of a fetch, stored in the background,
// are stored by Close at the latest.
func TestCloseStoresLeases(t *testing.T) {
	dir := t.TempDir()
	eng := openDurable(t, dir)
	clock := newFakeClock()
	f := newFixtureOn(t, eng, clock)
	f.publishN(t, "jobs", 3)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	msgs := f.fetch(t, "g", "w1", 2, 0)
	f.close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	eng = openDurable(t, dir)
	defer eng.Close()
	f = newFixtureOn(t, eng, clock)
	defer f.close()
	if in := f.info(t, "g"); in.InFlight != 2 || in.Members["w1"] != 2 {
		t.Fatalf("after the restart: %+v, want 2 in flight to w1", in)
	}
	f.ack(t, "g", "w1", msgs...) // the ids survived
	if got := offsetsOf(f.fetch(t, "g", "w1", 10, 0)); !slices.Equal(got, []uint64{3}) {
		t.Errorf("then fetched %v, want [3]", got)
	}
}
