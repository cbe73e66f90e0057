package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

func TestPullFrom(t *testing.T) {
	ts := startServer(t)
	ts.publishN("p.a", 0, 5)
	p := ts.pull("/v1/events?topic=p.a")
	if len(p.Events) != 5 || p.Events[0].Offset != 1 || p.Events[4].Offset != 5 {
		t.Errorf("default (earliest): %s", fmtOffsets(p.Events))
	}
	if p.Gaps != nil {
		t.Errorf("gaps = %+v", p.Gaps)
	}
	if offs, _ := parseCursor(t, p.Cursor); offs["p.a"] != 5 {
		t.Errorf("cursor offset = %d, want 5", offs["p.a"])
	}
	if p2 := ts.pull("/v1/topics/p.a/events?from=earliest"); fmtOffsets(p2.Events) != fmtOffsets(p.Events) {
		t.Errorf("from=earliest on the topic path: %s", fmtOffsets(p2.Events))
	}
	l := ts.pull("/v1/topics/p.a/events?from=latest")
	if len(l.Events) != 0 || !strings.Contains(string(l.raw), `"events":[]`) {
		t.Errorf("from=latest: %s", l.raw)
	}
	ts.publishN("p.a", 5, 1)
	n := ts.pull("/v1/topics/p.a/events?cursor=" + url.QueryEscape(l.Cursor))
	if len(n.Events) != 1 || n.Events[0].Offset != 6 {
		t.Errorf("after the latest cursor: %s", fmtOffsets(n.Events))
	}
	// A pulled topic that was never published is empty, not an error.
	if e := ts.pull("/v1/events?topic=p.none"); len(e.Events) != 0 {
		t.Errorf("empty topic: %s", e.raw)
	}
}

func TestPullRefused(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Pull.MaxWait = 2 * time.Second })
	ts.publishN("pr.a", 0, 1)
	tests := []struct {
		name, path, code string
	}{
		{"no topic", "/v1/events", "bad_request"},
		{"empty topic", "/v1/events?topic=", "bad_topic"},
		{"bad topic", "/v1/events?topic=pr..a", "bad_topic"},
		{"slash", "/v1/events?topic=pr/a", "bad_topic"},
		{"bad topic path", "/v1/topics/pr%2Fa/events", "bad_topic"},
		{"topic twice", "/v1/events?topic=pr.a&topic=pr.a", "bad_request"},
		{"limit 0", "/v1/events?topic=pr.a&limit=0", "bad_request"},
		{"limit negative", "/v1/events?topic=pr.a&limit=-1", "bad_request"},
		{"limit over", "/v1/events?topic=pr.a&limit=10001", "bad_request"},
		{"limit word", "/v1/events?topic=pr.a&limit=ten", "bad_request"},
		{"limit empty", "/v1/events?topic=pr.a&limit=", "bad_request"},
		{"limit twice", "/v1/events?topic=pr.a&limit=1&limit=2", "bad_request"},
		{"limit empty, topic path", "/v1/topics/pr.a/events?limit=", "bad_request"},
		{"wait empty", "/v1/events?topic=pr.a&wait=", "bad_request"},
		{"wait twice", "/v1/events?topic=pr.a&wait=1&wait=1", "bad_request"},
		{"from", "/v1/events?topic=pr.a&from=start", "bad_request"},
		{"cursor not base64", "/v1/events?topic=pr.a&cursor=%21%21%21", "bad_cursor"},
		{"cursor bad version", "/v1/events?topic=pr.a&cursor=AA", "bad_cursor"},
		{"cursor truncated", "/v1/events?topic=pr.a&cursor=AQU", "bad_cursor"},
		{"cursor padded", "/v1/events?topic=pr.a&cursor=AQ%3D%3D", "bad_cursor"},
		{"wait over max", "/v1/events?topic=pr.a&wait=3s", "bad_request"},
		{"wait negative", "/v1/events?topic=pr.a&wait=-1s", "bad_request"},
		{"wait word", "/v1/events?topic=pr.a&wait=soon", "bad_request"},
		{"wait seconds over max", "/v1/events?topic=pr.a&wait=3", "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, ts.in(t).get(tt.path), http.StatusBadRequest, tt.code)
		})
	}
	for _, p := range []string{"limit=1", "limit=10000", "wait=2s", "wait=2", "wait=0"} {
		// With an event ready, a long poll answers at once.
		if r := ts.get("/v1/events?topic=pr.a&" + p); r.status != http.StatusOK {
			t.Errorf("%s: status %d: %s", p, r.status, r.body)
		}
	}
}

func TestPullPages(t *testing.T) {
	ts := startServer(t)
	const total = 1000
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := 0; i < total; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"topic":"pg.a","data":{"n":%d}}`, i)
	}
	b.WriteString("]}")
	ts.batch(b.String())

	cur, next := "", uint64(1)
	for pages := 0; ; pages++ {
		if pages > total {
			t.Fatal("paging does not end")
		}
		p := ts.pull("/v1/topics/pg.a/events?limit=37&cursor=" + url.QueryEscape(cur))
		if len(p.Events) == 0 {
			if p.Cursor != cur {
				t.Errorf("empty page changed the cursor")
			}
			break
		}
		if len(p.Events) > 37 {
			t.Fatalf("page of %d events with limit 37", len(p.Events))
		}
		for _, ev := range p.Events {
			if ev.Offset != next {
				t.Fatalf("offset %d, want %d (gap or duplicate)", ev.Offset, next)
			}
			var v struct{ N uint64 }
			json.Unmarshal(ev.Data, &v)
			if v.N != next-1 {
				t.Fatalf("event %d has n = %d", ev.Offset, v.N)
			}
			next++
		}
		cur = p.Cursor
	}
	if next != total+1 {
		t.Errorf("read %d events, want %d", next-1, total)
	}
}

func TestPullMultiTopic(t *testing.T) {
	ts := startServer(t)
	topics := []string{"mt.a", "mt.b", "mt.c"}
	for i := 0; i < 60; i++ {
		ts.publish(topics[i%3], "application/json", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	got := map[string][]uint64{}
	cur := ""
	for pages := 0; pages < 100; pages++ {
		p := ts.pull("/v1/events?topic=mt.a&topic=mt.b&topic=mt.c&limit=7&cursor=" + url.QueryEscape(cur))
		if len(p.Events) == 0 {
			break
		}
		for _, ev := range p.Events {
			got[ev.Topic] = append(got[ev.Topic], ev.Offset)
		}
		cur = p.Cursor
	}
	for _, tp := range topics {
		if len(got[tp]) != 20 {
			t.Errorf("%s: %d events, want 20", tp, len(got[tp]))
		}
		for i, off := range got[tp] {
			if off != uint64(i+1) {
				t.Errorf("%s: offsets %v", tp, got[tp])
				break
			}
		}
	}
	offs, _ := parseCursor(t, cur)
	if offs["mt.a"] != 20 || offs["mt.b"] != 20 || offs["mt.c"] != 20 {
		t.Errorf("final cursor = %v", offs)
	}
	// A multi-topic cursor serves a single-topic pull, and a topic it does
	// not name starts per from=.
	ts.publishN("mt.b", 100, 1)
	ts.publishN("mt.d", 0, 2)
	p := ts.pull("/v1/events?topic=mt.b&topic=mt.d&cursor=" + url.QueryEscape(cur))
	if fmtOffsets(p.Events) != "mt.b:21 mt.d:1 mt.d:2" {
		t.Errorf("pull with a cursor not naming mt.d: %s", fmtOffsets(p.Events))
	}
}

func TestPullGapTrimmed(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"small": {History: config.Retention{MaxEvents: 5}}}
	})
	acks := ts.publishN("small.a", 0, 3)
	ts.publishN("small.a", 3, 10) // offsets 1..13; 9..13 retained
	ts.publishN("big.a", 0, 13)
	if ti, _ := ts.info("small.a"); ti.First != 9 || ti.Retained != 5 {
		t.Errorf("small.a = %+v, want 5 retained from 9", ti)
	}
	if ti, _ := ts.info("big.a"); ti.First != 1 || ti.Retained != 13 {
		t.Errorf("big.a = %+v: the namespace override leaked", ti)
	}
	p := ts.pull("/v1/topics/small.a/events?cursor=" + url.QueryEscape(acks[1].Cursor))
	if fmtOffsets(p.Events) != "small.a:9 small.a:10 small.a:11 small.a:12 small.a:13" {
		t.Errorf("events after the gap: %s", fmtOffsets(p.Events))
	}
	want := wireGap{Topic: "small.a", Reason: "trimmed",
		Requested: wirePosition{Epoch: acks[1].Epoch, Offset: 2},
		Resumed:   wirePosition{Epoch: acks[1].Epoch, Offset: 8}, Earliest: 9}
	if len(p.Gaps) != 1 || p.Gaps[0] != want {
		t.Errorf("gaps = %+v, want %+v", p.Gaps, want)
	}
	// The gap's JSON has exactly the documented fields.
	var raw struct {
		Gaps []map[string]json.RawMessage `json:"gaps"`
	}
	json.Unmarshal(p.raw, &raw)
	if len(raw.Gaps) != 1 || len(raw.Gaps[0]) != 5 {
		t.Errorf("gap JSON fields: %s", p.raw)
	}
	for _, k := range []string{"requested", "resumed"} {
		var pos map[string]any
		json.Unmarshal(raw.Gaps[0][k], &pos)
		if len(pos) != 2 || pos["epoch"] == nil || pos["offset"] == nil {
			t.Errorf("gap %s = %s", k, raw.Gaps[0][k])
		}
	}
	// With a limit, the gap comes with the first page only.
	p = ts.pull("/v1/topics/small.a/events?limit=2&cursor=" + url.QueryEscape(acks[0].Cursor))
	if len(p.Gaps) != 1 || fmtOffsets(p.Events) != "small.a:9 small.a:10" {
		t.Errorf("first page: %+v %s", p.Gaps, fmtOffsets(p.Events))
	}
	p = ts.pull("/v1/topics/small.a/events?cursor=" + url.QueryEscape(p.Cursor))
	if len(p.Gaps) != 0 || fmtOffsets(p.Events) != "small.a:11 small.a:12 small.a:13" {
		t.Errorf("second page: %+v %s", p.Gaps, fmtOffsets(p.Events))
	}
}

func TestPullGapEpochAndAhead(t *testing.T) {
	other := startServer(t)
	foreign := other.publishN("g.a", 0, 5)[4]
	ts := startServer(t)
	acks := ts.publishN("g.a", 0, 2)
	p := ts.pull("/v1/events?topic=g.a&cursor=" + url.QueryEscape(foreign.Cursor))
	want := wireGap{Topic: "g.a", Reason: "epoch_changed",
		Requested: wirePosition{Epoch: foreign.Epoch, Offset: 5},
		Resumed:   wirePosition{Epoch: acks[0].Epoch, Offset: 0}, Earliest: 1}
	if len(p.Gaps) != 1 || p.Gaps[0] != want {
		t.Errorf("gaps = %+v, want %+v", p.Gaps, want)
	}
	if fmtOffsets(p.Events) != "g.a:1 g.a:2" {
		t.Errorf("events = %s", fmtOffsets(p.Events))
	}

	ahead := cursorAt(t, "g.a", acks[0].Epoch, 100)
	p = ts.pull("/v1/events?topic=g.a&cursor=" + url.QueryEscape(ahead))
	want = wireGap{Topic: "g.a", Reason: "ahead",
		Requested: wirePosition{Epoch: acks[0].Epoch, Offset: 100},
		Resumed:   wirePosition{Epoch: acks[0].Epoch, Offset: 2}, Earliest: 1}
	if len(p.Gaps) != 1 || p.Gaps[0] != want || len(p.Events) != 0 {
		t.Errorf("ahead: gaps %+v events %s", p.Gaps, fmtOffsets(p.Events))
	}
	ts.publishN("g.a", 2, 1)
	p = ts.pull("/v1/events?topic=g.a&cursor=" + url.QueryEscape(p.Cursor))
	if fmtOffsets(p.Events) != "g.a:3" || len(p.Gaps) != 0 {
		t.Errorf("after the ahead gap: %s %+v", fmtOffsets(p.Events), p.Gaps)
	}
}

// longPoll runs a pull in the background.
type longPoll struct {
	done chan struct{}
	res  response
	err  error
	took time.Duration
}

func (ts *testServer) startLongPoll(path string) *longPoll {
	lp := &longPoll{done: make(chan struct{})}
	go func() {
		defer close(lp.done)
		start := time.Now()
		res, err := ts.client.Get(ts.base + path)
		if err != nil {
			lp.err = err
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		lp.took, lp.err = time.Since(start), err
		lp.res = response{status: res.StatusCode, header: res.Header, body: b}
	}()
	return lp
}

func (lp *longPoll) wait(t *testing.T, timeout time.Duration) response {
	t.Helper()
	select {
	case <-lp.done:
	case <-time.After(timeout):
		t.Fatalf("long poll did not answer within %v", timeout)
	}
	if lp.err != nil {
		t.Fatalf("long poll: %v", lp.err)
	}
	return lp.res
}

func TestLongPollWakes(t *testing.T) {
	ts := startServer(t)
	ts.publishN("lp.a", 0, 2)
	head := ts.pull("/v1/events?topic=lp.a&topic=lp.b&from=latest").Cursor
	lp := ts.startLongPoll("/v1/events?topic=lp.a&topic=lp.b&wait=60s&cursor=" + url.QueryEscape(head))
	waitFor(t, "the long poll to wait", 5*time.Second, func() bool { return ts.subscribers("lp.b") == 1 })
	if n := ts.metric("herald_subscriptions"); n != 2 {
		t.Errorf("herald_subscriptions while polling 2 topics = %v", n)
	}
	published := time.Now()
	ts.publish("lp.b", "application/json", []byte(`{"n":"x"}`))
	r := lp.wait(t, 10*time.Second)
	if d := time.Since(published); d > 5*time.Second {
		t.Errorf("long poll answered %v after the publish", d)
	}
	p := decodePull(t, r.body)
	if fmtOffsets(p.Events) != "lp.b:1" {
		t.Errorf("long poll events = %s", fmtOffsets(p.Events))
	}
	offs, _ := parseCursor(t, p.Cursor)
	if offs["lp.a"] != 2 || offs["lp.b"] != 1 {
		t.Errorf("cursor after the long poll = %v", offs)
	}
	waitFor(t, "the waiter to leave", 5*time.Second, func() bool { return ts.subscribers("lp.b") == 0 })
}

func TestLongPollTimesOut(t *testing.T) {
	ts := startServer(t)
	ts.publishN("lt.a", 0, 1)
	head := ts.pull("/v1/topics/lt.a/events?from=latest").Cursor
	start := time.Now()
	p := ts.pull("/v1/topics/lt.a/events?wait=300ms&cursor=" + url.QueryEscape(head))
	took := time.Since(start)
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("wait=300ms answered after %v", took)
	}
	if len(p.Events) != 0 || p.Cursor != head || !strings.Contains(string(p.raw), `"events":[]`) {
		t.Errorf("timed-out long poll: %s, want no events and cursor %s", p.raw, head)
	}
	// wait=0 and no wait answer at once.
	start = time.Now()
	ts.pull("/v1/topics/lt.a/events?wait=0&cursor=" + url.QueryEscape(head))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("wait=0 answered after %v", d)
	}
}

func TestLongPollEndsOnShutdown(t *testing.T) {
	ts := startServer(t)
	head := ts.pull("/v1/events?topic=ls.a&from=latest").Cursor
	lp := ts.startLongPoll("/v1/events?topic=ls.a&wait=100s&cursor=" + url.QueryEscape(head))
	waitFor(t, "the long poll to wait", 5*time.Second, func() bool { return ts.subscribers("ls.a") == 1 })
	ts.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a long poll waiting", d)
	}
	r := lp.wait(t, 5*time.Second)
	if r.status != http.StatusOK {
		t.Fatalf("long poll at shutdown: status %d: %s", r.status, r.body)
	}
	if p := decodePull(t, r.body); len(p.Events) != 0 || p.Cursor != head {
		t.Errorf("long poll at shutdown: %s", r.body)
	}
	ts.client.CloseIdleConnections()
}

// TestLongPollLoopUnderLoad follows a topic with long polls while it is
// published to: the cursor chain sees every offset once, in order.
func TestLongPollLoopUnderLoad(t *testing.T) {
	ts := startServer(t)
	const total = 300
	published := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			res, err := ts.client.Post(ts.base+"/v1/topics/lpl.a/events", "application/json",
				strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil {
				published <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		published <- nil
	}()
	cur, next := "", uint64(1)
	for polls := 0; next <= total; polls++ {
		if polls > 2*total {
			t.Fatalf("%d polls and only %d events", polls, next-1)
		}
		p := ts.pull("/v1/topics/lpl.a/events?wait=10s&limit=7&cursor=" + url.QueryEscape(cur))
		if len(p.Events) == 0 {
			t.Fatalf("a long poll answered empty while events were being published (after %d)", next-1)
		}
		for _, ev := range p.Events {
			if ev.Offset != next {
				t.Fatalf("offset %d, want %d", ev.Offset, next)
			}
			next++
		}
		cur = p.Cursor
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}
