// Package ws serves herald's WebSocket protocol (GET /v1/ws). docs/protocol.md
// is its specification; this comment is the summary, and the constants in
// frames.go and command.go match it one to one.
//
// Every message is one JSON object, sent as a text frame (binary frames are
// read the same way). Its "op" names it.
//
//	client → server (each with an "id", a string or number echoed in the reply)
//	  subscribe    topics[], cursor?, cursors[]?, from?, presence?   → subscribed | error
//	  unsubscribe  topics[]                                          → unsubscribed
//	  publish      topic, data | text | data_base64, type?, key?, headers?  → ack | error
//	  presence     topic                                             → presence | error
//	  refresh      token                                             → refreshed | error
//
//	server → client
//	  welcome      first message: client (this connection's id), limits
//	  event        topic, offset, epoch, time, type?, encoding, data, headers?, cursor
//	  gap          topic, reason, requested, resumed, earliest, cursor
//	  join, leave  topic, client, info?, since          (topics with presence on)
//	  subscribed   id, topics[{topic,epoch,offset}], cursor
//	  unsubscribed id, topics[]
//	  ack          id, topic, offset, epoch, cursor, duplicate
//	  presence     id, topic, count, members[]
//	  refreshed    id, subject, expires, unsubscribed[]
//	  error        id?, code, message
//
// An event's cursor holds its own topic only, so its frame is encoded once
// and shared by every connection (event.FrameWS, event.FrameWSDeflate); a
// client resumes several topics with one subscribe carrying each topic's
// last cursor (cursors) or one merged cursor. Errors are error messages;
// a connection ends only with a close code (frames.go, docs/protocol.md):
// 1001 shutting_down, 1002 protocol_error, 1007 invalid_payload, 1009
// too_large, 1011 internal_error, 1013 unavailable, 4000 idle_timeout,
// 4001 token_expired, 4008 slow_consumer, 4029 limit_reached.
//
// Resource use follows the SSE transport (docs/decisions/0003, 0006): the
// handler upgrades with gobwas/ws and returns, leaving an idle connection
// with no goroutine, no buffer and no timer. On Linux an epoll poller starts
// a reader when the client sends something (elsewhere a goroutine reads each
// connection); writers run from a small pool, write without blocking and
// coalesce what is queued into one write; one wheel sends pings and ends
// idle connections.
package ws

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/push"
	"github.com/heraldhq/herald/internal/wire"
)

// ProtocolVersion is the version of the protocol, sent in the welcome.
const ProtocolVersion = 1

// Options configure the handler. Zero fields take the defaults noted.
type Options struct {
	PingInterval    time.Duration // a ping after this long without a frame from the client; default 25s
	IdleTimeout     time.Duration // a client silent this long is closed with idle_timeout; default 60s
	WriteTimeout    time.Duration // a write blocked this long ends the connection as a slow consumer; default 10s
	MaxMessageBytes int           // the largest client message, after decompression; default 1 MiB + 64 KiB
	Compression     bool          // negotiate permessage-deflate when the client offers it
	Writers         int           // goroutines writing woken connections; 0: GOMAXPROCS-1, at least 1 (push.Group)
	MaxQueueBytes   int           // per connection; 0 uses the hub's
	MaxTopics       int           // topics one connection follows (limits.max_subscriptions_per_connection); default MaxTopicsPerConn
	// MaxConns caps the open connections; a connection over it is
	// accepted and closed at once with limit_reached (4029), which a
	// browser can see, unlike a refused upgrade. 0 means no cap.
	MaxConns int
	// AllowOrigin returns a non-empty value for a browser Origin allowed
	// to connect (the CORS setting). Pages of the server's own origin are
	// always allowed; requests without Origin (not from a browser) too.
	AllowOrigin func(origin string) string
	// Tokens says where the handshake's credentials are looked for; the
	// hub's Authenticator decides what they are worth before the upgrade
	// (a refusal is the API's error answer), and when they expire the
	// connection is closed with token_expired.
	Tokens wire.TokenSources
	// OnConn is told of connections opening (+1) and ending (-1).
	OnConn func(delta int)
	// Groups serves the consumer-group commands (groups.go); nil answers
	// them unavailable.
	Groups *group.Manager
	// MaxWait bounds a fetch's wait (pull.max_wait); default 120s.
	MaxWait time.Duration
	Log     *slog.Logger

	tick time.Duration // the wheel's period; wheelTick unless a test sets it
}

// Handler serves WebSocket connections. Create it with New; end it with
// Close, then Wait for its connections to finish.
type Handler struct {
	hub  *hub.Hub
	opts Options         // static after New
	ctx  context.Context // for history reads during catch-up

	group *push.Group        // the connections' writers (package push)
	rpool *netio.Pool[*conn] // runs the readers of connections the poller found readable
	poll  *poller            // nil: every connection has a reading goroutine

	mu     sync.Mutex // guards conns and closed
	conns  map[*conn]struct{}
	closed bool
	count  atomic.Int64 // open connections, for MaxConns

	readers sync.WaitGroup // reading goroutines
	calls   sync.WaitGroup // fetches waiting on a group, and hand-backs (groups.go)
	stop    chan struct{}  // closed by Close: ends the wheel
	wheel   sync.WaitGroup // the wheel goroutine
	once    sync.Once
}

// New returns a running handler over h.
func New(h *hub.Hub, opts Options) *Handler {
	if opts.PingInterval <= 0 {
		opts.PingInterval = 25 * time.Second
	}
	if opts.IdleTimeout <= opts.PingInterval {
		opts.IdleTimeout = max(60*time.Second, 2*opts.PingInterval)
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 120 * time.Second
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 1<<20 + 64<<10
	}
	if opts.MaxTopics <= 0 {
		opts.MaxTopics = MaxTopicsPerConn
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
	if opts.tick <= 0 {
		opts.tick = wheelTick
	}
	s := &Handler{
		hub: h, opts: opts, ctx: context.Background(),
		group: push.NewGroup(opts.Writers, opts.WriteTimeout), rpool: newReaderPool(), conns: make(map[*conn]struct{}), stop: make(chan struct{}),
	}
	if p, err := newPoller(s); err == nil {
		s.poll = p
	} else {
		opts.Log.Debug("ws: no epoll poller; a goroutine reads each connection", "err", err)
	}
	s.wheel.Add(1)
	go s.turn()
	return s
}

// Close refuses new connections, stops the wheel and the poller, and ends
// every open connection with shutting_down (the hub's Close has usually
// done that already). Then call Wait.
func (s *Handler) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.group.Close() // close frames a stalled client does not take at once are given up
		close(s.stop)
		s.wheel.Wait()
		if s.poll != nil {
			s.poll.close()
		}
		for _, c := range conns {
			c.endWith(shutdown)
			c.Kick(hub.CloseShutdown) // a final write waiting on a stalled client gives up now
		}
	})
}

// Wait blocks until every connection has ended and its goroutines are
// done, or ctx is done.
func (s *Handler) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.group.Wait(context.Background())
		s.readers.Wait()
		s.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conns returns the number of open connections.
func (s *Handler) Conns() int { return int(s.count.Load()) }

// shutdown is the close of a connection the handler ends as it closes.
var shutdown = closeFor(reason.ShuttingDown, "the server is draining; reconnect and resume from your cursors")

// ServeHTTP upgrades GET /v1/ws to a WebSocket connection.
func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		wire.WriteErrorCode(w, reason.MethodNotAllowed, "WebSocket connections are opened with GET")
		return
	}
	if !headerHas(r.Header, "Upgrade", "websocket") || !headerHas(r.Header, "Connection", "upgrade") {
		wire.WriteErrorCode(w, reason.BadRequest,
			"this endpoint takes WebSocket connections (Upgrade: websocket); docs/protocol.md describes the protocol")
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !wire.SameOrigin(o, r.Host) && s.opts.AllowOrigin(o) == "" {
		wire.WriteErrorCode(w, reason.Forbidden,
			"origin "+strconv.Quote(o)+" may not open WebSocket connections here (http.cors_origins)")
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		wire.WriteError(w, hub.ErrClosed)
		return
	}
	// The connection's commands run in a context of its own carrying the
	// caller's identity, for as long as the connection lives. It is not
	// derived from the handshake's request: that would keep net/http's
	// request and connection contexts alive with every connection (about
	// 1 KiB of an idle connection's 5).
	_, id, err := s.hub.Authenticate(r.Context(), s.opts.Tokens.Credentials(r, "ws"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	ctx := hub.WithIdentity(clientBase, id)

	u := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout}
	var deflate func() bool
	if s.opts.Compression {
		e, negotiate := negotiator()
		u.Negotiate = negotiate
		deflate = func() bool { _, ok := e.Accepted(); return ok }
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		// gobwas has answered the handshake's error on the connection.
		if nc != nil {
			nc.Close()
		}
		s.opts.Log.Debug("ws: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	var early []byte // frames the client sent right behind its handshake
	if n := rw.Reader.Buffered(); n > 0 {
		p, _ := rw.Reader.Peek(n)
		early = bytes.Clone(p)
	}
	rw = nil // net/http's buffers go back now, not with the connection
	early = drainWrapper(nc, early)

	if m := s.opts.MaxConns; m > 0 && s.count.Load() >= int64(m) {
		closeNow(nc, closeFor(reason.LimitReached, "the server has as many WebSocket connections as it takes; retry later or elsewhere"))
		return
	}
	c := newConn(s, nc, clientBase, ctx, deflate != nil && deflate())
	sub, err := s.hub.NewSubscriber(hub.SubscriberOptions{Wake: c.Wake, Kick: c.Kick, MaxQueueBytes: s.opts.MaxQueueBytes, MaxTopics: s.opts.MaxTopics, Identity: id})
	if err != nil {
		var le *hub.LimitError
		if errors.As(err, &le) {
			closeNow(nc, closeFor(reason.LimitReached, le.Message))
		} else {
			closeNow(nc, shutdown)
		}
		return
	}
	c.sub = sub
	sub.Expire(id.Expires) // then the hub ends it with token_expired, unless refreshed
	if !s.track(c) {
		sub.Close(hub.CloseShutdown)
		closeNow(nc, shutdown)
		return
	}
	c.Attach(sub, &c.out, c.release)
	// The setup holds the writer role until the welcome is out.
	if c.SendNow(c.welcome()) && early != nil {
		c.lastRead.Store(time.Now().UnixNano())
		c.feed(early)
	}
	c.Run() // write what the early commands queued; later writes run on demand
	c.startReading()
}

// drainWrapper appends to early what a wrapper of the connection (such as
// the fast path's handed-off connection) read ahead and still holds: the
// reader works on the socket itself and would miss it. A read with a
// deadline already passed returns such bytes and never touches the socket.
func drainWrapper(nc net.Conn, early []byte) []byte {
	if _, plain := nc.(*net.TCPConn); plain {
		return early
	}
	nc.SetReadDeadline(time.Unix(1, 0))
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	for {
		n, err := nc.Read(buf)
		early = append(early, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	nc.SetReadDeadline(time.Time{})
	return early
}

// closeNow sends a close frame on a connection that never became a conn.
func closeNow(nc net.Conn, ce *closeError) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(appendClose(nil, ce.code, ce.text))
	nc.Close()
}

// track registers c; false when the handler is closed.
func (s *Handler) track(c *conn) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.conns[c] = struct{}{}
	s.count.Add(1)
	s.mu.Unlock()
	s.opts.OnConn(1)
	return true
}

// untrack forgets c once its writer has finished it.
func (s *Handler) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.count.Add(-1)
	s.mu.Unlock()
	s.opts.OnConn(-1)
}

// wheelTick is how often the wheel looks at every connection.
const wheelTick = time.Second

// The wheel's decisions about one connection.
const (
	wheelNone = iota
	wheelPing
	wheelIdle
)

// turn is the wheel: each tick it looks at every connection's clock (a few
// atomic loads each, so 20,000 connections cost well under a millisecond)
// and pings the quiet ones, and ends those silent past the idle timeout.
// (Expired credentials are the hub's: Subscriber.Expire.) Each connection's
// ping threshold has its own
// jitter, so connections opened together do not stay in step.
func (s *Handler) turn() {
	defer s.wheel.Done()
	t := time.NewTicker(s.opts.tick)
	defer t.Stop()
	var due []*conn
	var acts []uint8
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		for c := range s.conns {
			if a := c.due(now); a != wheelNone {
				due = append(due, c)
				acts = append(acts, a)
			}
		}
		s.mu.Unlock()
		for i, c := range due {
			switch acts[i] {
			case wheelPing:
				c.lastPing.Store(now)
				c.AskIdle()
			case wheelIdle:
				c.endWith(closeFor(reason.IdleTimeout, "nothing received for "+s.opts.IdleTimeout.String()+
					" (ws.idle_timeout), not even a pong; reconnect and resume"))
			}
		}
		clear(due)
		due, acts = due[:0], acts[:0]
	}
}

// due decides what the wheel does with c at now (unix nanoseconds).
func (c *conn) due(now int64) uint8 {
	o := &c.h.opts
	read := c.lastRead.Load()
	if now-read >= int64(o.IdleTimeout) {
		return wheelIdle
	}
	if now-max(read, c.lastPing.Load()) >= int64(o.PingInterval)-c.jitter {
		return wheelPing
	}
	return wheelNone
}

// pingJitter returns a connection's ping jitter: up to a fifth of the
// interval, at most 5 s.
func pingJitter(interval time.Duration) int64 {
	j := min(interval/5, 5*time.Second)
	if j <= 0 {
		return 0
	}
	return rand.Int64N(int64(j))
}

// headerHas reports whether a comma-separated header holds token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// clientBase is the context every connection's commands start from: it
// says they come from a client. Shared, as it carries nothing else.
var clientBase = hub.WithOrigin(context.Background(), hub.OriginClient)
