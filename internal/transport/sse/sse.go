// Package sse serves herald's Server-Sent Events stream (GET /v1/sse).
//
// The protocol (docs/api.md, "Server-Sent Events"):
//
//	retry: 2000          sent once, with the stream's starting cursor as id
//	id: <cursor>         after every event: the cursor of the whole stream,
//	                     so the browser's Last-Event-ID resumes every topic
//	event: <type>        the event's type, absent when it has none
//	data: <line>         the payload, one data: line per line of it
//	event: gap           a gap signal; data is its JSON
//	event: error         the last frame; data is {"code":…,"message":…}
//	event: join, leave   presence changes (no id); data is their JSON
//	: hb                 a heartbeat comment after Heartbeat without traffic
//
// To keep an idle stream small, the handler hijacks the connection after
// subscribing: no goroutine, no bufio buffers and no per-connection timer
// stay behind while nothing is sent. A writer goroutine exists only while
// a stream has something to write; heartbeats come from one shared wheel.
// When the connection cannot be hijacked (HTTP/2) the stream is served from
// the handler goroutine instead, with the same framing.
package sse

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/wire"
)

// Options configure the SSE handler. Zero fields take the defaults noted.
type Options struct {
	Heartbeat     time.Duration // default 15s
	Retry         time.Duration // the retry: hint; default 2s
	WriteTimeout  time.Duration // default 10s
	Writers       int           // goroutines writing woken streams; 0: GOMAXPROCS-1, at least 1 (pool.go)
	MaxQueueBytes int           // per stream; 0 uses the hub's
	// AllowOrigin returns the Access-Control-Allow-Origin value for a
	// request's Origin, or "" for none.
	AllowOrigin func(origin string) string
	// OnConn is told of streams opening (+1) and ending (-1).
	OnConn func(delta int)
	Log    *slog.Logger
}

// Handler serves SSE streams. Create it with New, stop its heartbeat wheel
// with Close, and wait for its streams to end with Wait.
type Handler struct {
	hub  *hub.Hub
	opts Options // static after New
	ctx  context.Context

	mu      sync.Mutex // guards buckets and next
	buckets []map[*conn]struct{}
	next    int

	pool    *netio.Pool[*conn] // runs the streams' writers (pool.go)
	streams sync.WaitGroup     // open streams
	stop    chan struct{}      // closed by Close: ends the wheel
	wheel   sync.WaitGroup     // the wheel goroutine
	once    sync.Once
}

// wheelTick is how often the heartbeat wheel turns one bucket.
const wheelTick = time.Second

// New returns a running SSE handler over h.
func New(h *hub.Hub, opts Options) *Handler {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = 2 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.AllowOrigin == nil {
		opts.AllowOrigin = func(string) string { return "" }
	}
	if opts.OnConn == nil {
		opts.OnConn = func(int) {}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	n := max(1, int(opts.Heartbeat/wheelTick))
	s := &Handler{hub: h, opts: opts, ctx: context.Background(), stop: make(chan struct{}), pool: newWriterPool(opts.Writers)}
	s.buckets = make([]map[*conn]struct{}, n)
	for i := range s.buckets {
		s.buckets[i] = make(map[*conn]struct{})
	}
	s.wheel.Add(1)
	go s.turn()
	return s
}

// Close stops the heartbeat wheel. Streams end through the hub (hub.Close
// sends every stream its shutting_down frame).
func (s *Handler) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wheel.Wait()
}

// Wait blocks until every stream has ended or ctx is done.
func (s *Handler) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.streams.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// turn is the heartbeat wheel: each tick it visits one bucket and asks the
// streams there that have been quiet for a heartbeat period to send one.
func (s *Handler) turn() {
	defer s.wheel.Done()
	t := time.NewTicker(wheelTick)
	defer t.Stop()
	i := 0
	var due []*conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		quiet := time.Now().Add(-s.opts.Heartbeat + wheelTick).UnixNano()
		s.mu.Lock()
		for c := range s.buckets[i] {
			if c.lastWrite.Load() <= quiet {
				due = append(due, c)
			}
		}
		s.mu.Unlock()
		for _, c := range due {
			c.hb.Store(true)
			c.wake()
		}
		clear(due)
		due = due[:0]
		i = (i + 1) % len(s.buckets)
	}
}

func (s *Handler) track(c *conn) {
	s.mu.Lock()
	c.bucket = s.next
	s.next = (s.next + 1) % len(s.buckets)
	s.buckets[c.bucket][c] = struct{}{}
	s.mu.Unlock()
}

func (s *Handler) untrack(c *conn) {
	s.mu.Lock()
	delete(s.buckets[c.bucket], c)
	s.mu.Unlock()
}

// ServeHTTP opens a stream: GET /v1/sse?topic=…&cursor=…&from=….
func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		wire.WriteErrorCode(w, reason.MethodNotAllowed, "SSE streams are opened with GET")
		return
	}
	q := r.URL.Query()
	token := r.Header.Get("Last-Event-ID")
	if token == "" {
		token = q.Get("cursor")
	}
	cur, err := cursor.Parse(token)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	from, err := hub.ParseFrom(q.Get("from"), hub.FromLatest)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	req := hub.SubscribeRequest{Topics: q["topic"], Cursor: cur, From: from}
	if p := q.Get("presence"); p != "" {
		req.Presence = []byte(p) // checked by the hub
	}

	c := &conn{h: s}
	c.runFn = c.run
	c.running.Store(true) // setup owns the writer role until the headers are out
	sub, err := s.hub.NewSubscriber(hub.SubscriberOptions{Wake: c.wake, Kick: c.kick, MaxQueueBytes: s.opts.MaxQueueBytes})
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	c.sub = sub
	starts, err := sub.Subscribe(r.Context(), &req, nil)
	if err != nil {
		sub.Close(hub.CloseClient)
		wire.WriteError(w, err)
		return
	}
	for i, t := range req.Topics {
		c.cur.Set(t, starts[i])
	}

	head := s.header(r)
	if nc, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.out = newNetSink(nc)
	} else {
		c.wakeCh = make(chan struct{}, 1)
		c.out = newHTTPSink(w)
		head = nil
	}
	s.streams.Add(1)
	s.opts.OnConn(1)
	s.track(c)

	bp := getBuf()
	b := *bp
	b = append(b, head...)
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, s.opts.Retry.Milliseconds(), 10)
	b = append(b, "\nid: "...)
	b = c.cur.AppendEncoded(b)
	b = append(b, "\n\n"...)
	err = c.send(b)
	putBuf(bp, b)
	if err != nil {
		sub.Close(hub.CloseClient)
	}
	if c.wakeCh == nil {
		c.run() // flush what recovery queued; later writes run on demand
		return
	}
	c.serveInHandler(r.Context())
}

// header builds the raw HTTP response head for a hijacked stream.
func (s *Handler) header(r *http.Request) []byte {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n")
	if o := r.Header.Get("Origin"); o != "" {
		if allow := s.opts.AllowOrigin(o); allow != "" {
			b.WriteString("Access-Control-Allow-Origin: " + allow + "\r\nVary: Origin\r\n")
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// conn is one SSE stream.
type conn struct {
	h      *Handler
	sub    *hub.Subscriber // static after setup
	out    sink            // static after setup
	wakeCh chan struct{}   // set when served from the handler goroutine
	runFn  func()          // c.run, bound once so a handoff does not allocate
	bucket int             // guarded by h.mu

	running   atomic.Bool  // a writer is active (or setup is running)
	pending   atomic.Bool  // wake was called since the writer last looked
	hb        atomic.Bool  // a heartbeat is due
	inWrite   atomic.Bool  // a write is in progress
	kicked    atomic.Bool  // the hub ended the stream: writes must not block
	lastWrite atomic.Int64 // unix nanoseconds

	// Owned by the active writer.
	cur    cursor.Cursor
	items  []hub.Item
	tail   []byte // the unsent rest of a frame a failed write cut
	pooled bool   // the writer is a pool worker: writes must not block long
	rest   []byte // what a pooled write left unsent, for the handoff writer
	// restInFrame: rest starts inside a frame; sendingRest: send is
	// writing rest. Together they tell where a cut frame begins.
	restInFrame, sendingRest bool
	deadlineSet              bool // a blocking write left a write deadline on the socket
}

// errHandoff reports a pooled write that did not finish within its slice.
var errHandoff = errors.New("write handed off")

// wake is the subscriber's Wake: it makes sure a writer runs.
func (c *conn) wake() {
	c.pending.Store(true)
	if c.wakeCh != nil {
		select {
		case c.wakeCh <- struct{}{}:
		default:
		}
		return
	}
	if c.running.CompareAndSwap(false, true) {
		c.h.pool.Submit(c)
	}
}

// kick unblocks a write stuck on a consumer that stopped reading.
func (c *conn) kick(hub.CloseReason) {
	c.kicked.Store(true)
	if c.inWrite.Load() {
		c.out.setDeadline(time.Now())
	}
}

// run is the writer of a hijacked stream: it writes until nothing is left.
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

// runPooled is run on a pool worker: writes get a short deadline, and a
// stream whose consumer does not take them in time continues on its own
// goroutine, with the full write timeout, from where the write stopped.
func (c *conn) runPooled() {
	c.pooled = true // the writer's own field: set while this worker owns c
	c.run()
}

// handoff finishes, with the full write timeout, what a pooled write left
// unsent. It reports whether the stream can go on.
func (c *conn) handoff() bool {
	rest := c.rest
	c.rest = nil
	c.sendingRest = true
	err := c.send(rest)
	c.sendingRest = false
	if err != nil {
		c.sub.Close(closeReason(err))
		return false
	}
	return true
}

// serveInHandler is the writer of a stream that could not be hijacked.
func (c *conn) serveInHandler(ctx context.Context) {
	for {
		if ended, _ := c.drain(); ended {
			return
		}
		select {
		case <-c.wakeCh:
		case <-ctx.Done():
			c.sub.Close(hub.CloseClient)
		}
	}
}

// drain writes whatever the stream has, and reports whether it ended, or
// whether a pooled write must be finished off the pool.
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
		case c.hb.Swap(false):
			if c.out.peerClosed() {
				c.sub.Close(hub.CloseClient)
				continue
			}
			err = c.send(heartbeat)
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

// closeReason maps a failed write to why the stream ends: a write blocked
// for the write timeout is a slow consumer, like one whose queue overflowed.
func closeReason(err error) hub.CloseReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return hub.CloseSlow
	}
	return hub.CloseClient
}

var heartbeat = []byte(": hb\n\n")

// writeItems sends queued events and gaps in one write.
func (c *conn) writeItems(items []hub.Item) error {
	bp := getBuf()
	b := *bp
	solo := c.cur.Len() == 1
	for _, it := range items {
		if ev := it.Event; ev != nil {
			c.cur.Set(ev.Topic, ev.Position())
			if solo {
				// A one-topic stream's id is the same for every subscriber.
				b = append(b, ev.Frame(event.FrameSSESolo, encodeSoloFrame)...)
				continue
			}
			b = append(b, "id: "...)
			b = c.cur.AppendEncoded(b)
			b = append(b, '\n')
			b = append(b, ev.Frame(event.FrameSSE, encodeFrame)...)
			continue
		}
		g := it.Gap
		if g == nil {
			if p := it.Presence; p != nil {
				// No id line: a presence change moves no cursor.
				b = append(b, "event: "...)
				b = append(b, presenceEvent(p)...)
				b = append(b, "\ndata: "...)
				b = wire.AppendPresenceChange(b, p)
				b = append(b, "\n\n"...)
			}
			continue
		}
		c.cur.Set(g.Topic, g.Resumed)
		b = append(b, "event: gap\nid: "...)
		b = c.cur.AppendEncoded(b)
		b = append(b, "\ndata: "...)
		b = wire.AppendGap(b, g)
		b = append(b, "\n\n"...)
	}
	err := c.send(b)
	putBuf(bp, b)
	return err
}

// send writes b with the write timeout. A failed write may stop inside a
// frame; the rest of that frame is kept for finish to send before the
// closing frame, as a half frame followed by another would reach the client
// as one garbled event (with the id of an event it never got).
//
// On a pool worker the deadline is short; a write that runs out of it
// keeps the unsent rest in c.rest and returns errHandoff.
func (c *conn) send(b []byte) error {
	if c.pooled {
		// A pool worker never waits on a socket: what the socket does
		// not take now goes to a goroutine of the stream's own. No
		// deadline (and so no timer) is needed for that, but one left by
		// a blocking write would fail it once passed: clear it.
		if c.deadlineSet {
			c.out.setDeadline(time.Time{})
			c.deadlineSet = false
		}
		n, err := c.out.tryWrite(b)
		switch {
		case err == nil:
			c.lastWrite.Store(time.Now().UnixNano())
			return nil
		case err == netio.ErrWouldBlock && !c.kicked.Load():
			c.rest = bytes.Clone(b[n:])
			c.restInFrame = n > 0 && !(n >= 2 && b[n-2] == '\n' && b[n-1] == '\n')
			return errHandoff
		case err != netio.ErrNoTry:
			if c.tail == nil {
				c.tail = frameRest(b, n)
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
	c.out.setDeadline(now.Add(limit))
	c.deadlineSet = true
	if c.kicked.Load() {
		// kick ran between the two lines above and its deadline was lost.
		c.out.setDeadline(time.Now())
	}
	n, err := c.out.write(b)
	c.inWrite.Store(false)
	c.lastWrite.Store(now.UnixNano())
	if err != nil && c.pooled && !c.kicked.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		c.rest = bytes.Clone(b[n:])
		c.restInFrame = n > 0 && !(n >= 2 && b[n-2] == '\n' && b[n-1] == '\n')
		return errHandoff
	}
	if err != nil && c.tail == nil {
		c.tail = frameRestFrom(b, n, c.sendingRest && c.restInFrame)
	}
	return err
}

// frameRest returns a copy of the part of b's frame at n that a write cut
// at n left unsent, or nil when n is at a frame boundary. Frames end with
// a blank line, and no frame holds one inside.
func frameRest(b []byte, n int) []byte {
	return frameRestFrom(b, n, false)
}

// frameRestFrom is frameRest for a b that may start inside a frame (the
// rest of a write cut before): then even an empty write leaves a frame cut.
func frameRestFrom(b []byte, n int, startsInFrame bool) []byte {
	if n <= 0 && startsInFrame && len(b) > 0 {
		n = 0
	} else if n <= 0 || n >= len(b) || (n >= 2 && b[n-2] == '\n' && b[n-1] == '\n') {
		return nil
	}
	if n == 0 {
		end := len(b)
		if i := bytes.Index(b, frameEnd); i >= 0 {
			end = i + len(frameEnd)
		}
		return bytes.Clone(b[:end])
	}
	end := len(b)
	if i := bytes.Index(b[n-1:], frameEnd); i >= 0 {
		end = n - 1 + i + len(frameEnd)
	}
	return bytes.Clone(b[n:end])
}

var frameEnd = []byte("\n\n")

// finish sends the closing frame for reason and releases the stream.
func (c *conn) finish(reason hub.CloseReason) {
	var msg string
	switch reason {
	case hub.CloseSlow:
		msg = "the stream fell too far behind (limits.max_queue_bytes); reconnect with the last event id to resume"
	case hub.CloseShutdown:
		msg = "the server is shutting down; reconnect to resume"
	case hub.CloseError:
		msg = "the server could not read history; reconnect to resume"
	}
	if msg != "" {
		bp := getBuf()
		b := *bp
		b = append(b, c.tail...)
		if reason == hub.CloseShutdown {
			// Spread the herd of reconnects over a few retry periods.
			b = append(b, "retry: "...)
			b = strconv.AppendInt(b, c.h.opts.Retry.Milliseconds()+rand.Int64N(3*c.h.opts.Retry.Milliseconds()+1), 10)
			b = append(b, '\n')
		}
		b = append(b, "event: error\ndata: {\"code\":\""...)
		b = append(b, reason.String()...)
		b = append(b, `","message":`...)
		b = wire.AppendString(b, msg)
		b = append(b, "}\n\n"...)
		// On a pool worker the closing frame goes only if the socket takes
		// it now: a drain of many stalled streams must not hold the few
		// workers for a second each. Elsewhere it gets a second.
		// (A frame cut by a full socket is not dispatched: the client
		// discards an unterminated event at end of stream.)
		blocking := !c.pooled
		if c.pooled {
			_, err := c.out.tryWrite(b)
			blocking = err == netio.ErrNoTry
		}
		if blocking {
			c.out.setDeadline(time.Now().Add(time.Second))
			c.out.write(b)
		}
		putBuf(bp, b)
	}
	c.out.close()
	c.h.untrack(c)
	c.h.opts.OnConn(-1)
	c.h.streams.Done()
}

// presenceEvent names a presence change's SSE event.
func presenceEvent(p *hub.PresenceChange) string {
	if p.Leave {
		return "leave"
	}
	return "join"
}

// encodeSoloFrame builds an event's SSE bytes for one-topic streams, whose
// cursor after the event is the same for everyone: id line and frame.
func encodeSoloFrame(ev *event.Event) []byte {
	frame := ev.Frame(event.FrameSSE, encodeFrame)
	b := make([]byte, 0, len(frame)+len(ev.Topic)+48)
	b = append(b, "id: "...)
	b = cursor.AppendSingle(b, ev.Topic, ev.Position())
	b = append(b, '\n')
	return append(b, frame...)
}

// encodeFrame builds an event's shared SSE bytes: its event: line and its
// payload as data: lines, split at CR, LF and CRLF as the WHATWG parser
// splits them. The id: line is per stream and is written before it.
func encodeFrame(ev *event.Event) []byte {
	b := make([]byte, 0, len(ev.Data)+len(ev.Type)+24)
	if ev.Type != "" {
		b = append(b, "event: "...)
		b = append(b, ev.Type...)
		b = append(b, '\n')
	}
	payload := ev.Data
	if ev.Encoding == event.EncodingBinary {
		payload = wire.AppendData(nil, &ev.Record)
		payload = payload[1 : len(payload)-1] // the base64 without its quotes
	}
	b = append(b, "data: "...)
	for i := 0; i < len(payload); i++ {
		switch c := payload[i]; c {
		case '\r':
			if i+1 < len(payload) && payload[i+1] == '\n' {
				i++
			}
			b = append(b, "\ndata: "...)
		case '\n':
			b = append(b, "\ndata: "...)
		default:
			b = append(b, c)
		}
	}
	return append(b, "\n\n"...)
}

// bufPool holds write buffers, so that idle streams hold none.
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

// sink is where a stream's bytes go: a hijacked connection or, when that
// is impossible, the handler's ResponseWriter.
type sink interface {
	write(b []byte) (int, error) // how much of b was sent, when known
	// tryWrite writes what the socket takes now without waiting: it
	// returns netio.ErrWouldBlock with the count written when the socket
	// is full, and netio.ErrNoTry where it cannot write without blocking.
	tryWrite(b []byte) (int, error)
	setDeadline(t time.Time)
	peerClosed() bool
	close()
}

// netSink writes to a hijacked connection.
type netSink struct {
	nc   net.Conn
	sock *netio.Socket // nil where non-blocking socket calls are not available
}

func newNetSink(nc net.Conn) *netSink { return &netSink{nc: nc, sock: netio.NewSocket(nc)} }

func (s *netSink) write(b []byte) (int, error)    { return s.nc.Write(b) }
func (s *netSink) tryWrite(b []byte) (int, error) { return s.sock.Write(b) } // ErrNoTry when sock is nil
func (s *netSink) setDeadline(t time.Time)        { s.nc.SetWriteDeadline(t) }
func (s *netSink) close()                         { s.nc.Close() }

// peerClosed peeks at the socket, without a reader goroutine: an SSE
// client sends nothing after its request, so a readable end-of-file means
// it is gone. Where it cannot peek (sock is nil), a closed peer is found
// by the next failed write instead.
func (s *netSink) peerClosed() bool { return s.sock.PeerClosed() }

type httpSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newHTTPSink(w http.ResponseWriter) httpSink {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return httpSink{w: w, rc: http.NewResponseController(w)}
}

// write reports 0 bytes sent on an error: what left the buffers is unknown.
func (s httpSink) write(b []byte) (int, error) {
	if _, err := s.w.Write(b); err != nil {
		return 0, err
	}
	if err := s.rc.Flush(); err != nil {
		return 0, err
	}
	return len(b), nil
}
func (s httpSink) setDeadline(t time.Time)      { s.rc.SetWriteDeadline(t) }
func (s httpSink) tryWrite([]byte) (int, error) { return 0, netio.ErrNoTry }
func (s httpSink) peerClosed() bool             { return false }
func (s httpSink) close()                       {}
