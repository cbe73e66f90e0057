package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer speaks just enough of herald's API for the load generator
// (publish, SSE) and misbehaves on purpose, per subscriber, to show that
// the fanout accounting catches it. Its SSE streams go through net/http in
// chunked encoding (read by a goroutine each), or with raw on a hijacked
// connection as herald sends them (read by the epoll reader).
type fakeServer struct {
	raw  bool
	done chan struct{} // closed at the end of the test: ends raw streams

	mu   sync.Mutex // guards subs
	subs []chan []byte

	// mangle rewrites the frames for subscriber i before they are sent.
	mangle func(i int, seq uint64, frame string) string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/v1/topics/"):
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		for _, c := range f.subs {
			c <- body
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"offset":1}`)
	case r.Method == "GET" && r.URL.Path == "/v1/sse":
		c := make(chan []byte, 1024)
		f.mu.Lock()
		i := len(f.subs)
		f.subs = append(f.subs, c)
		f.mu.Unlock()
		out, flush, done := io.Writer(w), w.(http.Flusher).Flush, r.Context().Done()
		if f.raw {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
			out, flush, done = conn, func() {}, f.done
		} else {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		io.WriteString(out, "retry: 2000\nid: c0\n\n")
		flush()
		for {
			select {
			case <-done:
				return
			case p := <-c:
				fl, _ := parsePayload(p)
				io.WriteString(out, f.mangle(i, fl.seq, fmt.Sprintf("id: c%d\ndata: %s\n\n", fl.seq, p)))
				flush()
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func TestFanoutCountsMisbehaviour(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) { testFanoutCountsMisbehaviour(t, raw) })
	}
}

func testFanoutCountsMisbehaviour(t *testing.T, raw bool) {
	var held string // subscriber 2's event 6, sent after event 7
	f := &fakeServer{raw: raw, done: make(chan struct{}), mangle: func(i int, seq uint64, frame string) string {
		switch {
		case i == 0 && seq == 3:
			return "" // lost
		case i == 0 && seq == 1:
			return frame + "event: gap\ndata: {\"reason\":\"trimmed\"}\n\n"
		case i == 1 && seq == 5:
			return frame + frame // duplicate
		case i == 2 && seq == 6:
			held = frame
			return ": hb\n\n"
		case i == 2 && seq == 7:
			return frame + held // out of order
		}
		return frame
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	defer srv.CloseClientConnections()
	defer close(f.done)

	reader := ReaderGoroutine
	if raw {
		reader = ReaderEpoll // herald's framing, read by the epoll loops
	}
	res, err := RunFanout(context.Background(), FanoutConfig{
		Server: srv.URL, Subs: 3, Rate: 20, Duration: 500 * time.Millisecond, Payload: 128,
		Publishers: 1, Grace: 300 * time.Millisecond, Reader: reader,
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	if res.Sent != 10 || res.Expected != 30 {
		t.Fatalf("sent %d, expected %d; want 10, 30", res.Sent, res.Expected)
	}
	got := [5]uint64{res.Delivered, res.Lost, res.Duplicates, res.OutOfOrder, res.Gaps}
	if want := [5]uint64{29, 1, 1, 1, 1}; got != want {
		t.Errorf("delivered, lost, duplicates, out-of-order, gaps = %v, want %v", got, want)
	}
	if err := res.Failed(true); err == nil {
		t.Error("Failed(true) = nil with a duplicate and a reordering")
	}
	var sb strings.Builder
	if err := res.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lost 1, duplicate 1, out-of-order 1", "gap signals 1"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sb.String())
		}
	}
}

func TestFanoutLossFails(t *testing.T) {
	f := &fakeServer{done: make(chan struct{}), mangle: func(i int, seq uint64, frame string) string {
		if seq == 2 {
			return ""
		}
		return frame
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	defer srv.CloseClientConnections()
	res, err := RunFanout(context.Background(), FanoutConfig{
		Server: srv.URL, Subs: 2, Rate: 20, Duration: 200 * time.Millisecond, Grace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	if res.Lost != 2 {
		t.Errorf("lost %d, want 2", res.Lost)
	}
	if res.Failed(false) == nil {
		t.Error("Failed(false) = nil with loss")
	}
	if err := res.Failed(true); err != nil {
		t.Errorf("Failed(true) = %v, want nil (loss allowed)", err)
	}
}

func TestSSEOpenErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("topic") {
		case "bad":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"code":"bad_topic","message":"invalid topic"}}`)
		case "html":
			io.WriteString(w, "<html>")
		case "refuse":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: error\ndata: {\"code\":\"shutting_down\"}\n\n")
		}
	}))
	defer srv.Close()
	d, err := NewDialer(srv.URL, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := &SSE{d: d}
	for topic, want := range map[string]string{
		"bad":    "server answered 400: {\"error\":{\"code\":\"bad_topic\"",
		"html":   "want text/event-stream",
		"refuse": "shutting_down",
	} {
		_, err := tr.Open(context.Background(), topic)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", topic, err, want)
		}
	}
}
