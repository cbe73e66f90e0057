package proxyproto

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The reasons Listener gives OnReject.
const (
	RejectTimeout   = "timeout"   // no whole header within Options.Timeout
	RejectMalformed = "malformed" // no header, or a header that breaks the specification
	RejectClosed    = "closed"    // the peer closed or reset the connection within the header
	RejectBusy      = "busy"      // Options.MaxPending headers were being read already
)

// Options configure Listen.
type Options struct {
	// Trusted are the networks of the proxies: a connection from one must
	// start with a header, whose client address replaces the connection's.
	// A connection from elsewhere is returned as it is, and a header it
	// sends is just bytes to the protocol behind it.
	Trusted []netip.Prefix
	// Timeout bounds the time a trusted peer takes to send the whole
	// header; default 5s. (AWS's NLB sends it with the client's first
	// bytes, so it waits on the client too.)
	Timeout time.Duration
	// MaxPending bounds the connections whose header is being read at
	// once; beyond it a trusted peer's connection is closed at once.
	// Default 1024.
	MaxPending int
	// OnReject is told of each connection closed for its header, with the
	// reason (RejectTimeout, …), to count it; it must not block.
	OnReject func(reason string)
	// Log receives a line per rejected connection at debug level, and at
	// most one a minute at warn level with the number since the last;
	// nil logs nothing.
	Log *slog.Logger
}

// Listener returns the connections of a net.Listener with the client
// address a trusted proxy's PROXY protocol header gives as their
// RemoteAddr. A trusted peer's header is read in a goroutine of its own,
// so a slow one holds up no other connection; the connection is returned
// by Accept once its header is in. A connection from an untrusted peer is
// returned at once, unwrapped: it costs a comparison of its address with
// the trusted networks, no read and no allocation.
//
// To return a connection whose header came in while Accept waits in the
// wrapped listener, Listener wakes that Accept with a deadline in the
// past: the wrapped listener must have SetDeadline (TCP and Unix
// listeners do).
type Listener struct {
	net.Listener
	opts     Options                                   // static
	deadline interface{ SetDeadline(time.Time) error } // static: the wrapped listener's
	queued   atomic.Int32                              // len(ready), read by Accept without the lock
	wg       sync.WaitGroup                            // the header readers

	mu      sync.Mutex            // guards the following fields
	pending map[net.Conn]struct{} // connections whose header is being read
	ready   []net.Conn            // connections whose header is in, for Accept
	closed  bool

	warnMu     sync.Mutex // guards the following fields
	lastWarn   time.Time
	suppressed int
}

// Listen returns ln reading the PROXY protocol header of connections from
// opts.Trusted. It fails when ln cannot be given a deadline.
func Listen(ln net.Listener, opts Options) (*Listener, error) {
	d, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return nil, errors.New("proxyproto: the listener has no SetDeadline")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1024
	}
	if opts.OnReject == nil {
		opts.OnReject = func(string) {}
	}
	return &Listener{Listener: ln, opts: opts, deadline: d, pending: make(map[net.Conn]struct{})}, nil
}

// Accept returns the next connection: an untrusted peer's as accepted, a
// trusted peer's once its header is read.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if l.queued.Load() > 0 {
			if c := l.pop(); c != nil {
				return c, nil
			}
		}
		nc, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// woken: a header came in (see wake)
				l.deadline.SetDeadline(time.Time{})
				continue
			}
			return nil, err
		}
		if !l.trusted(nc) {
			return nc, nil
		}
		l.start(nc)
	}
}

// trusted reports whether nc comes from a trusted network.
func (l *Listener) trusted(nc net.Conn) bool {
	a, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok || len(l.opts.Trusted) == 0 {
		return false
	}
	ip := a.AddrPort().Addr().Unmap()
	for _, p := range l.opts.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// pop takes the first connection whose header is in, or returns nil.
func (l *Listener) pop() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ready) == 0 {
		return nil
	}
	c := l.ready[0]
	l.ready[0] = nil
	l.ready = l.ready[1:]
	l.queued.Add(-1)
	return c
}

// start reads nc's header in a goroutine, or closes nc when too many are
// being read.
func (l *Listener) start(nc net.Conn) {
	l.mu.Lock()
	if l.closed || len(l.pending) >= l.opts.MaxPending {
		closed := l.closed
		l.mu.Unlock()
		nc.Close()
		if !closed {
			l.reject(nc, RejectBusy, errors.New("too many headers being read at once"))
		}
		return
	}
	l.pending[nc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go l.handshake(nc)
}

// handshake reads nc's header and queues the connection for Accept, or
// closes it.
func (l *Listener) handshake(nc net.Conn) {
	defer l.wg.Done()
	nc.SetReadDeadline(time.Now().Add(l.opts.Timeout))
	h, err := ReadHeader(nc)
	nc.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.pending, nc)
	closed := l.closed
	if err == nil && !closed {
		var c net.Conn = nc
		if !h.Local {
			c = &Conn{Conn: nc, remote: net.TCPAddrFromAddrPort(h.Source)}
		}
		l.ready = append(l.ready, c)
		l.queued.Add(1)
	}
	l.mu.Unlock()
	switch {
	case closed:
		nc.Close()
	case err != nil:
		nc.Close()
		l.reject(nc, reason(err), err)
	default:
		l.wake()
	}
}

// wake makes an Accept waiting in the wrapped listener return, to take
// the connection just queued. The connection is queued first, and Accept
// clears the deadline before it looks at the queue: either Accept sees
// the connection, or the deadline is set after it cleared it and wakes it.
func (l *Listener) wake() {
	l.deadline.SetDeadline(time.Unix(1, 0))
}

// reason classifies a ReadHeader error.
func reason(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return RejectTimeout
	case errors.Is(err, ErrNoHeader), errors.Is(err, ErrMalformed):
		return RejectMalformed
	}
	return RejectClosed
}

// reject counts and logs a connection closed for its header.
func (l *Listener) reject(nc net.Conn, why string, err error) {
	l.opts.OnReject(why)
	if l.opts.Log == nil {
		return
	}
	peer := nc.RemoteAddr().String()
	l.opts.Log.Debug("proxy protocol: connection from a trusted proxy closed", "peer", peer, "reason", why, "err", err)
	l.warnMu.Lock()
	now := time.Now()
	if now.Sub(l.lastWarn) < time.Minute {
		l.suppressed++
		l.warnMu.Unlock()
		return
	}
	n := l.suppressed
	l.lastWarn, l.suppressed = now, 0
	l.warnMu.Unlock()
	l.opts.Log.Warn("proxy protocol: connection from a trusted proxy closed for its header (proxy_protocol.trusted lists its address: is PROXY protocol on there?)",
		"peer", peer, "reason", why, "err", err, "more_since_last_warning", n)
}

// Close closes the listener and the connections whose header is being
// read or that Accept has not taken, and waits for the header readers.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	for nc := range l.pending {
		nc.Close()
	}
	for _, c := range l.ready {
		c.Close()
	}
	l.ready = nil
	l.queued.Store(0)
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// Conn is a connection with the client address a PROXY protocol header
// gave. It exposes the socket (SyscallConn), the write side's shutdown
// (CloseWrite) and the connection it wraps (NetConn), as the transports
// need them.
type Conn struct {
	net.Conn
	remote net.Addr // static
}

// RemoteAddr returns the client's address, from the header.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SyscallConn returns the socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("proxyproto: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite shuts down the writing side.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxyproto: connection cannot shut down its write side")
}

// NetConn returns the accepted connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }
