package sse

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// plainWriter hides every optional interface but Flush, as an HTTP/2
// ResponseWriter would hide Hijack: the handler must serve the stream
// from its own goroutine.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }
func (p plainWriter) Flush()                      { p.w.(http.Flusher).Flush() }

// fixture is an SSE handler over a hub, served on a real socket.
type fixture struct {
	hub   *hub.Hub
	h     *Handler
	srv   *httptest.Server
	conns atomic.Int64
}

func newFixture(t *testing.T, hijack bool, opts Options) *fixture {
	t.Helper()
	eng := memory.New(memory.Options{})
	f := &fixture{hub: hub.New(eng, hub.Options{})}
	opts.OnConn = func(d int) { f.conns.Add(int64(d)) }
	f.h = New(f.hub, opts)
	var handler http.Handler = f.h
	if !hijack {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.h.ServeHTTP(plainWriter{w}, r)
		})
	}
	f.srv = httptest.NewServer(handler)
	t.Cleanup(func() {
		f.hub.Close()
		f.h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.h.Wait(ctx); err != nil {
			t.Errorf("Wait: %v", err)
		}
		f.srv.Close()
		eng.Close()
	})
	return f
}

// open starts a stream and returns its response and a line reader.
func (f *fixture) open(t *testing.T, query string, hdr ...string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/sse?"+query, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res, bufio.NewReader(res.Body)
}

// readBlock reads one block (up to a blank line) with a guard timeout.
func readBlock(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\n" {
				ch <- result{b.String(), err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read %q: %v", r.s, r.err)
		}
		return r.s
	case <-time.After(10 * time.Second):
		t.Fatal("no block within 10s")
		return ""
	}
}

func (f *fixture) publish(t *testing.T, topic string, data string) {
	t.Helper()
	if _, err := f.hub.Publish(hub.Internal(context.Background()), topic, []event.Record{{Data: []byte(data), Encoding: event.EncodingText}}); err != nil {
		t.Fatal(err)
	}
}

func TestStream(t *testing.T) {
	for _, hijack := range []bool{true, false} {
		name := map[bool]string{true: "hijacked", false: "in handler"}[hijack]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, hijack, Options{Retry: 3 * time.Second})
			res, br := f.open(t, "topic=a&topic=b", "Origin", "https://x.example")
			if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") ||
				res.Header.Get("Cache-Control") != "no-cache" || res.Header.Get("X-Accel-Buffering") != "no" {
				t.Fatalf("response %d %v", res.StatusCode, res.Header)
			}
			if first := readBlock(t, br); !strings.HasPrefix(first, "retry: 3000\nid: ") {
				t.Errorf("first block %q", first)
			}
			if n := f.conns.Load(); n != 1 {
				t.Errorf("OnConn count = %d, want 1", n)
			}
			// Topics fan out independently: one event at a time.
			for _, ev := range []struct{ topic, data, want string }{
				{"a", "one\r\ntwo", "data: one\ndata: two\n\n"},
				{"b", "three", "data: three\n\n"},
			} {
				f.publish(t, ev.topic, ev.data)
				if got := readBlock(t, br); !strings.HasPrefix(got, "id: ") || !strings.HasSuffix(got, ev.want) {
					t.Errorf("block %q, want an id and %q", got, ev.want)
				}
			}
			f.hub.Close()
			last := readBlock(t, br)
			if !strings.HasPrefix(last, "retry: ") || !strings.Contains(last, "event: error\ndata: {\"code\":\"shutting_down\"") {
				t.Errorf("closing block %q", last)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the closing block: %q, %v", rest, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := f.h.Wait(ctx); err != nil {
				t.Errorf("Wait after the hub closed: %v", err)
			}
			if n := f.conns.Load(); n != 0 {
				t.Errorf("OnConn count after the end = %d", n)
			}
		})
	}
}

func TestClientGoneInHandler(t *testing.T) {
	f := newFixture(t, false, Options{})
	res, br := f.open(t, "topic=a")
	readBlock(t, br)
	res.Body.Close()
	// Served from the handler, the stream ends with the request context.
	deadline := time.Now().Add(5 * time.Second)
	for f.conns.Load() != 0 || f.hub.Subscribers("a") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream outlived its client: conns %d subscribers %d", f.conns.Load(), f.hub.Subscribers("a"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, true, Options{})
	for _, tt := range []struct {
		method, query string
		status        int
	}{
		{http.MethodPost, "topic=a", http.StatusMethodNotAllowed},
		{http.MethodGet, "", http.StatusBadRequest},
		{http.MethodGet, "topic=a..b", http.StatusBadRequest},
		{http.MethodGet, "topic=a&cursor=%25", http.StatusBadRequest},
		{http.MethodGet, "topic=a&from=now", http.StatusBadRequest},
		{http.MethodGet, "topic=a&topic=a", http.StatusBadRequest},
		{http.MethodGet, "topic=a" + strings.Repeat("&topic=a", 300), http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tt.method, f.srv.URL+"/v1/sse?"+tt.query, nil)
		res, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status || res.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"code"`) {
			t.Errorf("%s ?%.40s: %d %s", tt.method, tt.query, res.StatusCode, body)
		}
	}
	if n := f.conns.Load(); n != 0 {
		t.Errorf("refused streams counted: %d", n)
	}
	// A stream refused halfway leaves no subscription behind.
	if n := f.hub.Subscribers("a"); n != 0 {
		t.Errorf("subscribers left: %d", n)
	}
}

// TestHeartbeatEvent checks ?heartbeat=event: the stream opens with a
// heartbeat event whose id is the starting cursor, and idle frames are
// heartbeat events an EventSource dispatches, not comments.
func TestHeartbeatEvent(t *testing.T) {
	for _, tt := range []struct {
		query      string
		open, idle string
	}{
		{"topic=a", "retry: 2000\nid: AQ", ": hb\n\n"},
		{"topic=a&heartbeat=comment", "retry: 2000\nid: AQ", ": hb\n\n"},
		{"topic=a&heartbeat=event", "retry: 2000\nid: AQ", "event: heartbeat\ndata: {}\n\n"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			f := newFixture(t, true, Options{Heartbeat: time.Second})
			_, br := f.open(t, tt.query)
			first := readBlock(t, br)
			want := `^retry: 2000\nid: [A-Za-z0-9_-]+\n\n$`
			if strings.HasPrefix(tt.idle, "event:") {
				want = `^retry: 2000\nid: [A-Za-z0-9_-]+\nevent: heartbeat\ndata: \{\}\n\n$`
			}
			if !regexp.MustCompile(want).MatchString(first) {
				t.Errorf("first block %q, want it to match %s", first, want)
			}
			if got := readBlock(t, br); got != tt.idle {
				t.Errorf("idle block %q, want %q", got, tt.idle)
			}
			f.publish(t, "a", "x")
			if got := readBlock(t, br); !strings.HasPrefix(got, "id: ") || !strings.HasSuffix(got, "data: x\n\n") {
				t.Errorf("event block %q", got)
			}
		})
	}
	f := newFixture(t, true, Options{})
	for _, q := range []string{"topic=a&heartbeat=events", "topic=a&heartbeat=event&heartbeat=event"} {
		res, err := f.srv.Client().Get(f.srv.URL + "/v1/sse?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "heartbeat") {
			t.Errorf("?%s: %d %s, want 400 naming heartbeat", q, res.StatusCode, body)
		}
	}
}
