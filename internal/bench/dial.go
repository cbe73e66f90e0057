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
	d := &Dialer{addr: addr, host: u.Host, timeout: 10 * time.Second}
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
