// Package push is the writer half every push transport shares: the role
// that takes what the hub queued for one connection and puts it on the
// socket (docs/decisions/0003, 0006, 0009).
//
// A Writer owns one connection's queue → socket loop. It runs only while
// the connection has something to write: the subscriber's Wake makes sure
// one runs, on a worker of the Group's pool; it drains the queue, has the
// transport's Framer turn the items into frames, and writes everything in
// one write. A pool worker never waits on a socket: what the socket does
// not take now goes, with the connection, to a goroutine of its own that
// finishes it under the write timeout. A write that cannot finish in the
// write timeout marks a slow consumer, as an overflowing queue does. When
// the subscriber ends, the Framer's closing frame is sent (after the rest
// of any frame a failed write cut) and the transport releases the
// connection.
//
// The transport's part is small: a Framer (SSE frames, WebSocket frames)
// and a Sink (the socket). gRPC does not use this writer: grpc-go owns its
// stream's writes (SendMsg, flow control, its per-connection loopy
// writer), so the gRPC transport shares the hub's queue draining, the
// reason table and the slow-consumer rule instead (decision 0009).
package push

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/transport/netio"
)

// Framer is a transport's part of a Writer: how items become bytes. Its
// methods run on the writer role, one at a time, so it may keep state of
// its own (the SSE stream's cursor, the WebSocket's confirmed topics).
type Framer interface {
	// AppendItems appends the frames of items to b.
	AppendItems(b []byte, items []hub.Item) []byte
	// AppendIdle appends what to send when the writer was asked to show
	// the connection is alive (AskIdle) and nothing is queued: a
	// heartbeat, a ping.
	AppendIdle(b []byte) []byte
	// FrameEnd returns where the frame holding byte n of b ends, given
	// that b[:skip] ends a frame begun before b and frames start at skip.
	// It returns n when n is at a frame boundary.
	FrameEnd(b []byte, skip, n int) int
	// AppendEnd appends the last frame of a connection that ends for
	// reason, and how long it may take to leave; nothing for an end that
	// sends no frame.
	AppendEnd(b []byte, reason hub.CloseReason) ([]byte, time.Duration)
}

// Sink is where a Writer's bytes go: a connection's socket.
type Sink interface {
	// Write writes b, blocking until done or the write deadline; it
	// returns how much of b was sent when known (0 otherwise).
	Write(b []byte) (int, error)
	// TryWrite writes what the socket takes now without waiting: it
	// returns netio.ErrWouldBlock with the count written when the socket
	// is full, and netio.ErrNoTry where it cannot write without blocking.
	TryWrite(b []byte) (int, error)
	SetWriteDeadline(t time.Time)
	// PeerClosed reports whether the peer is known to be gone, without
	// blocking; false when it cannot tell.
	PeerClosed() bool
}

// Group is what the writers of one transport share: the pool their writer
// roles run on, the write timeout, and the handler's end. A transport
// handler owns one.
type Group struct {
	pool         *netio.Pool[*Writer]
	writeTimeout time.Duration   // static
	ctx          context.Context // history reads of catch-up
	closing      atomic.Bool     // Close was called: last frames do not wait
	open         sync.WaitGroup  // writers started and not yet released
}

// NewGroup returns a group whose writer roles run on writers pool workers
// (0: netio.Writers' default) and whose writes give up after
// writeTimeout.
func NewGroup(writers int, writeTimeout time.Duration) *Group {
	g := &Group{writeTimeout: writeTimeout, ctx: context.Background()}
	g.pool = netio.NewPool(netio.Writers(writers), (*Writer).runPooled)
	return g
}

// Close makes last frames that the socket does not take at once give up
// instead of waiting: the handler is shutting down.
func (g *Group) Close() { g.closing.Store(true) }

// Wait blocks until every writer has released its connection, or ctx is
// done.
func (g *Group) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.open.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pooledWriteSlice bounds how long a pool worker waits on one write where
// non-blocking writes are not available.
const pooledWriteSlice = 20 * time.Millisecond

// errHandoff reports a pooled write that did not finish at once.
var errHandoff = errors.New("write handed off")

// Writer is one connection's writer role. Transports embed it in their
// connection (no allocation of its own), Init it, give Wake and Kick to
// hub.NewSubscriber, then Attach the subscriber.
//
// Ownership: g, f, sink, sub, release and runFn are static after Attach;
// the atomics are touched by anyone; the fields below them belong to the
// active writer, one at a time, handed over through running.
type Writer struct {
	g       *Group
	f       Framer
	sink    Sink
	sub     *hub.Subscriber
	release func() // the transport's: close the socket, forget the connection
	runFn   func() // w.run, bound once so a handoff does not allocate

	running   atomic.Bool  // a writer is active (or the transport's setup is running)
	woken     atomic.Bool  // Wake was called since the writer last looked
	idle      atomic.Bool  // AskIdle was called: send a heartbeat when nothing else goes
	inWrite   atomic.Bool  // a blocking write is in progress
	kicked    atomic.Bool  // the connection is ending: writes must not block
	lastWrite atomic.Int64 // unix nanoseconds of the last write
	writes    atomic.Int64 // writes made, for tests of coalescing
	inline    atomic.Pointer[chan struct{}]

	// Owned by the active writer.
	items       []hub.Item
	rest        []byte // what a pooled write left unsent, for the handoff writer
	restSkip    int    // rest[:restSkip] ends a frame begun before it
	tail        []byte // the unsent rest of a frame a failed write cut
	pooled      bool   // the writer is a pool worker: writes must not wait
	deadlineSet bool   // a blocking write left a deadline on the socket
}

// Init prepares w to write with f for a connection of g. The caller holds
// the writer role from now until it calls Run (or ServeInline), so that
// its setup writes come first; wakes meanwhile are remembered.
func (w *Writer) Init(g *Group, f Framer) {
	w.g, w.f = g, f
	w.runFn = w.run
	w.running.Store(true)
	w.lastWrite.Store(time.Now().UnixNano())
}

// Attach sets the subscriber w drains and the socket it writes to: from
// now on the connection is the writer's to end. release is called once, by
// the writer, when the connection has ended and its last frame is written;
// the Group's Wait waits for it.
func (w *Writer) Attach(sub *hub.Subscriber, sink Sink, release func()) {
	w.sub, w.sink, w.release = sub, sink, release
	w.g.open.Add(1)
}

// Wake is the subscriber's Wake: it makes sure a writer runs.
func (w *Writer) Wake() {
	w.woken.Store(true)
	if ch := w.inline.Load(); ch != nil {
		select {
		case *ch <- struct{}{}:
		default:
		}
		return
	}
	if w.running.CompareAndSwap(false, true) {
		w.g.pool.Submit(w)
	}
}

// Kick is the subscriber's Kick: it unblocks a write stuck on a consumer
// that stopped reading, as the connection is ending.
func (w *Writer) Kick(hub.CloseReason) {
	w.kicked.Store(true)
	if w.inWrite.Load() {
		w.sink.SetWriteDeadline(time.Now())
	}
}

// AskIdle asks the writer to send the Framer's idle frame (a heartbeat) if
// nothing else is to be sent.
func (w *Writer) AskIdle() {
	w.idle.Store(true)
	w.Wake()
}

// LastWrite returns when w last wrote (unix nanoseconds).
func (w *Writer) LastWrite() int64 { return w.lastWrite.Load() }

// Writes returns how many writes w made.
func (w *Writer) Writes() int64 { return w.writes.Load() }

// Subscriber returns the subscriber w drains.
func (w *Writer) Subscriber() *hub.Subscriber { return w.sub }

// Running reports whether a writer is active.
func (w *Writer) Running() bool { return w.running.Load() }

// Hold takes the writer role from outside, when no writer is active, and
// reports whether it did; wakes then start no writer until Run. Tests use
// it to queue items while the writer is away.
func (w *Writer) Hold() bool { return w.running.CompareAndSwap(false, true) }

// SendNow writes b during the transport's setup, while it holds the role:
// at once if the socket takes it (a fresh socket does), else the rest is
// left for Run to finish under the write timeout. No deadline, and so no
// timer, is left behind. It reports whether the connection can go on.
func (w *Writer) SendNow(b []byte) bool {
	n, err := w.sink.TryWrite(b)
	switch err {
	case nil:
		w.writes.Add(1)
		w.lastWrite.Store(time.Now().UnixNano())
		return true
	case netio.ErrWouldBlock:
		w.keepRest(b, 0, n)
		return true
	case netio.ErrNoTry:
		err = w.send(b, 0) // a blocking write, under the write timeout
	}
	if err != nil {
		w.sub.Close(closeReason(err))
		return false
	}
	return true
}

// Run is the writer role's loop on the caller's goroutine: the
// transport's setup calls it to write what the setup queued, then writes
// run on demand on the Group's pool.
func (w *Writer) Run() { w.run() }

// ServeInline serves the connection from the caller's goroutine (a
// request handler that could not take the connection over): it writes
// whenever woken until the connection ends. ctx's end ends the
// subscriber.
func (w *Writer) ServeInline(ctx context.Context) {
	ch := make(chan struct{}, 1)
	w.inline.Store(&ch)
	for {
		if ended, _ := w.drain(); ended {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			w.sub.Close(hub.CloseClient)
		}
	}
}

// run writes until nothing is left.
func (w *Writer) run() {
	for {
		ended, handoff := w.drain()
		if ended {
			return // running stays set so nothing starts again
		}
		if handoff {
			w.pooled = false
			go w.runFn() // the rest of the write may block: not on a pool worker
			return
		}
		w.running.Store(false)
		if !w.woken.Load() || !w.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// runPooled is run on a pool worker.
func (w *Writer) runPooled() {
	w.pooled = true // the writer's own field: set while this worker owns w
	w.run()
}

// drain writes whatever the connection has, and reports whether it ended,
// or whether a pooled write must be finished off the pool.
func (w *Writer) drain() (ended, handoff bool) {
	if w.rest != nil && !w.pooled && !w.handoff() {
		w.finish(w.sub.Reason())
		return true, false
	}
	for {
		w.woken.Store(false)
		items, reason := w.sub.Next(w.g.ctx, w.items)
		w.items = items
		if reason != hub.CloseNone {
			w.finish(reason)
			return true, false
		}
		var err error
		switch {
		case len(items) > 0:
			bp := getBuf()
			b := w.f.AppendItems(*bp, items)
			clear(items)
			w.items = items[:0]
			if len(b) > 0 {
				err = w.send(b, 0)
			}
			putBuf(bp, b)
		case w.idle.Swap(false):
			if w.sink.PeerClosed() {
				w.sub.Close(hub.CloseClient)
				continue
			}
			bp := getBuf()
			b := w.f.AppendIdle(*bp)
			err = w.send(b, 0)
			putBuf(bp, b)
		default:
			return false, false
		}
		if err == errHandoff {
			return false, true
		}
		if err != nil {
			w.sub.Close(closeReason(err))
		}
	}
}

// handoff finishes, with the full write timeout, what a pooled write left
// unsent. It reports whether the connection can go on.
func (w *Writer) handoff() bool {
	rest, skip := w.rest, w.restSkip
	w.rest, w.restSkip = nil, 0
	if err := w.send(rest, skip); err != nil {
		w.sub.Close(closeReason(err))
		return false
	}
	return true
}

// closeReason maps a failed write to why the connection ends: a write
// blocked for the write timeout is a slow consumer, like one whose queue
// overflowed.
func closeReason(err error) hub.CloseReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return hub.CloseSlow
	}
	return hub.CloseClient
}

// send writes b, whose frames start at skip (b[:skip] ends a frame cut by
// an earlier write). A pool worker never waits on the socket: what it does
// not take now is kept in w.rest and errHandoff returned. A failed write
// may stop inside a frame; the rest of that frame is kept in w.tail for
// finish to send before the last frame, or the client would read the last
// frame as part of the cut one.
func (w *Writer) send(b []byte, skip int) error {
	if w.pooled {
		// No deadline (and so no timer) is needed, but one left by a
		// blocking write would fail the write once passed: clear it.
		w.clearDeadline()
		n, err := w.sink.TryWrite(b)
		switch {
		case err == nil:
			w.writes.Add(1)
			w.lastWrite.Store(time.Now().UnixNano())
			return nil
		case err == netio.ErrWouldBlock && !w.kicked.Load():
			w.writes.Add(1)
			w.keepRest(b, skip, n)
			return errHandoff
		case err != netio.ErrNoTry:
			w.writes.Add(1)
			w.keepTail(b, skip, n)
			if err == netio.ErrWouldBlock {
				err = os.ErrDeadlineExceeded // kicked: the client is not reading
			}
			return err
		}
		// No non-blocking writes here: a blocking one, briefly.
	}
	now := time.Now()
	limit := w.g.writeTimeout
	if w.pooled {
		limit = min(limit, pooledWriteSlice)
	}
	w.inWrite.Store(true)
	w.sink.SetWriteDeadline(now.Add(limit))
	w.deadlineSet = true
	if w.kicked.Load() {
		// Kick ran between the two lines above and its deadline was lost.
		w.sink.SetWriteDeadline(time.Now())
	}
	n, err := w.sink.Write(b)
	w.writes.Add(1)
	w.inWrite.Store(false)
	w.lastWrite.Store(now.UnixNano())
	if err != nil && w.pooled && !w.kicked.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		w.keepRest(b, skip, n)
		return errHandoff
	}
	if err != nil {
		w.keepTail(b, skip, n)
	}
	return err
}

// clearDeadline removes a deadline a blocking write left on the socket.
func (w *Writer) clearDeadline() {
	if w.deadlineSet {
		w.sink.SetWriteDeadline(time.Time{})
		w.deadlineSet = false
	}
}

// keepRest keeps what a write cut at n left unsent, for the handoff.
func (w *Writer) keepRest(b []byte, skip, n int) {
	end := w.f.FrameEnd(b, skip, n)
	w.rest = bytes.Clone(b[n:])
	w.restSkip = end - n
}

// keepTail keeps the unsent rest of the frame a write cut at n.
func (w *Writer) keepTail(b []byte, skip, n int) {
	if w.tail != nil {
		return
	}
	if end := w.f.FrameEnd(b, skip, n); end > n {
		w.tail = bytes.Clone(b[n:end])
	}
}

// finish sends the Framer's last frame for reason and releases the
// connection. The frame goes right away when the socket takes it; else
// it may wait as long as the Framer said, on a goroutine of its own (never
// on a pool worker), unless the Group is closing. The queue is already
// released.
func (w *Writer) finish(reason hub.CloseReason) {
	end, wait := w.f.AppendEnd(nil, reason)
	if len(end) == 0 {
		w.done()
		return
	}
	b := append(w.tail, end...)
	w.tail = nil
	if !w.pooled {
		w.closeLater(b, wait)
		return
	}
	w.clearDeadline()
	n, err := w.sink.TryWrite(b)
	switch {
	case err == netio.ErrWouldBlock && !w.g.closing.Load():
		go w.closeLater(b[n:], wait) // not on a pool worker
	case err == netio.ErrNoTry:
		go w.closeLater(b, wait)
	default:
		w.done()
	}
}

// closeLater writes the last bytes of the connection, waiting at most wait
// (no more once the Group is closing), and releases it.
func (w *Writer) closeLater(b []byte, wait time.Duration) {
	w.clearDeadline()
	n, err := w.sink.TryWrite(b)
	if err != netio.ErrWouldBlock && err != netio.ErrNoTry || w.g.closing.Load() {
		w.done()
		return
	}
	b = b[n:]
	w.inWrite.Store(true)
	w.sink.SetWriteDeadline(time.Now().Add(wait))
	if w.g.closing.Load() {
		w.sink.SetWriteDeadline(time.Now()) // Close came in between: no waiting
	}
	w.sink.Write(b)
	w.inWrite.Store(false)
	w.done()
}

// done hands the connection back to the transport.
func (w *Writer) done() {
	w.items = nil
	w.release()
	w.g.open.Done()
}

// bufPool holds write buffers, so that idle connections hold none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte {
	p := bufPool.Get().(*[]byte)
	*p = (*p)[:0]
	return p
}

// putBuf returns p, now holding b (which may have grown from *p).
func putBuf(p *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*p = b
		bufPool.Put(p)
	}
}
