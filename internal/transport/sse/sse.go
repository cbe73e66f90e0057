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
//	event: heartbeat     instead, with ?heartbeat=event: a heartbeat the page
//	data: {}             can see (EventSource hides comments); the stream then
//	                     also opens with one, its id the starting cursor
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
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/push"
	"github.com/heraldhq/herald/internal/wire"
)

// Options configure the SSE handler. Zero fields take the defaults noted.
type Options struct {
	Heartbeat     time.Duration // default 15s
	Retry         time.Duration // the retry: hint; default 2s
	WriteTimeout  time.Duration // default 10s
	Writers       int           // goroutines writing woken streams; 0: GOMAXPROCS-1, at least 1 (push.Group)
	MaxQueueBytes int           // per stream; 0 uses the hub's
	// AllowOrigin returns the Access-Control-Allow-Origin value for a
	// request's Origin, or "" for none.
	AllowOrigin func(origin string) string
	// OnConn is told of streams opening (+1) and ending (-1).
	OnConn func(delta int)
	Log    *slog.Logger
	// Tokens says where a stream's credentials are looked for (EventSource
	// cannot set headers: the query parameter or a cookie).
	Tokens wire.TokenSources
}

// Handler serves SSE streams. Create it with New, stop its heartbeat wheel
// with Close, and wait for its streams to end with Wait.
type Handler struct {
	hub  *hub.Hub
	opts Options // static after New

	mu      sync.Mutex // guards buckets and next
	buckets []map[*conn]struct{}
	next    int

	group *push.Group    // the streams' writers (package push)
	stop  chan struct{}  // closed by Close: ends the wheel
	wheel sync.WaitGroup // the wheel goroutine
	once  sync.Once
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
	s := &Handler{hub: h, opts: opts, stop: make(chan struct{}), group: push.NewGroup(opts.Writers, opts.WriteTimeout)}
	s.buckets = make([]map[*conn]struct{}, n)
	for i := range s.buckets {
		s.buckets[i] = make(map[*conn]struct{})
	}
	s.wheel.Add(1)
	go s.turn()
	return s
}

// Close stops the heartbeat wheel, and closing frames that a stalled
// stream does not take at once are given up. Streams end through the hub
// (hub.Close sends every stream its shutting_down frame).
func (s *Handler) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wheel.Wait()
	s.group.Close()
}

// Wait blocks until every stream has ended or ctx is done.
func (s *Handler) Wait(ctx context.Context) error { return s.group.Wait(ctx) }

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
			if c.LastWrite() <= quiet {
				due = append(due, c)
			}
		}
		s.mu.Unlock()
		for _, c := range due {
			c.AskIdle()
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
	ctx, id, err := s.hub.Authenticate(r.Context(), s.opts.Tokens.Credentials(r, "sse"))
	if err != nil {
		wire.WriteError(w, err)
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
	hbEvent, err := parseHeartbeat(q["heartbeat"])
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	req := hub.SubscribeRequest{Topics: q["topic"], Cursor: cur, From: from}
	if p := q.Get("presence"); p != "" {
		req.Presence = []byte(p) // checked by the hub
	}

	c := &conn{h: s, hbEvent: hbEvent}
	c.Init(s.group, c)
	sub, err := s.hub.NewSubscriber(hub.SubscriberOptions{Wake: c.Wake, Kick: c.Kick, MaxQueueBytes: s.opts.MaxQueueBytes, Identity: id})
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	sub.Expire(id.Expires) // the stream ends with token_expired then; reconnect with a fresh token
	starts, err := sub.Subscribe(ctx, &req, nil)
	if err != nil {
		sub.Close(hub.CloseClient)
		wire.WriteError(w, err)
		return
	}
	for i, t := range req.Topics {
		c.cur.Set(t, starts[i])
	}

	head := s.header(r)
	inline := false
	if nc, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.sock = push.NewConnSink(nc, true)
		c.Attach(sub, &c.sock, c.release)
	} else {
		inline, head = true, nil
		c.Attach(sub, newHTTPSink(w), c.release)
	}
	s.opts.OnConn(1)
	s.track(c)

	b := append(head, "retry: "...)
	b = strconv.AppendInt(b, s.opts.Retry.Milliseconds(), 10)
	b = append(b, "\nid: "...)
	b = c.cur.AppendEncoded(b)
	if hbEvent {
		// An EventSource dispatches this one, so the page sees the stream
		// open and its starting cursor (lastEventId) before any event.
		b = append(b, '\n')
		b = append(b, heartbeatEvent...)
	} else {
		b = append(b, "\n\n"...)
	}
	c.SendNow(b)
	if inline {
		c.ServeInline(r.Context())
		return
	}
	c.Run() // flush what recovery queued; later writes run on demand
}

// header builds the raw HTTP response head for a hijacked stream.
func (s *Handler) header(r *http.Request) []byte {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n")
	if o := r.Header.Get("Origin"); o != "" {
		if allow := s.opts.AllowOrigin(o); allow != "" {
			b.WriteString("Access-Control-Allow-Origin: " + allow + "\r\nVary: Origin\r\n")
			if allow != "*" {
				b.WriteString("Access-Control-Allow-Credentials: true\r\n") // as the server's cors
			}
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// conn is one SSE stream: the writer role (package push) with this
// transport's framing.
type conn struct {
	push.Writer
	h       *Handler
	sock    push.ConnSink // the hijacked connection; zero when served inline
	hbEvent bool          // heartbeats as named events (?heartbeat=event); static
	bucket  int           // guarded by h.mu

	cur cursor.Cursor // the stream's position; owned by the writer role
}

// release closes the stream's connection and forgets it; the writer calls
// it once, after the last frame.
func (c *conn) release() {
	if c.sock.Conn != nil {
		c.sock.Conn.Close()
	}
	c.h.untrack(c)
	c.h.opts.OnConn(-1)
}

var (
	heartbeat      = []byte(": hb\n\n")
	heartbeatEvent = []byte("event: heartbeat\ndata: {}\n\n")
)

// AppendIdle appends a heartbeat: a comment, or the named event a page
// asked for with ?heartbeat=event (no id line: it moves no cursor).
func (c *conn) AppendIdle(b []byte) []byte {
	if c.hbEvent {
		return append(b, heartbeatEvent...)
	}
	return append(b, heartbeat...)
}

// parseHeartbeat reads the heartbeat= parameter: absent or "comment" for
// the ": hb" comment, "event" for a named event an EventSource dispatches.
func parseHeartbeat(v []string) (bool, error) {
	switch {
	case len(v) == 0:
		return false, nil
	case len(v) > 1:
		return false, fmt.Errorf("%w: heartbeat is given %d times; give it once", hub.ErrBadInput, len(v))
	case v[0] == "" || v[0] == "comment":
		return false, nil
	case v[0] == "event":
		return true, nil
	}
	return false, fmt.Errorf("%w: heartbeat=%q: use heartbeat=event (a named event EventSource dispatches) or heartbeat=comment (the default)", hub.ErrBadInput, v[0])
}

// AppendItems appends the frames of queued events, gaps and presence
// changes, moving the stream's cursor.
func (c *conn) AppendItems(b []byte, items []hub.Item) []byte {
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
	return b
}

// FrameEnd finds where the frame holding byte n of b ends: frames end
// with a blank line, and no frame holds one inside.
func (c *conn) FrameEnd(b []byte, skip, n int) int { return frameEnd(b, skip, n) }

func frameEnd(b []byte, skip, n int) int {
	switch {
	case n < skip:
		return skip
	case n == skip, n >= len(b), n >= 2 && b[n-2] == '\n' && b[n-1] == '\n':
		return n
	}
	from := max(n-1, skip)
	if i := bytes.Index(b[from:], frameSep); i >= 0 {
		return from + i + len(frameSep)
	}
	return len(b)
}

var frameSep = []byte("\n\n")

// AppendEnd appends the error event that ends a stream the server ends
// (none when the client left), with the reason table's code and message.
// A drain's also carries a retry: hint spread over a few retry periods, so
// that the herd of reconnects does not come back at once.
func (c *conn) AppendEnd(b []byte, why hub.CloseReason) ([]byte, time.Duration) {
	if why == hub.CloseClient {
		return b, 0
	}
	if why == hub.CloseShutdown {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, push.Jitter(c.h.opts.Retry).Milliseconds(), 10)
		b = append(b, '\n')
	}
	r := reason.MustOf(why.Code())
	b = append(b, "event: error\ndata: {\"code\":\""...)
	b = append(b, r.Code...)
	b = append(b, `","message":`...)
	b = wire.AppendString(b, r.Message)
	return append(b, "}\n\n"...), time.Second
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

// httpSink writes a stream that could not be hijacked (HTTP/2) through
// the handler's ResponseWriter.
type httpSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newHTTPSink(w http.ResponseWriter) *httpSink {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &httpSink{w: w, rc: http.NewResponseController(w)}
}

// Write reports 0 bytes sent on an error: what left the buffers is unknown.
func (s *httpSink) Write(b []byte) (int, error) {
	if _, err := s.w.Write(b); err != nil {
		return 0, err
	}
	if err := s.rc.Flush(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// SetWriteDeadline sets the response's write deadline.
func (s *httpSink) SetWriteDeadline(t time.Time) { s.rc.SetWriteDeadline(t) }

// TryWrite cannot write without blocking here.
func (s *httpSink) TryWrite([]byte) (int, error) { return 0, netio.ErrNoTry }

// PeerClosed cannot tell: a gone client shows as a failed write.
func (s *httpSink) PeerClosed() bool { return false }
