package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
)

// failingEngine is a memory engine whose reads fail with err while it is
// set, as a networked engine's do while its backend restarts. It is the
// hub's own seam: the Redis engine's tests restart a real redis-server.
type failingEngine struct {
	hub.Engine
	err    atomic.Pointer[error]
	failed atomic.Int64 // reads failed so far
}

func (e *failingEngine) fail(err error) {
	if err == nil {
		e.err.Store(nil)
		return
	}
	e.err.Store(&err)
}

func (e *failingEngine) Read(ctx context.Context, topic string, after uint64, limit int) (event.Batch, error) {
	if err := e.err.Load(); err != nil {
		e.failed.Add(1)
		return event.Batch{}, fmt.Errorf("test read %s: %w", topic, *err)
	}
	return e.Engine.Read(ctx, topic, after, limit)
}

func newFailingHub(t *testing.T, opts hub.Options) (*hub.Hub, *failingEngine) {
	t.Helper()
	mem := memory.New(memory.Options{})
	eng := &failingEngine{Engine: mem}
	h := hub.New(eng, opts)
	t.Cleanup(func() {
		h.Close()
		mem.Close()
	})
	return h, eng
}

// TestCatchupWaitsOutUnavailable checks that a subscriber recovering
// history while the engine is unavailable is not ended: its reads pause
// and retry, and once the engine answers it gets every event, no gap.
func TestCatchupWaitsOutUnavailable(t *testing.T) {
	h, eng := newFailingHub(t, hub.Options{CatchupBatch: 2})
	publish(t, h, "a", 5)
	s := newSub(t, h, hub.SubscriberOptions{})
	s.subscribe(t, "a", hub.Start{Earliest: true})
	eng.fail(fmt.Errorf("%w: redis: connection refused", hub.ErrUnavailable))
	// The writer keeps calling Next as it is woken: each call hands out
	// nothing and keeps the subscriber open.
	for eng.failed.Load() < 3 {
		s.wake.clear()
		if items, r := s.Next(bg, nil); r != hub.CloseNone || len(items) != 0 {
			t.Fatalf("Next while the engine is down = %v, %v; want nothing, still open", describe(items), r)
		}
		s.wake.wait(t, "the retry to wake the writer")
	}
	eng.fail(nil)
	s.expect(t, events("a", 1, 5))
	publish(t, h, "a", 1)
	s.expect(t, events("a", 6, 6))
	if len(s.kicks) != 0 {
		t.Errorf("Kick called: %v", <-s.kicks)
	}
}

// TestCatchupUnavailableTooLong checks the bound: an engine unavailable
// for UnavailableWait ends the subscriber with unavailable, not
// internal_error; any other read failure ends it at once with
// internal_error.
func TestCatchupUnavailableTooLong(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want hub.CloseReason
		code reason.Code
		min  time.Duration // the least time the subscriber must have waited
	}{
		{"unavailable", fmt.Errorf("%w: redis: connection refused", hub.ErrUnavailable), hub.CloseUnavailable, reason.Unavailable, 300 * time.Millisecond},
		{"other", errors.New("corrupt stream entry"), hub.CloseError, reason.Internal, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newFailingHub(t, hub.Options{UnavailableWait: 300 * time.Millisecond})
			publish(t, h, "a", 3)
			s := newSub(t, h, hub.SubscriberOptions{})
			s.subscribe(t, "a", hub.Start{Earliest: true})
			eng.fail(tt.err)
			start := time.Now()
			deadline := time.After(guard)
			for {
				s.wake.clear()
				_, r := s.Next(bg, nil)
				if r != hub.CloseNone {
					if r != tt.want || r.Code() != tt.code {
						t.Fatalf("closed with %v, want %v", r, tt.want)
					}
					break
				}
				select {
				case <-s.wake:
				case <-deadline:
					t.Fatalf("still open after %v of failed reads", guard)
				}
			}
			if waited := time.Since(start); waited < tt.min {
				t.Errorf("ended after %v, want at least %v", waited, tt.min)
			}
			if got := <-s.kicks; got != tt.want {
				t.Errorf("Kick(%v), want %v", got, tt.want)
			}
		})
	}
}

// appendFailingEngine fails its Appends with ErrUnavailable while fail is
// set.
type appendFailingEngine struct {
	hub.Engine
	fail atomic.Bool
}

func (e *appendFailingEngine) Append(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	if e.fail.Load() {
		return nil, fmt.Errorf("test append: %w", hub.ErrUnavailable)
	}
	return e.Engine.Append(ctx, topic, recs)
}

// TestPublishEach: several publishes to one topic are checked one by one
// and the accepted ones stored in one append, each with its own acks, in
// order; an engine error fails each accepted one and stores nothing.
func TestPublishEach(t *testing.T) {
	mem := memory.New(memory.Options{})
	eng := &appendFailingEngine{Engine: mem}
	var appends []int
	h := hub.New(eng, hub.Options{Observer: hub.Observer{Published: func(n int) { appends = append(appends, n) }}})
	t.Cleanup(func() {
		h.Close()
		mem.Close()
	})
	rec := func(data string) event.Record { return event.Record{Data: []byte(data), Encoding: event.EncodingText} }
	ctx := hub.Internal(context.Background())
	pubs := [][]event.Record{
		{rec("a"), rec("b")},
		{{Type: "gap", Data: []byte("x"), Encoding: event.EncodingText}}, // reserved: refused
		{rec("c")},
		{{Key: "k", Data: []byte("d"), Encoding: event.EncodingText}, {Key: "k", Data: []byte("e"), Encoding: event.EncodingText}},
	}
	acks, errs := h.PublishEach(ctx, "pe", pubs)
	if errs[0] != nil || errs[2] != nil || errs[3] != nil || !errors.Is(errs[1], hub.ErrBadInput) {
		t.Fatalf("errors %v, want only the second refused", errs)
	}
	offsets := func(as []event.Ack) (out []uint64) {
		for _, a := range as {
			out = append(out, a.Offset)
		}
		return out
	}
	if got := [][]uint64{offsets(acks[0]), offsets(acks[1]), offsets(acks[2]), offsets(acks[3])}; fmt.Sprint(got) != "[[1 2] [] [3] [4 4]]" || !acks[3][1].Duplicate {
		t.Errorf("acks %v (duplicate %v), want [[1 2] [] [3] [4 4]] with the last a duplicate", got, acks[3][1].Duplicate)
	}
	if fmt.Sprint(appends) != "[5]" {
		t.Errorf("appends of %v events, want one of 5", appends)
	}

	eng.fail.Store(true)
	acks, errs = h.PublishEach(ctx, "pe", [][]event.Record{{rec("f")}, {rec("g")}})
	for i := range errs {
		if !errors.Is(errs[i], hub.ErrUnavailable) || acks[i] != nil {
			t.Errorf("publish %d while the engine fails: %v %v", i, acks[i], errs[i])
		}
	}
	if info, _, _ := h.Info(ctx, "pe"); info.Last != 4 {
		t.Errorf("last offset %d after the failure, want 4", info.Last)
	}
}
