// Package enginetest is the conformance suite of hub.Engine: the behaviour
// every engine (memory, the embedded durable log, and the networked
// engines to come) must share so that consumers can move between them and
// the hub's recovery stays gap-free, and of hub.StateStore, which the
// engines that keep consumer state implement. An engine's tests call Run
// with a factory.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Config is what the suite asks of a new engine. Zero fields mean the
// engine's defaults.
type Config struct {
	Retention       func(topic string) event.Retention
	DedupeWindow    time.Duration
	MaxKeysPerTopic int
	Now             func() time.Time
}

// Factory returns a new, empty engine configured by c; the factory closes
// it when the test ends.
type Factory func(t *testing.T, c Config) hub.Engine

// Run runs the suite against the engines newEngine makes.
func Run(t *testing.T, newEngine Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"DenseOffsetsUnderConcurrency", testDenseOffsets},
		{"DeliveriesInOrderAndReadable", testDeliveries},
		{"Read", testRead},
		{"ReadDoesNotCreate", testReadDoesNotCreate},
		{"EmptyAppend", testEmptyAppend},
		{"CancelledContext", testCancelled},
		{"Idempotency", testIdempotency},
		{"IdempotencyWindow", testIdempotencyWindow},
		{"IdempotencyKeyCap", testKeyCap},
		{"RetentionByCount", testRetentionCount},
		{"RetentionByBytes", testRetentionBytes},
		{"RetentionByAge", testRetentionAge},
		{"TopicsAndInfo", testTopics},
		{"RecordFields", testRecordFields},
		{"State", runState},
		{"Groups", runGroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newEngine) })
	}
}

// Clock is a settable time source for Config.Now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func retain(r event.Retention) func(string) event.Retention {
	return func(string) event.Retention { return r }
}

func rec(data string) event.Record { return event.Record{Data: []byte(data)} }

func keyed(key string) event.Record { return event.Record{Data: []byte("k"), Key: key} }

func mustAppend(t *testing.T, e hub.Engine, topic string, recs ...event.Record) []event.Ack {
	t.Helper()
	acks, err := e.Append(context.Background(), topic, recs)
	if err != nil {
		t.Fatalf("Append(%s): %v", topic, err)
	}
	if len(acks) != len(recs) {
		t.Fatalf("Append(%s) of %d records: %d acks", topic, len(recs), len(acks))
	}
	return acks
}

func mustRead(t *testing.T, e hub.Engine, topic string, after uint64, limit int) event.Batch {
	t.Helper()
	b, err := e.Read(context.Background(), topic, after, limit)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", topic, after, limit, err)
	}
	return b
}

func mustInfo(t *testing.T, e hub.Engine, topic string) event.TopicInfo {
	t.Helper()
	i, ok, err := e.Info(context.Background(), topic)
	if err != nil || !ok {
		t.Fatalf("Info(%s) = %v, %v", topic, ok, err)
	}
	return i
}

func offsets(evs []*event.Event) []uint64 {
	out := []uint64{}
	for _, ev := range evs {
		out = append(out, ev.Offset)
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

func testDenseOffsets(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{Retention: retain(event.Retention{MaxEvents: 1 << 20})})
	e.Attach(func(*event.Event) {})
	const goroutines, perG = 8, 60
	topics := []string{"x", "y", "z"}
	var mu sync.Mutex
	got := map[string][]uint64{}
	epochs := map[event.Epoch]bool{}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				topic := topics[(g+i)%len(topics)]
				acks, err := e.Append(context.Background(), topic, []event.Record{rec("a"), rec("b")})
				if err != nil {
					t.Error(err)
					return
				}
				if acks[1].Offset != acks[0].Offset+1 {
					t.Errorf("%s: a batch got offsets %d and %d", topic, acks[0].Offset, acks[1].Offset)
				}
				mu.Lock()
				for _, a := range acks {
					got[topic] = append(got[topic], a.Offset)
					epochs[a.Epoch] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(epochs) != 1 {
		t.Errorf("acks carry %d epochs, want one", len(epochs))
	}
	for _, topic := range topics {
		offs := got[topic]
		slices.Sort(offs)
		if !slices.Equal(offs, span(1, uint64(len(offs)))) {
			t.Errorf("%s: offsets are not 1..%d, each once", topic, len(offs))
		}
		if r := mustRead(t, e, topic, 0, 1<<20); !slices.Equal(offsets(r.Events), offs) {
			t.Errorf("%s: Read returned %d events, appended %d", topic, len(r.Events), len(offs))
		}
	}
}

func testDeliveries(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{Retention: retain(event.Retention{MaxEvents: 1 << 20})})
	var mu sync.Mutex
	got := map[string][]uint64{}
	e.Attach(func(ev *event.Event) {
		b, err := e.Read(context.Background(), ev.Topic, ev.Offset-1, 1)
		if err != nil || len(b.Events) != 1 || b.Events[0].Offset != ev.Offset {
			t.Errorf("%s/%d delivered before it is readable (%v, %v)", ev.Topic, ev.Offset, offsets(b.Events), err)
		}
		mu.Lock()
		got[ev.Topic] = append(got[ev.Topic], ev.Offset)
		mu.Unlock()
	})
	// A networked engine delivers only the topics this node watches.
	for _, topic := range []string{"d0", "d1"} {
		if err := e.Watch(context.Background(), topic); err != nil {
			t.Fatalf("Watch(%s): %v", topic, err)
		}
		defer e.Unwatch(topic)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := e.Append(context.Background(), fmt.Sprintf("d%d", i%2), []event.Record{rec("a"), rec("b")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for _, topic := range []string{"d0", "d1"} {
		last := mustInfo(t, e, topic).Last
		for {
			mu.Lock()
			n := len(got[topic])
			mu.Unlock()
			if uint64(n) >= last || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		if !slices.Equal(got[topic], span(1, last)) {
			t.Errorf("%s: delivered %v, want 1..%d in order, each once", topic, got[topic], last)
		}
		mu.Unlock()
	}
}

func testRead(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{Retention: retain(event.Retention{MaxEvents: 5})})
	e.Attach(func(*event.Event) {})
	for i := 0; i < 8; i++ {
		mustAppend(t, e, "r", rec(fmt.Sprint(i)))
	}
	for _, tt := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 100, span(4, 8)}, // older than retained: from the earliest
		{3, 100, span(4, 8)},
		{5, 2, span(6, 7)},
		{8, 100, []uint64{}},
		{100, 100, []uint64{}},
		{4, 0, []uint64{}},
		{4, -1, []uint64{}},
	} {
		b := mustRead(t, e, "r", tt.after, tt.limit)
		if !slices.Equal(offsets(b.Events), tt.want) {
			t.Errorf("Read(after %d, limit %d) = %v, want %v", tt.after, tt.limit, offsets(b.Events), tt.want)
		}
		if b.Info.First != 4 || b.Info.Last != 8 || b.Info.Epoch == 0 {
			t.Errorf("Read(after %d): info %+v, want first 4, last 8", tt.after, b.Info)
		}
	}
	b := mustRead(t, e, "r", 4, 1)
	if string(b.Events[0].Data) != "4" || b.Events[0].Topic != "r" || b.Events[0].Epoch != b.Info.Epoch {
		t.Errorf("event 5: %+v", b.Events[0])
	}
}

func testReadDoesNotCreate(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	acks := mustAppend(t, e, "exists", rec("x"))
	b := mustRead(t, e, "ghost", 0, 10)
	if len(b.Events) != 0 || b.Info.Last != 0 || b.Info.Epoch != acks[0].Epoch {
		t.Errorf("Read of a topic never published: %+v, want empty with the engine's epoch %v", b, acks[0].Epoch)
	}
	if _, ok, err := e.Info(context.Background(), "ghost"); ok || err != nil {
		t.Errorf("Info after Read of a topic never published: %v, %v; reading must not create it", ok, err)
	}
	ts, err := e.Topics(context.Background())
	if err != nil || len(ts) != 1 || ts[0].Name != "exists" {
		t.Errorf("Topics = %+v, %v; want only exists", ts, err)
	}
}

func testEmptyAppend(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	acks, err := e.Append(context.Background(), "e", nil)
	if err != nil || len(acks) != 0 {
		t.Errorf("Append of nothing = %v, %v", acks, err)
	}
}

func testCancelled(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Append(ctx, "c", []event.Record{rec("x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: %v", err)
	}
	if _, ok, _ := e.Info(context.Background(), "c"); ok {
		t.Errorf("a cancelled append created its topic")
	}
	mustAppend(t, e, "c", rec("x"))
	if _, err := e.Read(ctx, "c", 0, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context: %v", err)
	}
}

func testIdempotency(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	first := mustAppend(t, e, "i", keyed("a"), rec("plain"), keyed("b"))
	again := mustAppend(t, e, "i", keyed("b"), keyed("c"), keyed("a"), keyed("c"))
	want := []event.Ack{
		{Position: first[2].Position, Duplicate: true},
		{Position: event.Position{Epoch: first[0].Epoch, Offset: 4}},
		{Position: first[0].Position, Duplicate: true},
		{Position: event.Position{Epoch: first[0].Epoch, Offset: 4}, Duplicate: true},
	}
	if !slices.Equal(again, want) {
		t.Errorf("retries: %+v, want %+v", again, want)
	}
	if i := mustInfo(t, e, "i"); i.Last != 4 {
		t.Errorf("last %d after retries, want 4", i.Last)
	}
	// Keys are per topic.
	if acks := mustAppend(t, e, "other", keyed("a")); acks[0].Duplicate || acks[0].Offset != 1 {
		t.Errorf("key a on another topic: %+v", acks[0])
	}
}

func testIdempotencyWindow(t *testing.T, newEngine Factory) {
	clk := NewClock()
	e := newEngine(t, Config{Now: clk.Now, DedupeWindow: time.Minute})
	e.Attach(func(*event.Event) {})
	mustAppend(t, e, "w", keyed("k"))
	clk.Advance(30 * time.Second)
	if a := mustAppend(t, e, "w", keyed("k")); !a[0].Duplicate {
		t.Errorf("retry within the window: %+v", a[0])
	}
	clk.Advance(61 * time.Second)
	if a := mustAppend(t, e, "w", keyed("k")); a[0].Duplicate || a[0].Offset != 2 {
		t.Errorf("retry after the window: %+v, want stored at 2", a[0])
	}
}

func testKeyCap(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{MaxKeysPerTopic: 10})
	e.Attach(func(*event.Event) {})
	for i := 0; i < 30; i++ {
		mustAppend(t, e, "cap", keyed(fmt.Sprintf("k%02d", i)))
	}
	if a := mustAppend(t, e, "cap", keyed("k29")); !a[0].Duplicate {
		t.Errorf("newest key forgotten: %+v", a[0])
	}
	if a := mustAppend(t, e, "cap", keyed("k00")); a[0].Duplicate {
		t.Errorf("oldest key still remembered past the cap of 10: %+v", a[0])
	}
}

func testRetentionCount(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{Retention: retain(event.Retention{MaxEvents: 3})})
	e.Attach(func(*event.Event) {})
	for i := 0; i < 10; i++ {
		mustAppend(t, e, "c", rec("x"))
	}
	mustAppend(t, e, "c", rec("y"), rec("z"), rec("w"), rec("v"))
	i := mustInfo(t, e, "c")
	if i.First != 12 || i.Last != 14 || i.Retained != 3 {
		t.Errorf("info %+v, want events 12..14", i)
	}
	if got := offsets(mustRead(t, e, "c", 0, 100).Events); !slices.Equal(got, span(12, 14)) {
		t.Errorf("read %v", got)
	}
}

func testRetentionBytes(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{Retention: retain(event.Retention{MaxBytes: 1000})})
	e.Attach(func(*event.Event) {})
	data := string(make([]byte, 300))
	for i := 0; i < 10; i++ {
		mustAppend(t, e, "b", rec(data))
	}
	i := mustInfo(t, e, "b")
	if i.Bytes > 1000 || i.Retained != 3 || i.Last != 10 {
		t.Errorf("info %+v, want the newest 3 events within 1000 bytes", i)
	}
}

func testRetentionAge(t *testing.T, newEngine Factory) {
	clk := NewClock()
	e := newEngine(t, Config{Now: clk.Now, Retention: retain(event.Retention{MaxAge: time.Minute})})
	e.Attach(func(*event.Event) {})
	mustAppend(t, e, "a", rec("old"), rec("old"))
	clk.Advance(45 * time.Second)
	mustAppend(t, e, "a", rec("young"))
	clk.Advance(30 * time.Second) // the first two are 75s old
	mustAppend(t, e, "a", rec("new"))
	if got := offsets(mustRead(t, e, "a", 0, 100).Events); !slices.Equal(got, span(3, 4)) {
		t.Errorf("after the first events aged out: %v, want [3 4]", got)
	}
}

func testTopics(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	if ts, err := e.Topics(context.Background()); err != nil || len(ts) != 0 {
		t.Fatalf("Topics of an empty engine = %+v, %v", ts, err)
	}
	mustAppend(t, e, "b.two", rec("12345"), rec("6789"))
	names := []string{"b.two", "zeta", "a.one", "Beta", "a", "chat.room-10", "chat.room-2"}
	for _, n := range names[1:] {
		mustAppend(t, e, n, rec("x"))
	}
	ts, err := e.Topics(context.Background())
	got := []string{}
	for _, ti := range ts {
		got = append(got, ti.Name)
	}
	if want := slices.Sorted(slices.Values(names)); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Topics = %q, %v; want %q", got, err, want)
	}
	b := ts[slices.Index(got, "b.two")]
	if b.First != 1 || b.Last != 2 || b.Retained != 2 || b.Bytes <= 0 || b.Epoch == 0 {
		t.Errorf("b.two: %+v", b)
	}
	if i := mustInfo(t, e, "b.two"); i != b {
		t.Errorf("Info(b.two) = %+v, Topics said %+v", i, b)
	}
}

func testRecordFields(t *testing.T, newEngine Factory) {
	e := newEngine(t, Config{})
	e.Attach(func(*event.Event) {})
	in := event.Record{Data: []byte(`{"a":1}`), Type: "greeting", Key: "key-1", Encoding: event.EncodingJSON, Headers: map[string]string{"trace": "abc"}}
	mustAppend(t, e, "f", in, event.Record{Data: []byte{0, 1, 2}, Encoding: event.EncodingBinary})
	evs := mustRead(t, e, "f", 0, 10).Events
	got := evs[0].Record
	if string(got.Data) != string(in.Data) || got.Type != in.Type || got.Key != in.Key || got.Encoding != in.Encoding || got.Headers["trace"] != "abc" || len(got.Headers) != 1 {
		t.Errorf("record read back %+v, stored %+v", got, in)
	}
	if evs[0].Time == 0 || evs[1].Time < evs[0].Time {
		t.Errorf("times %d, %d: want set and not decreasing", evs[0].Time, evs[1].Time)
	}
	if string(evs[1].Data) != "\x00\x01\x02" || evs[1].Encoding != event.EncodingBinary {
		t.Errorf("binary record read back %+v", evs[1].Record)
	}
}
