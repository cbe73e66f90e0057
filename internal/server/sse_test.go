package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// sseStream is a raw-TCP SSE client: it writes the request by hand and
// reads the stream block by block, with a read deadline as the failure
// guard of every read.
type sseStream struct {
	t      *testing.T
	conn   net.Conn
	br     *bufio.Reader
	status int
	header http.Header
	body   []byte // for a non-200 answer
	lastID string // the last id: seen
}

// sseBlock is one block of the stream (the lines up to a blank line).
type sseBlock struct {
	hasID    bool
	id       string
	event    string
	data     []string // the data: lines
	retry    string
	comments []string
}

// Data returns the payload as an EventSource dispatches it.
func (b sseBlock) Data() string { return strings.Join(b.data, "\n") }

func (b sseBlock) String() string {
	return fmt.Sprintf("{id:%q event:%q data:%q retry:%q comments:%q}", b.id, b.event, b.data, b.retry, b.comments)
}

// readTimeout guards every read from a stream.
const readTimeout = 10 * time.Second

// dialSSE opens GET /v1/sse?query over a raw TCP connection made by d.
func (ts *testServer) dialSSE(d *net.Dialer, query string, hdr ...string) *sseStream {
	ts.t.Helper()
	if d == nil {
		d = &net.Dialer{Timeout: 5 * time.Second}
	}
	conn, err := d.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET /v1/sse?%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", query, ts.addr)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	req.WriteString("\r\n")
	conn.SetDeadline(time.Now().Add(readTimeout))
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		ts.t.Fatalf("write request: %v", err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		ts.t.Fatalf("read response head: %v", err)
	}
	s := &sseStream{t: ts.t, conn: conn, status: res.StatusCode, header: res.Header}
	if res.StatusCode != http.StatusOK {
		s.body, _ = io.ReadAll(res.Body)
		conn.Close()
		return s
	}
	s.br = bufio.NewReader(res.Body)
	ts.t.Cleanup(s.close)
	return s
}

// openSSE opens a stream and expects it to start.
func (ts *testServer) openSSE(query string, hdr ...string) *sseStream {
	ts.t.Helper()
	s := ts.dialSSE(nil, query, hdr...)
	if s.status != http.StatusOK {
		ts.t.Fatalf("SSE %s: status %d: %s", query, s.status, s.body)
	}
	return s
}

func (s *sseStream) close() { s.conn.Close() }

// read returns the next block; a comment-only block is returned too.
func (s *sseStream) read() (sseBlock, error) {
	var b sseBlock
	s.conn.SetReadDeadline(time.Now().Add(readTimeout))
	lines := 0
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && (lines > 0 || line != "") {
				err = io.ErrUnexpectedEOF
			}
			return b, err
		}
		line = line[:len(line)-1]
		if strings.Contains(line, "\r") {
			return b, fmt.Errorf("stray CR in line %q", line)
		}
		if line == "" {
			if lines == 0 {
				return b, errors.New("empty block")
			}
			if b.hasID {
				s.lastID = b.id
			}
			return b, nil
		}
		lines++
		if c, ok := strings.CutPrefix(line, ":"); ok {
			b.comments = append(b.comments, strings.TrimPrefix(c, " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			b.hasID, b.id = true, value
		case "event":
			b.event = value
		case "data":
			b.data = append(b.data, value)
		case "retry":
			b.retry = value
		default:
			return b, fmt.Errorf("unknown field in line %q", line)
		}
	}
}

// next returns the next block or fails the test.
func (s *sseStream) next() sseBlock {
	s.t.Helper()
	b, err := s.read()
	if err != nil {
		s.t.Fatalf("SSE read: %v", err)
	}
	return b
}

// nextEvent returns the next block that carries data, skipping heartbeats.
func (s *sseStream) nextEvent() sseBlock {
	s.t.Helper()
	for {
		b := s.next()
		if b.data != nil {
			return b
		}
		if len(b.comments) == 0 {
			s.t.Fatalf("unexpected block without data: %v", b)
		}
	}
}

// wantEOF reads until the server closes the stream; it returns the blocks
// read on the way.
func (s *sseStream) wantEOF() []sseBlock {
	s.t.Helper()
	var got []sseBlock
	for {
		b, err := s.read()
		if err == io.EOF {
			return got
		}
		if err != nil {
			s.t.Fatalf("waiting for the end of the stream: %v (after %v)", err, got)
		}
		got = append(got, b)
	}
}

// evN decodes an event whose data is {"n":N}.
func evN(t *testing.T, b sseBlock) int {
	t.Helper()
	var v struct{ N *int }
	if err := json.Unmarshal([]byte(b.Data()), &v); err != nil || v.N == nil {
		t.Fatalf("event data %q is not {\"n\":N}: %v", b.Data(), err)
	}
	return *v.N
}

// streamOffset returns the offset the block's id gives topic.
func streamOffset(t *testing.T, b sseBlock, topic string) uint64 {
	t.Helper()
	if !b.hasID {
		t.Fatalf("block without id: %v", b)
	}
	offs, _ := parseCursor(t, b.id)
	off, ok := offs[topic]
	if !ok {
		t.Fatalf("id %q has no position for %s", b.id, topic)
	}
	return off
}

func TestSSEStart(t *testing.T) {
	ts := startServer(t)
	ts.publishN("s.a", 0, 2)
	s := ts.openSSE("topic=s.a")
	for k, want := range map[string]string{
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := s.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if ct := s.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type = %q", ct)
	}
	first := s.next()
	if first.retry != "2000" || !first.hasID || first.data != nil || first.event != "" {
		t.Fatalf("first block = %v, want retry: 2000 and an id alone", first)
	}
	// from defaults to latest: the starting cursor is at the head.
	if off := streamOffset(t, first, "s.a"); off != 2 {
		t.Errorf("starting cursor offset = %d, want 2 (latest)", off)
	}

	s2 := ts.openSSE("topic=s.a&from=earliest")
	if off := streamOffset(t, s2.next(), "s.a"); off != 0 {
		t.Errorf("from=earliest: starting cursor offset = %d, want 0", off)
	}
	for want := 1; want <= 2; want++ {
		b := s2.nextEvent()
		if evN(t, b) != want-1 || streamOffset(t, b, "s.a") != uint64(want) {
			t.Errorf("from=earliest event %d: %v", want, b)
		}
	}
}

func TestSSELiveFraming(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.SSE.Retry = 1500 * time.Millisecond })
	s := ts.openSSE("topic=f.a")
	if b := s.next(); b.retry != "1500" {
		t.Errorf("retry = %q, want 1500 (sse.retry)", b.retry)
	}
	tests := []struct {
		name      string
		ct        string
		body      string
		hdr       []string
		wantEvent string
		wantData  []string
	}{
		{"json", "application/json", `{"a":1}`, nil, "", []string{`{"a":1}`}},
		{"typed", "text/plain", "hi", []string{"Herald-Event-Type", "note"}, "note", []string{"hi"}},
		{"LF", "text/plain", "a\nb", nil, "", []string{"a", "b"}},
		{"CR", "text/plain", "a\rb", nil, "", []string{"a", "b"}},
		{"CRLF", "text/plain", "a\r\nb", nil, "", []string{"a", "b"}},
		{"mixed and trailing", "text/plain", "a\r\r\nb\n\nc\n", nil, "", []string{"a", "", "b", "", "c", ""}},
		{"leading space kept", "text/plain", " x", nil, "", []string{" x"}},
		{"empty", "text/plain", "", nil, "", []string{""}},
		{"pretty json", "application/json", "{\n  \"a\": [1,\r\n 2]\n}", nil, "", []string{"{", `  "a": [1,`, " 2]", "}"}},
		{"binary", "application/octet-stream", "\x00\n\xff", nil, "", []string{"AAr/"}},
		{"colon and data:", "text/plain", "data: x: y", nil, "", []string{"data: x: y"}},
	}
	for i, tt := range tests {
		ack := ts.publish("f.a", tt.ct, []byte(tt.body), tt.hdr...)
		b := s.nextEvent()
		if b.event != tt.wantEvent {
			t.Errorf("%s: event = %q, want %q", tt.name, b.event, tt.wantEvent)
		}
		if strings.Join(b.data, "|") != strings.Join(tt.wantData, "|") {
			t.Errorf("%s: data lines = %q, want %q", tt.name, b.data, tt.wantData)
		}
		if off := streamOffset(t, b, "f.a"); off != uint64(i+1) || off != ack.Offset {
			t.Errorf("%s: id offset = %d, want %d", tt.name, off, ack.Offset)
		}
	}
}

func TestSSEResume(t *testing.T) {
	for _, how := range []string{"Last-Event-ID", "cursor"} {
		t.Run(how, func(t *testing.T) {
			ts := startServer(t)
			s := ts.openSSE("topic=r.a")
			s.next()
			ts.publishN("r.a", 1, 5)
			for want := 1; want <= 3; want++ {
				if n := evN(t, s.nextEvent()); n != want {
					t.Fatalf("event %d: n = %d", want, n)
				}
			}
			last := s.lastID
			s.close()
			ts.publishN("r.a", 6, 5)

			var s2 *sseStream
			if how == "cursor" {
				s2 = ts.openSSE("topic=r.a&cursor=" + url.QueryEscape(last))
			} else {
				// Last-Event-ID wins over ?cursor=, here one at the start.
				start := cursorAt(t, "r.a", ts.pull("/v1/topics/r.a/events?limit=1").Events[0].Epoch, 0)
				s2 = ts.openSSE("topic=r.a&cursor="+url.QueryEscape(start), "Last-Event-ID", last)
			}
			if b := s2.next(); b.id != last {
				t.Errorf("first id = %q, want the resumed cursor %q", b.id, last)
			}
			for want := 4; want <= 10; want++ {
				if n := evN(t, s2.nextEvent()); n != want {
					t.Fatalf("resumed event: n = %d, want %d", n, want)
				}
			}
			ts.publishN("r.a", 11, 1)
			if n := evN(t, s2.nextEvent()); n != 11 {
				t.Fatalf("live after resume: n = %d, want 11", n)
			}
		})
	}
}

func TestSSEResumeMultiTopic(t *testing.T) {
	ts := startServer(t)
	topics := []string{"m.a", "m.b", "m.c"}
	query := "topic=m.a&topic=m.b&topic=m.c"
	s := ts.openSSE(query)
	s.next()
	publishRound := func(from, to int) {
		for i := from; i < to; i++ {
			ts.publish(topics[i%3], "application/json", []byte(`{"n":`+strconv.Itoa(i)+`}`))
		}
	}
	publishRound(0, 30)
	got := map[string][]int{}
	for i := 0; i < 14; i++ {
		b := s.nextEvent()
		n := evN(t, b)
		got[topics[n%3]] = append(got[topics[n%3]], n)
	}
	s.close()
	publishRound(30, 45)
	s2 := ts.openSSE(query, "Last-Event-ID", s.lastID)
	s2.next()
	for i := 14; i < 45; i++ {
		b := s2.nextEvent()
		n := evN(t, b)
		tp := topics[n%3]
		got[tp] = append(got[tp], n)
		if off := streamOffset(t, b, tp); off != uint64(len(got[tp])) {
			t.Fatalf("%s: id offset %d after %d events", tp, off, len(got[tp]))
		}
	}
	for k, tp := range topics {
		if len(got[tp]) != 15 {
			t.Errorf("%s: got %d events, want 15: %v", tp, len(got[tp]), got[tp])
			continue
		}
		for j, n := range got[tp] {
			if n != k+3*j {
				t.Errorf("%s: event %d has n = %d, want %d (gap or duplicate): %v", tp, j, n, k+3*j, got[tp])
				break
			}
		}
	}
}

func TestSSEGap(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"small": {History: config.Retention{MaxEvents: 5}}}
	})
	old := ts.publish("small.a", "application/json", []byte(`{"n":1}`))
	ts.publishN("small.a", 2, 10) // offsets 2..11; 7..11 retained
	s := ts.openSSE("topic=small.a", "Last-Event-ID", old.Cursor)
	if b := s.next(); b.retry == "" || b.id != old.Cursor {
		t.Errorf("first block = %v, want retry and the presented cursor", b)
	}
	gb := s.nextEvent()
	if gb.event != "gap" {
		t.Fatalf("first event = %v, want a gap", gb)
	}
	var g wireGap
	dec := json.NewDecoder(strings.NewReader(gb.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("gap data %q: %v", gb.Data(), err)
	}
	want := wireGap{Topic: "small.a", Reason: "trimmed",
		Requested: wirePosition{Epoch: old.Epoch, Offset: 1},
		Resumed:   wirePosition{Epoch: old.Epoch, Offset: 6}, Earliest: 7}
	if g != want {
		t.Errorf("gap = %+v, want %+v", g, want)
	}
	if off := streamOffset(t, gb, "small.a"); off != 6 {
		t.Errorf("gap id offset = %d, want 6", off)
	}
	for want := 7; want <= 11; want++ {
		if b := s.nextEvent(); evN(t, b) != want || streamOffset(t, b, "small.a") != uint64(want) {
			t.Fatalf("after the gap: %v, want offset %d", b, want)
		}
	}
}

func TestSSEEpochChanged(t *testing.T) {
	other := startServer(t)
	foreign := other.publish("e.a", "application/json", []byte(`{"n":0}`))
	ts := startServer(t)
	ts.publishN("e.a", 1, 2)
	s := ts.openSSE("topic=e.a&cursor=" + url.QueryEscape(foreign.Cursor))
	s.next()
	gb := s.nextEvent()
	var g wireGap
	if err := json.Unmarshal([]byte(gb.Data()), &g); gb.event != "gap" || err != nil {
		t.Fatalf("want a gap, got %v (%v)", gb, err)
	}
	if g.Reason != "epoch_changed" || g.Requested.Epoch != foreign.Epoch || g.Resumed.Offset != 0 || g.Resumed.Epoch == foreign.Epoch {
		t.Errorf("gap = %+v", g)
	}
	for want := 1; want <= 2; want++ {
		if n := evN(t, s.nextEvent()); n != want {
			t.Fatalf("after the gap: n = %d, want %d", n, want)
		}
	}
}

func TestSSEHeartbeat(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.SSE.Heartbeat = time.Second })
	s := ts.openSSE("topic=h.a")
	s.next()
	start := time.Now()
	b := s.next()
	if len(b.comments) != 1 || b.comments[0] != "hb" || b.data != nil || b.hasID {
		t.Fatalf("want a heartbeat comment, got %v", b)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("heartbeat after %v with sse.heartbeat 1s", d)
	}
	// A heartbeat finds a client that went away.
	s.close()
	waitFor(t, "the closed stream to be dropped", 5*time.Second, func() bool {
		return ts.subscribers("h.a") == 0
	})
	if v := ts.metric(`herald_connections{transport="sse"}`); v != 0 {
		t.Errorf("sse connections after the client left = %v", v)
	}
}

func TestSSEBadRequests(t *testing.T) {
	ts := startServer(t)
	ts.publishN("b.a", 0, 1)
	tests := []struct {
		name, query string
		hdr         []string
		code        string
	}{
		{"no topic", "", nil, "bad_request"},
		{"bad topic", "topic=b..a", nil, "bad_topic"},
		{"slash", "topic=b%2Fa", nil, "bad_topic"},
		{"one bad of two", "topic=b.a&topic=b%20a", nil, "bad_topic"},
		{"bad cursor", "topic=b.a&cursor=%21%21", nil, "bad_cursor"},
		{"bad Last-Event-ID", "topic=b.a", []string{"Last-Event-ID", "AAAA"}, "bad_cursor"},
		{"bad from", "topic=b.a&from=middle", nil, "bad_request"},
		{"same topic twice", "topic=b.a&topic=b.a", nil, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ts.in(t).dialSSE(nil, tt.query, tt.hdr...)
			wantError(t, response{status: s.status, header: s.header, body: s.body}, http.StatusBadRequest, tt.code)
		})
	}
	if n := ts.subscribers("b.a"); n != 0 {
		t.Errorf("refused streams left %d subscribers", n)
	}
	if v := ts.metric(`herald_connections{transport="sse"}`); v > 0 {
		t.Errorf("refused streams counted as connections: %v", v)
	}
}

func TestSSEDrainOnShutdown(t *testing.T) {
	ts := startServer(t)
	var streams []*sseStream
	for i := 0; i < 3; i++ {
		s := ts.openSSE("topic=d.a&topic=d.b")
		s.next()
		streams = append(streams, s)
	}
	ts.publishN("d.a", 0, 1)
	for _, s := range streams {
		s.nextEvent()
	}
	ts.down = true // shut down here, not by the cleanup
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	for i, s := range streams {
		b := s.nextEvent()
		if b.event != "error" {
			t.Fatalf("stream %d: last frame %v, want event: error", i, b)
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal([]byte(b.Data()), &e); err != nil || e.Code != "shutting_down" || e.Message == "" {
			t.Errorf("stream %d: error data %q (%v)", i, b.Data(), err)
		}
		if ms, err := strconv.Atoi(b.retry); err != nil || ms < 2000 || ms > 8000 {
			t.Errorf("stream %d: retry %q with the shutdown error, want 2000..8000", i, b.retry)
		}
		if rest := s.wantEOF(); len(rest) != 0 {
			t.Errorf("stream %d: frames after the error: %v", i, rest)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	ts.client.CloseIdleConnections()
}

func TestSSEManyStreamsSeeEveryEvent(t *testing.T) {
	ts := startServer(t)
	const streams, events = 8, 200
	var ss []*sseStream
	for i := 0; i < streams; i++ {
		s := ts.openSSE("topic=many.a")
		s.next()
		ss = append(ss, s)
	}
	go func() {
		var b strings.Builder
		b.WriteString(`{"events":[`)
		for i := 0; i < events; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"topic":"many.a","data":{"n":%d}}`, i)
		}
		b.WriteString("]}")
		res, err := ts.client.Post(ts.base+"/v1/events", "application/json", strings.NewReader(b.String()))
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := 0; want < events; want++ {
				b, err := s.read()
				if err != nil {
					errs <- err
					return
				}
				var v struct{ N int }
				if err := json.Unmarshal([]byte(b.Data()), &v); err != nil || v.N != want {
					errs <- fmt.Errorf("got %v, want n=%d", b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSSECatchUpLargeHistory recovers a history many times the queue cap:
// catch-up is paced by the writer, so it is not taken for a slow consumer.
func TestSSECatchUpLargeHistory(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.Limits.MaxQueueBytes = 64 << 10
		c.Limits.MaxEventBytes = 4 << 10
	})
	const total = 1500 // about 1.5 MiB
	pad := strings.Repeat("p", 900)
	for from := 0; from < total; from += 100 {
		var b strings.Builder
		b.WriteString(`{"events":[`)
		for i := from; i < from+100; i++ {
			if i > from {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"topic":"cu.a","data":{"n":%d,"pad":%q}}`, i, pad)
		}
		b.WriteString("]}")
		ts.batch(b.String())
	}
	s := ts.openSSE("topic=cu.a&from=earliest")
	s.next()
	for want := 0; want < total; want++ {
		if n := evN(t, s.nextEvent()); n != want {
			t.Fatalf("catch-up: n = %d, want %d", n, want)
		}
	}
	ts.publish("cu.a", "application/json", []byte(fmt.Sprintf(`{"n":%d}`, total)))
	if n := evN(t, s.nextEvent()); n != total {
		t.Fatalf("live after catch-up: n = %d", n)
	}
	if v := ts.metric("herald_slow_consumer_disconnects_total"); v != 0 {
		t.Errorf("catch-up counted as a slow consumer: %v", v)
	}
}

// TestSSESeamUnderLoad opens streams from the start of a topic while it is
// being published to: each must see every offset once, in order, across
// the seam between history and live delivery.
func TestSSESeamUnderLoad(t *testing.T) {
	ts := startServer(t)
	const total = 600
	published := make(chan error, 1)
	go func() {
		for i := 0; i < total; i += 5 {
			var b strings.Builder
			b.WriteString(`{"events":[`)
			for j := i; j < i+5; j++ {
				if j > i {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"topic":"seam.a","data":{"n":%d}}`, j)
			}
			b.WriteString("]}")
			res, err := ts.client.Post(ts.base+"/v1/events", "application/json", strings.NewReader(b.String()))
			if err != nil {
				published <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		published <- nil
	}()
	var streams []*sseStream
	for k := 0; k < 4; k++ {
		// Each joins at a different point of the publishing.
		waitFor(t, "some events", 10*time.Second, func() bool {
			ti, _ := ts.info("seam.a")
			return ti.Last >= uint64(k*total/5)
		})
		s := ts.openSSE("topic=seam.a&from=earliest")
		s.next()
		streams = append(streams, s)
	}
	for k, s := range streams {
		for want := 0; want < total; want++ {
			b := s.nextEvent()
			if n := evN(t, b); n != want || streamOffset(t, b, "seam.a") != uint64(want+1) {
				t.Fatalf("stream %d: n = %d at offset %d, want %d", k, n, streamOffset(t, b, "seam.a"), want)
			}
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}
