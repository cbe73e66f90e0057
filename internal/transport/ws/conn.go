package ws

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/wire"
)

// conn is one WebSocket connection. Its parts are owned as follows:
//
//   - static after setup: h, nc, sock, sub, ctx, deflate, expires,
//     jitter, runFn, onMsg; pollID is set by the poller before the first
//     readiness event;
//   - atomics: the writer's flags and the clocks, touched by anyone;
//   - mu: the end state (ended, code, text) and the registration state
//     (closed, registered);
//   - the active writer (one at a time, handed over through running):
//     items, active, rest, restSkip, tail, pooled, deadlineSet;
//   - the reader (one at a time: the poller starts the next only after
//     this one re-armed the registration): fr, zbuf.
type conn struct {
	h       *Handler
	nc      net.Conn
	sock    *netio.Socket // nil where non-blocking socket calls are not available
	sub     *hub.Subscriber
	ctx     context.Context // commands run in it
	deflate bool            // permessage-deflate negotiated
	expires int64           // unix nanoseconds when the credentials expire; 0: never
	jitter  int64           // nanoseconds taken off the ping interval
	pollID  uint64
	runFn   func()             // c.run, bound once so a handoff does not allocate
	onMsg   func(message) bool // c.handle, bound once so a read does not allocate

	running   atomic.Bool   // a writer is active (or setup is running)
	pending   atomic.Bool   // wake was called since the writer last looked
	ping      atomic.Bool   // the wheel asks for a ping
	inWrite   atomic.Bool   // a blocking write is in progress
	kicked    atomic.Bool   // the connection is ending: writes must not block
	lastRead  atomic.Int64  // unix nanoseconds of the last bytes read
	lastPing  atomic.Int64  // unix nanoseconds of the last ping asked for
	lastWrite atomic.Int64  // unix nanoseconds of the last write
	readTurn  atomic.Uint32 // passes the reader state from one reader to the next (poller.rearm)
	writes    atomic.Int64  // writes made, for tests of coalescing

	mu         sync.Mutex
	ended      bool   // end was called: code and text are the close frame to send
	code       uint16 // 0: send no close frame
	text       string
	closed     bool // released: the socket is closed
	registered bool // with the poller

	// Owned by the active writer.
	items       []hub.Item
	active      topicSet // topics whose subscribed reply was written
	rest        []byte   // what a pooled write left unsent, for the handoff writer
	restSkip    int      // rest[:restSkip] ends a frame begun before it
	tail        []byte   // the unsent rest of a frame a failed write cut
	pooled      bool     // the writer is a pool worker: writes must not wait
	deadlineSet bool     // a blocking write left a deadline on the socket

	// Owned by the reader.
	fr   frameReader
	zbuf []byte // inflated messages
}

func newConn(h *Handler, nc net.Conn, ctx context.Context, deflate bool, expires time.Time) *conn {
	if ctx == nil {
		ctx = h.clientCtx // shared: nothing per connection to carry
	} else {
		ctx = hub.WithOrigin(ctx, hub.OriginClient)
	}
	c := &conn{
		h: h, nc: nc, sock: netio.NewSocket(nc), ctx: ctx, deflate: deflate,
		jitter: pingJitter(h.opts.PingInterval),
		fr:     frameReader{limit: h.opts.MaxMessageBytes, deflate: deflate},
	}
	if !expires.IsZero() {
		c.expires = expires.UnixNano()
	}
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	c.lastWrite.Store(now)
	c.runFn = c.run
	c.onMsg = c.handle
	return c
}

// welcome builds the first message.
func (c *conn) welcome() []byte {
	return reply("welcome", nil, func(b []byte) []byte {
		b = append(b, `,"client":`...)
		b = wire.AppendString(b, c.sub.Client())
		b = append(b, `,"protocol":`...)
		b = strconv.AppendInt(b, ProtocolVersion, 10)
		b = append(b, `,"max_message_bytes":`...)
		b = strconv.AppendInt(b, int64(c.h.opts.MaxMessageBytes), 10)
		b = append(b, `,"max_topics":`...)
		b = strconv.AppendInt(b, MaxTopicsPerConn, 10)
		b = append(b, `,"ping_interval_ms":`...)
		b = strconv.AppendInt(b, c.h.opts.PingInterval.Milliseconds(), 10)
		b = append(b, `,"compression":`...)
		return strconv.AppendBool(b, c.deflate)
	})
}

// end ends the connection with a close frame of code (0: none), unless it
// is ending already. The writer sends the frame and closes the socket.
func (c *conn) end(code uint16, text string) {
	c.mu.Lock()
	first := !c.ended
	if first {
		c.ended, c.code, c.text = true, code, text
	}
	c.mu.Unlock()
	if first {
		c.sub.Close(hub.CloseClient)
		c.kick(hub.CloseClient)
	}
}

// closeStatus returns the close frame for why the subscriber ended: the
// hub's reasons have their codes; a client-side end has what end was given.
func (c *conn) closeStatus(r hub.CloseReason) (uint16, string) {
	switch r {
	case hub.CloseSlow:
		return CloseSlowConsumer, "slow_consumer: the connection fell too far behind (limits.max_queue_bytes); reconnect and resume from your cursors"
	case hub.CloseShutdown:
		return CloseShuttingDown, shutdownText
	case hub.CloseError:
		return CloseInternalError, "internal_error: the server could not read history; reconnect and resume from your cursors"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.text
}

// Writing. The writer is like the SSE transport's (docs/decisions/0003):
// wake makes sure one runs, on a pool worker; it drains the subscriber's
// queue and writes everything in one write, without blocking; what the
// socket does not take goes, with the connection, to a goroutine of its
// own that finishes it with the write timeout.

// wake is the subscriber's Wake: it makes sure a writer runs.
func (c *conn) wake() {
	c.pending.Store(true)
	if c.running.CompareAndSwap(false, true) {
		c.h.pool.Submit(c)
	}
}

// kick unblocks a write stuck on a client that stopped reading.
func (c *conn) kick(hub.CloseReason) {
	c.kicked.Store(true)
	if c.inWrite.Load() {
		c.nc.SetWriteDeadline(time.Now())
	}
}

// run writes until nothing is left.
func (c *conn) run() {
	for {
		ended, handoff := c.drain()
		if ended {
			return // running stays set so nothing starts again
		}
		if handoff {
			c.pooled = false
			go c.runFn() // the rest of the write may block: not on a pool worker
			return
		}
		c.running.Store(false)
		if !c.pending.Load() || !c.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// runPooled is run on a pool worker.
func (c *conn) runPooled() {
	c.pooled = true // the writer's own field: set while this worker owns c
	c.run()
}

// drain writes whatever the connection has, and reports whether it ended,
// or whether a pooled write must be finished off the pool.
func (c *conn) drain() (ended, handoff bool) {
	if c.rest != nil && !c.pooled && !c.handoff() {
		c.finish(c.sub.Reason())
		return true, false
	}
	for {
		c.pending.Store(false)
		items, reason := c.sub.Next(c.h.ctx, c.items)
		c.items = items
		if reason != hub.CloseNone {
			c.finish(reason)
			return true, false
		}
		var err error
		switch {
		case len(items) > 0:
			err = c.writeItems(items)
			clear(items)
			c.items = items[:0]
		case c.ping.Swap(false):
			err = c.send(pingFrame, 0)
		default:
			return false, false
		}
		if err == errHandoff {
			return false, true
		}
		if err != nil {
			c.sub.Close(closeReason(err))
		}
	}
}

// handoff finishes, with the full write timeout, what a pooled write left
// unsent. It reports whether the connection can go on.
func (c *conn) handoff() bool {
	rest, skip := c.rest, c.restSkip
	c.rest, c.restSkip = nil, 0
	if err := c.send(rest, skip); err != nil {
		c.sub.Close(closeReason(err))
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

// writeItems sends queued items in one write. An event's frame is the
// shared one cached on the event.
func (c *conn) writeItems(items []hub.Item) error {
	bp := getBuf()
	b := *bp
	for i := range items {
		it := &items[i]
		switch {
		case it.Event != nil:
			ev := it.Event
			if !c.active.has(ev.Topic) {
				continue
			}
			if c.deflate {
				b = append(b, ev.Frame(event.FrameWSDeflate, encodeEventFrameDeflate)...)
			} else {
				b = append(b, ev.Frame(event.FrameWS, encodeEventFrame)...)
			}
		case it.Gap != nil:
			if c.active.has(it.Gap.Topic) {
				b = appendGapFrame(b, it.Gap)
			}
		case it.Presence != nil:
			if c.active.has(it.Presence.Topic) {
				b = appendPresenceFrame(b, it.Presence)
			}
		case it.Note != nil:
			n := it.Note.(*note)
			b = append(b, n.frame...)
			for _, t := range n.subscribed {
				c.active.add(t)
			}
			for _, t := range n.unsubscribed {
				c.active.remove(t)
			}
		}
	}
	var err error
	if len(b) > 0 {
		err = c.send(b, 0)
	}
	putBuf(bp, b)
	return err
}

// send writes b, whose frames start at skip (b[:skip] ends a frame cut by
// an earlier write). A pool worker never waits on the socket: what it does
// not take now is kept in c.rest and errHandoff returned. A failed write
// may stop inside a frame; the rest of that frame is kept in c.tail for
// finish to send before the close frame, or the client would read the
// close frame as part of the cut one.
func (c *conn) send(b []byte, skip int) error {
	if c.pooled {
		// No deadline (and so no timer) is needed, but one left by a
		// blocking write would fail the write once passed: clear it.
		if c.deadlineSet {
			c.nc.SetWriteDeadline(time.Time{})
			c.deadlineSet = false
		}
		if c.sock != nil {
			n, err := c.sock.Write(b)
			c.writes.Add(1)
			switch {
			case err == nil:
				c.lastWrite.Store(time.Now().UnixNano())
				return nil
			case err == netio.ErrWouldBlock && !c.kicked.Load():
				end := frameEnd(b, skip, n)
				c.rest = bytes.Clone(b[n:])
				c.restSkip = end - n
				return errHandoff
			}
			c.keepTail(b, skip, n)
			if err == netio.ErrWouldBlock {
				err = os.ErrDeadlineExceeded // kicked: the client is not reading
			}
			return err
		}
	}
	now := time.Now()
	limit := c.h.opts.WriteTimeout
	if c.pooled {
		limit = min(limit, pooledWriteSlice)
	}
	c.inWrite.Store(true)
	c.nc.SetWriteDeadline(now.Add(limit))
	c.deadlineSet = true
	if c.kicked.Load() {
		// kick ran between the two lines above and its deadline was lost.
		c.nc.SetWriteDeadline(time.Now())
	}
	n, err := c.nc.Write(b)
	c.writes.Add(1)
	c.inWrite.Store(false)
	c.lastWrite.Store(now.UnixNano())
	if err != nil && c.pooled && !c.kicked.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		end := frameEnd(b, skip, n)
		c.rest = bytes.Clone(b[n:])
		c.restSkip = end - n
		return errHandoff
	}
	if err != nil {
		c.keepTail(b, skip, n)
	}
	return err
}

// keepTail keeps the unsent rest of the frame a write cut at n.
func (c *conn) keepTail(b []byte, skip, n int) {
	if c.tail != nil {
		return
	}
	if end := frameEnd(b, skip, n); end > n {
		c.tail = bytes.Clone(b[n:end])
	}
}

// finish sends the close frame for reason and releases the connection.
// The close frame goes right away when the socket takes it. A slow
// consumer's may wait up to the write timeout, on a goroutine of its own,
// so that a client that resumes reading learns why it was closed; other
// close frames get a second. The queue is already released.
func (c *conn) finish(reason hub.CloseReason) {
	code, text := c.closeStatus(reason)
	if code == 0 {
		c.release()
		return
	}
	b := append(c.tail, appendClose(nil, code, text)...)
	c.tail = nil
	wait := time.Second
	if reason == hub.CloseSlow {
		wait = c.h.opts.WriteTimeout
	}
	if c.pooled && c.sock != nil {
		if c.deadlineSet {
			c.nc.SetWriteDeadline(time.Time{})
			c.deadlineSet = false
		}
		n, err := c.sock.Write(b)
		if err != netio.ErrWouldBlock || c.h.isClosed() {
			c.release()
			return
		}
		go c.closeLater(b[n:], wait) // not on a pool worker
		return
	}
	c.closeLater(b, wait)
}

// closeLater writes the end of the connection, waiting at most wait (no
// more once the handler is closing), and releases it.
func (c *conn) closeLater(b []byte, wait time.Duration) {
	if c.sock != nil {
		if c.deadlineSet {
			c.nc.SetWriteDeadline(time.Time{})
			c.deadlineSet = false
		}
		n, err := c.sock.Write(b)
		if err != netio.ErrWouldBlock || c.h.isClosed() {
			c.release()
			return
		}
		b = b[n:]
	}
	c.inWrite.Store(true)
	c.nc.SetWriteDeadline(time.Now().Add(wait))
	if c.h.isClosed() {
		c.nc.SetWriteDeadline(time.Now()) // Close came in between: no waiting
	}
	c.nc.Write(b)
	c.inWrite.Store(false)
	c.release()
}

// release closes the socket and forgets the connection.
func (c *conn) release() {
	c.mu.Lock()
	c.closed = true
	registered := c.registered
	c.mu.Unlock()
	if registered {
		c.h.poll.remove(c)
	}
	c.nc.Close()
	c.items = nil
	c.h.untrack(c)
}

// isClosed reports whether Close was called.
func (s *Handler) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Reading.

// startReading hands the connection to the poller, or to a goroutine of
// its own where there is no poller.
func (c *conn) startReading() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ended {
		return
	}
	if p := c.h.poll; p != nil && c.sock != nil {
		if err := p.add(c); err == nil {
			c.registered = true
			return
		}
	}
	c.h.readers.Add(1)
	go c.readLoop()
}

// readBufSize is the pooled buffer a reader reads into.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// readReady reads what the socket holds into buf, handles it and re-arms
// the poller. It runs on a reader pool worker.
func (c *conn) readReady(buf []byte) {
	defer c.h.readers.Done()
	c.readTurn.Load() // see poller.rearm
	for {
		n, err := c.sock.Read(buf)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			if !c.feed(buf[:n]) {
				return // ending: the writer closes the socket
			}
		}
		switch {
		case err == netio.ErrWouldBlock, err == nil && n < len(buf):
			// Drained (a short read almost always means so; if more came,
			// the level-triggered re-arm fires at once).
			c.h.poll.rearm(c)
			return
		case err != nil:
			c.gone()
			return
		}
	}
}

// readLoop reads the connection where there is no poller.
func (c *conn) readLoop() {
	defer c.h.readers.Done()
	buf := make([]byte, 4096)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			if !c.feed(buf[:n]) {
				return
			}
		}
		if err != nil {
			c.gone()
			return
		}
	}
}

// gone ends a connection whose client went away (end of stream or a read
// error): there is nobody to send a close frame to.
func (c *conn) gone() { c.end(0, "") }

// feed handles bytes the client sent. It reports whether to read on.
func (c *conn) feed(p []byte) bool {
	if err := c.fr.feed(p, c.onMsg); err != nil {
		var ce *closeError
		if errors.As(err, &ce) {
			c.end(ce.code, ce.text)
		} else {
			c.end(CloseProtocolError, "protocol_error: "+err.Error())
		}
		return false
	}
	return c.sub.Reason() == hub.CloseNone
}

// handle handles one message or control frame. It reports whether to go on.
func (c *conn) handle(m message) bool {
	switch m.op {
	case opPing:
		pong := appendHeader(make([]byte, 0, 2+len(m.payload)), opPong, false, len(m.payload))
		c.sub.Enqueue(&note{frame: append(pong, m.payload...)}, len(pong)+64)
	case opPong:
		// lastRead was moved by the read.
	case opClose:
		code := uint16(CloseNormal)
		if len(m.payload) >= 2 {
			code = uint16(m.payload[0])<<8 | uint16(m.payload[1])
		}
		c.end(code, "") // echo the client's code, as RFC 6455 suggests
		return false
	default:
		payload := m.payload
		if m.compressed {
			var err error
			c.zbuf, err = inflate(c.zbuf, payload, c.h.opts.MaxMessageBytes)
			if err != nil {
				var ce *closeError
				if !errors.As(err, &ce) {
					ce = &closeError{code: CloseInvalidData, text: "invalid_payload: " + err.Error()}
				}
				c.end(ce.code, ce.text)
				return false
			}
			payload = c.zbuf
			if cap(c.zbuf) > 64<<10 {
				defer func() { c.zbuf = nil }()
			}
		}
		if m.op == opText && !validUTF8(payload) {
			c.end(CloseInvalidData, "invalid_payload: a text message that is not valid UTF-8")
			return false
		}
		c.command(payload)
	}
	return c.sub.Reason() == hub.CloseNone
}

// note is a reply queued in the subscriber's queue, in order with events.
// A subscribe's note is built by the hub's Subscribe once the
// subscriptions exist, at the place the command reached the queue.
type note struct {
	frame        []byte
	subscribed   []string // topics the frame confirms: their items are written from here on
	unsubscribed []string // topics the frame ends: their items are dropped from here on
}

// topicSet is a connection's topics, a slice while few.
type topicSet struct {
	small []string
	big   map[string]struct{}
}

func (s *topicSet) has(t string) bool {
	if s.big != nil {
		_, ok := s.big[t]
		return ok
	}
	for _, x := range s.small {
		if x == t {
			return true
		}
	}
	return false
}

func (s *topicSet) add(t string) {
	if s.has(t) {
		return
	}
	if s.big == nil && len(s.small) < 16 {
		s.small = append(s.small, t)
		return
	}
	if s.big == nil {
		s.big = make(map[string]struct{}, 32)
		for _, x := range s.small {
			s.big[x] = struct{}{}
		}
		s.small = nil
	}
	s.big[t] = struct{}{}
}

func (s *topicSet) remove(t string) {
	if s.big != nil {
		delete(s.big, t)
		return
	}
	for i, x := range s.small {
		if x == t {
			s.small = append(s.small[:i], s.small[i+1:]...)
			return
		}
	}
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
