package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
)

// scriptCalls returns how many EVALSHA and EVAL calls Redis has run.
func scriptCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(srv.CLI("INFO", "commandstats"), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		v, _, _ := strings.Cut(rest, ",")
		c, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("INFO commandstats %q: %v", line, err)
		}
		n += c
	}
	return n
}

// Many concurrent single-event appends to one topic share script calls,
// and still get dense offsets, each exactly once, each append its own.
func TestConcurrentAppendsShareScriptCalls(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	e := newEngine(t, srv.URL(), enginetest.Config{})
	const workers, each = 64, 100
	if _, err := e.Append(bg, "co.t", []event.Record{{Data: data(0)}}); err != nil {
		t.Fatal(err)
	}
	calls0 := scriptCalls(t, srv)
	var mu sync.Mutex
	seen := make(map[uint64]string)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				want := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				acks, err := e.Append(bg, "co.t", []event.Record{{Data: []byte(want)}})
				if err != nil {
					errs <- err
					return
				}
				if len(acks) != 1 || acks[0].Duplicate {
					errs <- fmt.Errorf("acks %+v", acks)
					return
				}
				mu.Lock()
				if prev, dup := seen[acks[0].Offset]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("offset %d given to %s and %s", acks[0].Offset, prev, want)
					return
				}
				seen[acks[0].Offset] = want
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls := scriptCalls(t, srv) - calls0
	total := workers * each
	if calls >= total {
		t.Errorf("%d appends took %d script calls: nothing was coalesced", total, calls)
	}
	t.Logf("%d appends, %d script calls", total, calls)
	b, err := e.Read(bg, "co.t", 1, total+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != total || b.Info.Last != uint64(total+1) {
		t.Fatalf("read %d events, last %d; want %d, %d", len(b.Events), b.Info.Last, total, total+1)
	}
	for i, ev := range b.Events {
		off := uint64(i + 2)
		if ev.Offset != off || string(ev.Data) != seen[off] {
			t.Fatalf("event %d: offset %d data %s; acked %s at %d", i, ev.Offset, ev.Data, seen[off], off)
		}
	}
}

// Appends coalesced into one call are deduped against each other: of many
// concurrent appends with one idempotency key, one is stored and every
// other gets its position as a duplicate.
func TestCoalescedAppendsDedupe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	e := newEngine(t, srv.URL(), enginetest.Config{})
	const n = 32
	acks := make([]event.Ack, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := e.Append(bg, "co.k", []event.Record{{Key: "same", Data: data(i)}})
			if err != nil {
				t.Error(err)
				return
			}
			acks[i] = a[0]
		})
	}
	wg.Wait()
	stored := 0
	for _, a := range acks {
		if a.Offset != 1 {
			t.Errorf("ack %+v, want offset 1", a)
		}
		if !a.Duplicate {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d appends stored, want 1", stored)
	}
}

// An append whose context ends while it waits for the topic's call in
// flight returns the context's error and stores nothing; the one in
// flight completes.
func TestQueuedAppendCancelled(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	e := newEngine(t, srv.URL(), enginetest.Config{})
	if _, err := e.Append(bg, "co.c", []event.Record{{Data: data(0)}}); err != nil {
		t.Fatal(err)
	}
	srv.CLI("CLIENT", "PAUSE", "1500", "ALL") // the next script calls wait in Redis
	first := make(chan error, redis.MaxInFlight)
	for i := range redis.MaxInFlight {
		go func() {
			_, err := e.Append(bg, "co.c", []event.Record{{Data: data(1 + i)}})
			first <- err
		}()
	}
	waitFor(t, func() bool { _, n := e.Queued("co.c"); return n == redis.MaxInFlight })
	ctx, cancel := context.WithCancel(bg)
	second := make(chan error, 1)
	go func() {
		_, err := e.Append(ctx, "co.c", []event.Record{{Data: []byte(`{"cancelled":true}`)}})
		second <- err
	}()
	waitFor(t, func() bool { n, _ := e.Queued("co.c"); return n == 1 })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v, want context.Canceled", err)
	}
	for range redis.MaxInFlight {
		if err := <-first; err != nil {
			t.Fatalf("append in flight: %v", err)
		}
	}
	b, err := e.Read(bg, "co.c", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 1+redis.MaxInFlight {
		t.Fatalf("stored %d events, want %d", len(b.Events), 1+redis.MaxInFlight)
	}
	for _, ev := range b.Events {
		if strings.Contains(string(ev.Data), "cancelled") {
			t.Fatalf("the cancelled append was stored at %d", ev.Offset)
		}
	}
	if n, m := e.Queued("co.c"); n != 0 || m != 0 {
		t.Errorf("the topic still has %d waiting, %d in flight", n, m)
	}
}

// waitFor polls cond until it holds, failing the test after guard.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}
