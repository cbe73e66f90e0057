package httpfast_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/transport/httpfast"
	"github.com/heraldhq/herald/internal/transport/rest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is the REST API served either through the fast path or by
// net/http alone.
type server struct {
	addr string
	hub  *hub.Hub
	fast *httpfast.Server
}

func start(t *testing.T, fast bool, opts httpfast.Options) *server {
	t.Helper()
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{Authenticator: tokenAuth{}, Gate: privateGate{}})
	api := rest.New(h, rest.Options{MaxEventBytes: 4096})
	mux := http.NewServeMux()
	api.Register(mux)
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })
	hs := &http.Server{Handler: mux, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), hub: h}
	var served net.Listener = ln
	if fast {
		s.fast = httpfast.New(ln, api, opts)
		served = s.fast.Listener()
		go s.fast.Serve()
	}
	done := make(chan struct{})
	go func() { hs.Serve(served); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		if s.fast != nil {
			if err := s.fast.Shutdown(ctx); err != nil {
				t.Errorf("fast Shutdown: %v", err)
			}
		}
		<-done
		h.Close()
		eng.Close()
	})
	return s
}

func (s *server) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// answer is an HTTP answer read off the wire.
type answer struct {
	status string
	header http.Header
	body   string
	close  bool // Connection: close
}

func readAnswer(t *testing.T, r *bufio.Reader) answer {
	t.Helper()
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read answer body: %v", err)
	}
	return answer{status: res.Status, header: res.Header, body: string(b), close: res.Close}
}

func post(topic, body string, hdr ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST /v1/topics/%s/events HTTP/1.1\r\nHost: x\r\n", topic)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

var (
	epochRE  = regexp.MustCompile(`"epoch":"[0-9a-f]+"`)
	cursorRE = regexp.MustCompile(`"cursor":"[A-Za-z0-9_-]+"`)
	timeRE   = regexp.MustCompile(`"time":"[^"]+"`)
)

// normal hides what differs between two servers: their epochs (and so
// the cursors) and the Date header.
func normal(a answer) answer {
	a.body = cursorRE.ReplaceAllString(epochRE.ReplaceAllString(a.body, `"epoch":"E"`), `"cursor":"C"`)
	a.body = timeRE.ReplaceAllString(a.body, `"time":"T"`)
	a.header = a.header.Clone()
	a.header.Del("Date")
	a.header.Del("Content-Length") // epochs differ in length; ReadResponse checked it
	return a
}

// TestSameAnswers sends the same requests to the fast path and to
// net/http alone and expects the same answers, byte for byte but for the
// epoch, the cursor and the date.
func TestSameAnswers(t *testing.T) {
	fast, slow := start(t, true, httpfast.Options{}), start(t, false, httpfast.Options{})
	requests := []string{
		post("a", `{"n":1}`, "Content-Type", "application/json"),
		post("a", `{"n":2}`),
		post("a", `not json`, "Content-Type", "application/json"),
		post("a", "plain text", "Content-Type", "text/plain; charset=utf-8"),
		post("a", "\xff\xfe", "Content-Type", "text/plain"),
		post("a", "\x00\x01", "Content-Type", "application/octet-stream"),
		post("a", `{"k":1}`, "Idempotency-Key", "key-1"),
		post("a", `{"k":1}`, "Idempotency-Key", "key-1"),
		post("a", `{}`, "Herald-Event-Type", "greeting", "Herald-Header-Trace", "abc", "HERALD-HEADER-trace", "second"),
		post("a", `{}`, "Herald-Event-Type", "gap"),
		post("bad$topic", `{}`),
		post("a", strings.Repeat("x", 5000)),
		post("a", `{}`, "Content-Type", "bad/type/x"),
		post("b", ``),
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[1]",
		"POST /v1/topics/%61/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/topics/a/events?type=t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"GET /v1/topics/a/events?from=earliest&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
		// Credentials: the same answers, verified once per connection.
		post("private", `{}`),
		post("private", `{}`, "Authorization", "Bearer tok-ann"),
		post("private", `{}`, "Authorization", "Bearer tok-ann"),
		post("private", `{}`, "Authorization", "bearer tok-bob"),
		post("private", `{}`, "Authorization", "Bearer tok-bad"),
		post("private", `{}`, "Authorization", "Basic YTpi"),
		post("private", `{}`, "Authorization", "Bearer tok-ann"),
		post("a", `{}`, "Authorization", "Bearer tok-ann", "Authorization", "Bearer tok-bob"),
	}
	cf, rf := fast.dial(t)
	cs, rs := slow.dial(t)
	for _, req := range requests {
		cf.Write([]byte(req))
		cs.Write([]byte(req))
		a, b := normal(readAnswer(t, rf)), normal(readAnswer(t, rs))
		if a.status != b.status || a.body != b.body || a.close != b.close {
			t.Errorf("%q:\nfast path: %s %s\nnet/http:  %s %s", req, a.status, a.body, b.status, b.body)
		}
		if !headersEqual(a.header, b.header) {
			t.Errorf("%q: headers\nfast path: %v\nnet/http:  %v", req, a.header, b.header)
		}
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestPipelining writes many requests at once and reads the answers in
// order, and checks the events' offsets.
func TestPipelining(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	c, r := s.dial(t)
	var all bytes.Buffer
	const n = 200
	for i := 0; i < n; i++ {
		all.WriteString(post("p", fmt.Sprintf(`{"i":%d}`, i)))
	}
	go c.Write(all.Bytes())
	for i := 1; i <= n; i++ {
		a := readAnswer(t, r)
		if a.status != "201 Created" || !strings.Contains(a.body, fmt.Sprintf(`"offset":%d,`, i)) {
			t.Fatalf("answer %d: %s %s", i, a.status, a.body)
		}
	}
}

// TestSplitReads sends a request a few bytes at a time.
func TestSplitReads(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	c, r := s.dial(t)
	req := post("split", `{"big":"`+strings.Repeat("y", 3000)+`"}`)
	for i := 0; i < len(req); i += 700 {
		end := min(i+700, len(req))
		c.Write([]byte(req[i:end]))
		// The server reads this piece before the next is sent.
		waitRead(t, s, int64(end))
	}
	if a := readAnswer(t, r); a.status != "201 Created" {
		t.Fatalf("split request: %s %s", a.status, a.body)
	}
}

// TestHandoffMidConnection mixes fast and other requests on one
// connection: after the first request the fast path does not serve,
// net/http serves the connection, publishes included.
func TestHandoffMidConnection(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	c, r := s.dial(t)
	steps := []struct{ req, status, has string }{
		{post("m", `{}`), "201 Created", `"offset":1,`},
		{post("m", `{}`), "201 Created", `"offset":2,`},
		{"GET /v1/topics/m HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", `"last":2`},
		{post("m", `{}`), "201 Created", `"offset":3,`},
		{"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", "hello"},
	}
	for _, st := range steps {
		c.Write([]byte(st.req))
		if a := readAnswer(t, r); a.status != st.status || !strings.Contains(a.body, st.has) {
			t.Fatalf("%q: %s %s", st.req, a.status, a.body)
		}
	}
	// A pipelined publish behind a handed-off request is not lost.
	c2, r2 := s.dial(t)
	c2.Write([]byte(post("m", `{}`) + "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" + post("m", `{}`)))
	for _, want := range []string{`"offset":4,`, "hello", `"offset":5,`} {
		if a := readAnswer(t, r2); !strings.Contains(a.body, want) {
			t.Fatalf("pipelined across the handoff: %s %s, want %s", a.status, a.body, want)
		}
	}
}

// TestConnectionClose answers with Connection: close and closes.
func TestConnectionClose(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	c, r := s.dial(t)
	c.Write([]byte(post("c", `{}`, "Connection", "close")))
	a := readAnswer(t, r)
	if a.status != "201 Created" || !a.close {
		t.Fatalf("answer %s %v, want 201 with Connection: close", a.status, a.header)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close: read err %v, want EOF", err)
	}
}

// TestTimeouts closes a connection idle past IdleTimeout, and one whose
// request does not arrive in full within ReadHeaderTimeout.
func TestTimeouts(t *testing.T) {
	s := start(t, true, httpfast.Options{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond})
	for name, send := range map[string]string{"idle": "", "partial head": "POST /v1/topics/t/events HTTP/1.1\r\nHo", "partial body": post("t", `{"a":1}`)[:60]} {
		c, r := s.dial(t)
		if send != "" {
			c.Write([]byte(send))
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadByte(); err != io.EOF {
			t.Errorf("%s: read err %v, want EOF (closed by the server)", name, err)
		}
	}
}

// TestShutdown closes idle connections at once and lets a request under
// way finish.
func TestShutdown(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	idle, ri := s.dial(t)
	idle.Write([]byte(post("s", `{}`)))
	readAnswer(t, ri)
	busy, rb := s.dial(t)
	req := post("s", `{"x":1}`)
	busy.Write([]byte(req[:len(req)-2])) // under way: the body is not complete
	waitRead(t, s, int64(len(post("s", `{}`))+len(req)-2))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.fast.Shutdown(ctx) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ri.ReadByte(); err != io.EOF {
		t.Errorf("idle connection on shutdown: %v, want EOF", err)
	}
	busy.Write([]byte(req[len(req)-2:]))
	if a := readAnswer(t, rb); a.status != "201 Created" || !a.close {
		t.Errorf("request under way at shutdown: %s %v", a.status, a.header)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", s.addr); err == nil {
		t.Errorf("dial after shutdown succeeded")
	}
}

// waitRead waits until the fast-path connections have read n bytes.
func waitRead(t *testing.T, s *server, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.fast.BytesRead() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("the server read %d bytes, want %d", s.fast.BytesRead(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// tokenAuth takes "tok-NAME" for the caller NAME (except "tok-bad"), and
// no token for an anonymous caller.
type tokenAuth struct{}

func (tokenAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	name, ok := strings.CutPrefix(c.Token, "tok-")
	switch {
	case c.Token == "":
		return &hub.Identity{Method: "anonymous"}, nil
	case !ok || name == "bad":
		return nil, fmt.Errorf("%w: unknown token", hub.ErrUnauthenticated)
	}
	return &hub.Identity{Subject: name, Method: "test"}, nil
}

// privateGate lets only authenticated callers publish to "private".
type privateGate struct{}

func (privateGate) Allow(ctx context.Context, _ hub.Action, topic string) error {
	if topic == "private" && hub.IdentityOf(ctx).Anonymous() {
		return fmt.Errorf("%w: private", hub.ErrUnauthenticated)
	}
	return nil
}

// TestCredentialsStayOnTheFastPath: a publisher sending an Authorization
// header is served by the fast path, which verifies its credentials once
// per connection and answers a refusal as net/http does; a cookie goes to
// net/http.
func TestCredentialsStayOnTheFastPath(t *testing.T) {
	s := start(t, true, httpfast.Options{})
	c, r := s.dial(t)
	for i, tok := range []string{"tok-ann", "tok-ann", "tok-bad", "tok-ann"} {
		c.Write([]byte(post("private", `{}`, "Authorization", "Bearer "+tok)))
		want := "201 Created"
		if tok == "tok-bad" {
			want = "401 Unauthorized"
		}
		if a := readAnswer(t, r); a.status != want {
			t.Errorf("request %d with %s: %s %s, want %s", i, tok, a.status, a.body, want)
		}
	}
	if n := s.fast.Handoffs(); n != 0 {
		t.Errorf("%d connections handed to net/http", n)
	}
	c.Write([]byte(post("private", `{}`, "Cookie", "herald_token=tok-ann")))
	readAnswer(t, r)
	if n := s.fast.Handoffs(); n != 1 {
		t.Errorf("a request with a cookie: %d handoffs, want 1", n)
	}
}
