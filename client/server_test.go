package client_test

// The tests of this file run the client against the real herald server,
// started in-process on 127.0.0.1:0 over real sockets.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a running herald server with a memory engine that outlives
// restarts (see restart), and a client of it with an HTTP transport of its
// own, whose connections end with the test.
type testServer struct {
	t    *testing.T
	cfg  config.Config
	eng  *memory.Engine
	srv  *server.Server
	addr string
	tr   *http.Transport
	c    *client.Client
	keys int // idempotency keys used by publish

	srvOpts []server.Option // given to every start
}

// startServer starts a server on a free port with the default config,
// changed by opts, and stops it when the test ends. The SSE and gRPC retry
// hints are short so that reconnection tests run fast.
func startServer(t *testing.T, opts ...func(*config.Config)) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts...)
}

// startServerWith is startServer with options of the server, such as
// server.WithAccess.
func startServerWith(t *testing.T, srvOpts []server.Option, opts ...func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0" // never the fixed default port
	cfg.SSE.Retry = 20 * time.Millisecond
	cfg.GRPC.Retry = 20 * time.Millisecond
	cfg.Shutdown.Timeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	ts := &testServer{t: t, cfg: cfg, tr: &http.Transport{}, srvOpts: srvOpts}
	ts.eng = ts.newEngine()
	ts.start()
	ts.cfg.HTTP.Addr = ts.addr // restarts listen on the same address
	ts.cfg.GRPC.Addr = ts.srv.GRPCAddr()
	c, err := client.New("http://"+ts.addr, client.WithHTTPClient(&http.Client{Transport: ts.tr}))
	if err != nil {
		t.Fatal(err)
	}
	ts.c = c
	t.Cleanup(func() {
		ts.stop()
		ts.eng.Close()
		ts.tr.CloseIdleConnections()
	})
	return ts
}

func (ts *testServer) newEngine() *memory.Engine {
	return memory.New(memory.Options{Retention: ts.cfg.Retention, DedupeWindow: ts.cfg.History.DedupeWindow})
}

func (ts *testServer) start() {
	ts.t.Helper()
	srv, err := server.New(ts.cfg, nil, append([]server.Option{server.WithEngine(ts.eng)}, ts.srvOpts...)...)
	if err != nil {
		ts.t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		ts.t.Fatalf("server Start: %v", err)
	}
	ts.srv, ts.addr = srv, srv.HTTPAddr()
}

func (ts *testServer) stop() {
	ts.t.Helper()
	if ts.srv == nil {
		return
	}
	// net/http's Shutdown waits up to 5s for a connection that has sent no
	// request yet, such as one the client's transport dialed and then
	// pooled unused; closing the client's idle connections first avoids
	// most of those waits.
	ts.tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("server Shutdown: %v", err)
	}
	ts.srv = nil
}

// restart stops the server and starts a new one on the same address. With
// keepHistory it serves the same engine (a durable restart); without, a new
// empty engine (a memory engine's restart: every topic gets a new epoch).
func (ts *testServer) restart(keepHistory bool) {
	ts.t.Helper()
	ts.stop()
	if !keepHistory {
		ts.eng.Close()
		ts.eng = ts.newEngine()
	}
	ts.start()
	// Pooled connections to the old server are dead; a publish must not
	// pick one (net/http does not retry a POST that may have been sent).
	ts.tr.CloseIdleConnections()
}

// metric returns the value of a sample of /metrics, or -1.
func (ts *testServer) metric(series string) float64 {
	ts.t.Helper()
	resp, err := (&http.Client{Transport: ts.tr}).Get("http://" + ts.addr + "/metrics")
	if err != nil {
		ts.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// publish publishes a JSON payload and returns its ack. Each publish has
// an idempotency key of its own, as a careful producer's would, so that
// net/http may resend it when it meets a pooled connection the server
// closed in a restart.
func (ts *testServer) publish(topic, data string) client.Ack {
	ts.t.Helper()
	ts.keys++
	key := fmt.Sprintf("test-%d", ts.keys)
	ack, err := ts.c.Publish(context.Background(), topic, []byte(data), client.WithKey(key))
	if err != nil {
		ts.t.Fatalf("publish %s to %s: %v", data, topic, err)
	}
	return ack
}

// subscribe subscribes and closes the subscription when the test ends.
func (ts *testServer) subscribe(topics []string, opts ...client.SubscribeOption) *client.Subscription {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := ts.c.Subscribe(ctx, topics, opts...)
	if err != nil {
		ts.t.Fatalf("Subscribe(%v): %v", topics, err)
	}
	ts.t.Cleanup(func() { sub.Close() })
	return sub
}

// next returns the next message that is not a reconnection notice.
func next(t *testing.T, sub *client.Subscription) client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if m.Err != nil {
			t.Logf("reconnecting: %v", m.Err)
			continue
		}
		return m
	}
}

// nextEvent returns the next message, which must be an event.
func nextEvent(t *testing.T, sub *client.Subscription) client.Message {
	t.Helper()
	m := next(t, sub)
	if m.Event == nil {
		t.Fatalf("got %+v, want an event", m)
	}
	return m
}

// payload returns an event's payload as a string.
func payload(t *testing.T, ev *client.Event) string {
	t.Helper()
	b, err := ev.Payload()
	if err != nil {
		t.Fatalf("Payload: %v", err)
	}
	return string(b)
}

// apiError returns err's *client.Error, failing the test without one.
func apiError(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return e
}

var transports = []client.Transport{client.TransportSSE, client.TransportPoll, client.TransportWS}

func TestPublishAndPull(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	const topic = "pp.one"
	tests := []struct {
		data         []byte
		typ          string
		opts         []client.PublishOption
		wantEncoding string
	}{
		{[]byte(`{"text":"hi"}`), "message", []client.PublishOption{client.WithType("message"), client.WithHeader("Trace", "t1")}, client.EncodingJSON},
		{[]byte("plain\r\ntext"), "", []client.PublishOption{client.WithContentType("text/plain; charset=utf-8")}, client.EncodingText},
		{[]byte{0, 1, 2, 0xff}, "", []client.PublishOption{client.WithContentType("application/octet-stream")}, client.EncodingBinary},
	}
	var acks []client.Ack
	for i, tt := range tests {
		ack, err := ts.c.Publish(ctx, topic, tt.data, tt.opts...)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if ack.Topic != topic || ack.Offset != uint64(i+1) || len(ack.Epoch) != 16 || ack.Cursor == "" || ack.Duplicate {
			t.Fatalf("ack %d = %+v", i, ack)
		}
		acks = append(acks, ack)
	}

	res, err := ts.c.Pull(ctx, []string{topic}, client.WithFrom(client.FromEarliest))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != len(tests) || res.Cursor == "" || len(res.Gaps) != 0 {
		t.Fatalf("pull = %+v", res)
	}
	for i, ev := range res.Events {
		tt := tests[i]
		if ev.Topic != topic || ev.Offset != uint64(i+1) || ev.Epoch != acks[i].Epoch || ev.Encoding != tt.wantEncoding || ev.Type != tt.typ {
			t.Errorf("event %d = %+v", i, ev)
		}
		if ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
			t.Errorf("event %d: time %v", i, ev.Time)
		}
		if got := payload(t, &ev); got != string(tt.data) {
			t.Errorf("event %d: payload %q, want %q", i, got, tt.data)
		}
	}
	if got := res.Events[0].Headers["trace"]; got != "t1" {
		t.Errorf("headers = %v, want trace=t1", res.Events[0].Headers)
	}

	// An ack's cursor reads on after its event; the pull's cursor after all.
	res, err = ts.c.Pull(ctx, []string{topic}, client.WithCursor(acks[0].Cursor), client.WithLimit(1))
	if err != nil || len(res.Events) != 1 || res.Events[0].Offset != 2 {
		t.Fatalf("pull from the first ack = %+v, %v", res, err)
	}
	res, err = ts.c.Pull(ctx, []string{topic}, client.WithCursor(res.Cursor))
	if err != nil || len(res.Events) != 1 || res.Events[0].Offset != 3 {
		t.Fatalf("pull on = %+v, %v", res, err)
	}
	res, err = ts.c.Pull(ctx, []string{topic}, client.WithCursor(res.Cursor))
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("pull at the end = %+v, %v", res, err)
	}
}

func TestLongPoll(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	const topic = "lp.one"
	res, err := ts.c.Pull(ctx, []string{topic}, client.WithFrom(client.FromLatest))
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("first pull = %+v, %v", res, err)
	}
	type answer struct {
		res client.PullResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := ts.c.Pull(ctx, []string{topic}, client.WithCursor(res.Cursor), client.WithWait(20*time.Second))
		done <- answer{r, err}
	}()
	ts.publish(topic, `"wake up"`)
	a := <-done
	if a.err != nil || len(a.res.Events) != 1 || payload(t, &a.res.Events[0]) != `"wake up"` {
		t.Fatalf("long poll = %+v, %v", a.res, a.err)
	}
}

func TestPublishBatch(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	events := []client.BatchEvent{
		{Topic: "batch.a", Data: []byte(`{"n":1}`), Type: "note"},
		{Topic: "batch.b", Text: "plain text", Headers: map[string]string{"k": "v"}},
		{Topic: "batch.a", Binary: []byte{0, 1, 2}},
		{Topic: "batch.a"}, // empty text
	}
	acks, err := ts.c.PublishBatch(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		topic  string
		offset uint64
	}{{"batch.a", 1}, {"batch.b", 1}, {"batch.a", 2}, {"batch.a", 3}}
	for i, a := range acks {
		if a.Topic != want[i].topic || a.Offset != want[i].offset || a.Duplicate || a.Cursor == "" {
			t.Errorf("ack %d = %+v, want %s #%d", i, a, want[i].topic, want[i].offset)
		}
	}
	// A batch ack's cursor reads on after its event, as a single publish's.
	res, err := ts.c.Pull(ctx, []string{"batch.a"}, client.WithCursor(acks[0].Cursor))
	if err != nil || len(res.Events) != 2 || res.Events[0].Offset != 2 {
		t.Errorf("pull from a batch ack's cursor: %+v, %v", res, err)
	}

	res, err = ts.c.Pull(ctx, []string{"batch.a", "batch.b"}, client.WithFrom(client.FromEarliest))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, ev := range res.Events {
		got[ev.Topic] = append(got[ev.Topic], ev.Encoding+":"+payload(t, &ev))
	}
	wantA := []string{`json:{"n":1}`, "binary:\x00\x01\x02", "text:"}
	if strings.Join(got["batch.a"], "|") != strings.Join(wantA, "|") || len(got["batch.b"]) != 1 || got["batch.b"][0] != "text:plain text" {
		t.Errorf("stored %q", got)
	}

	// A bad event refuses the whole batch, and nothing is stored.
	_, err = ts.c.PublishBatch(ctx, []client.BatchEvent{
		{Topic: "batch.c", Data: []byte(`1`)},
		{Topic: "batch..bad", Data: []byte(`2`)},
	})
	if e := apiError(t, err); e.Status != 400 || e.Code != client.CodeBadTopic || !strings.Contains(e.Message, "event 1") {
		t.Errorf("bad batch: %+v", e)
	}
	res, err = ts.c.Pull(ctx, []string{"batch.c"}, client.WithFrom(client.FromEarliest))
	if err != nil || len(res.Events) != 0 {
		t.Errorf("refused batch stored %+v, %v", res.Events, err)
	}

	// The cursor of a batch's last event reads what comes after the batch.
	after, err := ts.c.Publish(ctx, "batch.a", []byte("4"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = ts.c.Pull(ctx, []string{"batch.a"}, client.WithCursor(acks[3].Cursor))
	if err != nil || len(res.Events) != 1 || res.Events[0].Offset != after.Offset {
		t.Errorf("pull from the batch's last cursor: %+v, %v", res, err)
	}

	// Client-side checks.
	if _, err := ts.c.PublishBatch(ctx, []client.BatchEvent{{Topic: "batch.a", Data: []byte(`1`), Text: "x"}}); err == nil {
		t.Error("batch with two payloads was accepted")
	}
	if _, err := ts.c.PublishBatch(ctx, nil); err == nil {
		t.Error("empty batch was accepted")
	}
}

func TestIdempotency(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	opts := client.WithKey("order-1")
	first, err := ts.c.Publish(ctx, "idem.a", []byte(`{"n":1}`), opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ts.c.Publish(ctx, "idem.a", []byte(`{"n":1}`), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || first.Duplicate || again.Offset != first.Offset || again.Epoch != first.Epoch {
		t.Errorf("first %+v, retry %+v", first, again)
	}
	acks, err := ts.c.PublishBatch(ctx, []client.BatchEvent{
		{Topic: "idem.a", Data: []byte(`{"n":1}`), Key: "order-1"},
		{Topic: "idem.a", Data: []byte(`{"n":2}`), Key: "order-2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !acks[0].Duplicate || acks[0].Offset != 1 || acks[1].Duplicate || acks[1].Offset != 2 {
		t.Errorf("batch acks %+v", acks)
	}
}

func TestErrors(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	pull := func(topics []string, opts ...client.PullOption) error {
		_, err := ts.c.Pull(ctx, topics, opts...)
		return err
	}
	publish := func(topic, data string, opts ...client.PublishOption) error {
		_, err := ts.c.Publish(ctx, topic, []byte(data), opts...)
		return err
	}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"bad topic", publish("a..b", "1"), 400, client.CodeBadTopic},
		{"bad topic character", publish("a/b", "1"), 400, client.CodeBadTopic},
		{"invalid JSON", publish("err.a", "{"), 400, client.CodeBadRequest},
		{"reserved type", publish("err.a", "1", client.WithType("gap")), 400, client.CodeBadRequest},
		{"too large", publish("err.a", `"`+strings.Repeat("x", 2<<20)+`"`), 413, client.CodeTooLarge},
		{"bad cursor", pull([]string{"err.a"}, client.WithCursor("!!")), 400, client.CodeBadCursor},
		{"bad limit", pull([]string{"err.a"}, client.WithLimit(20000)), 400, client.CodeBadRequest},
		{"bad pull topic", pull([]string{".a"}), 400, client.CodeBadTopic},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		e := apiError(t, tt.err)
		if e.Status != tt.status || e.Code != tt.code || e.Message == "" {
			t.Errorf("%s: got %+v, want %d %s", tt.name, e, tt.status, tt.code)
		}
		if !strings.Contains(tt.err.Error(), tt.code) {
			t.Errorf("%s: message %q does not name the code", tt.name, tt.err)
		}
		if e.Retryable() {
			t.Errorf("%s: %v is retryable", tt.name, e)
		}
	}

	// What the client refuses itself, naming the bad value.
	for _, tt := range []struct {
		name, want string
		err        error
	}{
		{"pull from", `"middle"`, pull([]string{"err.a"}, client.WithFrom("middle"))},
		{"pull limit", "-1", pull([]string{"err.a"}, client.WithLimit(-1))},
		{"pull topics", "topic", pull(nil)},
		{"publish topic", "topic", publish("", "1")},
	} {
		if tt.err == nil || errors.As(tt.err, new(*client.Error)) || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want a client error naming %s", tt.name, tt.err, tt.want)
		}
	}

	// Subscribe fails at once on what reconnecting cannot fix.
	for _, tr := range transports {
		_, err := ts.c.Subscribe(ctx, []string{"a..b"}, client.WithTransport(tr))
		if e := apiError(t, err); e.Code != client.CodeBadTopic {
			t.Errorf("%s subscribe to a bad topic: %v", tr, err)
		}
		_, err = ts.c.Subscribe(ctx, []string{"err.a"}, client.WithTransport(tr), client.WithCursor("AgE"))
		if e := apiError(t, err); e.Code != client.CodeBadCursor {
			t.Errorf("%s subscribe with a bad cursor: %v", tr, err)
		}
	}
	for name, opt := range map[string]client.SubscribeOption{
		"transport":  client.WithTransport("carrier-pigeon"),
		"from":       client.WithFrom("middle"),
		"poll limit": client.WithPollLimit(-1),
	} {
		if _, err := ts.c.Subscribe(ctx, []string{"err.a"}, opt); err == nil {
			t.Errorf("bad %s accepted", name)
		}
	}
	if _, err := ts.c.Subscribe(ctx, nil); err == nil {
		t.Error("subscribe without topics accepted")
	}

	// A server that is not there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := client.New("http://"+addr, client.WithHTTPClient(&http.Client{Transport: ts.tr}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "err.a", []byte("1")); err == nil || errors.As(err, new(*client.Error)) {
		t.Errorf("publish to nothing: %v", err)
	}
	if _, err := c.Subscribe(ctx, []string{"err.a"}); err == nil {
		t.Error("subscribe to nothing succeeded")
	}
}

func TestNewClient(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://h", "http://", "http://h/?q=1", "http://h/#f", "http://[::1"} {
		if _, err := client.New(bad); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
	c, err := client.New("https://events.example.com/herald/")
	if err != nil || c.BaseURL() != "https://events.example.com/herald" {
		t.Errorf("New with a prefix: %v, %v", c, err)
	}
}

func TestClientHeaders(t *testing.T) {
	ts := startServer(t)
	seen := make(chan http.Header, 1)
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
		return ts.tr.RoundTrip(r)
	})}
	c, err := client.New("http://"+ts.addr, client.WithHTTPClient(hc), client.WithUserAgent("test/1"),
		client.WithRequestHeader("Authorization", "Bearer t0k3n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), "hdr.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	h := <-seen
	if h.Get("User-Agent") != "test/1" || h.Get("Authorization") != "Bearer t0k3n" {
		t.Errorf("request headers %v", h)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestSubscribeLive(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			topics := []string{"live.a", "live.b"}
			sub := ts.subscribe(topics, client.WithTransport(tr))
			// Subscribe has returned: the start is fixed, nothing is missed.
			acks := map[string][]client.Ack{}
			for _, p := range []struct{ topic, data string }{
				{"live.a", `{"n":1}`}, {"live.b", `"b1"`}, {"live.a", `[2]`}, {"live.b", `"b2"`},
			} {
				acks[p.topic] = append(acks[p.topic], ts.publish(p.topic, p.data))
			}
			// Each topic's events come in order; topics interleave.
			var msgs []client.Message
			seen := map[string]int{}
			for range 4 {
				m := nextEvent(t, sub)
				ev := m.Event
				i := seen[ev.Topic]
				if i >= len(acks[ev.Topic]) {
					t.Fatalf("unexpected event %+v", ev)
				}
				if ack := acks[ev.Topic][i]; ev.Offset != ack.Offset || ev.Epoch != ack.Epoch || ev.Encoding != client.EncodingJSON {
					t.Errorf("event %+v, want %s #%d epoch %s", ev, ack.Topic, ack.Offset, ack.Epoch)
				}
				seen[ev.Topic]++
				msgs = append(msgs, m)
			}
			// Each message's cursor continues with the messages after it.
			for i, m := range msgs {
				res, err := ts.c.Pull(context.Background(), topics, client.WithCursor(m.Cursor))
				if err != nil {
					t.Fatal(err)
				}
				got, want := positions(res.Events), positions(eventsOf(msgs[i+1:]))
				if got != want {
					t.Errorf("pull after message %d: %s, want %s", i, got, want)
				}
			}
		})
	}
}

// eventsOf returns the events of msgs.
func eventsOf(msgs []client.Message) []client.Event {
	var evs []client.Event
	for _, m := range msgs {
		evs = append(evs, *m.Event)
	}
	return evs
}

// positions lists events as "topic#offset", sorted, to compare sets.
func positions(evs []client.Event) string {
	var ps []string
	for _, ev := range evs {
		ps = append(ps, ev.Topic+"#"+strconv.FormatUint(ev.Offset, 10))
	}
	slices.Sort(ps)
	return strings.Join(ps, ",")
}

func TestSubscribeTypesAndEncodings(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			sub := ts.subscribe([]string{"enc.a"}, client.WithTransport(tr))
			ctx := context.Background()
			pubs := []struct {
				data string
				typ  string
				ct   string
			}{
				{"{\n  \"pretty\": true\n}", "update", ""},
				{"two\nlines", "", "text/plain"},
				{"", "", "text/plain"},
			}
			for _, p := range pubs {
				if _, err := ts.c.Publish(ctx, "enc.a", []byte(p.data), client.WithType(p.typ), client.WithContentType(p.ct)); err != nil {
					t.Fatal(err)
				}
			}
			for i, p := range pubs {
				ev := nextEvent(t, sub).Event
				if got := payload(t, ev); got != p.data || ev.Type != p.typ || ev.Offset != uint64(i+1) {
					t.Errorf("event %d: %+v payload %q, want %q type %q", i, ev, got, p.data, p.typ)
				}
			}
		})
	}
}

func TestSubscribeFromHistory(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			var acks []client.Ack
			for i := 1; i <= 3; i++ {
				acks = append(acks, ts.publish("hist.a", strconv.Itoa(i)))
			}
			all := ts.subscribe([]string{"hist.a"}, client.WithTransport(tr), client.WithFrom(client.FromEarliest))
			after1 := ts.subscribe([]string{"hist.a"}, client.WithTransport(tr), client.WithCursor(acks[0].Cursor))
			for i := 1; i <= 3; i++ {
				if ev := nextEvent(t, all).Event; ev.Offset != uint64(i) || payload(t, ev) != strconv.Itoa(i) {
					t.Errorf("from earliest: %+v", ev)
				}
			}
			for i := 2; i <= 3; i++ {
				if ev := nextEvent(t, after1).Event; ev.Offset != uint64(i) {
					t.Errorf("from a cursor: %+v", ev)
				}
			}
		})
	}
}

// TestSubscribeResume restarts the server over the same history while a
// subscriber follows a topic, publishing while the subscriber is away:
// it must see every event once, in order.
func TestSubscribeResume(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			const topic = "resume.a"
			sub := ts.subscribe([]string{topic}, client.WithTransport(tr), client.WithPollWait(5*time.Second))
			for i := 1; i <= 2; i++ {
				ts.publish(topic, strconv.Itoa(i))
			}
			for i := 1; i <= 2; i++ {
				if ev := nextEvent(t, sub).Event; ev.Offset != uint64(i) {
					t.Fatalf("before restart: %+v", ev)
				}
			}
			for round := range 2 {
				ts.restart(true)
				for i := 3 + 2*round; i <= 4+2*round; i++ {
					ts.publish(topic, strconv.Itoa(i))
				}
				for i := 3 + 2*round; i <= 4+2*round; i++ {
					ev := nextEvent(t, sub).Event
					if ev.Offset != uint64(i) || payload(t, ev) != strconv.Itoa(i) {
						t.Fatalf("after restart %d: got #%d %s, want #%d", round, ev.Offset, payload(t, ev), i)
					}
				}
			}
		})
	}
}

// TestSubscribeReconnectNotice checks that an SSE subscriber is told about
// the server draining, with the API's code.
func TestSubscribeReconnectNotice(t *testing.T) {
	ts := startServer(t)
	sub := ts.subscribe([]string{"notice.a"})
	ts.restart(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := sub.Next(ctx)
	if err != nil || m.Err == nil {
		t.Fatalf("Next = %+v, %v; want a reconnection notice", m, err)
	}
	if e := apiError(t, m.Err); e.Code != client.CodeShuttingDown || !e.Retryable() {
		t.Errorf("notice %+v", e)
	}
	ack := ts.publish("notice.a", `"after"`)
	if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset || ev.Epoch != ack.Epoch {
		t.Errorf("after the notice: %+v, want %+v", ev, ack)
	}
}

// TestSubscribeGapEpochChanged restarts a memory server, losing history: a
// subscriber is told with an epoch_changed gap and goes on with the new
// history.
func TestSubscribeGapEpochChanged(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			const topic = "epoch.a"
			sub := ts.subscribe([]string{topic}, client.WithTransport(tr), client.WithPollWait(5*time.Second))
			old := ts.publish(topic, `"old"`)
			if ev := nextEvent(t, sub).Event; ev.Offset != 1 {
				t.Fatalf("before restart: %+v", ev)
			}
			ts.restart(false)
			fresh := ts.publish(topic, `"new"`)
			if fresh.Epoch == old.Epoch {
				t.Fatal("the restart kept the epoch")
			}
			m := next(t, sub)
			if m.Gap == nil {
				t.Fatalf("got %+v, want a gap", m)
			}
			g := m.Gap
			if g.Topic != topic || g.Reason != client.GapEpochChanged || g.Requested.Epoch != old.Epoch ||
				g.Requested.Offset != 1 || g.Resumed.Epoch != fresh.Epoch || g.Resumed.Offset != 0 {
				t.Errorf("gap %+v", g)
			}
			ev := nextEvent(t, sub).Event
			if ev.Offset != 1 || ev.Epoch != fresh.Epoch || payload(t, ev) != `"new"` {
				t.Errorf("after the gap: %+v", ev)
			}
		})
	}
}

// TestSubscribeGapTrimmed resumes from a cursor older than retained
// history.
func TestSubscribeGapTrimmed(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t, func(c *config.Config) {
				c.Namespaces = map[string]config.Namespace{"small": {History: config.Retention{MaxEvents: 3}}}
			})
			const topic = "small.a"
			first := ts.publish(topic, "1")
			for i := 2; i <= 10; i++ {
				ts.publish(topic, strconv.Itoa(i))
			}
			sub := ts.subscribe([]string{topic}, client.WithTransport(tr), client.WithCursor(first.Cursor))
			m := next(t, sub)
			if m.Gap == nil || m.Gap.Reason != client.GapTrimmed || m.Gap.Requested.Offset != 1 || m.Gap.Resumed.Offset != 7 || m.Gap.Earliest != 8 {
				t.Fatalf("got %+v (gap %+v), want a trimmed gap", m, m.Gap)
			}
			// The gap's cursor resumes after the gap.
			res, err := ts.c.Pull(context.Background(), []string{topic}, client.WithCursor(m.Cursor))
			if err != nil || len(res.Gaps) != 0 || len(res.Events) != 3 || res.Events[0].Offset != 8 {
				t.Errorf("pull from the gap's cursor: %+v, %v", res, err)
			}
			for i := 8; i <= 10; i++ {
				if ev := nextEvent(t, sub).Event; ev.Offset != uint64(i) {
					t.Errorf("after the gap: %+v, want #%d", ev, i)
				}
			}
		})
	}
}

func TestSubscribeClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			sub := ts.subscribe([]string{"close.a"}, client.WithTransport(tr))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := sub.Next(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Next with a canceled context: %v", err)
			}
			// Close while the goroutine waits to hand over a message.
			ts.publish("close.a", "1")
			if err := sub.Close(); err != nil {
				t.Error(err)
			}
			if err := sub.Close(); err != nil {
				t.Error(err)
			}
			if _, err := sub.Next(context.Background()); !errors.Is(err, client.ErrClosed) {
				t.Errorf("Next after Close: %v", err)
			}
		})
	}
}

// TestSubscribeContextBoundsConnectOnly checks that the context given to
// Subscribe bounds the connection, not the subscription.
func TestSubscribeContextBoundsConnectOnly(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := ts.c.Subscribe(ctx, []string{"ctx.a"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	cancel()
	ts.publish("ctx.a", "1")
	if ev := nextEvent(t, sub).Event; ev.Offset != 1 {
		t.Errorf("got %+v", ev)
	}
	if _, err := ts.c.Subscribe(ctx, []string{"ctx.a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a canceled context: %v", err)
	}
}

// TestSubscribeBackoff checks that a subscription keeps trying while the
// server is down, telling the consumer each time, and resumes when it is
// back.
func TestSubscribeBackoff(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			ts := startServer(t)
			sub := ts.subscribe([]string{"down.a"}, client.WithTransport(tr), client.WithPollWait(5*time.Second), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
			ack := ts.publish("down.a", "1")
			if ev := nextEvent(t, sub).Event; ev.Offset != 1 {
				t.Fatalf("got %+v", ev)
			}
			ts.stop()
			// Several failed attempts are reported while the server is down.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for n := 0; n < 3; {
				m, err := sub.Next(ctx)
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				if m.Err == nil {
					t.Fatalf("got %+v while the server is down", m)
				}
				if m.Cursor == "" {
					t.Errorf("notice without a cursor")
				}
				var opErr *net.OpError
				if errors.As(m.Err, &opErr) {
					n++
				}
			}
			ts.start()
			ack2 := ts.publish("down.a", "2")
			if ev := nextEvent(t, sub).Event; ev.Offset != ack2.Offset || ev.Epoch != ack.Epoch {
				t.Errorf("after the server came back: %+v", ev)
			}
		})
	}
}
