package limit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The configuration keys of the connection limits, as refusals name them.
const (
	KeyMaxConnections      = "limits.max_connections"
	KeyMaxConnectionsPerIP = "limits.max_connections_per_ip"
	KeyNewConnectionsPerIP = "limits.new_connections_per_ip"
)

// Refusal says why a connection, or a request, was refused: which limit
// (its configuration key), how a client should read it, and when to try
// again.
type Refusal struct {
	// Key is the configuration key of the limit, such as
	// limits.max_connections_per_ip.
	Key string
	// Node says the node as a whole is full (limits.max_connections): an
	// HTTP answer is 503, not 429, and another node may take the client.
	Node bool
	// RetryAfter is when the client may try again.
	RetryAfter time.Duration
	// Message says what happened and names Key, for people.
	Message string
}

// Name returns the limit's name: its key without the section, as the
// metric's limit label has it (max_connections_per_ip).
func (r *Refusal) Name() string { return Name(r.Key) }

// Name returns the last segment of a configuration key: the name of a
// limit in metrics.
func Name(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '.' {
			return key[i+1:]
		}
	}
	return key
}

// ConnsOptions configure NewConns. Zero fields mean no limit.
type ConnsOptions struct {
	Max      int // open connections of the node, over every listener
	MaxPerIP int // open connections of one client address
	// NewPerIP is the new connections one client address may open per
	// second, on average; NewPerIPBurst how many at once.
	NewPerIP      float64
	NewPerIPBurst int
	// Exempt are the client addresses the per-address limits do not
	// apply to: the host itself, a reverse proxy or load balancer that
	// all clients come through.
	Exempt []netip.Prefix
	// OnRefuse is told of every refusal, to count it; it must not block.
	OnRefuse func(*Refusal)
}

// Conns counts a node's open connections, in total and per client address,
// and paces each address's new connections. One Conns is shared by all
// the node's listeners (HTTP and gRPC), so the total covers both. An IPv6
// client is counted by its /64 network: one host is usually given a whole
// /64, and would otherwise have as many addresses as it likes.
type Conns struct {
	opts ConnsOptions // static
	pace *Rates[netip.Addr]

	mu    sync.Mutex // guards total and perIP
	total int
	perIP map[netip.Addr]int32 // addresses with open counted connections
}

// NewConns returns a counter with no connection open.
func NewConns(o ConnsOptions) *Conns {
	if o.OnRefuse == nil {
		o.OnRefuse = func(*Refusal) {}
	}
	return &Conns{
		opts:  o,
		pace:  NewRates[netip.Addr](RatesOptions{Rate: o.NewPerIP, Burst: o.NewPerIPBurst}),
		perIP: make(map[netip.Addr]int32),
	}
}

// Open returns the number of open connections.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Exempt reports whether the per-address limits skip ip.
func (c *Conns) Exempt(ip netip.Addr) bool { return exempt(c.opts.Exempt, ip) }

func exempt(list []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return true // not an IP client (a Unix socket): nothing to count it by
	}
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientKey returns what a client address is counted by: the address
// itself for IPv4, its /64 network for IPv6.
func ClientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// admit counts a new connection from ip, or says why it may not open.
// perIP reports whether it was counted against its address (release it
// with the same).
func (c *Conns) admit(ip netip.Addr, now time.Time) (key netip.Addr, perIP bool, r *Refusal) {
	key = ClientKey(ip)
	free := c.Exempt(ip)
	if !free {
		if ok, wait := c.pace.Allow(key, now, 1); !ok {
			return key, false, c.refuse(&Refusal{
				Key:        KeyNewConnectionsPerIP,
				RetryAfter: roundUp(wait),
				Message: fmt.Sprintf("too many new connections from %s: at most %g a second (burst %d, %s); retry later",
					key, c.pace.Rate(), c.pace.Burst(), KeyNewConnectionsPerIP),
			})
		}
	}
	perIP = !free && c.opts.MaxPerIP > 0
	c.mu.Lock()
	switch {
	case c.opts.Max > 0 && c.total >= c.opts.Max:
		c.mu.Unlock()
		return key, false, c.refuse(&Refusal{
			Key: KeyMaxConnections, Node: true, RetryAfter: spread(),
			Message: fmt.Sprintf("the server holds as many connections as it takes (%d, %s); retry later or elsewhere",
				c.opts.Max, KeyMaxConnections),
		})
	case perIP && int(c.perIP[key]) >= c.opts.MaxPerIP:
		c.mu.Unlock()
		return key, false, c.refuse(&Refusal{
			Key: KeyMaxConnectionsPerIP, RetryAfter: spread(),
			Message: fmt.Sprintf("%s has as many connections open as one client may (%d, %s); close some or retry later",
				key, c.opts.MaxPerIP, KeyMaxConnectionsPerIP),
		})
	}
	c.total++
	if perIP {
		c.perIP[key]++
	}
	c.mu.Unlock()
	return key, perIP, nil
}

func (c *Conns) refuse(r *Refusal) *Refusal {
	c.opts.OnRefuse(r)
	return r
}

// release uncounts a connection admit counted.
func (c *Conns) release(key netip.Addr, perIP bool) {
	c.mu.Lock()
	c.total--
	if perIP {
		if n := c.perIP[key] - 1; n > 0 {
			c.perIP[key] = n
		} else {
			delete(c.perIP, key)
		}
	}
	c.mu.Unlock()
}

// roundUp rounds a wait up to whole seconds, as Retry-After counts them.
func roundUp(d time.Duration) time.Duration {
	return max(time.Second, (d+time.Second-1)/time.Second*time.Second)
}

// spread returns a retry hint of one to four seconds, so that clients
// refused together do not all come back together.
func spread() time.Duration { return time.Duration(1+rand.IntN(4)) * time.Second }

// Refuser answers a connection refused by a Listener in the listener's
// protocol (an HTTP answer, an HTTP/2 GOAWAY) and returns; the Listener
// closes the connection then. It runs in a goroutine of its own and must
// bound its time with deadlines on nc.
type Refuser func(nc net.Conn, r *Refusal)

// maxRefusing bounds the connections being answered a refusal at once;
// beyond it a refused connection is closed without an answer.
const maxRefusing = 64

// Listener admits connections through a Conns: Accept returns those within
// the limits, counted until they are closed, and hands the others to the
// Refuser. Close ends the refusals under way too.
type Listener struct {
	net.Listener
	conns  *Conns  // static
	refuse Refuser // static

	mu       sync.Mutex // guards refusing and closed
	refusing map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup // the refusals' goroutines
}

// Listen returns ln admitting connections through c; refuse answers the
// refused ones (nil closes them without an answer).
func (c *Conns) Listen(ln net.Listener, refuse Refuser) *Listener {
	return &Listener{Listener: ln, conns: c, refuse: refuse, refusing: make(map[net.Conn]struct{})}
}

// Accept returns the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, perIP, r := l.conns.admit(remoteIP(nc), time.Now())
		if r == nil {
			return &conn{Conn: nc, owner: l.conns, key: key, perIP: perIP}, nil
		}
		l.refuseConn(nc, r)
	}
}

// refuseConn answers nc's refusal in a goroutine, or closes it at once
// when too many refusals are under way.
func (l *Listener) refuseConn(nc net.Conn, r *Refusal) {
	l.mu.Lock()
	if l.refuse == nil || l.closed || len(l.refusing) >= maxRefusing {
		l.mu.Unlock()
		nc.Close()
		return
	}
	l.refusing[nc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		l.refuse(nc, r)
		nc.Close()
		l.mu.Lock()
		delete(l.refusing, nc)
		l.mu.Unlock()
	}()
}

// Close closes the listener and the connections being refused, and waits
// for their goroutines.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	for nc := range l.refusing {
		nc.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// remoteIP returns the client address of nc; the zero Addr when it has
// none (a Unix socket).
func remoteIP(nc net.Conn) netip.Addr {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// conn is an admitted connection: closing it frees its place.
type conn struct {
	net.Conn
	owner  *Conns     // static
	key    netip.Addr // static: what it is counted by
	perIP  bool       // static: counted against key
	closed atomic.Bool
}

// Close frees the connection's place, then closes it: by the time the
// client sees the close, another connection may take the place.
func (c *conn) Close() error {
	c.release()
	return c.Conn.Close()
}

// release frees the connection's place, once.
func (c *conn) release() {
	if c.closed.CompareAndSwap(false, true) {
		c.owner.release(c.key, c.perIP)
	}
}

// SyscallConn returns the socket's raw connection, so that transports that
// work on the socket (SSE and WebSocket writers, the WebSocket poller)
// still can.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("limit: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// CloseWrite shuts down the writing side, as a lingering close does
// (netio.LingerClose) before it reads out what the client still sends. It
// frees the connection's place first: the server has said its last word,
// and a client that goes on sending must not keep the place for the
// linger's few seconds.
func (c *conn) CloseWrite() error {
	c.release()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the accepted connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// DefaultMaxConns is the connection cap taken when none is configured:
// the open-file limit less a headroom of 10% or 512, whichever is less,
// for the engine's files and outgoing connections, so that accept(2) never
// fails for want of a file descriptor (0 when the limit is unknown: no
// cap).
func DefaultMaxConns() int {
	n := OpenFileLimit()
	return max(n-n/10, n-512)
}
