package server_test

// Tests of the abuse limits (docs/security.md, "Limits"), each over real
// sockets: the connection limits of the listeners, subscriptions per
// connection, topics per request, event size per namespace, publish rates,
// header size and the header timeout (slowloris).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
)

// noExempt applies the per-address limits to loopback clients too (by
// default 127.0.0.1 and ::1 are exempt: the host itself).
func noExempt(c *config.Config) { c.Limits.IPExempt = nil }

// rawDo sends req (a whole HTTP/1.1 request) on a new connection and
// returns the answer; the connection stays open (it is closed when the
// test ends) unless the answer says it closes.
func (ts *testServer) rawDo(req string) (response, net.Conn, error) {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(readTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		return response{}, c, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return response{}, c, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	c.SetDeadline(time.Time{})
	return response{status: res.StatusCode, header: res.Header, body: b}, c, err
}

// rawGet is rawDo of a GET of path on a connection of its own, which the
// server has closed (and so no longer counts) when it returns.
func (ts *testServer) rawGet(path string) response {
	ts.t.Helper()
	r, c, err := ts.rawDo("GET " + path + " HTTP/1.1\r\nHost: " + ts.addr + "\r\nConnection: close\r\n\r\n")
	if err != nil {
		ts.t.Fatalf("GET %s: %v", path, err)
	}
	c.SetReadDeadline(time.Now().Add(readTimeout))
	if _, err := io.Copy(io.Discard, c); err != nil {
		ts.t.Fatalf("GET %s: waiting for the server to close: %v", path, err)
	}
	return r
}

// hold opens a connection and leaves it idle after one request: it holds
// a connection slot until closed.
func (ts *testServer) hold() net.Conn {
	ts.t.Helper()
	r, c, err := ts.rawDo("GET /healthz HTTP/1.1\r\nHost: " + ts.addr + "\r\n\r\n")
	if err != nil || r.status != http.StatusOK {
		ts.t.Fatalf("holding a connection: %v %d", err, r.status)
	}
	return c
}

// wantLimit checks that r refuses with status, code and a message naming
// key, and carries Retry-After of at least min seconds.
func wantLimit(t *testing.T, r response, status int, code, key string, min int) {
	t.Helper()
	e := wantError(t, r, status, code)
	if !strings.Contains(e.Error.Message, key) {
		t.Errorf("message %q does not name %s", e.Error.Message, key)
	}
	if min > 0 {
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < min {
			t.Errorf("Retry-After %q, want at least %d", r.header.Get("Retry-After"), min)
		}
	}
}

// wantRefusals checks herald_limit_refusals_total for limit. It reads the
// metrics on a connection of its own once one is allowed again (a server
// notices a client's close when it next reads); the attempts refused
// meanwhile are not counted in want.
func (ts *testServer) wantRefusals(limit string, want float64) {
	ts.t.Helper()
	if got := ts.refusals(limit); got != want {
		ts.t.Errorf("herald_limit_refusals_total{limit=%q} = %v, want %v", limit, got, want)
	}
}

// refusals returns herald_limit_refusals_total for limit, less the
// refusals of its own attempts to read it.
func (ts *testServer) refusals(limit string) float64 {
	ts.t.Helper()
	series := `herald_limit_refusals_total{limit="` + limit + `"}`
	var got float64
	refused := 0
	waitFor(ts.t, "a connection for /metrics", readTimeout, func() bool {
		r := ts.rawGet("/metrics")
		got = sample(r.body, series)
		if r.status != http.StatusOK {
			refused++
		}
		return r.status == http.StatusOK
	})
	return got - float64(refused)
}

// wsDial opens a WebSocket with hdr; what the server sent right behind
// its handshake answer (the welcome) is read first.
func (ts *testServer) wsDial(hdr http.Header) io.ReadWriter {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	nc, br, _, err := ws.Dialer{Header: ws.HandshakeHeaderHTTP(hdr)}.Dial(ctx, "ws://"+ts.addr+"/v1/ws")
	if err != nil {
		ts.t.Fatalf("WebSocket: %v", err)
	}
	ts.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(readTimeout))
	if br == nil {
		return nc
	}
	return struct {
		io.Reader
		io.Writer
	}{io.MultiReader(br, nc), nc}
}

// wsRefused dials a WebSocket and expects the handshake to succeed and the
// connection to be closed at once with 4029 naming key.
func (ts *testServer) wsRefused(key string) {
	ts.t.Helper()
	ts.wsRefusedWith(nil, key)
}

func TestConnectionsPerIP(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			ts := startServer(t, noExempt, func(c *config.Config) {
				c.HTTP.FastPath = fast
				c.Limits.MaxConnectionsPerIP = 2
			})
			a, b := ts.hold(), ts.hold()
			wantLimit(t, ts.rawGet("/healthz"), http.StatusTooManyRequests, "limit_reached", "limits.max_connections_per_ip", 1)
			r, _, err := ts.rawDo("POST /v1/topics/x.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1")
			if err != nil {
				t.Fatal(err)
			}
			wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", "limits.max_connections_per_ip", 1)
			ts.wsRefused("limits.max_connections_per_ip")
			a.Close()
			b.Close()
			ts.wantRefusals("max_connections_per_ip", 3)
			if _, ok := ts.info("x.a"); ok {
				t.Error("a refused connection's publish created the topic")
			}
		})
	}
}

// TestMaxConnections: the node's cap covers the HTTP and gRPC listeners
// together, and is refused with 503 (another node may take the client),
// a WebSocket close 4029, and gRPC UNAVAILABLE naming the limit.
func TestMaxConnections(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Limits.MaxConnections = 1 })
	held := ts.hold()
	wantLimit(t, ts.rawGet("/healthz"), http.StatusServiceUnavailable, "unavailable", "limits.max_connections", 1)
	ts.wsRefused("limits.max_connections")

	gconn, err := grpc.NewClient(ts.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = heraldv1.NewHeraldClient(gconn).Publish(grpcCtx(t), &heraldv1.PublishRequest{Topic: "x.g", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}})
	gconn.Close()
	st, _ := status.FromError(err)
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "limits.max_connections") || retry == nil {
		t.Errorf("gRPC over the cap: %v (details %v), want UNAVAILABLE naming limits.max_connections, with RetryInfo", err, st.Details())
	}
	held.Close()
	if n := ts.refusals("max_connections"); n < 3 { // a gRPC client may have tried again
		t.Errorf("%v refusals of max_connections, want at least 3", n)
	}
}

func TestNewConnectionsPerIP(t *testing.T) {
	ts := startServer(t, noExempt, func(c *config.Config) {
		c.Limits.NewConnectionsPerIP = 0.01 // one per 100 s
		c.Limits.NewConnectionsPerIPBurst = 2
	})
	ts.rawGet("/healthz")
	ts.rawGet("/healthz")
	wantLimit(t, ts.rawGet("/healthz"), http.StatusTooManyRequests, "limit_reached", "limits.new_connections_per_ip", 50)
}

// TestIPExempt: the per-address limits skip exempt addresses (loopback by
// default); the node's cap does not.
func TestIPExempt(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 1
		c.Limits.NewConnectionsPerIP = 0.01
		c.Limits.NewConnectionsPerIPBurst = 1
	})
	ts.hold()
	ts.hold()
	if r := ts.rawGet("/healthz"); r.status != http.StatusOK {
		t.Errorf("an exempt address was limited: %d %s", r.status, r.body)
	}
}

func TestSubscriptionsPerConnection(t *testing.T) {
	const key = "limits.max_subscriptions_per_connection"
	ts := startServer(t, func(c *config.Config) { c.Limits.MaxSubscriptionsPerConnection = 2 })

	// WebSocket: the welcome says the limit; the third topic is refused.
	nc := ts.wsDial(nil)
	read := func() map[string]any {
		t.Helper()
		b, err := wsutil.ReadServerText(nc)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
	if w := read(); w["max_topics"] != 2.0 {
		t.Errorf("welcome %v, want max_topics 2", w)
	}
	wsutil.WriteClientText(nc, []byte(`{"op":"subscribe","id":1,"topics":["s.a","s.b"]}`))
	if m := read(); m["op"] != "subscribed" {
		t.Fatalf("two topics: %v", m)
	}
	wsutil.WriteClientText(nc, []byte(`{"op":"subscribe","id":2,"topics":["s.c"]}`))
	if m := read(); m["op"] != "error" || m["code"] != "limit_reached" || !strings.Contains(fmt.Sprint(m["message"]), key) {
		t.Errorf("a third topic: %v, want limit_reached naming %s", m, key)
	}

	// SSE: one request over the limit.
	s := ts.dialSSE(nil, "topic=s.a&topic=s.b&topic=s.c")
	wantLimit(t, response{status: s.status, header: s.header, body: s.body}, http.StatusTooManyRequests, "limit_reached", key, 0)

	// gRPC Connect.
	conn, err := ts.grpcClient().Connect(grpcCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	conn.Send(&heraldv1.ConnectRequest{Id: 1, Command: &heraldv1.ConnectRequest_Subscribe{Subscribe: &heraldv1.SubscribeCommand{Topics: []string{"s.a", "s.b", "s.c"}}}})
	m, err := conn.Recv()
	if e := m.GetError(); err != nil || e.GetCode() != "limit_reached" || !strings.Contains(e.GetMessage(), key) {
		t.Errorf("gRPC Connect, three topics: %v %v, want limit_reached naming %s", m, err, key)
	}
	conn.CloseSend()
	ts.wantRefusals("max_subscriptions_per_connection", 3)
}

func TestTopicsPerRequest(t *testing.T) {
	ts := startServer(t)
	var q strings.Builder
	for i := range 65 {
		fmt.Fprintf(&q, "&topic=t.%d", i)
	}
	for _, path := range []string{"/v1/events?" + q.String()[1:], "/v1/sse?" + q.String()[1:]} {
		e := wantError(t, ts.get(path), http.StatusBadRequest, "bad_request")
		if !strings.Contains(e.Error.Message, "limits.topics_per_request") {
			t.Errorf("GET %s: %q does not name the limit", path[:10], e.Error.Message)
		}
	}
	ts.wantRefusals("topics_per_request", 2)
}

func TestEventSizePerNamespace(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			ts := startServer(t, func(c *config.Config) {
				c.HTTP.FastPath = fast
				c.Limits.MaxEventBytes = 1 << 10
				c.Limits.MaxQueueBytes = 4 << 20
				c.Namespaces = map[string]config.Namespace{
					"tiny":  {MaxEventBytes: 8},
					"files": {MaxEventBytes: 2 << 20},
				}
			})
			post := func(topic string, n int) response {
				return ts.do(http.MethodPost, "/v1/topics/"+topic+"/events", []byte(strings.Repeat("x", n)), "Content-Type", "text/plain")
			}
			if r := post("tiny.a", 8); r.status != http.StatusCreated {
				t.Errorf("8 bytes to tiny.a: %d %s", r.status, r.body)
			}
			wantLimit(t, post("tiny.a", 9), http.StatusRequestEntityTooLarge, "too_large", "namespaces.tiny.max_event_bytes", 0)
			if r := post("files.a", 1<<20); r.status != http.StatusCreated {
				t.Errorf("1 MiB to files.a (over limits.max_event_bytes, within the namespace's): %d %s", r.status, r.body)
			}
			wantLimit(t, post("other.a", 1<<10+1), http.StatusRequestEntityTooLarge, "too_large", "limits.max_event_bytes", 0)
			wantLimit(t, post("files.a", 2<<20+1), http.StatusRequestEntityTooLarge, "too_large", "max_event_bytes", 0)
			ts.wantRefusals("max_event_bytes", 2) // the last one is refused by the transport's bound, before the hub
		})
	}
}

// publishRateConfig turns auth on with an API key and an HMAC secret, and
// opens the namespace open to anonymous publishers.
func publishRateConfig(key string, secret []byte) func(*config.Config) {
	return func(c *config.Config) {
		c.Auth.APIKeys = []config.APIKey{{Name: "svc", Hash: auth.HashKey(key), Grants: config.Grants{Publish: []string{">"}, Admin: true}}}
		c.Auth.JWT.HMACSecret = string(secret)
		c.Namespaces = map[string]config.Namespace{"open": {Anonymous: []string{"publish"}}}
		c.Limits.IPExempt = nil
		c.Limits.PublishRatePerKey, c.Limits.PublishBurstPerKey = 0.01, 2
		c.Limits.PublishRatePerUser, c.Limits.PublishBurstPerUser = 0.01, 1
		c.Limits.PublishRatePerIP, c.Limits.PublishBurstPerIP = 0.01, 1
		c.Limits.PublishRatePerConnection, c.Limits.PublishBurstPerConnection = 0.01, 1
	}
}

func TestPublishRates(t *testing.T) {
	key, _, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(strings.Repeat("s", 32))
	ts := startServer(t, publishRateConfig(key, secret))
	token := func(sub string) string {
		tok, err := auth.MintHS256(secret, auth.TokenRequest{Subject: sub, TTL: time.Hour, Grants: config.Grants{Publish: []string{">"}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("API key, net/http", func(t *testing.T) {
		ts := ts.in(t)
		bearer := []string{"Authorization", "Bearer " + key, "Content-Type", "application/json"}
		// A batch over two topics counts its two events once.
		if r := ts.do(http.MethodPost, "/v1/events", []byte(`{"events":[{"topic":"k.a","data":1},{"topic":"k.b","data":2}]}`), bearer...); r.status != http.StatusOK {
			t.Fatalf("batch of 2 within a burst of 2: %d %s", r.status, r.body)
		}
		r := ts.do(http.MethodPost, "/v1/topics/k.a/events", []byte("3"), bearer...)
		wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", "limits.publish_rate_per_key", 50)
	})

	t.Run("anonymous, fast path", func(t *testing.T) {
		ts := ts.in(t)
		post := func() response {
			r, _, err := ts.rawDo("POST /v1/topics/open.a/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1")
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := post(); r.status != http.StatusCreated {
			t.Fatalf("first anonymous publish: %d %s", r.status, r.body)
		}
		wantLimit(t, post(), http.StatusTooManyRequests, "limit_reached", "limits.publish_rate_per_ip", 50)
	})

	t.Run("user, gRPC", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(grpcCtx(t), "authorization", "Bearer "+token("grace"))
		gc := ts.in(t).grpcClient()
		req := &heraldv1.PublishRequest{Topic: "u.a", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}
		if _, err := gc.Publish(ctx, req); err != nil {
			t.Fatal(err)
		}
		_, err := gc.Publish(ctx, req)
		st, _ := status.FromError(err)
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				retry = ri
			}
		}
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "limits.publish_rate_per_user") ||
			retry == nil || retry.GetRetryDelay().AsDuration() < 50*time.Second {
			t.Errorf("second publish: %v (retry %v), want RESOURCE_EXHAUSTED naming limits.publish_rate_per_user with RetryInfo", err, retry)
		}
	})

	t.Run("connection, WebSocket", func(t *testing.T) {
		nc := ts.in(t).wsDial(http.Header{"Authorization": {"Bearer " + token("wanda")}})
		wsutil.WriteClientText(nc, []byte(`{"op":"publish","id":1,"topic":"w.a","data":1}`))
		wsutil.WriteClientText(nc, []byte(`{"op":"publish","id":2,"topic":"w.a","data":2}`))
		var msgs []map[string]any
		for len(msgs) < 3 { // welcome, ack, error
			b, err := wsutil.ReadServerText(nc)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			msgs = append(msgs, m)
		}
		if m := msgs[2]; m["op"] != "error" || m["code"] != "limit_reached" || !strings.Contains(fmt.Sprint(m["message"]), "limits.publish_rate_per_connection") {
			t.Errorf("second publish: %v, want limit_reached naming limits.publish_rate_per_connection", m)
		}
	})

	for topic, want := range map[string]string{"k.a": `"last":1,`, "k.b": `"last":1,`, "open.a": `"last":1,`, "u.a": `"last":1,`, "w.a": `"last":1,`} {
		if r := ts.get("/v1/topics/"+topic, "Authorization", "Bearer "+key); !strings.Contains(string(r.body), want) {
			t.Errorf("%s: %s, want %s: a refused publish stored something", topic, r.body, want)
		}
	}
	for _, l := range []string{"publish_rate_per_key", "publish_rate_per_ip", "publish_rate_per_user", "publish_rate_per_connection"} {
		ts.wantRefusals(l, 1)
	}
}

func TestHeaderSize(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			ts := startServer(t, func(c *config.Config) {
				c.HTTP.FastPath = fast
				c.HTTP.MaxHeaderBytes = 2048
			})
			big := strings.Repeat("x", 8<<10)
			for _, req := range []string{
				"POST /v1/topics/h.a/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + big + "\r\nContent-Length: 1\r\n\r\n1",
				"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + big + "\r\n\r\n",
			} {
				r, _, err := ts.rawDo(req)
				if err != nil {
					t.Fatal(err)
				}
				if r.status != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("%s…: %d %s, want 431", req[:20], r.status, r.body)
				}
			}
			if r := ts.rawGet("/healthz"); r.status != http.StatusOK {
				t.Errorf("small head: %d", r.status)
			}
		})
	}
}

// TestSlowloris trickles a request head a byte a second: the server cuts
// the connection once http.read_header_timeout has passed since it opened
// (not since the last byte), and the connection does not hold its slot
// (limits.max_connections_per_ip) any longer. On both the fast path and
// net/http.
func TestSlowloris(t *testing.T) {
	const timeout = 2 * time.Second
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			ts := startServer(t, noExempt, func(c *config.Config) {
				c.HTTP.FastPath = fast
				c.HTTP.ReadHeaderTimeout = timeout
				c.Limits.MaxConnectionsPerIP = 1
			})
			start := time.Now()
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				head := "POST /v1/topics/slow.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for i := 0; i < len(head); i++ {
					if _, err := c.Write([]byte{head[i]}); err != nil {
						return
					}
					select {
					case <-tick.C:
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); <-trickled }()

			// While the trickle goes on, it holds the address's one slot.
			wantLimit(t, ts.rawGet("/healthz"), http.StatusTooManyRequests, "limit_reached", "limits.max_connections_per_ip", 1)

			c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			n, err := io.Copy(io.Discard, c) // ends when the server closes
			cut := time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the trickling connection was not cut within %v", timeout+10*time.Second)
			}
			if cut < timeout-200*time.Millisecond || cut > timeout+3*time.Second {
				t.Errorf("cut after %v (%d bytes of answer), want about %v", cut, n, timeout)
			}
			if r := ts.rawGet("/healthz"); r.status != http.StatusOK {
				t.Errorf("after the cut: %d %s, want the slot free", r.status, r.body)
			}
			if _, ok := ts.info("slow.a"); ok {
				t.Error("the trickled publish was stored")
			}
		})
	}
}

// TestConnectionsPerUser: a user holds limits.max_connections_per_user
// push connections at once, whatever the transport; one more is refused
// the transport's way (WebSocket 4029, SSE 429, gRPC RESOURCE_EXHAUSTED),
// naming the key; another user is not; a closed connection frees its
// place; a WebSocket opened without credentials cannot become the user's
// by refresh while the user is at the cap.
func TestConnectionsPerUser(t *testing.T) {
	ts := startServer(t, noExempt, func(c *config.Config) {
		c.Auth.JWT.HMACSecret = string(authSecret)
		c.Auth.JWT.Audience = testAudience
		c.Auth.JWT.Issuer = testIssuer
		c.Limits.MaxConnectionsPerUser = 2
	})
	const key = "limits.max_connections_per_user"
	una := userToken(t, "una", expiresIn(time.Hour), "cu.>")
	bearer := []string{"Authorization", "Bearer " + una}
	first, err := ts.dialWS("", bearer...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.dialWS("", bearer...); err != nil {
		t.Fatal(err)
	}

	// A third, on each transport.
	ts.wsRefusedWith(http.Header{"Authorization": {"Bearer " + una}}, key)
	r := ts.do(http.MethodGet, "/v1/sse?topic=cu.a", nil, bearer...)
	wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", key, 2)
	ctx := metadata.AppendToOutgoingContext(grpcCtx(t), "authorization", "Bearer "+una)
	sub, err := ts.grpcClient().Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"cu.a"}})
	if err == nil {
		_, err = sub.Recv()
	}
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), key) {
		t.Errorf("gRPC Subscribe over the cap: %v, want RESOURCE_EXHAUSTED naming %s", err, key)
	}

	// Another user is not counted with una.
	if _, err := ts.dialWS("", "Authorization", "Bearer "+userToken(t, "vic", expiresIn(time.Hour), "cu.>")); err != nil {
		t.Errorf("another user: %v", err)
	}
	// Nor is a connection without credentials, until it refreshes to una's.
	anon, err := ts.dialWS("")
	if err != nil {
		t.Fatal(err)
	}
	if m := anon.reply(1, `{"op":"refresh","id":1,"token":"`+una+`"}`, nil); m["code"] != "limit_reached" {
		t.Errorf("refresh to una's at her cap: %v, want limit_reached", m)
	}

	// Closing one frees a place (the server sees the close when it reads).
	first.nc.Close()
	refusedBefore := ts.refusals("max_connections_per_user")
	tries := 0
	waitFor(t, "una's place back", readTimeout, func() bool {
		tries++
		_, err := wsutil.ReadServerText(ts.wsDial(http.Header{"Authorization": {"Bearer " + una}})) // the welcome, or the close
		return err == nil
	})
	if refusedBefore != 4 {
		t.Errorf("herald_limit_refusals_total{limit=%q} = %v before the close, want 4", "max_connections_per_user", refusedBefore)
	}
	ts.wantRefusals("max_connections_per_user", float64(4+tries-1))
}

// wsRefusedWith is wsRefused with the handshake's header hdr.
func (ts *testServer) wsRefusedWith(hdr http.Header, key string) {
	ts.t.Helper()
	nc := ts.wsDial(hdr)
	_, err := wsutil.ReadServerText(nc)
	var ce wsutil.ClosedError
	if !errors.As(err, &ce) || ce.Code != 4029 || !strings.Contains(ce.Reason, key) {
		ts.t.Errorf("WebSocket over a limit: %v, want close 4029 naming %s", err, key)
	}
}
