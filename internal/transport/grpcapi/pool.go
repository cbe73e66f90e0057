package grpcapi

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// writerPool runs the writers of Subscribe and Connect streams with bounded
// concurrency, as the SSE transport does (docs/decisions/0003): a stream
// has no goroutine of its own while it has nothing to send, and a fan-out
// to a thousand streams runs on GOMAXPROCS-1 workers that take the streams
// one after the other, instead of waking a thousand goroutines that keep
// every P busy while publishes wait for the network poller. A worker needs
// no park and wake per stream, which is what makes a delivery cheaper than
// a goroutine per stream (docs/decisions/0007-grpc.md).
//
// A send can block: gRPC's SendMsg waits for flow-control quota when the
// consumer stops reading. A worker must not hold up every other stream for
// that, so a watchdog goroutine, running while workers do, looks every
// stuckAfter at the workers in a send: one that has been in the same send
// for longer is detached (it finishes its stream, then exits) and another
// worker takes its place.
//
// Goroutines: workers and the watchdog are owned by the pool and counted in
// wg (the Server's); workers exit when the queue is empty, the watchdog
// when no attached worker is left.
type writerPool struct {
	max int             // attached workers at most; static
	wg  *sync.WaitGroup // static

	mu       sync.Mutex // guards the fields below
	queue    []*stream  // streams waiting for a worker; queue[head:] are live
	head     int
	attached map[*poolWorker]struct{} // running workers that take streams
	watching bool                     // the watchdog runs
}

// poolWorker is one worker's state the watchdog reads.
type poolWorker struct {
	sendSince atomic.Int64 // unix nanoseconds at which the current send began; 0 outside sends
	detached  atomic.Bool  // replaced: finish the current stream, then exit
}

// stuckAfter is how long a send may block a worker before the worker is
// replaced: the other streams' deliveries wait at most about twice that
// behind a consumer that stopped reading. (The watchdog ticks only while
// workers run, that is during deliveries.)
const stuckAfter = 2 * time.Millisecond

func newWriterPool(wg *sync.WaitGroup) *writerPool {
	return &writerPool{max: max(1, runtime.GOMAXPROCS(0)-1), wg: wg, attached: make(map[*poolWorker]struct{})}
}

// submit queues st for a worker, starting one if fewer than max run.
func (p *writerPool) submit(st *stream) {
	p.mu.Lock()
	p.queue = append(p.queue, st)
	start := p.startLocked()
	p.mu.Unlock()
	if start != nil {
		go p.work(start)
	}
}

// startLocked registers a new worker when the queue has streams and fewer
// than max workers are attached, and the watchdog when it is not running.
// It returns the worker to start, or nil. p.mu must be held.
func (p *writerPool) startLocked() *poolWorker {
	if p.head == len(p.queue) || len(p.attached) >= p.max {
		return nil
	}
	w := new(poolWorker)
	p.attached[w] = struct{}{}
	p.wg.Add(1)
	if !p.watching {
		p.watching = true
		p.wg.Add(1)
		go p.watch()
	}
	return w
}

// work runs queued streams until none is left or w is detached.
func (p *writerPool) work(w *poolWorker) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if w.detached.Load() {
			p.mu.Unlock()
			return
		}
		if p.head == len(p.queue) {
			clear(p.queue)
			p.queue, p.head = p.queue[:0], 0
			if cap(p.queue) > 1<<16 {
				p.queue = nil // let a burst's backlog go
			}
			delete(p.attached, w)
			p.mu.Unlock()
			return
		}
		st := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		p.mu.Unlock()
		st.runPooled(w)
	}
}

// watch detaches workers stuck in a send and starts their replacements. It
// runs while any worker is attached.
func (p *writerPool) watch() {
	defer p.wg.Done()
	t := time.NewTicker(stuckAfter)
	defer t.Stop()
	for range t.C {
		limit := time.Now().Add(-stuckAfter).UnixNano()
		var starts []*poolWorker
		p.mu.Lock()
		for w := range p.attached {
			if since := w.sendSince.Load(); since != 0 && since < limit {
				w.detached.Store(true)
				delete(p.attached, w)
			}
		}
		for w := p.startLocked(); w != nil; w = p.startLocked() {
			starts = append(starts, w)
		}
		done := len(p.attached) == 0
		if done {
			p.watching = false
		}
		p.mu.Unlock()
		for _, w := range starts {
			go p.work(w)
		}
		if done {
			return
		}
	}
}
