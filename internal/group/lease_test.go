package group

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

const ackWait = 10 * time.Second

func TestLeaseExpiryRedelivers(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 2)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	first := f.fetch(t, "g", "w1", 1, 0)
	f.clock.advance(ackWait - time.Millisecond)
	if got := f.fetch(t, "g", "w2", 1, 0); !slices.Equal(offsetsOf(got), []uint64{2}) {
		t.Fatalf("before the lease ended w2 got offsets %v, want the next event only", offsetsOf(got))
	}
	f.clock.advance(time.Millisecond)
	again := f.fetch(t, "g", "w2", 10, guard)
	if len(again) != 1 || again[0].Event.Offset != 1 || again[0].Delivery != 2 || again[0].ID == first[0].ID {
		t.Fatalf("after the lease ended w2 got %+v, want offset 1, delivery 2, a new id", again)
	}
	in := f.info(t, "g")
	if in.Redelivered != 1 || in.Members["w2"] != 2 || in.Members["w1"] != 0 {
		t.Errorf("info: redelivered %d, members %v; want 1, w2:2", in.Redelivered, in.Members)
	}
}

func TestNakWithDelay(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: time.Hour})
	msgs := f.fetch(t, "g", "w1", 1, 0)
	if err := f.m.Nak(hub.Internal(bg), "g", "w1", msgs[0].ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(5*time.Second - time.Millisecond)
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 0 {
		t.Fatalf("redelivered %d ms before the nak's delay ended", 1)
	}
	f.clock.advance(time.Millisecond)
	got := f.fetch(t, "g", "w2", 1, guard)
	if len(got) != 1 || got[0].Delivery != 2 {
		t.Fatalf("after the delay: %+v, want the event's second delivery", got)
	}
	// A nak without a delay redelivers at once.
	if err := f.m.Nak(hub.Internal(bg), "g", "w2", got[0].ID, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.fetch(t, "g", "w3", 1, 0); len(got) != 1 || got[0].Delivery != 3 {
		t.Fatalf("after a nak without delay: %+v, want the third delivery at once", got)
	}
}

func TestBackoff(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait, Backoff: []time.Duration{time.Second, time.Minute}})
	f.fetch(t, "g", "w1", 1, 0)
	f.clock.advance(ackWait) // lease ends, backoff 1 s
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 0 {
		t.Fatal("redelivered before the first backoff")
	}
	f.clock.advance(time.Second)
	got := f.fetch(t, "g", "w1", 1, guard)
	if len(got) != 1 {
		t.Fatal("not redelivered after the first backoff")
	}
	if err := f.m.Nak(hub.Internal(bg), "g", "w1", got[0].ID, 0); err != nil { // backoff[1]: 1 min
		t.Fatal(err)
	}
	f.clock.advance(time.Minute - time.Millisecond)
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 0 {
		t.Fatal("redelivered before the second backoff")
	}
	f.clock.advance(time.Millisecond)
	if got := f.fetch(t, "g", "w1", 1, guard); len(got) != 1 || got[0].Delivery != 3 {
		t.Fatalf("after the second backoff: %+v, want delivery 3", got)
	}
}

func TestInProgressExtendsLease(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	msgs := f.fetch(t, "g", "w1", 1, 0)
	f.clock.advance(ackWait - time.Second)
	deadline, err := f.m.InProgress(hub.Internal(bg), "g", "w1", msgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.clock.Now().Add(ackWait); !deadline.Equal(want) {
		t.Errorf("deadline %v, want %v", deadline, want)
	}
	f.clock.advance(2 * time.Second) // past the first deadline
	if got := f.fetch(t, "g", "w2", 1, 0); len(got) != 0 {
		t.Fatal("redelivered although the lease was extended")
	}
	f.ack(t, "g", "w1", msgs[0])
	f.clock.advance(ackWait)
	if got := f.fetch(t, "g", "w2", 1, 0); len(got) != 0 {
		t.Fatal("redelivered after the ack")
	}
}

func TestMaxDeliveriesDeadLetters(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "jobs", event.Record{Data: []byte(`{"n":1}`), Type: "job", Headers: map[string]string{"trace": "abc"}})
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait, MaxDeliveries: 2})
	f.fetch(t, "g", "w1", 1, 0)
	f.clock.advance(ackWait)
	if got := f.fetch(t, "g", "w1", 1, guard); len(got) != 1 || got[0].Delivery != 2 {
		t.Fatalf("second delivery: %+v", got)
	}
	f.clock.advance(ackWait)
	if got := f.deadLettered(t); got != "g:max_deliveries" {
		t.Fatalf("dead-lettered %q, want g:max_deliveries", got)
	}
	ev := f.pullOne(t, "g.dead", 0)
	want := map[string]string{
		"trace": "abc", HeaderGroup: "g", HeaderTopic: "jobs", HeaderOffset: "1", HeaderEpoch: f.pullOne(t, "jobs", 0).Epoch.String(),
		HeaderDeliveries: "2", HeaderReason: ReasonMaxDeliveries,
	}
	for k, v := range want {
		if ev.Headers[k] != v {
			t.Errorf("dead letter header %s = %q, want %q", k, ev.Headers[k], v)
		}
	}
	if string(ev.Data) != `{"n":1}` || ev.Type != "job" || ev.Key == "" {
		t.Errorf("dead letter %+v: want the payload and type, and an idempotency key", ev.Record)
	}
	f.clock.advance(ackWait)
	if got := f.fetch(t, "g", "w1", 1, 0); len(got) != 0 {
		t.Fatalf("delivered again after the dead-lettering: %+v", got)
	}
	in := f.info(t, "g")
	if in.DeadLettered != 1 || in.InFlight != 0 || in.Topics[0].Committed != 1 {
		t.Errorf("info: %+v; want 1 dead-lettered, nothing in flight, committed 1", in)
	}
}

func TestTerm(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 2)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, DeadLetter: "failed.jobs"})
	msgs := f.fetch(t, "g", "w1", 2, 0)
	if err := f.m.Term(hub.Internal(bg), "g", "w1", msgs[1].ID, "cannot parse"); err != nil {
		t.Fatal(err)
	}
	ev := f.pullOne(t, "failed.jobs", 0)
	if ev.Headers[HeaderReason] != ReasonTerm || ev.Headers[HeaderDetail] != "cannot parse" || ev.Headers[HeaderOffset] != "2" || ev.Headers[HeaderDeliveries] != "1" {
		t.Errorf("dead letter headers %v", ev.Headers)
	}
	if err := f.m.Term(hub.Internal(bg), "g", "w1", msgs[1].ID, ""); !errors.Is(err, ErrUnknownDelivery) {
		t.Errorf("a second term: %v, want ErrUnknownDelivery", err)
	}
	f.ack(t, "g", "w1", msgs[0])
	if in := f.info(t, "g"); in.Topics[0].Committed != 2 || in.DeadLettered != 1 {
		t.Errorf("info %+v: want committed 2, 1 dead-lettered", in)
	}
}

func TestLateAckAfterRedelivery(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 1)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, AckWait: ackWait})
	old := f.fetch(t, "g", "w1", 1, 0)
	f.clock.advance(ackWait)
	cur := f.fetch(t, "g", "w2", 1, guard)
	before := f.info(t, "g")
	res, err := f.m.Ack(hub.Internal(bg), "g", "w1", []string{old[0].ID})
	if err != nil || !errors.Is(res[0], ErrLeaseLost) || !errors.Is(res[0], hub.ErrConflict) {
		t.Fatalf("late ack: %v, %v; want ErrLeaseLost", res, err)
	}
	if err := f.m.Nak(hub.Internal(bg), "g", "w1", old[0].ID, 0); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("late nak: %v, want ErrLeaseLost", err)
	}
	if _, err := f.m.InProgress(hub.Internal(bg), "g", "w1", old[0].ID); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("late in_progress: %v, want ErrLeaseLost", err)
	}
	// Another member answering for w2's delivery is refused too.
	if res, _ := f.m.Ack(hub.Internal(bg), "g", "w1", []string{cur[0].ID}); !errors.Is(res[0], ErrOtherMember) {
		t.Errorf("ack by another member: %v, want ErrOtherMember", res[0])
	}
	after := f.info(t, "g")
	if after.InFlight != before.InFlight || after.Members["w2"] != 1 || after.Topics[0].Committed != 0 {
		t.Errorf("refused answers changed the group: before %+v, after %+v", before, after)
	}
	f.ack(t, "g", "w2", cur[0])
	if in := f.info(t, "g"); in.Topics[0].Committed != 1 {
		t.Errorf("committed %d after w2's ack, want 1", in.Topics[0].Committed)
	}
}

func TestMaxInFlight(t *testing.T) {
	f := newFixture(t)
	f.publishN(t, "jobs", 10)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, MaxInFlight: 3, MemberMaxInFlight: 2})
	w1 := f.fetch(t, "g", "w1", 10, 0)
	if len(w1) != 2 {
		t.Fatalf("w1 got %d, want its cap of 2", len(w1))
	}
	if got := f.fetch(t, "g", "w1", 10, 0); len(got) != 0 {
		t.Fatalf("w1 over its cap got %d", len(got))
	}
	if got := f.fetch(t, "g", "w2", 10, 0); len(got) != 1 {
		t.Fatalf("w2 got %d, want the group's last 1", len(got))
	}
	if got := f.fetch(t, "g", "w3", 10, 0); len(got) != 0 {
		t.Fatalf("w3 over the group's cap got %d", len(got))
	}
	done := make(chan []Message)
	go func() {
		msgs, _ := f.m.Fetch(hub.Internal(bg), "g", "w3", 10, guard)
		done <- msgs
	}()
	f.ack(t, "g", "w1", w1[0])
	select {
	case got := <-done:
		if len(got) != 1 {
			t.Fatalf("w3's long poll got %d after one ack, want 1", len(got))
		}
	case <-time.After(guard):
		t.Fatal("an ack did not wake a fetch held back by max_in_flight")
	}
}

// TestPerKeyOrdering runs 8 members over events of 10 keys: no two
// deliveries of a key are ever in flight at once, and each key's events
// are acked in offset order.
func TestPerKeyOrdering(t *testing.T) {
	const events, keys, members = 600, 10, 8
	f := newFixture(t)
	recs := make([]event.Record, events)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(strconv.Itoa(i)), Headers: map[string]string{"k": strconv.Itoa(i % keys)}}
	}
	f.publish(t, "jobs", recs...)
	f.put(t, Config{Name: "g", Topics: []string{"jobs"}, Start: StartEarliest, OrderingKey: "header:k"})

	var mu sync.Mutex
	holding := map[string]uint64{} // key → offset in flight
	last := map[string]uint64{}    // key → last offset acked
	acked := 0
	var wg sync.WaitGroup
	errs := make(chan error, members)
	for w := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			member := fmt.Sprint("w", w)
			for {
				mu.Lock()
				finished := acked == events
				mu.Unlock()
				if finished {
					return
				}
				msgs, err := f.m.Fetch(hub.Internal(bg), "g", member, 5, 20*time.Millisecond)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, m := range msgs {
					k := m.Event.Headers["k"]
					if off, ok := holding[k]; ok {
						errs <- fmt.Errorf("key %s: offset %d delivered while %d is in flight", k, m.Event.Offset, off)
					}
					holding[k] = m.Event.Offset
				}
				mu.Unlock()
				for _, m := range msgs {
					k := m.Event.Headers["k"]
					mu.Lock()
					if m.Event.Offset <= last[k] {
						errs <- fmt.Errorf("key %s: offset %d after %d", k, m.Event.Offset, last[k])
					}
					last[k] = m.Event.Offset
					delete(holding, k)
					acked++
					mu.Unlock()
					if _, err := f.m.Ack(hub.Internal(bg), "g", member, []string{m.ID}); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if in := f.info(t, "g"); in.Topics[0].Committed != events || in.InFlight != 0 {
		t.Errorf("info %+v: want every event committed", in)
	}
}
