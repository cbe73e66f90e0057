package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"
)

// One process can hold at most RLIMIT_NOFILE sockets (20,000 on the
// project's machines, so about 19,900 subscribers), and one source address
// gives at most ~28,000 ephemeral ports towards one server address (the
// range in /proc/sys/net/ipv4/ip_local_port_range). Loads beyond that need
// several bench processes (--procs), each spreading its connections over
// source addresses 127.0.0.1 … 127.0.0.N (--source-addrs).

// Dialer opens TCP connections to the server, spreading them over a list of
// local source addresses. It is safe for concurrent use.
type Dialer struct {
	addr    string         // the server's host:port
	host    string         // the Host header value
	grpc    string         // the server's gRPC host:port (default: addr's host, port 9090)
	perConn int            // gRPC Subscribe streams per connection (0, 1: one each)
	locals  []*net.TCPAddr // source addresses, round robin; empty lets the kernel choose
	next    atomic.Uint64
	timeout time.Duration
}

// NewDialer returns a dialer for the server at base (http://host:port).
// When sourceAddrs > 0 and the server is on a loopback address, connections
// come from 127.0.0.(first+1) … 127.0.0.(first+sourceAddrs).
func NewDialer(base string, sourceAddrs, first int) (*Dialer, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parse server URL %q: %w", base, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("server URL %q: only http:// is supported", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	d := &Dialer{addr: addr, host: u.Host, grpc: net.JoinHostPort(u.Hostname(), DefaultGRPCPort), timeout: 10 * time.Second}
	if sourceAddrs > 0 {
		ip := net.ParseIP(u.Hostname())
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, errors.New("--source-addrs needs a server on an IPv4 loopback address (127.x.x.x)")
		}
		for i := range sourceAddrs {
			n := first + i + 1
			d.locals = append(d.locals, &net.TCPAddr{IP: net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))})
		}
	}
	return d, nil
}

// UseGRPC sets the server's gRPC address (host:port; "" keeps the
// default, the server's host with port 9090) and how many Subscribe
// streams of the grpc transport share a connection (0 or 1: a connection
// each, as SSE has). Call it before the dialer is used.
func (d *Dialer) UseGRPC(addr string, streamsPerConn int) error {
	if streamsPerConn < 0 {
		return fmt.Errorf("--streams-per-conn %d: use 1 or more", streamsPerConn)
	}
	d.perConn = streamsPerConn
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--grpc-addr %q is not host:port: %w", addr, err)
	}
	d.grpc = addr
	return nil
}

// forGRPC returns a dialer of the same source addresses towards the
// server's gRPC address.
func (d *Dialer) forGRPC() *Dialer {
	return &Dialer{addr: d.grpc, host: d.grpc, grpc: d.grpc, perConn: d.perConn, locals: d.locals, timeout: d.timeout}
}

// loopbackV4 returns the server's IP when it is an IPv4 loopback address.
func (d *Dialer) loopbackV4() net.IP {
	host, _, err := net.SplitHostPort(d.addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil
	}
	return ip.To4()
}

// Dial opens one connection.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	if len(d.locals) > 0 {
		nd.LocalAddr = d.locals[d.next.Add(1)%uint64(len(d.locals))]
	}
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	return c, nil
}

// withRetry calls open until it succeeds, ctx ends or attempts are used up,
// backing off between tries. A 4xx answer is final: asking again would get
// the same.
func withRetry[T any](ctx context.Context, attempts int, open func(context.Context) (T, error)) (T, error) {
	backoff := 50 * time.Millisecond
	for i := 1; ; i++ {
		v, err := open(ctx)
		var resp *errResponse
		if err == nil || i >= attempts || ctx.Err() != nil || (errors.As(err, &resp) && resp.status < 500) {
			return v, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
