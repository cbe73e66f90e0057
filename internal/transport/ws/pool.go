package ws

import (
	"runtime"
	"sync"
	"time"
)

// writerPool runs connection writers with bounded concurrency, as the SSE
// transport does (docs/decisions/0003): a fan-out that wakes ten thousand
// connections would otherwise start ten thousand goroutines, and every P
// busy with runnable writers delays the network poller, so publishes and
// commands wait behind the fan-out. Workers exist only while connections
// wait for one, so an idle server has none.
//
// A worker must not be held by one client that stopped reading: pooled
// writes never wait on the socket, and a connection whose socket is full
// continues on a goroutine of its own (see conn.runPooled).
type writerPool struct {
	max int // workers at most; static

	mu     sync.Mutex // guards the fields below
	queue  []*conn    // connections waiting for a worker; queue[head:] are live
	head   int
	active int // running workers
}

// pooledWriteSlice bounds how long a pooled worker waits on one write
// where non-blocking writes are not available.
const pooledWriteSlice = 20 * time.Millisecond

// newWriterPool sizes the pool at one worker per P but one, leaving a P
// for the network poller and everything else (the SSE measurements in
// docs/benchmarks.md).
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

// work runs queued connections until none is left, then exits.
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

// readerPool runs connection readers (conn.readReady) with bounded
// concurrency. A reader needs a read buffer while it runs; ten thousand
// connections readable at once (a load balancer dropping its clients, say)
// would otherwise make ten thousand goroutines and buffers. The bound is
// generous, because a reader runs its connection's commands and a publish
// waits for the engine (an fsync on the durable engine): several must run
// at once for the engine's group commit to batch them.
type readerPool struct {
	max int // workers at most; static

	mu     sync.Mutex // guards the fields below
	queue  []*conn
	head   int
	active int
}

func newReaderPool() *readerPool {
	return &readerPool{max: max(8, 8*runtime.GOMAXPROCS(0))}
}

// submit queues c for a reader. The caller has counted it in the
// handler's readers group.
func (p *readerPool) submit(c *conn) {
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

// work reads queued connections until none is left, then exits.
func (p *readerPool) work() {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			clear(p.queue)
			p.queue, p.head = p.queue[:0], 0
			if cap(p.queue) > 1<<16 {
				p.queue = nil
			}
			p.active--
			p.mu.Unlock()
			return
		}
		c := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		p.mu.Unlock()
		c.readReady(*bp)
	}
}
