// Package httpfast serves the hottest request of the HTTP API, the
// single-event publish (POST /v1/topics/{topic}/events), without net/http,
// and hands every other connection to net/http untouched.
//
// It owns the listener: each accepted connection starts here. Requests that
// the narrow parser fully understands (parseHead: HTTP/1.1, Content-Length
// bodies, no CORS, no upgrade, no query) are answered here, on a
// keep-alive loop with pipelining and one write per batch of answers.
// The first request it does not understand ends the loop: the connection,
// with every byte read so far and not consumed, is handed to net/http
// through Listener, and net/http serves it from then on exactly as if it
// had accepted it. The answers are the same bytes net/http would send
// (TestSameAnswers checks it); the publish itself is rest.Handler's, so
// validation, the hub's Gate and the answer body have one implementation.
//
// Why: net/http costs about 14 µs of CPU per small request beyond the
// work (header maps, the request context, a background read per request
// with a body); on two cores that capped single-event publishes near 32k
// requests/s. See docs/decisions/0008-http-fast-path.md.
package httpfast

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/rest"
	"github.com/heraldhq/herald/internal/wire"
)

// Publisher publishes one event and appends the answer's body to dst,
// returning the HTTP status; rest.Handler implements it.
type Publisher interface {
	PublishSingle(ctx context.Context, in *rest.Single, dst []byte) (int, []byte)
	MaxEventBytes() int
	// Anonymous returns ctx carrying the identity of a caller that
	// presented no credentials.
	Anonymous(ctx context.Context, remoteAddr string) (context.Context, error)
	// Authenticated returns ctx carrying the identity of the caller whose
	// Authorization header is authorization, and when that identity
	// expires (zero: never). Requests with a cookie go to net/http.
	Authenticated(ctx context.Context, authorization, remoteAddr string) (context.Context, time.Time, error)
	// ErrorAnswer appends the API's error JSON for err to dst and returns
	// its status.
	ErrorAnswer(dst []byte, err error) (int, []byte)
}

// Options configure a Server. Zero fields take the defaults noted.
type Options struct {
	// ReadHeaderTimeout bounds the time a request's head and body may take
	// to arrive, counted from its first byte (from the connection's
	// opening for its first request, as net/http counts), however slowly
	// they trickle in; default 10s.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration // between requests; default 120s
	MaxHeaderBytes    int           // a request's head; default 64 KiB
	// HandOffAll serves no request on the fast path: every connection
	// goes to net/http at once, screened all the same (screen.go).
	HandOffAll bool
	// HandOff, when set, picks connections to hand to net/http at once
	// by their peer: those of reverse proxies whose X-Forwarded-For names
	// a client per request, where the fast path has one identity per
	// connection.
	HandOff func(remote net.Addr) bool
	// Linger closes the connections that end while the client may still
	// be sending; nil closes them at once.
	Linger *netio.Lingerer
}

// Server accepts connections, serves fast-path requests and hands the
// rest to net/http through its Listener.
type Server struct {
	ln   net.Listener
	pub  Publisher
	opts Options
	hand *Listener
	ctx  context.Context // of every fast publish; cancelled by Close

	cancel    context.CancelFunc
	closing   atomic.Bool
	handoffs  atomic.Int64 // connections handed to net/http, for tests
	closeOnce sync.Once
	closeErr  error      // of closing ln
	mu        sync.Mutex // guards conns
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // the accept loop and the connection loops
}

// New returns a server over ln. Start it with Serve, and give
// Listener() to an http.Server.
func New(ln net.Listener, pub Publisher, opts Options) *Server {
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, pub: pub, opts: opts, ctx: ctx, cancel: cancel, conns: make(map[*conn]struct{})}
	s.hand = &Listener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{}), close: s.closeListener}
	s.wg.Add(1) // Serve's, counted before Shutdown can wait
	return s
}

// Listener returns the listener net/http serves: it yields the
// connections the fast path hands off.
func (s *Server) Listener() *Listener { return s.hand }

// Serve accepts connections until the listener is closed (by closing
// Listener(), which http.Server.Shutdown does). It must be called once.
func (s *Server) Serve() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Too many open files and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := &conn{srv: s, nc: nc}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// closeListener stops accepting; the handoff Listener's Close and
// Shutdown call it.
func (s *Server) closeListener() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.closeErr = s.ln.Close()
	})
	s.closeIdle()
	return s.closeErr
}

// closeIdle closes the connections waiting for a request. The others
// close after their current answer.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			c.nc.Close()
		}
	}
}

// Shutdown stops accepting and waits for the fast-path connections to
// finish their current request, until ctx ends; then it closes them.
// Handed-off connections belong to net/http's Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.closeListener(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			s.cancel()
			return nil
		case <-tick.C:
			s.closeIdle()
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.nc.Close()
			}
			s.mu.Unlock()
			s.cancel()
			<-done
			return ctx.Err()
		}
	}
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Listener hands connections from the fast path to net/http.
type Listener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	close func() error
	err   error
}

// Accept returns the next handed-off connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the fast path's accept loop and this listener.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.err = l.close()
	})
	return l.err
}

// Addr is the address of the real listener.
func (l *Listener) Addr() net.Addr { return l.addr }

// give hands c to net/http; false if the listener is closed.
func (l *Listener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// conn is one connection in the fast path.
type conn struct {
	srv   *Server
	nc    net.Conn
	idle  atomic.Bool  // blocked waiting for a request's first byte
	nread atomic.Int64 // bytes read, for tests that must know the server has them
}

// bufSize is the read buffer of a fast-path connection.
const bufSize = 4 << 10

func (c *conn) serve() {
	defer c.srv.forget(c)
	s := c.srv
	if s.opts.HandOffAll || s.opts.HandOff != nil && s.opts.HandOff(c.nc.RemoteAddr()) {
		c.handoff(nil)
		return
	}
	remote := c.nc.RemoteAddr().String()
	anon, err := s.pub.Anonymous(s.ctx, remote)
	if err != nil {
		c.handoff(nil) // net/http answers with the refusal
		return
	}
	// The credentials of the connection's last request, verified: a
	// publisher sends the same Authorization with every request, so
	// requests after the first cost a comparison (no allocation).
	var authHeader []byte
	var authCtx context.Context
	var authExpires time.Time
	buf := make([]byte, 0, bufSize)
	var out, body []byte
	var h head
	var in rest.Single
	start := 0 // of the current request in buf
	// The current request must be in by deadline, set when it starts: one
	// deadline per request, not per read, or a client sending a byte now
	// and then could hold the connection for ever (slowloris). The first
	// request's starts with the connection, as net/http's does; a later
	// one's with its first byte, after an idle wait of up to IdleTimeout.
	deadline := time.Now().Add(s.opts.ReadHeaderTimeout)
	first := true
	for {
		if start == len(buf) {
			if cap(buf) > 64<<10 {
				buf = make([]byte, 0, bufSize) // let a large body's buffer go
			}
			buf, start = buf[:0], 0
		}
		res := parseHead(buf[start:], s.opts.MaxHeaderBytes, &h)
		if res == fast && h.contentLength > s.pub.MaxEventBytes() {
			res = handoff // net/http answers 413 and closes
		}
		if res == fast && len(buf)-start < h.size+h.contentLength {
			if need := h.size + h.contentLength; need > cap(buf)-start {
				nb := make([]byte, len(buf)-start, need)
				copy(nb, buf[start:])
				buf, start = nb, 0
			}
			res = needMore
		}
		switch res {
		case needMore:
			if len(out) > 0 {
				if !c.write(out) {
					return
				}
				out = out[:0]
			}
			if start > 0 && cap(buf)-len(buf) < 512 {
				n := copy(buf, buf[start:])
				buf, start = buf[:n], 0
			}
			if len(buf) == cap(buf) {
				nb := make([]byte, len(buf), 2*cap(buf))
				copy(nb, buf)
				buf = nb
			}
			idle := start == len(buf)
			switch {
			case idle && !first:
				if !c.read(&buf, time.Now().Add(s.opts.IdleTimeout), true) {
					return
				}
				deadline = time.Now().Add(s.opts.ReadHeaderTimeout)
				continue
			case deadline.IsZero():
				deadline = time.Now().Add(s.opts.ReadHeaderTimeout) // a pipelined request, begun with the last read
			}
			if !c.read(&buf, deadline, idle) {
				return
			}
			continue
		case handoff:
			if len(out) > 0 && !c.write(out) {
				return
			}
			c.handoff(buf[start:])
			return
		}

		// A complete fast request.
		data := buf[start+h.size : start+h.size+h.contentLength]
		start += h.size + h.contentLength
		first, deadline = false, time.Time{}
		in = rest.Single{Topic: string(h.topic), Body: data}
		in.ContentType = bytesString(h.contentType)
		if h.key != nil {
			in.Key = string(h.key)
		}
		if h.typ != nil {
			in.Type = string(h.typ)
		}
		if len(h.headers) > 0 {
			in.Headers = make(map[string]string, len(h.headers))
			for _, kv := range h.headers {
				name := lower(kv[0])
				if _, dup := in.Headers[name]; !dup {
					in.Headers[name] = string(kv[1])
				}
			}
		}
		var status int
		ctx, authErr := anon, error(nil)
		if h.auth != nil {
			if authCtx == nil || !bytes.Equal(h.auth, authHeader) || !authExpires.IsZero() && !time.Now().Before(authExpires) {
				authCtx, authExpires, authErr = s.pub.Authenticated(s.ctx, string(h.auth), remote)
				authHeader = append(authHeader[:0], h.auth...)
				if authErr != nil {
					authCtx = nil
				}
			}
			ctx = authCtx
		}
		if authErr != nil {
			status, body = s.pub.ErrorAnswer(body[:0], authErr)
		} else {
			status, body = s.pub.PublishSingle(ctx, &in, body[:0])
		}
		closeAfter := h.close || s.closing.Load()
		out = appendAnswer(out, status, body, in.RetryAfter, closeAfter)
		if closeAfter {
			if c.write(out) {
				s.opts.Linger.Linger(c.nc) // the client may have sent more
			}
			return
		}
		if cap(out) > 64<<10 && len(out) > 32<<10 {
			if !c.write(out) {
				return
			}
			out = out[:0]
		}
	}
}

// read reads more of the connection into buf, waiting until deadline at
// most. idle says no request is under way: shutdown may close the
// connection meanwhile.
func (c *conn) read(buf *[]byte, deadline time.Time, idle bool) bool {
	s := c.srv
	if idle {
		c.idle.Store(true)
		if s.closing.Load() {
			c.nc.Close()
			return false
		}
	}
	c.nc.SetReadDeadline(deadline)
	b := *buf
	n, err := c.nc.Read(b[len(b):cap(b)])
	c.idle.Store(false)
	if n > 0 {
		c.nread.Add(int64(n))
		*buf = b[:len(b)+n]
		return true
	}
	if err != nil {
		c.nc.Close()
		return false
	}
	return true
}

func (c *conn) write(b []byte) bool {
	if _, err := c.nc.Write(b); err != nil {
		c.nc.Close()
		return false
	}
	return true
}

// handoff gives the connection to net/http with pending, the bytes read
// and not consumed, in front of what is still to be read.
func (c *conn) handoff(pending []byte) {
	c.srv.handoffs.Add(1)
	c.nc.SetReadDeadline(time.Time{})
	hc := &handedConn{Conn: c.nc, srv: c.srv, sc: screen{maxHead: c.srv.opts.MaxHeaderBytes}}
	if len(pending) > 0 {
		hc.pre = append([]byte(nil), pending...)
	}
	if !c.srv.hand.give(hc) {
		c.nc.Close()
	}
}

// handedConn is a connection handed to net/http: reads return the bytes
// the fast path had read first, and pass through the screen, which
// follows the requests. Its Close is a lingering close. It keeps
// syscall.Conn so that transports that work on the socket (SSE's peek
// and non-blocking writes, the WebSocket poller) still can.
type handedConn struct {
	net.Conn
	srv *Server

	rmu    sync.Mutex // held by Read; Close takes it to wait a Read out
	pre    []byte     // guarded by rmu, as are the fields below
	sc     screen
	broken error // every Read's error, once the connection was refused

	bad    atomic.Pointer[string] // why its requests are refused (Guard)
	closed atomic.Bool
}

// errHeadTooLarge is what net/http reads after the screen answered a head
// over the limit: a read error, so that it closes without answering.
var errHeadTooLarge = &net.OpError{Op: "read", Net: "tcp", Err: errors.New("request head over the limit, answered 431")}

func (c *handedConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.broken != nil {
		return 0, c.broken
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	var n int
	var err error
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.sc.state != scanOff {
		ok := c.sc.scan(p[:n])
		if c.sc.bad != "" && c.bad.Load() == nil {
			why := c.sc.bad
			c.bad.Store(&why)
		}
		if !ok {
			c.refuseHead()
			return 0, c.broken
		}
	}
	return n, err
}

// refuseHead answers a request whose head is over the limit, in the API's
// form, instead of net/http's plain text. net/http is waiting for that
// head, so it is not writing.
func (c *handedConn) refuseHead() {
	c.broken = errHeadTooLarge
	max := c.srv.opts.MaxHeaderBytes
	body := wire.AppendError(nil, reason.HeadersTooLarge, "the request's head (request line and headers) is over "+
		strconv.Itoa(max)+" bytes; send a shorter URL or fewer and shorter headers")
	c.Conn.SetWriteDeadline(time.Now().Add(c.srv.opts.ReadHeaderTimeout))
	c.Conn.Write(appendAnswer(nil, http.StatusRequestHeaderFieldsTooLarge, body, 0, true))
}

// Close closes the connection with a lingering close: the client may be
// sending still (a body not read, a head cut short). A Read under way
// returns first.
func (c *handedConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	c.Conn.SetReadDeadline(time.Unix(1, 0)) // a Read under way returns
	c.rmu.Lock()
	c.pre = nil
	c.rmu.Unlock()
	c.srv.opts.Linger.Linger(c.Conn)
	return nil
}

// CloseWrite shuts the connection's write side down (net/http does before
// it closes a connection whose request it did not read to the end).
func (c *handedConn) CloseWrite() error { return netio.CloseWrite(c.Conn) }

// refused returns why requests on the connection are refused, or "".
func (c *handedConn) refused() string {
	if p := c.bad.Load(); p != nil {
		return *p
	}
	return ""
}

// SyscallConn returns the socket's raw connection.
func (c *handedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("httpfast: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// NetConn returns the accepted connection.
func (c *handedConn) NetConn() net.Conn { return c.Conn }

// appendAnswer appends an HTTP/1.1 answer with a JSON body, with the
// headers net/http sends for rest's answers (Retry-After when retry is
// set).
func appendAnswer(b []byte, status int, body []byte, retry time.Duration, closeAfter bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: application/json\r\n"...)
	if retry > 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendInt(b, int64(wire.RetrySeconds(retry)), 10)
		b = append(b, "\r\n"...)
	}
	if status >= 400 {
		b = append(b, "X-Content-Type-Options: nosniff\r\n"...)
	}
	b = append(b, "Date: "...)
	b = appendDate(b)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if closeAfter {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// dateCache holds the Date header value of the current second.
var dateCache atomic.Pointer[dateStamp]

type dateStamp struct {
	unix int64
	text []byte
}

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.unix != now.Unix() {
		d = &dateStamp{unix: now.Unix(), text: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.text...)
}

// bytesString returns b as a string, without allocating for the common
// content types.
func bytesString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "application/json":
		return "application/json"
	case "text/plain":
		return "text/plain"
	case "application/octet-stream":
		return "application/octet-stream"
	}
	return string(b)
}

// lower returns the ASCII lower-case of b as a string.
func lower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// connKey is the context key of a request's handed-off connection.
type connKey struct{}

// ConnContext is http.Server's ConnContext for the connections of a
// Listener: it lets Guard find the connection a request came on.
func ConnContext(ctx context.Context, nc net.Conn) context.Context {
	if hc, ok := nc.(*handedConn); ok {
		return context.WithValue(ctx, connKey{}, hc)
	}
	return ctx
}

// Guard refuses the requests of a connection on which the screen found a
// request net/http would take but must not (request smuggling, a folded
// header, a malformed chunked body): 400 in the API's form, and the
// connection closes after it (RFC 9112 §6.1). It needs ConnContext.
//
// The screen reads ahead of net/http, so a request pipelined in front of
// the bad one may be refused too: the whole connection is suspect.
func Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hc, ok := r.Context().Value(connKey{}).(*handedConn); ok {
			if why := hc.refused(); why != "" {
				w.Header().Set("Connection", "close")
				wire.WriteErrorCode(w, reason.BadRequest, why)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
