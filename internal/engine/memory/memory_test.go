package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a fake time source for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 25, 19, 50, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newEngine(t testing.TB, opts memory.Options) *memory.Engine {
	t.Helper()
	e := memory.New(opts)
	t.Cleanup(func() { e.Close() })
	return e
}

func retain(r event.Retention) func(string) event.Retention {
	return func(string) event.Retention { return r }
}

func rec(data string) event.Record { return event.Record{Data: []byte(data)} }

func keyed(key string) event.Record { return event.Record{Data: []byte("x"), Key: key} }

func appendN(t testing.TB, e *memory.Engine, topic string, n int) []event.Ack {
	t.Helper()
	var acks []event.Ack
	for i := 0; i < n; i++ {
		a, err := e.Append(context.Background(), topic, []event.Record{rec(fmt.Sprintf("%04d", i))})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		acks = append(acks, a...)
	}
	return acks
}

func read(t testing.TB, e *memory.Engine, topic string, after uint64, limit int) event.Batch {
	t.Helper()
	b, err := e.Read(context.Background(), topic, after, limit)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", topic, after, limit, err)
	}
	return b
}

func offsets(evs []*event.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Offset
	}
	return out
}

func span(from, to uint64) []uint64 {
	out := []uint64{}
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

func info(t testing.TB, e *memory.Engine, topic string) event.TopicInfo {
	t.Helper()
	in, ok, err := e.Info(context.Background(), topic)
	if err != nil || !ok {
		t.Fatalf("Info(%s) = %v, %v", topic, ok, err)
	}
	return in
}

func TestOffsetsConcurrentAppenders(t *testing.T) {
	e := newEngine(t, memory.Options{Retention: retain(event.Retention{MaxEvents: 1 << 20})})
	const goroutines, perG = 8, 400
	acks := make([][]event.Ack, goroutines)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for n := 0; n < perG; {
				batch := min(1+r.IntN(3), perG-n)
				recs := make([]event.Record, batch)
				for i := range recs {
					recs[i] = rec(fmt.Sprintf("g%d-%d", g, n+i))
				}
				a, err := e.Append(context.Background(), "t", recs)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				// A batch is stored contiguously.
				for i := 1; i < len(a); i++ {
					if a[i].Offset != a[i-1].Offset+1 {
						t.Errorf("batch offsets %v are not consecutive", a)
					}
				}
				acks[g] = append(acks[g], a...)
				n += batch
			}
		}()
	}
	wg.Wait()

	const total = goroutines * perG
	seen := make([]bool, total+1)
	epoch := info(t, e, "t").Epoch
	for g := range acks {
		prev := uint64(0)
		for _, a := range acks[g] {
			if a.Offset < 1 || a.Offset > total {
				t.Fatalf("offset %d outside 1..%d", a.Offset, total)
			}
			if seen[a.Offset] {
				t.Fatalf("offset %d given twice", a.Offset)
			}
			seen[a.Offset] = true
			if a.Offset <= prev {
				t.Fatalf("goroutine %d: offset %d after %d", g, a.Offset, prev)
			}
			prev = a.Offset
			if a.Epoch != epoch || a.Duplicate {
				t.Fatalf("ack %+v, want epoch %v and not duplicate", a, epoch)
			}
		}
	}
	b := read(t, e, "t", 0, total+10)
	if got := offsets(b.Events); !slices.Equal(got, span(1, total)) {
		t.Fatalf("read %d events, want offsets 1..%d in order", len(got), total)
	}
	if b.Info.First != 1 || b.Info.Last != total || b.Info.Retained != total {
		t.Errorf("Info = %+v, want First 1, Last %d, Retained %d", b.Info, total, total)
	}
}

func TestRead(t *testing.T) {
	e := newEngine(t, memory.Options{Retention: retain(event.Retention{MaxEvents: 5})})
	appendN(t, e, "t", 10) // 6..10 retained, each 4 bytes
	wantInfo := event.TopicInfo{Name: "t", Epoch: info(t, e, "t").Epoch, First: 6, Last: 10, Retained: 5, Bytes: 20}
	tests := []struct {
		name  string
		after uint64
		limit int
		want  []uint64
	}{
		{"from start", 0, 100, span(6, 10)},
		{"older than retention", 3, 100, span(6, 10)},
		{"just before first", 5, 100, span(6, 10)},
		{"older than retention with limit", 1, 2, span(6, 7)},
		{"middle", 7, 100, span(8, 10)},
		{"limit", 6, 2, span(7, 8)},
		{"limit one", 9, 1, span(10, 10)},
		{"at last", 10, 100, nil},
		{"ahead", 15, 100, nil},
		{"zero limit", 0, 0, nil},
		{"negative limit", 0, -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := read(t, e, "t", tt.after, tt.limit)
			if got := offsets(b.Events); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("offsets = %v, want %v", got, tt.want)
			}
			if b.Info != wantInfo {
				t.Errorf("Info = %+v, want %+v", b.Info, wantInfo)
			}
			for _, ev := range b.Events {
				if ev.Topic != "t" || ev.Epoch != wantInfo.Epoch || string(ev.Data) != fmt.Sprintf("%04d", ev.Offset-1) {
					t.Errorf("event %d = %q in %s/%v", ev.Offset, ev.Data, ev.Topic, ev.Epoch)
				}
			}
		})
	}
}

func TestReadReturnsACopy(t *testing.T) {
	e := newEngine(t, memory.Options{})
	appendN(t, e, "t", 3)
	b := read(t, e, "t", 0, 10)
	b.Events[0] = nil
	if got := read(t, e, "t", 0, 10); got.Events[0] == nil {
		t.Fatal("changing a returned batch changed the stored history")
	}
}

func TestNewTopic(t *testing.T) {
	e := newEngine(t, memory.Options{})
	ctx := context.Background()
	if _, ok, err := e.Info(ctx, "fresh"); ok || err != nil {
		t.Fatalf("Info of unknown topic = %v, %v; want false, nil", ok, err)
	}
	b := read(t, e, "fresh", 0, 10)
	if len(b.Events) != 0 {
		t.Fatalf("new topic has %d events", len(b.Events))
	}
	want := event.TopicInfo{Name: "fresh", Epoch: b.Info.Epoch, First: 1, Last: 0}
	if b.Info != want || b.Info.Epoch == 0 {
		t.Fatalf("new topic Info = %+v, want %+v with a non-zero epoch", b.Info, want)
	}
	// Reading does not create it, but it already has the epoch it will
	// be created with, so a cursor taken now stays valid.
	if _, ok, _ := e.Info(ctx, "fresh"); ok {
		t.Errorf("Read created the topic")
	}
	acks := appendN(t, e, "fresh", 1)
	if acks[0].Position != (event.Position{Epoch: want.Epoch, Offset: 1}) {
		t.Errorf("first ack = %+v, want offset 1 in the epoch Read saw", acks[0])
	}
}

func TestRetentionByCount(t *testing.T) {
	e := newEngine(t, memory.Options{Retention: retain(event.Retention{MaxEvents: 10})})
	// Enough appends to exercise the compaction of the history slice.
	appendN(t, e, "t", 5000)
	b := read(t, e, "t", 0, 100)
	if got := offsets(b.Events); !slices.Equal(got, span(4991, 5000)) {
		t.Fatalf("offsets = %v, want 4991..5000", got)
	}
	if b.Info.First != 4991 || b.Info.Last != 5000 || b.Info.Retained != 10 || b.Info.Bytes != 40 {
		t.Errorf("Info = %+v", b.Info)
	}
}

func TestRetentionByBytes(t *testing.T) {
	e := newEngine(t, memory.Options{Retention: retain(event.Retention{MaxBytes: 100})})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		// 30 bytes each: type 5 + data 20 + key 0 + header 5
		r := event.Record{Type: "12345", Data: []byte(strings.Repeat("d", 20)), Headers: map[string]string{"ab": "cde"}}
		if _, err := e.Append(ctx, "t", []event.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	b := read(t, e, "t", 0, 100)
	if got := offsets(b.Events); !slices.Equal(got, span(8, 10)) {
		t.Errorf("offsets = %v, want 8..10", got)
	}
	if b.Info.Bytes != 90 || b.Info.Retained != 3 || b.Info.First != 8 {
		t.Errorf("Info = %+v, want Bytes 90, Retained 3, First 8", b.Info)
	}

	// An event bigger than the bound is stored (it gets an offset) and
	// dropped at once.
	if _, err := e.Append(ctx, "t", []event.Record{rec(strings.Repeat("x", 101))}); err != nil {
		t.Fatal(err)
	}
	b = read(t, e, "t", 0, 100)
	want := event.TopicInfo{Name: "t", Epoch: b.Info.Epoch, First: 12, Last: 11, Retained: 0, Bytes: 0}
	if len(b.Events) != 0 || b.Info != want {
		t.Errorf("after oversized event: %d events, Info %+v; want none, %+v", len(b.Events), b.Info, want)
	}
	appendN(t, e, "t", 1)
	if got := offsets(read(t, e, "t", 5, 100).Events); !slices.Equal(got, []uint64{12}) {
		t.Errorf("offsets after refill = %v, want [12]", got)
	}
}

func TestRetentionByAge(t *testing.T) {
	clk := newClock()
	e := newEngine(t, memory.Options{Now: clk.Now, Retention: retain(event.Retention{MaxAge: 10 * time.Second})})
	appendN(t, e, "t", 1) // offset 1 at 0s
	clk.Advance(5 * time.Second)
	appendN(t, e, "t", 1) // offset 2 at 5s
	clk.Advance(5*time.Second - time.Millisecond)
	appendN(t, e, "t", 1) // offset 3 at 9.999s: offset 1 is not yet 10s old
	if got := offsets(read(t, e, "t", 0, 10).Events); !slices.Equal(got, span(1, 3)) {
		t.Fatalf("at 9.999s: offsets %v, want 1..3", got)
	}
	clk.Advance(time.Millisecond)
	appendN(t, e, "t", 1) // offset 4 at 10s: offset 1 is 10s old
	if got := offsets(read(t, e, "t", 0, 10).Events); !slices.Equal(got, span(2, 4)) {
		t.Fatalf("at 10s: offsets %v, want 2..4", got)
	}
	clk.Advance(time.Hour)
	appendN(t, e, "t", 1)
	b := read(t, e, "t", 0, 10)
	if got := offsets(b.Events); !slices.Equal(got, span(5, 5)) || b.Info.First != 5 || b.Info.Retained != 1 {
		t.Fatalf("an hour later: offsets %v, Info %+v; want [5]", got, b.Info)
	}
}

func TestClockStepBack(t *testing.T) {
	clk := newClock()
	e := newEngine(t, memory.Options{Now: clk.Now})
	appendN(t, e, "t", 1)
	clk.Advance(-time.Minute)
	appendN(t, e, "t", 1)
	b := read(t, e, "t", 0, 10)
	if b.Events[1].Time < b.Events[0].Time {
		t.Errorf("event times went back within a topic: %d then %d", b.Events[0].Time, b.Events[1].Time)
	}
}

// sweepClock is a fake clock that reports the sweeper's reads of it.
type sweepClock struct {
	clock
	calls chan struct{}
}

func (c *sweepClock) Now() time.Time {
	now := c.clock.Now()
	select {
	case c.calls <- struct{}{}:
	default:
	}
	return now
}

func TestSweeperTrimsIdleTopics(t *testing.T) {
	clk := &sweepClock{clock: *newClock(), calls: make(chan struct{})}
	e := newEngine(t, memory.Options{
		Now:           clk.Now,
		SweepInterval: time.Millisecond,
		Retention:     retain(event.Retention{MaxAge: time.Minute}),
	})
	appendN(t, e, "a", 3)
	appendN(t, e, "b", 2)
	clk.Advance(time.Minute)
	// The sweeper reads the clock once per pass, before trimming; when it
	// reads it the second time after the advance, a whole pass has run.
	for i := 0; i < 2; i++ {
		select {
		case <-clk.calls:
		case <-time.After(10 * time.Second):
			t.Fatal("the sweeper did not run")
		}
	}
	for _, tc := range []struct {
		topic string
		last  uint64
	}{{"a", 3}, {"b", 2}} {
		got := info(t, e, tc.topic)
		want := event.TopicInfo{Name: tc.topic, Epoch: got.Epoch, First: tc.last + 1, Last: tc.last}
		if got != want {
			t.Errorf("after sweep: Info = %+v, want %+v", got, want)
		}
	}
}

func TestIdempotency(t *testing.T) {
	clk := newClock()
	var delivered []uint64
	e := newEngine(t, memory.Options{Now: clk.Now, DedupeWindow: time.Minute})
	e.Attach(func(ev *event.Event) { delivered = append(delivered, ev.Offset) })
	ctx := context.Background()
	appendN(t, e, "t", 2)
	first, err := e.Append(ctx, "t", []event.Record{keyed("k1")})
	if err != nil {
		t.Fatal(err)
	}
	epoch := first[0].Epoch
	at := func(off uint64, dup bool) event.Ack {
		return event.Ack{Position: event.Position{Epoch: epoch, Offset: off}, Duplicate: dup}
	}
	tests := []struct {
		name    string
		advance time.Duration
		recs    []event.Record
		want    []event.Ack
		last    uint64
	}{
		{"first", 0, nil, nil, 3},
		{"retry", 0, []event.Record{keyed("k1")}, []event.Ack{at(3, true)}, 3},
		{"mixed batch", 0, []event.Record{keyed("k1"), rec("x"), keyed("k2"), keyed("k2")}, []event.Ack{at(3, true), at(4, false), at(5, false), at(5, true)}, 5},
		{"other topic's key space", 0, nil, nil, 5},
		{"at the window's end", time.Minute, []event.Record{keyed("k1")}, []event.Ack{at(3, true)}, 5},
		{"after the window", time.Millisecond, []event.Record{keyed("k1"), keyed("k2")}, []event.Ack{at(6, false), at(7, false)}, 7},
		{"new key remembered", 0, []event.Record{keyed("k1")}, []event.Ack{at(6, true)}, 7},
	}
	for _, tt := range tests {
		clk.Advance(tt.advance)
		if tt.recs == nil {
			continue
		}
		delivered = nil
		got, err := e.Append(ctx, "t", tt.recs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: acks %+v, want %+v", tt.name, got, tt.want)
		}
		if in := info(t, e, "t"); in.Last != tt.last {
			t.Errorf("%s: Last = %d, want %d", tt.name, in.Last, tt.last)
		}
		var fresh []uint64
		for _, a := range tt.want {
			if !a.Duplicate {
				fresh = append(fresh, a.Offset)
			}
		}
		if !slices.Equal(delivered, fresh) {
			t.Errorf("%s: delivered %v, want %v", tt.name, delivered, fresh)
		}
	}
	// Keys belong to one topic.
	got, err := e.Append(ctx, "other", []event.Record{keyed("k1")})
	if err != nil || got[0].Duplicate || got[0].Offset != 1 {
		t.Errorf("same key on another topic: %+v, %v; want a new event at offset 1", got, err)
	}
}

func TestIdempotencyKeyCap(t *testing.T) {
	e := newEngine(t, memory.Options{MaxKeysPerTopic: 3})
	ctx := context.Background()
	appendKey := func(key string) event.Ack {
		t.Helper()
		a, err := e.Append(ctx, "t", []event.Record{keyed(key)})
		if err != nil {
			t.Fatal(err)
		}
		return a[0]
	}
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		if a := appendKey(k); a.Duplicate {
			t.Fatalf("%s: first use reported as duplicate", k)
		}
	}
	// k1 was forgotten to make room for k4; storing it again forgets k2.
	steps := []struct {
		key string
		dup bool
	}{{"k1", false}, {"k3", true}, {"k4", true}, {"k1", true}, {"k2", false}}
	for _, s := range steps {
		if a := appendKey(s.key); a.Duplicate != s.dup {
			t.Errorf("%s: Duplicate = %v, want %v", s.key, a.Duplicate, s.dup)
		}
	}
}

func TestIdempotencyManyKeys(t *testing.T) {
	e := newEngine(t, memory.Options{MaxKeysPerTopic: 10})
	ctx := context.Background()
	const n = 5000 // enough to exercise the compaction of the key log
	for i := 0; i < n; i++ {
		if _, err := e.Append(ctx, "t", []event.Record{keyed(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := n - 1; i >= n-10; i-- {
		a, _ := e.Append(ctx, "t", []event.Record{keyed(fmt.Sprint(i))})
		if !a[0].Duplicate || a[0].Offset != uint64(i+1) {
			t.Errorf("key %d: %+v, want duplicate of offset %d", i, a[0], i+1)
		}
	}
	a, _ := e.Append(ctx, "t", []event.Record{keyed(fmt.Sprint(n - 11))})
	if a[0].Duplicate {
		t.Errorf("key %d is remembered beyond the cap", n-11)
	}
}

func TestEpochs(t *testing.T) {
	e1 := newEngine(t, memory.Options{})
	a := appendN(t, e1, "a", 2)
	b := appendN(t, e1, "b", 1)
	if a[0].Epoch == 0 || b[0].Epoch == 0 {
		t.Fatalf("zero epoch: a %v, b %v", a[0].Epoch, b[0].Epoch)
	}
	if a[0].Epoch != a[1].Epoch {
		t.Errorf("epoch of a changed between appends: %v, %v", a[0].Epoch, a[1].Epoch)
	}
	if a[0].Epoch != b[0].Epoch {
		t.Errorf("topics of one engine have epochs %v and %v; one engine has one epoch", a[0].Epoch, b[0].Epoch)
	}
	// A restart loses history, so the same topic must get a new epoch.
	e2 := newEngine(t, memory.Options{})
	a2 := appendN(t, e2, "a", 1)
	if a2[0].Epoch == 0 || a2[0].Epoch == a[0].Epoch {
		t.Errorf("new engine gave topic a epoch %v, old one %v", a2[0].Epoch, a[0].Epoch)
	}
}

func TestDeliverOrderAndReadable(t *testing.T) {
	e := newEngine(t, memory.Options{Retention: retain(event.Retention{MaxEvents: 1 << 20})})
	var mu sync.Mutex
	got := map[string][]uint64{}
	e.Attach(func(ev *event.Event) {
		// The event must already be readable: the hub relies on it for a
		// gap-free seam between history and live delivery.
		b, err := e.Read(context.Background(), ev.Topic, ev.Offset-1, 1)
		if err != nil || len(b.Events) != 1 || b.Events[0] != ev {
			t.Errorf("%s/%d delivered before it is readable (read %v, %v)", ev.Topic, ev.Offset, offsets(b.Events), err)
		}
		mu.Lock()
		got[ev.Topic] = append(got[ev.Topic], ev.Offset)
		mu.Unlock()
	})
	const goroutines, perG = 6, 300
	topics := []string{"x", "y"}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				topic := topics[(g+i)%len(topics)]
				if _, err := e.Append(context.Background(), topic, []event.Record{rec("a"), rec("b")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("appenders are stuck: a deliver callback that reads deadlocks with concurrent appends")
	}
	total := 0
	for _, topic := range topics {
		last := info(t, e, topic).Last
		if !slices.Equal(got[topic], span(1, last)) {
			t.Errorf("%s: delivered %d events, not 1..%d in order", topic, len(got[topic]), last)
		}
		total += int(last)
	}
	if want := goroutines * perG * 2; total != want {
		t.Errorf("delivered %d events in all, want %d", total, want)
	}
}

func TestTopicsSorted(t *testing.T) {
	e := newEngine(t, memory.Options{})
	if got, err := e.Topics(context.Background()); err != nil || len(got) != 0 {
		t.Fatalf("Topics of an empty engine = %v, %v", got, err)
	}
	names := []string{"zeta", "alpha", "Beta", "chat.room-2", "chat.room-10", "chat", "a.b", "a"}
	for i, n := range names {
		appendN(t, e, n, i+1)
	}
	got, err := e.Topics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gotNames := make([]string, len(got))
	for i, in := range got {
		gotNames[i] = in.Name
		if want := info(t, e, in.Name); in != want {
			t.Errorf("Topics entry %+v, Info %+v", in, want)
		}
	}
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(gotNames, want) {
		t.Errorf("Topics = %v, want %v", gotNames, want)
	}
}

func TestCancelledContext(t *testing.T) {
	e := newEngine(t, memory.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Append(ctx, "t", []event.Record{rec("x")}); err == nil {
		t.Error("Append with a cancelled context succeeded")
	}
	if _, err := e.Read(ctx, "t", 0, 10); err == nil {
		t.Error("Read with a cancelled context succeeded")
	}
	if _, ok, _ := e.Info(context.Background(), "t"); ok {
		t.Error("a cancelled Append created the topic")
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	before := goleak.IgnoreCurrent()
	e := memory.New(memory.Options{SweepInterval: time.Millisecond})
	appendN(t, e, "t", 3)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
	// History stays readable after Close.
	if got := offsets(read(t, e, "t", 0, 10).Events); !slices.Equal(got, span(1, 3)) {
		t.Errorf("after Close: offsets %v, want 1..3", got)
	}
}

func BenchmarkRead(b *testing.B) {
	const events, batch = 100_000, 256
	e := newEngine(b, memory.Options{Retention: retain(event.Retention{MaxEvents: events})})
	ctx := context.Background()
	recs := make([]event.Record, 1000)
	for i := range recs {
		recs[i] = rec(`{"n":12345,"text":"hello"}`)
	}
	for n := 0; n < events; n += len(recs) {
		if _, err := e.Append(ctx, "t", recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	read, after := 0, uint64(0)
	for b.Loop() {
		bt, err := e.Read(ctx, "t", after, batch)
		if err != nil {
			b.Fatal(err)
		}
		read += len(bt.Events)
		after += uint64(len(bt.Events))
		if len(bt.Events) < batch {
			after = 0
		}
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppend(b *testing.B) {
	e := newEngine(b, memory.Options{})
	ctx := context.Background()
	recs := []event.Record{rec(`{"n":12345,"text":"hello"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Append(ctx, "t", recs); err != nil {
			b.Fatal(err)
		}
	}
}
