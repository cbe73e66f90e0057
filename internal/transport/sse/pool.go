package sse

import (
	"runtime"
	"sync"
	"time"
)

// writerPool runs stream writers with bounded concurrency. A fan-out that
// wakes ten thousand streams would otherwise start ten thousand goroutines
// at once, and every other goroutine (a publish waiting for its answer, a
// long poll) would queue behind all of them. The pool's workers exist only
// while streams are waiting, so an idle server has none.
//
// A worker must not be held by one consumer that stopped reading: pooled
// writes use a short deadline, and a stream whose write does not finish in
// time is handed to a goroutine of its own (see conn.runPooled).
type writerPool struct {
	max int // workers at most; static

	mu     sync.Mutex // guards the fields below
	queue  []*conn    // streams waiting for a worker; queue[head:] are live
	head   int
	active int // running workers
}

// pooledWriteSlice bounds how long a pooled worker waits on one write.
const pooledWriteSlice = 20 * time.Millisecond

// newWriterPool sizes the pool at one worker per P but one. More workers
// do not write faster (the work is the write system call) but keep every
// P busy with runnable writers, and the runtime then looks at the network
// poller only every 10 ms: publishes and long polls waited tens of
// milliseconds behind a fan-out. Leaving one P free keeps them prompt
// (docs/benchmarks.md has the measurements).
func newWriterPool() *writerPool {
	return &writerPool{max: max(1, runtime.GOMAXPROCS(0)-1)}
}

// submit queues c for a worker, starting one if fewer than max run.
func (p *writerPool) submit(c *conn) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	start := p.active < p.max
	if start {
		p.active++
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

// work runs queued streams until none is left, then exits.
func (p *writerPool) work() {
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			clear(p.queue)
			p.queue, p.head = p.queue[:0], 0
			if cap(p.queue) > 1<<16 {
				p.queue = nil // let a burst's backlog go
			}
			p.active--
			p.mu.Unlock()
			return
		}
		c := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		p.mu.Unlock()
		c.runPooled()
	}
}
