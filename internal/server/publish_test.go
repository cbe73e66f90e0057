package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/config"
)

var hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)

// lastEvent pulls the newest event of topic.
func (ts *testServer) lastEvent(topic string) wireEvent {
	ts.t.Helper()
	ti, ok := ts.info(topic)
	if !ok || ti.Last == 0 {
		ts.t.Fatalf("topic %s has no events", topic)
	}
	p := ts.pull("/v1/topics/" + topic + "/events?cursor=" + url.QueryEscape(cursorAt(ts.t, topic, ti.Epoch, ti.Last-1)))
	if len(p.Events) != 1 {
		ts.t.Fatalf("pull of the newest event of %s: %d events", topic, len(p.Events))
	}
	return p.Events[0]
}

func TestPublishEncodings(t *testing.T) {
	ts := startServer(t)
	tests := []struct {
		name     string
		ct       string
		body     string
		wantEnc  string
		wantData string // the data field's JSON
	}{
		{"json", "application/json", `{"a":1}`, "json", `{"a":1}`},
		{"json with charset", "application/json; charset=utf-8", `[1, 2]`, "json", `[1, 2]`},
		{"json suffix type", "application/cloudevents+json", `"s"`, "json", `"s"`},
		{"json scalar", "application/json", `42`, "json", `42`},
		{"json null", "application/json", `null`, "json", `null`},
		{"text", "text/plain", "héllo\nworld", "text", `"héllo\nworld"`},
		{"text other subtype", "text/csv; charset=utf-8", "a,b", "text", `"a,b"`},
		{"binary", "application/octet-stream", "\x00\x01\xff", "binary", `"AAH/"`},
		{"image", "image/png", "\x89PNG", "binary", `"iVBORw=="`},
		{"no type, json", "", `{"x":true}`, "json", `{"x":true}`},
		{"no type, text", "", "plain words", "text", `"plain words"`},
		{"no type, bytes", "", "\xff\xfe", "binary", `"//4="`},
		{"no type, empty", "", "", "text", `""`},
		{"curl form type, json", "application/x-www-form-urlencoded", `{"n":1}`, "json", `{"n":1}`},
		{"curl form type, text", "application/x-www-form-urlencoded", "a=b&c=d", "text", `"a=b\u0026c=d"`},
		{"curl form type, bytes", "application/x-www-form-urlencoded", "\x80", "binary", `"gA=="`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := ts.in(t)
			topic := fmt.Sprintf("enc.c%d", i)
			ack := ts.publish(topic, tt.ct, []byte(tt.body))
			if ack.Topic != topic || ack.Offset != 1 || !hex16.MatchString(ack.Epoch) || ack.Cursor == "" || ack.Duplicate {
				t.Errorf("ack = %+v", ack)
			}
			ev := ts.lastEvent(topic)
			if ev.Encoding != tt.wantEnc {
				t.Errorf("encoding = %q, want %q", ev.Encoding, tt.wantEnc)
			}
			if !jsonEqual(t, ev.Data, tt.wantData) {
				t.Errorf("data = %s, want %s", ev.Data, tt.wantData)
			}
			if ev.Encoding == "binary" {
				var s string
				json.Unmarshal(ev.Data, &s)
				if raw, err := base64.StdEncoding.DecodeString(s); err != nil || string(raw) != tt.body {
					t.Errorf("binary data decodes to %q (%v), want %q", raw, err, tt.body)
				}
			}
		})
	}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("data %s is not JSON: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s is not JSON: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}

func TestPublishRefused(t *testing.T) {
	ts := startServer(t)
	long := strings.Repeat("x", 129)
	tests := []struct {
		name   string
		topic  string
		ct     string
		body   string
		hdr    []string
		status int
		code   string
	}{
		{"invalid json", "r.a", "application/json", `{"a":`, nil, 400, "bad_request"},
		{"empty json", "r.a", "application/json", ``, nil, 400, "bad_request"},
		{"json with trailing garbage", "r.a", "application/json", `{} x`, nil, 400, "bad_request"},
		{"invalid utf-8 text", "r.a", "text/plain", "ok\xff", nil, 400, "bad_request"},
		{"malformed content type", "r.a", "text/plain; charset", "x", nil, 400, "bad_request"},
		{"reserved type gap", "r.a", "text/plain", "x", []string{"Herald-Event-Type", "gap"}, 400, "bad_request"},
		{"reserved type error", "r.a", "text/plain", "x", []string{"Herald-Event-Type", "error"}, 400, "bad_request"},
		{"reserved type in query", "r.a/events?type=gap", "text/plain", "x", nil, 400, "bad_request"},
		{"type with a line break", "r.a/events?type=a%0Ab", "text/plain", "x", nil, 400, "bad_request"},
		{"type too long", "r.a", "text/plain", "x", []string{"Herald-Event-Type", long}, 400, "bad_request"},
		{"key too long", "r.a", "text/plain", "x", []string{"Idempotency-Key", strings.Repeat("k", 257)}, 400, "bad_request"},
		{"double dot", "r..a", "text/plain", "x", nil, 400, "bad_topic"},
		{"leading dot", ".r", "text/plain", "x", nil, 400, "bad_topic"},
		{"trailing dot", "r.", "text/plain", "x", nil, 400, "bad_topic"},
		{"encoded slash", "r%2Fa", "text/plain", "x", nil, 400, "bad_topic"},
		{"encoded space", "r%20a", "text/plain", "x", nil, 400, "bad_topic"},
		{"unicode", url.PathEscape("café"), "text/plain", "x", nil, 400, "bad_topic"},
		{"201 bytes", strings.Repeat("a", 201), "text/plain", "x", nil, 400, "bad_topic"},
		{"encoded dot dot", "%2E%2E", "text/plain", "x", nil, 400, "bad_topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := ts.in(t)
			hdr := append([]string{"Content-Type", tt.ct}, tt.hdr...)
			path := "/v1/topics/" + tt.topic
			if !strings.Contains(path, "/events") {
				path += "/events"
			}
			r := ts.do(http.MethodPost, path, []byte(tt.body), hdr...)
			wantError(t, r, tt.status, tt.code)
		})
	}
	// Empty and dot segments are bad topics, not redirects (ServeMux
	// would redirect the unclean path).
	for _, p := range []string{"/v1/topics/../events", "/v1/topics//events", "/v1/topics/./events"} {
		wantError(t, ts.do(http.MethodPost, p, []byte(`{"n":1}`), "Content-Type", "application/json"), 400, "bad_topic")
	}
	r := ts.get("/v1/topics")
	if !strings.Contains(string(r.body), `"topics":[]`) {
		t.Errorf("refused publishes created topics: %s", r.body)
	}
	// The longest valid name is accepted.
	ts.publish(strings.Repeat("a", 200), "text/plain", []byte("x"))
}

func TestPublishTooLarge(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Limits.MaxEventBytes = 1024 })
	for _, ct := range []string{"application/octet-stream", "text/plain", ""} {
		r := ts.do(http.MethodPost, "/v1/topics/big.a/events", make([]byte, 1025), "Content-Type", ct)
		wantError(t, r, http.StatusRequestEntityTooLarge, "too_large")
	}
	if _, ok := ts.info("big.a"); ok {
		t.Errorf("an oversize publish created its topic")
	}
	ts.publish("big.a", "application/octet-stream", make([]byte, 1024))
	r := ts.do(http.MethodPost, "/v1/topics/big.a/events", make([]byte, 1<<20))
	wantError(t, r, http.StatusRequestEntityTooLarge, "too_large")
	if ti, _ := ts.info("big.a"); ti.Last != 1 || ti.Retained != 1 {
		t.Errorf("after an oversize publish: %+v, want only the first event", ti)
	}
}

func TestPublishIdempotency(t *testing.T) {
	ts := startServer(t)
	first := ts.publish("idem.a", "application/json", []byte(`{"v":1}`), "Idempotency-Key", "k1")
	if first.Duplicate || first.Offset != 1 {
		t.Fatalf("first = %+v", first)
	}
	r := ts.do(http.MethodPost, "/v1/topics/idem.a/events", []byte(`{"v":"retry"}`),
		"Content-Type", "application/json", "Idempotency-Key", "k1")
	if r.status != http.StatusOK {
		t.Fatalf("retry status = %d, want 200: %s", r.status, r.body)
	}
	var dup publishAck
	json.Unmarshal(r.body, &dup)
	if !dup.Duplicate || dup.Offset != first.Offset || dup.Epoch != first.Epoch || dup.Cursor != first.Cursor {
		t.Errorf("retry = %+v, want the original position with duplicate", dup)
	}
	if ti, _ := ts.info("idem.a"); ti.Last != 1 || ti.Retained != 1 {
		t.Errorf("after the retry: %+v", ti)
	}
	if ev := ts.lastEvent("idem.a"); string(ev.Data) != `{"v":1}` {
		t.Errorf("stored data = %s, want the original", ev.Data)
	}
	if a := ts.publish("idem.a", "application/json", []byte(`1`), "Idempotency-Key", "k2"); a.Duplicate || a.Offset != 2 {
		t.Errorf("another key = %+v", a)
	}
	if a := ts.publish("idem.b", "application/json", []byte(`1`), "Idempotency-Key", "k1"); a.Duplicate || a.Offset != 1 {
		t.Errorf("the same key on another topic = %+v", a)
	}
	if a := ts.publish("idem.a", "application/json", []byte(`1`)); a.Duplicate || a.Offset != 3 {
		t.Errorf("no key = %+v", a)
	}
}

func TestPublishTypeAndHeaders(t *testing.T) {
	ts := startServer(t)
	ts.publish("meta.a", "text/plain", []byte("x"), "Herald-Event-Type", "note",
		"Herald-Header-Trace-Id", "abc", "Herald-Header-X", "y z")
	ev := ts.lastEvent("meta.a")
	if ev.Type != "note" {
		t.Errorf("type = %q, want note", ev.Type)
	}
	if len(ev.Headers) != 2 || ev.Headers["trace-id"] != "abc" || ev.Headers["x"] != "y z" {
		t.Errorf("headers = %v", ev.Headers)
	}
	if ev.Time == "" || ev.Topic != "meta.a" || !hex16.MatchString(ev.Epoch) {
		t.Errorf("event = %+v", ev)
	}

	ts.publish("meta.a/events?type=alert", "text/plain", []byte("x"), "Herald-Event-Type", "note")
	if ev := ts.lastEvent("meta.a"); ev.Type != "alert" {
		t.Errorf("?type= with a header: type = %q, want alert (the query wins)", ev.Type)
	}
	ts.publish("meta.a", "text/plain", []byte("x"))
	ev = ts.lastEvent("meta.a")
	if ev.Type != "" || ev.Headers != nil {
		t.Errorf("plain event: type %q headers %v", ev.Type, ev.Headers)
	}
	var raw map[string]any
	p := ts.pull("/v1/topics/meta.a/events?limit=10")
	last := p.raw
	json.Unmarshal(last, &raw)
	evs := raw["events"].([]any)
	if m := evs[2].(map[string]any); m["type"] != nil || m["headers"] != nil {
		t.Errorf("empty type and headers are not omitted: %v", m)
	}
}

func TestPublishCursor(t *testing.T) {
	ts := startServer(t)
	acks := ts.publishN("cur.a", 0, 3)
	for i, ack := range acks {
		offs, eps := parseCursor(t, ack.Cursor)
		if offs["cur.a"] != ack.Offset || eps["cur.a"] != ack.Epoch || len(offs) != 1 {
			t.Errorf("ack %d cursor holds %v %v, want %d", i, offs, eps, ack.Offset)
		}
	}
	p := ts.pull("/v1/topics/cur.a/events?cursor=" + url.QueryEscape(acks[1].Cursor))
	if len(p.Events) != 1 || p.Events[0].Offset != 3 {
		t.Errorf("pull after the second publish's cursor: %s", fmtOffsets(p.Events))
	}
	p = ts.pull("/v1/events?topic=cur.a&cursor=" + url.QueryEscape(acks[2].Cursor))
	if len(p.Events) != 0 || p.Cursor != acks[2].Cursor {
		t.Errorf("pull after the newest: %d events, cursor %q want %q", len(p.Events), p.Cursor, acks[2].Cursor)
	}
}
