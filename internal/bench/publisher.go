package bench

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// pacedPublisher publishes total events at rate per second to one topic
// over a few keep-alive connections. A ticker paces it: on each tick every
// event whose scheduled time has come is handed to an idle worker, so a
// late tick or a slow request is caught up at once instead of drifting.
// When every worker is busy (the server is slow to acknowledge) another
// worker with its own connection starts, up to conns, so that the rate
// holds. Each payload carries its sequence number (1…total), its worker
// and the time its request is sent.
type pacedPublisher struct {
	// static after construction
	d       *Dialer
	path    string // POST path
	runID   uint64
	total   uint64
	rate    float64
	payload int
	conns   int // most workers (connections)

	// written by the workers
	acked    *seqSet              // sequence numbers the server acknowledged
	latency  *histogram.Histogram // POST round trip, nanoseconds
	issued   atomic.Uint64        // requests started
	workers  atomic.Int64         // connections opened
	errs     atomic.Uint64        // requests that failed or were refused
	behindNs atomic.Int64         // most a request started after its scheduled time

	mu       sync.Mutex // guards firstErr
	firstErr error
}

func newPacedPublisher(d *Dialer, topic string, run, total uint64, rate float64, payload, conns int) *pacedPublisher {
	return &pacedPublisher{
		d:       d,
		path:    "/v1/topics/" + url.PathEscape(topic) + "/events",
		runID:   run,
		total:   total,
		rate:    rate,
		payload: payload,
		conns:   max(conns, 1),
		acked:   newSeqSet(total),
		latency: histogram.New(),
	}
}

// run publishes until all events are out or ctx ends, and returns when
// every worker has finished its last request.
func (p *pacedPublisher) run(ctx context.Context) {
	start := time.Now()
	jobs := make(chan uint64) // unbuffered: a send succeeds only to an idle worker
	var wg sync.WaitGroup
	workers := 0
	startWorker := func(first uint64) {
		id := workers
		workers++
		wg.Go(func() { p.worker(id, first, jobs, start) })
	}
	defer wg.Wait()
	defer close(jobs)
	hand := func(seq uint64) bool {
		select {
		case jobs <- seq:
			return true
		default:
		}
		if workers < p.conns {
			startWorker(seq)
			return true
		}
		select {
		case jobs <- seq:
			return true
		case <-ctx.Done():
			return false
		}
	}

	tick := max(time.Duration(float64(time.Second)/p.rate), time.Millisecond)
	tick = min(tick, 100*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var handed uint64
	for handed < p.total {
		due := min(uint64(time.Since(start).Seconds()*p.rate)+1, p.total)
		for ; handed < due; handed++ {
			if !hand(handed + 1) {
				return
			}
		}
		if handed == p.total {
			return
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

// worker owns one connection and sends first, then the events handed to
// it, each after the previous one was answered; id goes into the payloads.
func (p *pacedPublisher) worker(id int, first uint64, jobs <-chan uint64, start time.Time) {
	p.workers.Add(1)
	hc := newHTTPConn(p.d)
	defer hc.Close()
	var body []byte
	for seq, ok := first, true; ok; seq, ok = <-jobs {
		sendAt := time.Now()
		scheduled := start.Add(time.Duration(float64(seq-1) / p.rate * float64(time.Second)))
		for behind := int64(sendAt.Sub(scheduled)); ; {
			cur := p.behindNs.Load()
			if behind <= cur || p.behindNs.CompareAndSwap(cur, behind) {
				break
			}
		}
		body = appendPayload(body[:0], p.runID, id, seq, sendAt.UnixNano(), p.payload)
		p.issued.Add(1)
		status, resp, err := hc.Do(context.Background(), "POST", p.path, "application/json", body)
		p.latency.RecordInt(int64(time.Since(sendAt)))
		if err == nil && status != 201 && status != 200 {
			err = &errResponse{status: status, body: string(resp)}
		}
		if err != nil {
			p.fail(fmt.Errorf("publish event %d: %w", seq, err))
			continue
		}
		p.acked.Add(seq)
	}
}

func (p *pacedPublisher) fail(err error) {
	p.errs.Add(1)
	p.mu.Lock()
	if p.firstErr == nil {
		p.firstErr = err
	}
	p.mu.Unlock()
}

// err returns the first publish error, if any.
func (p *pacedPublisher) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}
