package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// subGroup is a set of subscribers to one topic, each with its own
// connection and goroutine. The group owns the goroutines: they start in
// startSubGroup and end in stop, which closes every stream.
type subGroup struct {
	// static after construction
	transport   Transport
	topic       string
	runID       uint64
	size        uint64 // highest sequence number expected
	publishers  int
	concurrency chan struct{}
	attempts    int

	latency   *histogram.Histogram // publish→deliver, ns, distinct deliveries only
	reactor   *reactor             // reads SSE streams when set; owned by the group
	subs      []subscriber
	connected atomic.Int64
	failed    atomic.Int64
	ended     atomic.Int64 // streams that ended before stop
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	ctx       context.Context

	mu   sync.Mutex     // guards errs
	errs map[string]int // distinct errors (connect failures, stream ends) and how often
}

// subscriber is one member of a group. stream is set by its goroutine once
// open and read by stop; the other fields are owned by the goroutine, or by
// the epoll loop it hands its connection to, and read only after stop.
type subscriber struct {
	stream  atomic.Pointer[Stream]
	tracker *Tracker
	gaps    uint64
	foreign uint64 // payloads not from this run
}

// subGroupConfig configures a subGroup.
type subGroupConfig struct {
	Transport   Transport
	Topic       string
	N           int
	RunID       uint64
	Size        uint64 // highest sequence number that will be published
	Publishers  int    // publishing connections, numbered from 0
	Concurrency int    // connections being opened at once
	Attempts    int    // tries per connection
	Epoll       bool   // read SSE streams with epoll loops instead of a goroutine each
}

// startSubGroup starts n subscribers, which begin connecting at once.
func startSubGroup(cfg subGroupConfig) (*subGroup, error) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &subGroup{
		transport:   cfg.Transport,
		topic:       cfg.Topic,
		runID:       cfg.RunID,
		size:        cfg.Size,
		publishers:  max(cfg.Publishers, 1),
		concurrency: make(chan struct{}, max(cfg.Concurrency, 1)),
		attempts:    max(cfg.Attempts, 1),
		latency:     histogram.New(),
		subs:        make([]subscriber, cfg.N),
		ctx:         ctx,
		cancel:      cancel,
		errs:        make(map[string]int),
	}
	if cfg.Epoll {
		r, err := newReactor(runtime.GOMAXPROCS(0), g.onFrame, g.onEnd)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("start the epoll reader (--reader goroutine does without): %w", err)
		}
		g.reactor = r
	}
	for i := range g.subs {
		g.wg.Go(func() { g.runSubscriber(&g.subs[i]) })
	}
	return g, nil
}

func (g *subGroup) open(ctx context.Context) (Stream, error) {
	select {
	case g.concurrency <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-g.concurrency }()
	return g.transport.Open(ctx, g.topic)
}

func (g *subGroup) runSubscriber(s *subscriber) {
	st, err := withRetry(g.ctx, g.attempts, g.open)
	if err != nil {
		if g.ctx.Err() == nil {
			g.failed.Add(1)
			g.noteErr(err)
		}
		return
	}
	s.stream.Store(&st)
	if g.ctx.Err() != nil { // stop may have looked before the Store
		st.Close()
		return
	}
	s.tracker = NewTracker(g.size, g.publishers)
	g.connected.Add(1)
	if ss, ok := st.(*sseStream); ok && g.reactor != nil {
		if ss.pending != nil {
			g.onPayload(s, ss.pending)
			ss.pending = nil
		}
		if g.reactor.add(ss, s) == nil {
			return // the stream is the reactor's now
		}
	}
	for {
		p, err := st.Next()
		if err != nil {
			if errors.Is(err, ErrGap) {
				s.gaps++
				continue
			}
			g.onEnd(s, err)
			return
		}
		g.onPayload(s, p)
	}
}

// onPayload checks one delivered payload and records its latency.
func (g *subGroup) onPayload(s *subscriber, p []byte) {
	now := time.Now().UnixNano()
	f, ok := parsePayload(p)
	if !ok || f.run != g.runID {
		s.foreign++
		return
	}
	if s.tracker.Observe(f.pub, f.seq) {
		g.latency.RecordInt(now - f.sent)
	}
}

// onFrame handles one SSE frame read by the epoll reader.
func (g *subGroup) onFrame(s *subscriber, f *Frame) error {
	p, err := framePayload(f)
	switch {
	case errors.Is(err, ErrGap):
		s.gaps++
	case err != nil:
		return err
	case p != nil:
		g.onPayload(s, p)
	}
	return nil
}

// onEnd records a stream that ended before stop.
func (g *subGroup) onEnd(s *subscriber, err error) {
	if g.ctx.Err() == nil {
		g.ended.Add(1)
		g.noteErr(err)
	}
}

func (g *subGroup) noteErr(err error) {
	g.mu.Lock()
	g.errs[err.Error()]++
	g.mu.Unlock()
}

// waitConnected waits until every subscriber is connected. It fails when
// one could not connect or timeout passes.
func (g *subGroup) waitConnected(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, f := g.connected.Load(), g.failed.Load()
		switch {
		case f > 0:
			return fmt.Errorf("%d of %d subscribers could not connect: %s", f, len(g.subs), g.errorSummary())
		case c == int64(len(g.subs)):
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("only %d of %d subscribers connected within %s", c, len(g.subs), timeout)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitDelivered waits until the group has received target distinct events
// in all, every stream has ended, ctx ends or deadline passes.
func (g *subGroup) waitDelivered(ctx context.Context, target uint64, deadline time.Time) {
	for g.latency.Count() < target && g.ended.Load() < g.connected.Load() && time.Now().Before(deadline) {
		if sleepCtx(ctx, 5*time.Millisecond) != nil {
			return
		}
	}
}

// stop closes every stream and waits for every subscriber goroutine and
// the epoll reader. It may be called more than once.
func (g *subGroup) stop() {
	g.cancel()
	for i := range g.subs {
		if st := g.subs[i].stream.Load(); st != nil {
			(*st).Close()
		}
	}
	g.wg.Wait() // no reactor.add runs after this
	if g.reactor != nil {
		g.reactor.stop()
	}
}

// subCounts are the group's totals, read after stop.
type subCounts struct {
	Received, Lost, Duplicates, OutOfOrder, Invalid, Gaps, Foreign uint64
}

// counts totals the trackers against the acknowledged sequence numbers.
// Call it after stop.
func (g *subGroup) counts(acked *seqSet) subCounts {
	var c subCounts
	want := acked.Len()
	for i := range g.subs {
		s := &g.subs[i]
		c.Gaps += s.gaps
		c.Foreign += s.foreign
		if s.tracker == nil {
			c.Lost += want
			continue
		}
		c.Received += s.tracker.Received()
		c.Lost += s.tracker.Lost(acked)
		c.Duplicates += s.tracker.Duplicates()
		c.OutOfOrder += s.tracker.OutOfOrder()
		c.Invalid += s.tracker.Invalid()
	}
	return c
}

// errorList returns the distinct errors seen, with counts, at most limit.
func (g *subGroup) errorList(limit int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for e, n := range g.errs {
		if len(out) == limit {
			out = append(out, fmt.Sprintf("… and %d more distinct errors", len(g.errs)-limit))
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", n, e))
	}
	return out
}

func (g *subGroup) errorSummary() string {
	l := g.errorList(3)
	if len(l) == 0 {
		return "no error recorded"
	}
	return fmt.Sprint(l)
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
