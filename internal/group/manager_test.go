package group

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

func TestFetchAck(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "orders.eu", 3)
	f.put(t, Config{Name: "workers", Topics: []string{"orders.eu"}, Start: StartEarliest})
	msgs := f.fetch(t, "workers", "w1", 10, 0)
	if got, want := datas(msgs), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("fetched %q, want %q", got, want)
	}
	for _, m := range msgs {
		if m.Delivery != 1 || m.ID == "" || !m.Deadline.Equal(f.clock.Now().Add(DefaultAckWait)) {
			t.Errorf("message %+v: want delivery 1, an id and a deadline AckWait from now", m)
		}
	}
	in := f.info(t, "workers")
	if in.InFlight != 3 || in.Members["w1"] != 3 || in.Pending != 0 {
		t.Errorf("info: in flight %d, members %v, pending %d; want 3, w1:3, 0", in.InFlight, in.Members, in.Pending)
	}
	f.ack(t, "workers", "w1", msgs...)
	if got := f.fetch(t, "workers", "w1", 10, 0); len(got) != 0 {
		t.Errorf("after the acks: fetched %q, want nothing", datas(got))
	}
	in = f.info(t, "workers")
	if in.InFlight != 0 || len(in.Topics) != 1 || in.Topics[0].Committed != 3 {
		t.Errorf("info after acks: %+v; want nothing in flight, committed 3", in)
	}
	// Long poll: a new event wakes the waiting fetch.
	done := make(chan []Message)
	go func() {
		msgs, _ := f.m.Fetch(hub.Internal(bg), "workers", "w2", 10, guard)
		done <- msgs
	}()
	f.publishN(t, "orders.eu", 1)
	select {
	case msgs := <-done:
		if got := offsetsOf(msgs); !slices.Equal(got, []uint64{4}) {
			t.Errorf("long poll got offsets %v, want [4]", got)
		}
	case <-time.After(guard):
		t.Fatal("the long poll was not woken by a new event")
	}
}

func TestStartLatestSkipsHistory(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "orders.eu", 3)
	f.put(t, Config{Name: "workers", Topics: []string{"orders.eu"}})
	if got := f.fetch(t, "workers", "w1", 10, 0); len(got) != 0 {
		t.Fatalf("a group starting at latest fetched %q", datas(got))
	}
	f.publishN(t, "orders.eu", 1)
	if got := offsetsOf(f.fetch(t, "workers", "w1", 10, 0)); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("fetched offsets %v, want [4]", got)
	}
}

func TestAckErrors(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "orders.eu", 2)
	f.put(t, Config{Name: "workers", Topics: []string{"orders.eu"}, Start: StartEarliest})
	msgs := f.fetch(t, "workers", "w1", 1, 0)
	f.ack(t, "workers", "w1", msgs[0])
	res, err := f.m.Ack(hub.Internal(bg), "workers", "w1", []string{msgs[0].ID, "nope"})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !errors.Is(r, ErrUnknownDelivery) || !errors.Is(r, hub.ErrNotFound) {
			t.Errorf("result %d: %v, want ErrUnknownDelivery", i, r)
		}
	}
	if _, err := f.m.Ack(hub.Internal(bg), "nogroup", "w1", []string{"x"}); !errors.Is(err, ErrNoGroup) {
		t.Errorf("ack on a missing group: %v, want ErrNoGroup", err)
	}
}
