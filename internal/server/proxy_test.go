package server_test

// Tests of the PROXY protocol on the listeners (docs/security.md, "Client
// addresses"), over real sockets. The trusted proxy is 127.0.0.2: the
// test's own clients (metrics, helpers) connect from 127.0.0.1, an
// untrusted peer, as before.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// proxyAddr is the trusted proxy's address.
const proxyAddr = "127.0.0.2"

// addrAuth lets everyone in as anonymous and records the address each
// transport's credentials carry, as "transport host".
type addrAuth struct {
	mu   sync.Mutex
	seen []string
}

func (a *addrAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	host := c.RemoteAddr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr); err == nil {
		host = ap.Addr().String()
	}
	a.mu.Lock()
	a.seen = append(a.seen, c.Transport+" "+host)
	a.mu.Unlock()
	return &hub.Identity{Method: "anonymous", Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
}

// saw reports whether transport's credentials carried host.
func (a *addrAuth) saw(transport, host string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.seen, transport+" "+host)
}

type allowAll struct{}

func (allowAll) Allow(context.Context, hub.Action, string) error { return nil }

// v1Header and v2Header are PROXY protocol headers for a client at
// client:40000 connecting to 10.0.0.1:443.
func v1Header(client string) []byte {
	return []byte(fmt.Sprintf("PROXY TCP4 %s 10.0.0.1 40000 443\r\n", client))
}

func v2Header(client string) []byte {
	a := netip.MustParseAddr(client).As4()
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	b = append(b, a[:]...)
	b = append(b, 10, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, 40000)
	return binary.BigEndian.AppendUint16(b, 443)
}

// proxyDial connects to addr from the address from and sends header;
// the connection is closed when the test ends.
func proxyDial(t *testing.T, from, addr string, header []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	return c
}

// proxyDo sends header and req from the address from (the proxy's, or
// another) and returns the answer, leaving the connection open.
func proxyDo(t *testing.T, from, addr string, header []byte, req string) (response, net.Conn) {
	t.Helper()
	c := proxyDial(t, from, addr, header)
	c.SetDeadline(time.Now().Add(readTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q through %s: %v", req, from, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	c.SetDeadline(time.Time{})
	return response{status: res.StatusCode, header: res.Header, body: b}, c
}

func withProxy(c *config.Config) {
	c.ProxyProtocol.Trusted = []string{proxyAddr}
	c.ProxyProtocol.HeaderTimeout = 500 * time.Millisecond
}

// TestProxyProtocolClientAddress: behind a trusted proxy, the per-address
// connection cap and publish rate count each client the headers name (v1
// and v2), the client's address is what the identity carries, on the
// fast path and through net/http alike.
func TestProxyProtocolClientAddress(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			rec := &addrAuth{}
			ts := startServerWith(t, []server.Option{server.WithAccess(rec, allowAll{})}, noExempt, withProxy, func(c *config.Config) {
				c.HTTP.FastPath = fast
				c.Limits.MaxConnectionsPerIP = 2
				c.Limits.PublishRatePerIP = 0.01
				c.Limits.PublishBurstPerIP = 1
			})
			health := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
			publish := "POST /v1/topics/x.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
			// Client A holds two connections, one per header version: its
			// cap. A third is refused; B and C are not.
			for _, h := range [][]byte{v1Header("203.0.113.1"), v2Header("203.0.113.1")} {
				if r, _ := proxyDo(t, proxyAddr, ts.addr, h, health); r.status != http.StatusOK {
					t.Fatalf("client A: %d %s", r.status, r.body)
				}
			}
			r, _ := proxyDo(t, proxyAddr, ts.addr, v2Header("203.0.113.1"), health)
			wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", "limits.max_connections_per_ip", 1)
			if !strings.Contains(string(r.body), "203.0.113.1") {
				t.Errorf("refusal %s does not name the client 203.0.113.1", r.body)
			}
			for _, h := range [][]byte{v1Header("203.0.113.2"), v2Header("203.0.113.3")} {
				if r, _ := proxyDo(t, proxyAddr, ts.addr, h, health); r.status != http.StatusOK {
					t.Errorf("another client behind the proxy: %d %s", r.status, r.body)
				}
			}
			// The publish rate per address: D's first publish is its burst,
			// E's is its own.
			if r, _ := proxyDo(t, proxyAddr, ts.addr, v1Header("203.0.113.4"), publish); r.status != http.StatusCreated {
				t.Fatalf("client D's publish: %d %s", r.status, r.body)
			}
			r, _ = proxyDo(t, proxyAddr, ts.addr, v2Header("203.0.113.4"), publish)
			wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", "limits.publish_rate_per_ip", 1)
			if !strings.Contains(string(r.body), "203.0.113.4") {
				t.Errorf("refusal %s does not name the client 203.0.113.4", r.body)
			}
			if r, _ := proxyDo(t, proxyAddr, ts.addr, v2Header("203.0.113.5"), publish); r.status != http.StatusCreated {
				t.Errorf("client E's publish: %d %s", r.status, r.body)
			}
			if !rec.saw("rest", "203.0.113.4") || rec.saw("rest", proxyAddr) {
				t.Errorf("identities carried %q, want the clients' addresses and never the proxy's", rec.seen)
			}
			// A health check of the proxy's own (UNKNOWN) keeps its address.
			if r, _ := proxyDo(t, proxyAddr, ts.addr, []byte("PROXY UNKNOWN\r\n"), publish); r.status != http.StatusCreated {
				t.Errorf("PROXY UNKNOWN: %d %s", r.status, r.body)
			}
			if !rec.saw("rest", proxyAddr) {
				t.Errorf("identities carried %q, want the proxy's own address for PROXY UNKNOWN", rec.seen)
			}
			if got := ts.metric(`herald_proxy_protocol_rejected_total{listener="http",reason="malformed"}`); got != 0 {
				t.Errorf("%v connections rejected", got)
			}
		})
	}
}

// TestProxyProtocolUntrustedPeer: a header from a peer not in
// proxy_protocol.trusted is not honoured: it is a bad request, and the
// peer's own address is what counts.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	rec := &addrAuth{}
	ts := startServerWith(t, []server.Option{server.WithAccess(rec, allowAll{})}, noExempt, withProxy)
	r, _ := proxyDo(t, "127.0.0.3", ts.addr, v1Header("203.0.113.9"), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.status != http.StatusBadRequest {
		t.Errorf("an untrusted peer's header: %d %s, want 400", r.status, r.body)
	}
	publish := "POST /v1/topics/x.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
	if r, _ := proxyDo(t, "127.0.0.3", ts.addr, nil, publish); r.status != http.StatusCreated {
		t.Errorf("an untrusted peer without a header: %d %s", r.status, r.body)
	}
	if !rec.saw("rest", "127.0.0.3") || rec.saw("rest", "203.0.113.9") {
		t.Errorf("identities carried %q, want the untrusted peer's own address", rec.seen)
	}
}

// TestProxyProtocolBadHeader: a trusted peer that sends no header, a bad
// one, or half of one is closed (within proxy_protocol.header_timeout for
// the slow one) and counted; the clients behind it are served meanwhile.
func TestProxyProtocolBadHeader(t *testing.T) {
	ts := startServer(t, noExempt, withProxy, func(c *config.Config) { c.Limits.MaxConnections = 8 })
	tests := []struct {
		name, send, reason string
	}{
		{"request without header", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "malformed"},
		{"bad address", "PROXY TCP4 203.0.113.256 10.0.0.1 1 2\r\n", "malformed"},
		{"half a header", "PROXY TCP4 203.0.113.1 ", "timeout"},
		{"nothing", "", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			series := `herald_proxy_protocol_rejected_total{listener="http",reason="` + tt.reason + `"}`
			before := ts.metric(series)
			// More bad connections than the node takes: none of them holds
			// a place.
			var conns []net.Conn
			for range 10 {
				conns = append(conns, proxyDial(t, proxyAddr, ts.addr, []byte(tt.send)))
			}
			if r, _ := proxyDo(t, proxyAddr, ts.addr, v2Header("203.0.113.1"), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.status != http.StatusOK {
				t.Errorf("a good client meanwhile: %d %s", r.status, r.body)
			}
			start := time.Now()
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := io.Copy(io.Discard, c)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("a connection is still open 5s on")
				}
				if n != 0 {
					t.Errorf("the server answered %d bytes", n)
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed %v on, want within the 500ms header timeout", d)
			}
			waitFor(t, series, readTimeout, func() bool { return ts.metric(series) == before+10 })
		})
	}
}

// TestProxyProtocolStreams: SSE and WebSocket streams and gRPC calls work
// through the proxy and carry the client's address; the gRPC listener
// counts the client against the same per-address cap.
func TestProxyProtocolStreams(t *testing.T) {
	rec := &addrAuth{}
	ts := startServerWith(t, []server.Option{server.WithAccess(rec, allowAll{})}, noExempt, withProxy, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 1
	})

	// SSE, v1 header.
	c := proxyDial(t, proxyAddr, ts.addr, v1Header("198.51.100.1"))
	fmt.Fprintf(c, "GET /v1/sse?topic=x.s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	c.SetDeadline(time.Now().Add(readTimeout))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("SSE through the proxy: %v %v", err, res)
	}
	waitFor(t, "the SSE subscriber", readTimeout, func() bool { return ts.subscribers("x.s") == 1 })
	ts.publish("x.s", "text/plain", []byte("hello"))
	s := &sseStream{t: t, conn: c, br: bufio.NewReader(res.Body)}
	for {
		b, err := s.read()
		if err != nil {
			t.Fatalf("SSE: %v", err)
		}
		if len(b.data) > 0 {
			if b.data[0] != "hello" {
				t.Errorf("SSE data %q", b.data)
			}
			break
		}
	}
	if !rec.saw("sse", "198.51.100.1") {
		t.Errorf("identities carried %q, want sse 198.51.100.1", rec.seen)
	}

	// WebSocket, v2 header.
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	d := ws.Dialer{NetDial: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return proxyDial(t, proxyAddr, addr, v2Header("198.51.100.2")), nil
	}}
	nc, br2, _, err := d.Dial(ctx, "ws://"+ts.addr+"/v1/ws")
	if err != nil {
		t.Fatalf("WebSocket through the proxy: %v", err)
	}
	defer nc.Close()
	var rw io.ReadWriter = nc
	if br2 != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br2, nc), nc}
	}
	nc.SetDeadline(time.Now().Add(readTimeout))
	if _, err := wsutil.ReadServerText(rw); err != nil { // the welcome
		t.Fatalf("WebSocket welcome: %v", err)
	}
	if !rec.saw("ws", "198.51.100.2") {
		t.Errorf("identities carried %q, want ws 198.51.100.2", rec.seen)
	}
	// A command read from the socket by the poller, through the wrapper.
	if err := wsutil.WriteClientText(nc, []byte(`{"op":"subscribe","id":1,"topics":["x.w"]}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := wsutil.ReadServerText(rw); err != nil || !strings.Contains(string(m), `"subscribed"`) {
		t.Errorf("WebSocket subscribe through the proxy: %s, %v", m, err)
	}

	// gRPC, both versions; the SSE client's second connection is over
	// its cap of 1.
	grpcThrough := func(header []byte) (*grpc.ClientConn, heraldv1.HeraldClient) {
		conn, err := grpc.NewClient("passthrough:///"+ts.srv.GRPCAddr(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return proxyDial(t, proxyAddr, addr, header), nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, heraldv1.NewHeraldClient(conn)
	}
	pub := &heraldv1.PublishRequest{Topic: "x.g", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}
	for _, h := range [][]byte{v1Header("198.51.100.3"), v2Header("198.51.100.4")} {
		_, g := grpcThrough(h)
		if _, err := g.Publish(grpcCtx(t), pub); err != nil {
			t.Errorf("gRPC publish through the proxy: %v", err)
		}
	}
	if !rec.saw("grpc", "198.51.100.3") || !rec.saw("grpc", "198.51.100.4") {
		t.Errorf("identities carried %q, want grpc 198.51.100.3 and .4", rec.seen)
	}
	conn, g := grpcThrough(v2Header("198.51.100.1"))
	_, err = g.Publish(grpcCtx(t), pub)
	conn.Close()
	if st, _ := status.FromError(err); !strings.Contains(st.Message(), "limits.max_connections_per_ip") {
		t.Errorf("gRPC from a client over its cap: %v, want a refusal naming limits.max_connections_per_ip", err)
	}
}

// TestProxyProtocolGRPCListener: the gRPC listener closes a trusted peer
// without a header, and does not honour an untrusted peer's.
func TestProxyProtocolGRPCListener(t *testing.T) {
	ts := startServer(t, withProxy)
	series := `herald_proxy_protocol_rejected_total{listener="grpc",reason="malformed"}`
	c := proxyDial(t, proxyAddr, ts.srv.GRPCAddr(), []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c) // a reset, or an end: the rest of the preface was unread
	if ne, ok := err.(net.Error); n != 0 || ok && ne.Timeout() {
		t.Errorf("a trusted peer without a header got %d bytes, %v; want a close", n, err)
	}
	waitFor(t, series, readTimeout, func() bool { return ts.metric(series) == 1 })
	// An untrusted peer's header is the start of a bad HTTP/2 preface: the
	// server answers with a GOAWAY, or closes, and is not told anything.
	u := proxyDial(t, "127.0.0.3", ts.srv.GRPCAddr(), v2Header("203.0.113.9"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, u)
	if got := ts.metric(series); got != 1 {
		t.Errorf("%s = %v after an untrusted peer, want 1", series, got)
	}
}

// TestForwardedFor: requests from an http.trusted_proxies peer are made
// for the client its X-Forwarded-For names (the rightmost hop not
// trusted), request by request on one connection, on the fast path's
// publishes and net/http's streams alike; an untrusted peer's header is
// not read.
func TestForwardedFor(t *testing.T) {
	rec := &addrAuth{}
	ts := startServerWith(t, []server.Option{server.WithAccess(rec, allowAll{})}, noExempt, func(c *config.Config) {
		c.HTTP.TrustedProxies = []string{proxyAddr}
		c.Limits.PublishRatePerIP = 0.01
		c.Limits.PublishBurstPerIP = 1
	})
	publish := func(xff string) string {
		return "POST /v1/topics/x.a/events HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: " + xff + "\r\nContent-Length: 1\r\n\r\n1"
	}
	// One connection of the proxy, two clients (one forging a hop).
	c := proxyDial(t, proxyAddr, ts.addr, nil)
	br := bufio.NewReader(c)
	for i, xff := range []string{"6.6.6.6, 203.0.113.1", "203.0.113.2", "6.6.6.6, 203.0.113.1"} {
		c.SetDeadline(time.Now().Add(readTimeout))
		io.WriteString(c, publish(xff))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := http.StatusCreated
		if i == 2 {
			want = http.StatusTooManyRequests // 203.0.113.1's second
		}
		if res.StatusCode != want || i == 2 && !strings.Contains(string(b), "203.0.113.1") {
			t.Errorf("publish %d for %s: %d %s, want %d", i, xff, res.StatusCode, b, want)
		}
	}
	if !rec.saw("rest", "203.0.113.1") || !rec.saw("rest", "203.0.113.2") || rec.saw("rest", "6.6.6.6") || rec.saw("rest", proxyAddr) {
		t.Errorf("identities carried %q, want the clients 203.0.113.1 and .2 only", rec.seen)
	}
	// An SSE stream through the proxy.
	sc := proxyDial(t, proxyAddr, ts.addr, []byte("GET /v1/sse?topic=x.s HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n"))
	sc.SetDeadline(time.Now().Add(readTimeout))
	if res, err := http.ReadResponse(bufio.NewReader(sc), nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("SSE through the proxy: %v %v", err, res)
	}
	if !rec.saw("sse", "198.51.100.9") {
		t.Errorf("identities carried %q, want sse 198.51.100.9", rec.seen)
	}
	// An untrusted peer's header is not read.
	if r, _ := proxyDo(t, "127.0.0.3", ts.addr, nil, publish("203.0.113.3")); r.status != http.StatusCreated {
		t.Errorf("untrusted peer: %d %s", r.status, r.body)
	}
	if rec.saw("rest", "203.0.113.3") || !rec.saw("rest", "127.0.0.3") {
		t.Errorf("identities carried %q, want the untrusted peer's own address", rec.seen)
	}
}
