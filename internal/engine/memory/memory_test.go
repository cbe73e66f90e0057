package memory_test

import (
	"context"
	"fmt"
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

func TestReadReturnsACopy(t *testing.T) {
	e := newEngine(t, memory.Options{})
	appendN(t, e, "t", 3)
	b := read(t, e, "t", 0, 10)
	b.Events[0] = nil
	if got := read(t, e, "t", 0, 10); got.Events[0] == nil {
		t.Fatal("changing a returned batch changed the stored history")
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

// TestNewEngineNewEpoch: a new engine (a restart) has lost the history, so
// the same topic must get a new epoch.
func TestNewEngineNewEpoch(t *testing.T) {
	a := appendN(t, newEngine(t, memory.Options{}), "a", 1)
	a2 := appendN(t, newEngine(t, memory.Options{}), "a", 1)
	if a2[0].Epoch == 0 || a2[0].Epoch == a[0].Epoch {
		t.Errorf("new engine gave topic a epoch %v, old one %v", a2[0].Epoch, a[0].Epoch)
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
