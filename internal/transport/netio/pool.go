package netio

import (
	"runtime"
	"sync"
)

// Pool runs items with bounded concurrency on workers that exist only
// while items wait: Submit starts a worker when fewer than max run, and a
// worker exits when the queue is empty, so an idle server has no pool
// goroutines. Items run in the order submitted (FIFO), each once.
//
// Workers are not tracked beyond the count: run must end on its own (the
// transports' writers and readers never wait on a socket), and whoever
// owns the items waits for them.
type Pool[T any] struct {
	max int     // workers at most; static
	run func(T) // static

	mu     sync.Mutex // guards the fields below
	queue  []T        // items waiting for a worker; queue[head:] are live
	head   int
	active int // running workers
}

// maxIdleQueue is the queue capacity above which an emptied queue's slice
// is dropped rather than kept for the next burst.
const maxIdleQueue = 1 << 16

// NewPool returns a pool that runs each submitted item with run, on at
// most workers goroutines at once (at least one).
func NewPool[T any](workers int, run func(T)) *Pool[T] {
	return &Pool[T]{max: max(1, workers), run: run}
}

// Submit queues v for a worker, starting one if fewer than max run.
func (p *Pool[T]) Submit(v T) {
	p.mu.Lock()
	p.queue = append(p.queue, v)
	start := p.active < p.max
	if start {
		p.active++
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

// work runs queued items until none is left, then exits.
func (p *Pool[T]) work() {
	var zero T
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			clear(p.queue)
			p.queue, p.head = p.queue[:0], 0
			if cap(p.queue) > maxIdleQueue {
				p.queue = nil // let a burst's backlog go
			}
			p.active--
			p.mu.Unlock()
			return
		}
		v := p.queue[p.head]
		p.queue[p.head] = zero // the item is not kept alive by the queue
		p.head++
		p.mu.Unlock()
		p.run(v)
	}
}

// Writers returns n when it is positive, else the default size of a
// transport's writer pool: one worker per P but one, at least one.
//
// The work of a writer is the write system call. A worker on every P
// fans out faster while CPU is to spare (10,000 WebSocket subscribers at
// 5 events/s on 2 cores: p99 77 ms with 2 writers, 92-123 ms with 1), but
// once the fan-out saturates the CPUs it leaves nothing for the network
// poller and the publishes: at 10,000 × 20 events/s, 2 writers made p99
// 141 ms and a publish's round trip 45 ms, 1 writer 112 ms and 21 ms, as
// events waiting for a writer leave together in one write. The default
// keeps a P free, for the saturated case; sse.writers and ws.writers set
// it (docs/benchmarks.md).
func Writers(n int) int {
	if n > 0 {
		return n
	}
	return max(1, runtime.GOMAXPROCS(0)-1)
}
