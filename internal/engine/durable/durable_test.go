package durable_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeRestartDirs()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
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

// open opens an engine on dir and closes it when the test ends (closing
// twice is fine).
func open(t testing.TB, dir string, opts durable.Options) *durable.Engine {
	t.Helper()
	e, err := durable.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func retain(r event.Retention) func(string) event.Retention {
	return func(string) event.Retention { return r }
}

func rec(data string) event.Record { return event.Record{Data: []byte(data)} }

func keyed(key string) event.Record { return event.Record{Data: []byte("x"), Key: key} }

func appendN(t testing.TB, e *durable.Engine, topic string, n int) []event.Ack {
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

func read(t testing.TB, e *durable.Engine, topic string, after uint64, limit int) event.Batch {
	t.Helper()
	b, err := e.Read(context.Background(), topic, after, limit)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", topic, after, limit, err)
	}
	return b
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

func info(t testing.TB, e *durable.Engine, topic string) event.TopicInfo {
	t.Helper()
	i, ok, err := e.Info(context.Background(), topic)
	if err != nil || !ok {
		t.Fatalf("Info(%s) = %v, %v", topic, ok, err)
	}
	return i
}

func TestConcurrentAppendsGetDenseOffsetsAndOrderedDeliveries(t *testing.T) {
	e := open(t, t.TempDir(), durable.Options{})
	topics := []string{"a", "b", "c"}
	var mu sync.Mutex
	delivered := map[string][]uint64{}
	var readErrs []string
	e.Attach(func(ev *event.Event) {
		// The event must be readable before it is delivered.
		b, err := e.Read(context.Background(), ev.Topic, ev.Offset-1, 1)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || len(b.Events) != 1 || b.Events[0].Offset != ev.Offset {
			readErrs = append(readErrs, fmt.Sprintf("%s/%d: %v %v", ev.Topic, ev.Offset, offsets(b.Events), err))
		}
		delivered[ev.Topic] = append(delivered[ev.Topic], ev.Offset)
	})
	const workers, perWorker = 12, 60
	var wg sync.WaitGroup
	acked := make([][]event.Ack, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := topics[w%len(topics)]
			for i := 0; i < perWorker; i++ {
				recs := []event.Record{rec("x")}
				if i%5 == 0 {
					recs = append(recs, rec("y"), rec("z"))
				}
				a, err := e.Append(context.Background(), topic, recs)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if len(a) != len(recs) {
					t.Errorf("got %d acks for %d records", len(a), len(recs))
				}
				acked[w] = append(acked[w], a...)
			}
		}()
	}
	wg.Wait()
	perTopic := map[string][]uint64{}
	for w, acks := range acked {
		for _, a := range acks {
			if a.Epoch != e.Epoch() {
				t.Fatalf("ack epoch %v, want %v", a.Epoch, e.Epoch())
			}
			perTopic[topics[w%len(topics)]] = append(perTopic[topics[w%len(topics)]], a.Offset)
		}
	}
	for _, topic := range topics {
		got := slices.Sorted(slices.Values(perTopic[topic]))
		n := uint64(len(got))
		if want := span(1, n); !slices.Equal(got, want) {
			t.Errorf("%s: acked offsets are not 1..%d: %v", topic, n, got)
		}
		if got := offsets(read(t, e, topic, 0, 1000).Events); !slices.Equal(got, span(1, n)) {
			t.Errorf("%s: read %v, want 1..%d", topic, got, n)
		}
		mu.Lock()
		if got := delivered[topic]; !slices.Equal(got, span(1, n)) {
			t.Errorf("%s: delivered %v, want 1..%d in order", topic, got, n)
		}
		mu.Unlock()
	}
	if len(readErrs) > 0 {
		t.Errorf("events delivered before they were readable: %v", readErrs)
	}
}

func TestRead(t *testing.T) {
	e := open(t, t.TempDir(), durable.Options{})
	ctx := context.Background()

	b := read(t, e, "nobody", 0, 10)
	if want := (event.TopicInfo{Name: "nobody", Epoch: e.Epoch(), First: 1}); b.Info != want || len(b.Events) != 0 {
		t.Fatalf("Read of unknown topic = %+v, %d events; want %+v", b.Info, len(b.Events), want)
	}
	if _, ok, _ := e.Info(ctx, "nobody"); ok {
		t.Fatal("Read created the topic")
	}
	if ts, _ := e.Topics(ctx); len(ts) != 0 {
		t.Fatalf("Topics = %v, want none", ts)
	}

	appendN(t, e, "a", 10)
	tests := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, span(1, 3)},
		{5, 100, span(6, 10)},
		{9, 1, []uint64{10}},
		{10, 5, []uint64{}},
		{50, 5, []uint64{}},
		{0, 0, []uint64{}},
	}
	for _, tt := range tests {
		b := read(t, e, "a", tt.after, tt.limit)
		if got := offsets(b.Events); !slices.Equal(got, tt.want) {
			t.Errorf("Read(a, %d, %d) = %v, want %v", tt.after, tt.limit, got, tt.want)
		}
		if want := (event.TopicInfo{Name: "a", Epoch: e.Epoch(), First: 1, Last: 10, Retained: 10, Bytes: 40}); b.Info != want {
			t.Errorf("Read(a, %d, %d).Info = %+v, want %+v", tt.after, tt.limit, b.Info, want)
		}
	}
	ev := read(t, e, "a", 6, 1).Events[0]
	if ev.Topic != "a" || ev.Epoch != e.Epoch() || string(ev.Data) != "0006" {
		t.Errorf("event 7 = %+v", ev)
	}
	ts, _ := e.Topics(ctx)
	if len(ts) != 1 || ts[0] != info(t, e, "a") {
		t.Errorf("Topics = %+v", ts)
	}
}

func TestReadAfterTrimStartsAtEarliest(t *testing.T) {
	e := open(t, t.TempDir(), durable.Options{Retention: retain(event.Retention{MaxEvents: 5})})
	appendN(t, e, "a", 12)
	b := read(t, e, "a", 2, 100)
	if got := offsets(b.Events); !slices.Equal(got, span(8, 12)) {
		t.Errorf("Read(a, 2) = %v, want 8..12", got)
	}
	if b.Info.First != 8 || b.Info.Last != 12 || b.Info.Retained != 5 || b.Info.Bytes != 20 {
		t.Errorf("Info = %+v", b.Info)
	}
}

func TestRecordFieldsRoundTripAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	e := open(t, dir, durable.Options{Now: clk.Now})
	want := event.Record{
		Type:     "msg",
		Data:     []byte(`{"x":1}`),
		Encoding: event.EncodingText,
		Headers:  map[string]string{"h1": "v1", "h2": ""},
		Key:      "idem-1",
	}
	if _, err := e.Append(context.Background(), "a", []event.Record{want}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = open(t, dir, durable.Options{Now: clk.Now})
	got := read(t, e, "a", 0, 1).Events[0]
	if got.Type != want.Type || string(got.Data) != string(want.Data) || got.Encoding != want.Encoding ||
		got.Key != want.Key || len(got.Headers) != 2 || got.Headers["h1"] != "v1" || got.Headers["h2"] != "" {
		t.Errorf("got %+v, want %+v", got.Record, want)
	}
	if got.Time != clk.Now().UnixMilli() || got.Offset != 1 {
		t.Errorf("time %d offset %d", got.Time, got.Offset)
	}
}

func TestRestartKeepsOffsetsEpochHistoryAndKeys(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	opts := durable.Options{Now: clk.Now, Retention: retain(event.Retention{MaxEvents: 8})}
	e := open(t, dir, opts)
	epoch := e.Epoch()
	appendN(t, e, "a", 10)
	a, err := e.Append(context.Background(), "b", []event.Record{keyed("k1")})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]event.TopicInfo{"a": info(t, e, "a"), "b": info(t, e, "b")}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = open(t, dir, opts)
	if e.Epoch() != epoch {
		t.Fatalf("epoch after restart %v, want %v", e.Epoch(), epoch)
	}
	for name, want := range before {
		if got := info(t, e, name); got != want {
			t.Errorf("Info(%s) after restart = %+v, want %+v", name, got, want)
		}
	}
	if got := offsets(read(t, e, "a", 0, 100).Events); !slices.Equal(got, span(3, 10)) {
		t.Errorf("history after restart %v, want 3..10", got)
	}
	dup, err := e.Append(context.Background(), "b", []event.Record{keyed("k1"), keyed("k2")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (event.Ack{Position: a[0].Position, Duplicate: true}); dup[0] != want {
		t.Errorf("keyed append after restart = %+v, want %+v", dup[0], want)
	}
	if dup[1].Offset != 2 || dup[1].Duplicate {
		t.Errorf("new key after restart = %+v, want offset 2", dup[1])
	}
	if got := appendN(t, e, "a", 1)[0]; got.Offset != 11 || got.Epoch != epoch {
		t.Errorf("append after restart = %+v, want offset 11 in epoch %v", got, epoch)
	}
	ts, _ := e.Topics(context.Background())
	if len(ts) != 2 || ts[0].Name != "a" || ts[1].Name != "b" {
		t.Errorf("Topics after restart = %+v", ts)
	}
}

func TestNewDirectoryGetsNewEpoch(t *testing.T) {
	e1 := open(t, t.TempDir(), durable.Options{})
	e2 := open(t, t.TempDir(), durable.Options{})
	if e1.Epoch() == 0 || e1.Epoch() == e2.Epoch() {
		t.Errorf("epochs %v and %v: want two distinct non-zero epochs", e1.Epoch(), e2.Epoch())
	}
	if got := read(t, e2, "x", 0, 1).Info.Epoch; got != e2.Epoch() {
		t.Errorf("unknown topic epoch %v, want %v", got, e2.Epoch())
	}
}

func TestIdempotencyKeys(t *testing.T) {
	clk := newClock()
	e := open(t, t.TempDir(), durable.Options{Now: clk.Now, DedupeWindow: time.Minute})
	ctx := context.Background()
	acks, err := e.Append(ctx, "a", []event.Record{keyed("k1"), keyed("k2"), keyed("k1")})
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Offset != 1 || acks[1].Offset != 2 || acks[2].Offset != 1 || !acks[2].Duplicate {
		t.Fatalf("acks %+v: want 1, 2, duplicate of 1", acks)
	}
	clk.Advance(30 * time.Second)
	acks, _ = e.Append(ctx, "a", []event.Record{keyed("k2")})
	if acks[0].Offset != 2 || !acks[0].Duplicate {
		t.Errorf("within the window: %+v, want duplicate of 2", acks[0])
	}
	acks, _ = e.Append(ctx, "b", []event.Record{keyed("k2")})
	if acks[0].Offset != 1 || acks[0].Duplicate {
		t.Errorf("same key, other topic: %+v, want new offset 1", acks[0])
	}
	clk.Advance(31 * time.Second)
	acks, _ = e.Append(ctx, "a", []event.Record{keyed("k1")})
	if acks[0].Offset != 3 || acks[0].Duplicate {
		t.Errorf("after the window: %+v, want new offset 3", acks[0])
	}
	if got := info(t, e, "a").Last; got != 3 {
		t.Errorf("Last = %d, want 3", got)
	}
}

func TestRetentionByCountAndBytes(t *testing.T) {
	tests := []struct {
		name      string
		retention event.Retention
		batches   []int // records of 10 bytes per append
		wantFirst uint64
		wantLast  uint64
	}{
		{"count", event.Retention{MaxEvents: 5}, []int{1, 1, 1, 1, 1, 1, 1}, 3, 7},
		{"count, batch larger than the bound", event.Retention{MaxEvents: 3}, []int{2, 10}, 10, 12},
		{"count, large range", event.Retention{MaxEvents: 2}, []int{40, 1}, 40, 41},
		{"count, range deletion", event.Retention{MaxEvents: 2}, []int{1500, 1}, 1500, 1501},
		{"count, range deletion of stored events", event.Retention{MaxEvents: 1200}, []int{1200, 1100}, 1101, 2300},
		{"bytes", event.Retention{MaxBytes: 35}, []int{1, 1, 1, 1, 1}, 3, 5},
		{"bytes, one batch", event.Retention{MaxBytes: 20}, []int{6}, 5, 6},
		{"count and bytes", event.Retention{MaxEvents: 4, MaxBytes: 25}, []int{3, 3}, 5, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := durable.Options{Retention: retain(tt.retention)}
			e := open(t, dir, opts)
			for _, n := range tt.batches {
				recs := make([]event.Record, n)
				for i := range recs {
					recs[i] = rec("0123456789")
				}
				if _, err := e.Append(context.Background(), "a", recs); err != nil {
					t.Fatal(err)
				}
			}
			check := func(when string) {
				t.Helper()
				n := tt.wantLast - tt.wantFirst + 1
				want := event.TopicInfo{Name: "a", Epoch: e.Epoch(), First: tt.wantFirst, Last: tt.wantLast, Retained: int(n), Bytes: int64(10 * n)}
				if got := info(t, e, "a"); got != want {
					t.Errorf("%s: Info = %+v, want %+v", when, got, want)
				}
				if got := offsets(read(t, e, "a", 0, 10000).Events); !slices.Equal(got, span(tt.wantFirst, tt.wantLast)) {
					t.Errorf("%s: Read = %v, want %d..%d", when, got, tt.wantFirst, tt.wantLast)
				}
			}
			check("before restart")
			e.Close()
			e = open(t, dir, opts)
			check("after restart")
		})
	}
}

func TestRetentionByAgeInBackground(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	opts := durable.Options{Now: clk.Now, SweepInterval: 5 * time.Millisecond, Retention: retain(event.Retention{MaxAge: time.Minute})}
	e := open(t, dir, opts)
	appendN(t, e, "a", 3)
	clk.Advance(40 * time.Second)
	appendN(t, e, "a", 2)
	clk.Advance(30 * time.Second) // the first 3 are now 70s old, the last 2 are 30s old
	waitFirst := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for info(t, e, "a").First != want {
			if time.Now().After(deadline) {
				t.Fatalf("First = %d, want %d: the sweeper did not trim", info(t, e, "a").First, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFirst(4)
	if got := offsets(read(t, e, "a", 0, 10).Events); !slices.Equal(got, span(4, 5)) {
		t.Errorf("Read = %v, want 4..5", got)
	}
	// After a restart the sweeper trims too, without knowing the front's time.
	e.Close()
	e = open(t, dir, opts)
	clk.Advance(31 * time.Second)
	waitFirst(6)
	if got := info(t, e, "a"); got.Retained != 0 || got.Bytes != 0 || got.Last != 5 {
		t.Errorf("Info = %+v, want nothing retained, Last 5", got)
	}
	if got := appendN(t, e, "a", 1)[0].Offset; got != 6 {
		t.Errorf("next offset %d, want 6", got)
	}
}

func TestCloseThenUse(t *testing.T) {
	e := open(t, t.TempDir(), durable.Options{})
	appendN(t, e, "a", 1)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Append(context.Background(), "a", []event.Record{rec("x")}); !errors.Is(err, durable.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Read(context.Background(), "a", 0, 1); !errors.Is(err, durable.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := durable.Open(filepath.Join(file, "data"), durable.Options{}); err == nil {
			t.Fatal("Open under a regular file succeeded")
		} else {
			t.Logf("error: %v", err)
		}
	})
	t.Run("in use", func(t *testing.T) {
		dir := t.TempDir()
		open(t, dir, durable.Options{})
		if e, err := durable.Open(dir, durable.Options{}); err == nil {
			e.Close()
			t.Fatal("second Open of the same directory succeeded")
		}
	})
	t.Run("incompatible format", func(t *testing.T) {
		dir := t.TempDir()
		e := open(t, dir, durable.Options{})
		e.Close()
		db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Set([]byte("\x00format"), []byte{0, 0, 0, 99}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if e, err := durable.Open(dir, durable.Options{}); !errors.Is(err, durable.ErrIncompatible) {
			if e != nil {
				e.Close()
			}
			t.Fatalf("Open of a version-99 directory: %v, want ErrIncompatible", err)
		} else {
			t.Logf("error: %v", err)
		}
	})
}

// quietLogger keeps pebble's messages out of the test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)              {}
func (quietLogger) Errorf(string, ...any)             {}
func (quietLogger) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TestStressAppendReadSweepClose runs appenders, readers and the sweeper
// against small retention bounds, then closes the engine under load: every
// append either succeeds with the next offset or fails with ErrClosed, and
// every read sees a dense run of offsets within the reported bounds.
func TestStressAppendReadSweepClose(t *testing.T) {
	dir := t.TempDir()
	opts := durable.Options{
		SweepInterval: time.Millisecond,
		Retention:     retain(event.Retention{MaxEvents: 50, MaxBytes: 400, MaxAge: time.Hour}),
	}
	e, err := durable.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("t%d", w%3)
			for i := 0; ; i++ {
				recs := []event.Record{rec("0123456789"), keyed(fmt.Sprintf("w%d-%d", w, i%20))}
				if _, err := e.Append(ctx, topic, recs); err != nil {
					if !errors.Is(err, durable.ErrClosed) {
						t.Errorf("Append: %v", err)
					}
					return
				}
			}
		}()
	}
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := e.Read(ctx, fmt.Sprintf("t%d", r%3), 0, 100)
				if err != nil {
					if !errors.Is(err, durable.ErrClosed) {
						t.Errorf("Read: %v", err)
					}
					return
				}
				if len(b.Events) > 0 {
					if got, want := offsets(b.Events), span(b.Info.First, b.Info.Last); !slices.Equal(got, want) {
						t.Errorf("Read = %v with Info %+v", got, b.Info)
						return
					}
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	close(stop)
	wg.Wait()

	// What was committed is within bounds and consistent after a restart.
	e = open(t, dir, opts)
	ts, _ := e.Topics(ctx)
	if len(ts) != 3 {
		t.Fatalf("Topics = %+v, want 3", ts)
	}
	for _, ti := range ts {
		b := read(t, e, ti.Name, 0, 1000)
		var size int64
		for _, ev := range b.Events {
			size += int64(ev.Size())
		}
		if ti.Retained > 50 || ti.Bytes > 400 || ti.Last == 0 || b.Info != ti || size != ti.Bytes ||
			!slices.Equal(offsets(b.Events), span(ti.First, ti.Last)) {
			t.Errorf("%s: Info %+v, read %v (%d bytes)", ti.Name, ti, offsets(b.Events), size)
		}
	}
}

// TestSweeperDeletesExpiredKeys checks on disk that idempotency keys older
// than the dedupe window are deleted by the sweeper, and younger ones kept.
func TestSweeperDeletesExpiredKeys(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	e := open(t, dir, durable.Options{Now: clk.Now, DedupeWindow: time.Minute, SweepInterval: time.Hour})
	ctx := context.Background()
	if _, err := e.Append(ctx, "a", []event.Record{keyed("old1"), keyed("old2")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second)
	if _, err := e.Append(ctx, "a", []event.Record{keyed("young")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Second) // old keys are 70s old, young is 20s
	durable.SweepNow(e)
	e.Close()
	if keys := diskKeys(t, dir); !slices.Equal(keys, []string{"young"}) {
		t.Errorf("idempotency keys on disk %q, want [young]", keys)
	}
	if log := diskKeyLog(t, dir); !slices.Equal(log, []string{"young@3"}) {
		t.Errorf("key log on disk %q, want [young@3]", log)
	}
}

// diskRange returns the keys (less their first skip bytes) and values of
// dir's store from lower to upper.
func diskRange(t *testing.T, dir string, lower, upper []byte, skip int) (keys []string, values [][]byte) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	keys = []string{}
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, string(it.Key()[skip:]))
		values = append(values, slices.Clone(it.Value()))
	}
	return keys, values
}

// diskKeys lists the idempotency keys of topic "a" stored in dir.
func diskKeys(t *testing.T, dir string) []string {
	t.Helper()
	keys, _ := diskRange(t, dir, []byte{'k'}, []byte{'k' + 1}, 3+len("a"))
	return keys
}

// diskKeyLog lists the key log of topic "a" stored in dir, as key@offset.
func diskKeyLog(t *testing.T, dir string) []string {
	t.Helper()
	_, values := diskRange(t, dir, []byte{'x'}, []byte{'x' + 1}, 0)
	log := []string{}
	for _, v := range values { // unix ms, offset, key
		log = append(log, fmt.Sprintf("%s@%d", v[16:], binary.BigEndian.Uint64(v[8:])))
	}
	return log
}

// TestKeyCap checks that a topic remembers at most MaxKeysPerTopic keys,
// forgetting the oldest first, across restarts.
func TestKeyCap(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := durable.Options{MaxKeysPerTopic: 10}
	e := open(t, dir, opts)
	for i := 0; i < 15; i++ {
		if _, err := e.Append(ctx, "a", []event.Record{keyed(fmt.Sprintf("k%02d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	e = open(t, dir, opts)
	for i := 15; i < 25; i++ {
		if _, err := e.Append(ctx, "a", []event.Record{keyed(fmt.Sprintf("k%02d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	// k24 is remembered; k00 is forgotten (stored again at a new offset).
	acks, err := e.Append(ctx, "a", []event.Record{keyed("k24"), keyed("k00")})
	if err != nil {
		t.Fatal(err)
	}
	if !acks[0].Duplicate || acks[0].Offset != 25 {
		t.Errorf("k24 retried: %+v, want duplicate of offset 25", acks[0])
	}
	if acks[1].Duplicate || acks[1].Offset != 26 {
		t.Errorf("k00 retried after the cap forgot it: %+v, want new offset 26", acks[1])
	}
	e.Close()
	keys := diskKeys(t, dir)
	if len(keys) > 11 || !slices.Contains(keys, "k00") || slices.Contains(keys, "k01") || !slices.Contains(keys, "k24") {
		t.Errorf("keys on disk %q: want at most 11, the newest, k00 stored again", keys)
	}
}

// TestKeyStoredAgainAfterExpiry checks that the expiry of a key's old log
// entry does not delete the key stored again later.
func TestKeyStoredAgainAfterExpiry(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	ctx := context.Background()
	e := open(t, dir, durable.Options{Now: clk.Now, DedupeWindow: time.Minute, SweepInterval: time.Hour})
	if _, err := e.Append(ctx, "a", []event.Record{keyed("k")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // expired, but not swept
	acks, err := e.Append(ctx, "a", []event.Record{keyed("k")})
	if err != nil || acks[0].Duplicate || acks[0].Offset != 2 {
		t.Fatalf("k after its window: %+v, %v; want stored again at 2", acks, err)
	}
	e.Close()
	if log := diskKeyLog(t, dir); !slices.Equal(log, []string{"k@1", "k@2"}) {
		t.Fatalf("key log on disk %q, want [k@1 k@2]", log)
	}
	// A sweep after a restart expires the first entry only.
	e = open(t, dir, durable.Options{Now: clk.Now, DedupeWindow: time.Minute, SweepInterval: time.Hour})
	durable.SweepNow(e)
	acks, err = e.Append(ctx, "a", []event.Record{keyed("k")})
	if err != nil || !acks[0].Duplicate || acks[0].Offset != 2 {
		t.Fatalf("k retried within its second window: %+v, %v; want duplicate of 2", acks, err)
	}
	e.Close()
	if keys := diskKeys(t, dir); !slices.Equal(keys, []string{"k"}) {
		t.Errorf("keys on disk %q, want [k]", keys)
	}
	if log := diskKeyLog(t, dir); !slices.Equal(log, []string{"k@2"}) {
		t.Errorf("key log on disk %q, want [k@2]: the sweep did not expire the first entry", log)
	}
}

// TestKeyStoredAgainInTheExpiringRound stores an expired key again in the
// very round that expires its old entry (the cap forces the expiry).
func TestKeyStoredAgainInTheExpiringRound(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	e := open(t, t.TempDir(), durable.Options{Now: clk.Now, DedupeWindow: time.Minute, SweepInterval: time.Hour, MaxKeysPerTopic: 1})
	if _, err := e.Append(ctx, "a", []event.Record{keyed("k")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if acks, err := e.Append(ctx, "a", []event.Record{keyed("k")}); err != nil || acks[0].Duplicate || acks[0].Offset != 2 {
		t.Fatalf("k after its window: %+v, %v; want stored again at 2", acks, err)
	}
	if acks, err := e.Append(ctx, "a", []event.Record{keyed("k")}); err != nil || !acks[0].Duplicate || acks[0].Offset != 2 {
		t.Fatalf("k retried: %+v, %v; want duplicate of 2", acks, err)
	}
}
