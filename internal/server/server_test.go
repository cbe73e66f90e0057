package server_test

// The integration tests of this package start the real server on
// 127.0.0.1:0 and talk HTTP to it over real sockets. This file holds the
// helpers they share and the tests of the operational endpoints.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is one running server and an HTTP client of its own, so that
// the client's idle connections end with the test.
type testServer struct {
	t      *testing.T
	srv    *server.Server
	addr   string // host:port
	base   string // http://host:port
	client *http.Client
	down   bool
}

// startServer starts a server on a free port with the default config
// adjusted by opts, and shuts it down when the test ends.
func startServer(t *testing.T, opts ...func(*config.Config)) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts...)
}

// startServerWith is startServer with server options.
func startServerWith(t *testing.T, sopts []server.Option, opts ...func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0" // never the fixed default port
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg, nil, sopts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ts := &testServer{
		t:    t,
		srv:  srv,
		addr: srv.HTTPAddr(),
		base: "http://" + srv.HTTPAddr(),
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 16},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
			Timeout: 30 * time.Second,
		},
	}
	t.Cleanup(func() { ts.shutdown() })
	return ts
}

// in returns ts reporting failures to t, for use inside subtests.
func (ts *testServer) in(t *testing.T) *testServer {
	c := *ts
	c.t = t
	return &c
}

// shutdown drains the server once and checks that it stopped cleanly.
func (ts *testServer) shutdown() {
	ts.t.Helper()
	if ts.down {
		return
	}
	ts.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("Shutdown: %v", err)
	}
	ts.client.CloseIdleConnections()
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError is the body of every API error.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends one request; hdr holds header name/value pairs.
func (ts *testServer) do(method, path string, body []byte, hdr ...string) response {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.base+path, rd)
	if err != nil {
		ts.t.Fatalf("new request %s %s: %v", method, path, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		ts.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (ts *testServer) get(path string, hdr ...string) response {
	ts.t.Helper()
	return ts.do(http.MethodGet, path, nil, hdr...)
}

// wantError checks that r is the API's error JSON with status and code.
func wantError(t *testing.T, r response, status int, code string) apiError {
	t.Helper()
	var e apiError
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, r.body)
	}
	if e.Error.Code != code {
		t.Errorf("error code = %q, want %q (message %q)", e.Error.Code, code, e.Error.Message)
	}
	if e.Error.Message == "" {
		t.Errorf("error %s has no message", code)
	}
	return e
}

// publishAck is the answer to a publish.
type publishAck struct {
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Cursor    string `json:"cursor"`
	Duplicate bool   `json:"duplicate"`
}

// publish posts body to topic and expects 201 (or 200 for a duplicate).
func (ts *testServer) publish(topic, contentType string, body []byte, hdr ...string) publishAck {
	ts.t.Helper()
	if contentType != "" {
		hdr = append(hdr, "Content-Type", contentType)
	}
	path := "/v1/topics/" + topic + "/events"
	if strings.Contains(topic, "/") { // "topic/events?query"
		path = "/v1/topics/" + topic
	}
	r := ts.do(http.MethodPost, path, body, hdr...)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		ts.t.Fatalf("publish to %s: status %d: %s", topic, r.status, r.body)
	}
	var a publishAck
	if err := json.Unmarshal(r.body, &a); err != nil {
		ts.t.Fatalf("publish answer: %v: %s", err, r.body)
	}
	return a
}

// publishN publishes the JSON events {"n":from} … {"n":from+n-1} to topic
// and returns their acks.
func (ts *testServer) publishN(topic string, from, n int) []publishAck {
	ts.t.Helper()
	acks := make([]publishAck, 0, n)
	for i := from; i < from+n; i++ {
		acks = append(acks, ts.publish(topic, "application/json", []byte(`{"n":`+strconv.Itoa(i)+`}`)))
	}
	return acks
}

// batchResult is one entry of a batch answer.
type batchResult struct {
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate"`
}

// batch posts a batch body and expects 200.
func (ts *testServer) batch(body string) []batchResult {
	ts.t.Helper()
	r := ts.do(http.MethodPost, "/v1/events", []byte(body), "Content-Type", "application/json")
	if r.status != http.StatusOK {
		ts.t.Fatalf("batch: status %d: %s", r.status, r.body)
	}
	var out struct {
		Results []batchResult `json:"results"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		ts.t.Fatalf("batch answer: %v: %s", err, r.body)
	}
	return out.Results
}

// wireEvent is an event as the JSON transports carry it.
type wireEvent struct {
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     string            `json:"time"`
	Type     string            `json:"type"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers"`
}

type wirePosition struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

type wireGap struct {
	Topic     string       `json:"topic"`
	Reason    string       `json:"reason"`
	Requested wirePosition `json:"requested"`
	Resumed   wirePosition `json:"resumed"`
	Earliest  uint64       `json:"earliest"`
}

type pullResult struct {
	Events []wireEvent `json:"events"`
	Cursor string      `json:"cursor"`
	Gaps   []wireGap   `json:"gaps"`
	raw    []byte
}

// pull GETs path (a pull URL with its query) and expects 200.
func (ts *testServer) pull(path string) pullResult {
	ts.t.Helper()
	r := ts.get(path)
	if r.status != http.StatusOK {
		ts.t.Fatalf("GET %s: status %d: %s", path, r.status, r.body)
	}
	return decodePull(ts.t, r.body)
}

func decodePull(t *testing.T, b []byte) pullResult {
	t.Helper()
	var p pullResult
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("pull answer: %v: %s", err, b)
	}
	if p.Events == nil {
		t.Fatalf("pull answer has no events array: %s", b)
	}
	p.raw = b
	return p
}

// topicInfo is one entry of GET /v1/topics.
type topicInfo struct {
	Name        string `json:"name"`
	Epoch       string `json:"epoch"`
	First       uint64 `json:"first"`
	Last        uint64 `json:"last"`
	Retained    int    `json:"retained"`
	Bytes       int64  `json:"bytes"`
	Subscribers int    `json:"subscribers"`
}

// info returns a topic's info, or false on 404.
func (ts *testServer) info(topic string) (topicInfo, bool) {
	ts.t.Helper()
	r := ts.get("/v1/topics/" + topic)
	if r.status == http.StatusNotFound {
		wantError(ts.t, r, http.StatusNotFound, "not_found")
		return topicInfo{}, false
	}
	if r.status != http.StatusOK {
		ts.t.Fatalf("topic info %s: status %d: %s", topic, r.status, r.body)
	}
	var ti topicInfo
	if err := json.Unmarshal(r.body, &ti); err != nil {
		ts.t.Fatalf("topic info: %v: %s", err, r.body)
	}
	return ti, true
}

// subscribers returns a topic's subscriber count (0 for no topic).
func (ts *testServer) subscribers(topic string) int {
	ts.t.Helper()
	ti, _ := ts.info(topic)
	return ti.Subscribers
}

// metric returns the value of the sample named by series (a metric name,
// with its labels as written by the Prometheus text format), or -1.
func (ts *testServer) metric(series string) float64 {
	ts.t.Helper()
	r := ts.get("/metrics")
	if r.status != http.StatusOK {
		ts.t.Fatalf("/metrics: status %d", r.status)
	}
	return sample(r.body, series)
}

func sample(text []byte, series string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

// waitFor polls cond until it holds, failing the test after timeout. It is
// for conditions only observable from outside (a gauge, a subscriber count),
// never a substitute for reading what the server sends.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cursorAt encodes a cursor holding one topic's position.
func cursorAt(t *testing.T, topic, epoch string, offset uint64) string {
	t.Helper()
	ep, err := event.ParseEpoch(epoch)
	if err != nil {
		t.Fatalf("epoch %q: %v", epoch, err)
	}
	var c cursor.Cursor
	c.Set(topic, event.Position{Epoch: ep, Offset: offset})
	return c.String()
}

// parseCursor decodes a cursor token into topic → offset and topic → epoch.
func parseCursor(t *testing.T, token string) (map[string]uint64, map[string]string) {
	t.Helper()
	c, err := cursor.Parse(token)
	if err != nil {
		t.Fatalf("cursor %q: %v", token, err)
	}
	offs := make(map[string]uint64)
	eps := make(map[string]string)
	for _, e := range c.Entries() {
		offs[e.Topic] = e.Offset
		eps[e.Topic] = e.Epoch.String()
	}
	return offs, eps
}

func TestHealthAndReady(t *testing.T) {
	ts := startServer(t)
	if r := ts.get("/healthz"); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", r.status, r.body)
	}
	if r := ts.get("/readyz"); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ready" {
		t.Errorf("/readyz = %d %q, want 200 ready", r.status, r.body)
	}

	// Serve the same handler on a second listener, so that /readyz can be
	// asked while the server drains (its own listener closes first).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	side := &http.Server{Handler: ts.srv.Handler()}
	go side.Serve(ln)
	defer side.Close()

	ts.shutdown()
	res, err := ts.client.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", res.StatusCode)
	}
	ts.client.CloseIdleConnections()
}

func TestUnknownPath(t *testing.T) {
	ts := startServer(t)
	for _, p := range []string{"/nope", "/v2/topics", "/v1/topics/a/events/extra", "/v1/topics/a/b/events"} {
		t.Run(p, func(t *testing.T) {
			wantError(t, ts.in(t).get(p), http.StatusNotFound, "not_found")
		})
	}
}

func TestOpenAPI(t *testing.T) {
	ts := startServer(t)
	r := ts.get("/v1/openapi.json")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if _, ok := doc["openapi"]; !ok {
		t.Errorf("no openapi field in %s", r.body)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		method, path string
		allow        []string
	}{
		{http.MethodPut, "/v1/topics/a/events", []string{"GET", "POST"}},
		{http.MethodDelete, "/v1/topics/a/events", []string{"GET", "POST"}},
		{http.MethodPatch, "/v1/events", []string{"GET", "POST"}},
		{http.MethodPost, "/v1/topics", []string{"GET"}},
		{http.MethodDelete, "/v1/topics/a", []string{"GET"}},
		{http.MethodPost, "/v1/sse", []string{"GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := ts.in(t).do(tt.method, tt.path, nil)
			wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			got := strings.Split(r.header.Get("Allow"), ", ")
			if strings.Join(got, ",") != strings.Join(tt.allow, ",") {
				t.Errorf("Allow = %q, want %q", r.header.Get("Allow"), strings.Join(tt.allow, ", "))
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	ts := startServer(t)
	s := ts.openSSE("topic=m.a")
	defer s.close()
	s.next() // retry + id
	// Each event reaches the stream live or, when the subscription is
	// still settling on the new topic, recovered from history: both count.
	ts.publishN("m.a", 0, 3)
	for i := 0; i < 3; i++ {
		s.nextEvent()
	}
	// Fan-out counts a delivery after offering it to every subscriber,
	// which may be just after the stream has written it.
	waitFor(t, "the delivered counter", 5*time.Second, func() bool {
		return ts.metric("herald_events_delivered_total") == 3
	})
	r := ts.get("/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	for _, tt := range []struct {
		series string
		want   func(float64) bool
	}{
		{"herald_events_published_total", func(v float64) bool { return v == 3 }},
		{"herald_events_delivered_total", func(v float64) bool { return v == 3 }},
		{`herald_connections{transport="sse"}`, func(v float64) bool { return v == 1 }},
		{"herald_subscriptions", func(v float64) bool { return v == 1 }},
		{"herald_slow_consumer_disconnects_total", func(v float64) bool { return v == 0 }},
		{"herald_publish_duration_seconds_count", func(v float64) bool { return v == 3 }},
	} {
		if v := sample(r.body, tt.series); !tt.want(v) {
			t.Errorf("%s = %v", tt.series, v)
		}
	}
	if !bytes.Contains(r.body, []byte("# TYPE herald_publish_duration_seconds histogram")) {
		t.Errorf("herald_publish_duration_seconds is not a histogram")
	}
}

func TestTopics(t *testing.T) {
	ts := startServer(t)
	ts.publishN("t.b", 0, 2)
	ts.publishN("t.a", 0, 3)
	s := ts.openSSE("topic=t.a")
	defer s.close()
	s.next()

	r := ts.get("/v1/topics")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var list struct {
		Topics []topicInfo `json:"topics"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	if len(list.Topics) != 2 || list.Topics[0].Name != "t.a" || list.Topics[1].Name != "t.b" {
		t.Fatalf("topics = %+v, want t.a then t.b", list.Topics)
	}
	a := list.Topics[0]
	if a.First != 1 || a.Last != 3 || a.Retained != 3 || a.Bytes <= 0 || a.Subscribers != 1 || len(a.Epoch) != 16 {
		t.Errorf("t.a = %+v", a)
	}
	if b := list.Topics[1]; b.Last != 2 || b.Subscribers != 0 {
		t.Errorf("t.b = %+v", b)
	}

	got, ok := ts.info("t.a")
	if !ok || got != a {
		t.Errorf("info t.a = %+v, want %+v", got, a)
	}
	if _, ok := ts.info("t.nope"); ok {
		t.Errorf("info of a topic never published: found")
	}
	wantError(t, ts.get("/v1/topics/t..a"), http.StatusBadRequest, "bad_topic")
}

func TestCORS(t *testing.T) {
	const ok, bad = "https://ok.example", "https://evil.example"
	ts := startServer(t, func(c *config.Config) { c.HTTP.CORSOrigins = []string{ok} })

	r := ts.get("/v1/topics", "Origin", ok)
	if got := r.header.Get("Access-Control-Allow-Origin"); got != ok {
		t.Errorf("REST allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	r = ts.get("/v1/topics", "Origin", bad)
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("REST disallowed origin: Access-Control-Allow-Origin = %q", got)
	}

	r = ts.do(http.MethodOptions, "/v1/topics/c.a/events", nil,
		"Origin", ok, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if r.status != http.StatusNoContent {
		t.Errorf("preflight status = %d, want 204", r.status)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != ok {
		t.Errorf("preflight Access-Control-Allow-Origin = %q", got)
	}
	if got := r.header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
		t.Errorf("preflight Access-Control-Allow-Methods = %q", got)
	}
	if got := r.header.Get("Access-Control-Allow-Headers"); !strings.Contains(strings.ToLower(got), "content-type") {
		t.Errorf("preflight Access-Control-Allow-Headers = %q", got)
	}
	r = ts.do(http.MethodOptions, "/v1/topics/c.a/events", nil, "Origin", bad, "Access-Control-Request-Method", "POST")
	if r.status == http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from a disallowed origin: %d %v", r.status, r.header)
	}
	if _, found := ts.info("c.a"); found {
		t.Errorf("a preflight created the topic")
	}

	s := ts.openSSE("topic=c.a", "Origin", ok)
	if got := s.header.Get("Access-Control-Allow-Origin"); got != ok {
		t.Errorf("SSE allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	s.close()
	s = ts.openSSE("topic=c.a", "Origin", bad)
	if got := s.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("SSE disallowed origin: Access-Control-Allow-Origin = %q", got)
	}
	s.close()

	any := startServer(t, func(c *config.Config) { c.HTTP.CORSOrigins = []string{"*"} })
	if got := any.get("/healthz", "Origin", bad).header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf(`"*" config: Access-Control-Allow-Origin = %q`, got)
	}
	none := startServer(t)
	if got := none.get("/healthz", "Origin", ok).header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("no CORS config: Access-Control-Allow-Origin = %q", got)
	}
}

func TestTwoServersInOneProcess(t *testing.T) {
	a, b := startServer(t), startServer(t)
	a.publishN("x.y", 0, 2)
	b.publishN("x.y", 0, 1)
	if ia, _ := a.info("x.y"); ia.Last != 2 {
		t.Errorf("server a: last = %d", ia.Last)
	}
	if ib, _ := b.info("x.y"); ib.Last != 1 {
		t.Errorf("server b: last = %d", ib.Last)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Engine = "nope"
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "engine") {
		t.Errorf("New with a bad engine: %v", err)
	}
	cfg = config.Default()
	cfg.HTTP.Addr = "256.0.0.1:0" // valid host:port, but cannot be listened on
	cfg.Auth.InsecureOpen = true  // not loopback: auth off needs saying so

	s, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Errorf("Start on a bad address: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of a server that never started: %v", err)
	}
}

// fmtOffsets formats offsets for failure messages.
func fmtOffsets(evs []wireEvent) string {
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", e.Topic, e.Offset)
	}
	return b.String()
}

func TestShutdownTwice(t *testing.T) {
	ts := startServer(t)
	ts.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("first Shutdown: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second Shutdown hangs")
	}
	ts.client.CloseIdleConnections()
}
