package ws

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/push"
	"github.com/heraldhq/herald/internal/wire"
)

// conn is one WebSocket connection. Its parts are owned as follows:
//
//   - the writer role (package push, embedded) and, as its Framer, the
//     fields it owns: active, the topics whose subscribed reply was written;
//   - static after setup: h, out, sub, base, deflate, jitter, onMsg;
//     pollID is set by the poller before the first readiness event;
//   - atomics: the clocks, touched by anyone;
//   - mu: the end state (ended, code, text) and the registration state
//     (closed, registered);
//   - the reader (one at a time: the poller starts the next only after
//     this one re-armed the registration): fr, zbuf.
type conn struct {
	push.Writer
	h       *Handler
	out     push.ConnSink
	sub     *hub.Subscriber
	base    context.Context // the handshake request's values, never cancelled
	deflate bool            // permessage-deflate negotiated
	jitter  int64           // nanoseconds taken off the ping interval
	pollID  uint64
	onMsg   func(message) bool // c.handle, bound once so a read does not allocate

	lastRead atomic.Int64  // unix nanoseconds of the last bytes read
	lastPing atomic.Int64  // unix nanoseconds of the last ping asked for
	readTurn atomic.Uint32 // passes the reader state from one reader to the next (poller.rearm)

	mu         sync.Mutex
	ended      bool   // end was called: code and text are the close frame to send
	code       uint16 // 0: send no close frame
	text       string
	closed     bool // released: the socket is closed
	registered bool // with the poller

	gs groupState // the consumer-group commands' state (groups.go), under its own lock

	// Owned by the writer role.
	active topicSet // topics whose subscribed reply was written

	// Owned by the reader.
	ctx  context.Context // commands run in it: base with the caller's identity (a refresh replaces it)
	fr   frameReader
	zbuf []byte  // inflated messages
	pubs *pubRun // publish commands of one read waiting to be stored together (publish.go); nil until the first
}

func newConn(h *Handler, nc net.Conn, base, ctx context.Context, deflate bool) *conn {
	c := &conn{
		h: h, out: push.NewConnSink(nc, false), base: base, ctx: ctx, deflate: deflate,
		jitter: pingJitter(h.opts.PingInterval),
		fr:     frameReader{limit: h.opts.MaxMessageBytes, deflate: deflate},
	}
	c.lastRead.Store(time.Now().UnixNano())
	c.onMsg = c.handle
	c.Init(h.group, c)
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
		b = strconv.AppendInt(b, int64(c.h.opts.MaxTopics), 10)
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
		c.Kick(hub.CloseClient)
	}
}

// endWith ends the connection with the close ce.
func (c *conn) endWith(ce *closeError) { c.end(ce.code, ce.text) }

// closeStatus returns the close frame for why the subscriber ended: the
// hub's reasons have their codes in the reason table; a client-side end
// has what end was given.
func (c *conn) closeStatus(r hub.CloseReason) (uint16, string) {
	if r != hub.CloseClient {
		row := reason.MustOf(r.Code())
		return row.WSClose, string(row.Code) + ": " + row.Message
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.text
}

// The writer role is package push's (docs/decisions/0003, 0009); conn is
// its Framer.

// AppendItems appends the frames of queued items. An event's frame is the
// shared one cached on the event. Items of topics whose subscribed reply
// has not been written (or whose unsubscribed reply has) are skipped.
func (c *conn) AppendItems(b []byte, items []hub.Item) []byte {
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
	return b
}

// AppendIdle appends a ping.
func (c *conn) AppendIdle(b []byte) []byte { return append(b, pingFrame...) }

// FrameEnd finds the end of the frame holding byte n (frames.go).
func (c *conn) FrameEnd(b []byte, skip, n int) int { return frameEnd(b, skip, n) }

// AppendEnd appends the close frame for reason (none for a client that
// went away). A slow consumer's may wait up to the write timeout, so that
// a client that resumes reading learns why it was closed; others get a
// second.
func (c *conn) AppendEnd(b []byte, why hub.CloseReason) ([]byte, time.Duration) {
	code, text := c.closeStatus(why)
	if code == 0 {
		return b, 0
	}
	wait := time.Second
	if why == hub.CloseSlow {
		wait = c.h.opts.WriteTimeout
	}
	return appendClose(b, code, text), wait
}

// release closes the socket and forgets the connection; the writer calls
// it once, after the close frame.
func (c *conn) release() {
	c.mu.Lock()
	c.closed = true
	registered := c.registered
	c.mu.Unlock()
	if registered {
		c.h.poll.remove(c)
	}
	c.out.Conn.Close()
	c.endGroups()
	c.h.untrack(c)
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
	if p := c.h.poll; p != nil && c.out.Sock != nil {
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
		n, err := c.out.Sock.Read(buf)
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
		n, err := c.out.Conn.Read(buf)
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
	err := c.fr.feed(p, c.onMsg)
	c.flushPublishes() // what this read brought is stored before the next read
	if err != nil {
		var ce *closeError
		if errors.As(err, &ce) {
			c.endWith(ce)
		} else {
			c.endWith(closeFor(reason.ProtocolError, err.Error()))
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
		c.flushPublishes() // the publishes sent before the close are stored and answered
		code := uint16(closeNormal)
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
					ce = closeFor(reason.InvalidPayload, err.Error())
				}
				c.endWith(ce)
				return false
			}
			payload = c.zbuf
			if cap(c.zbuf) > 64<<10 {
				defer func() { c.zbuf = nil }()
			}
		}
		if m.op == opText && !validUTF8(payload) {
			c.endWith(closeFor(reason.InvalidPayload, "a text message that is not valid UTF-8"))
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
