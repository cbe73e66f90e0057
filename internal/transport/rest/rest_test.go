package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is the REST handlers over a hub and a memory engine, served
// in-process. The integration tests of internal/server cover the same
// handlers over real sockets.
type fixture struct {
	hub *hub.Hub
	mux *http.ServeMux
}

func newFixture(tb testing.TB, opts Options) *fixture {
	tb.Helper()
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{MaxEventBytes: opts.MaxEventBytes})
	mux := http.NewServeMux()
	New(h, opts).Register(mux)
	tb.Cleanup(func() {
		h.Close()
		eng.Close()
	})
	return &fixture{hub: h, mux: mux}
}

// do serves one request; hdr holds header name/value pairs, set as given
// (without the checks a real client makes).
func (f *fixture) do(method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header[http.CanonicalHeaderKey(hdr[i])] = []string{hdr[i+1]}
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func TestBodyEncoding(t *testing.T) {
	tests := []struct {
		ct      string
		body    string
		want    event.Encoding
		wantErr bool
	}{
		{"application/json", `{"a":1}`, event.EncodingJSON, false},
		{"Application/JSON; charset=UTF-8", `1`, event.EncodingJSON, false},
		{"application/vnd.api+json", `[]`, event.EncodingJSON, false},
		{"application/json", `{`, 0, true},
		{"application/json", ``, 0, true},
		{"text/plain", "ok", event.EncodingText, false},
		{"text/html; charset=utf-8", "<p>", event.EncodingText, false},
		{"text/plain", "\xff", 0, true},
		{"text/plain", "", event.EncodingText, false},
		{"application/octet-stream", "\xff{", event.EncodingBinary, false},
		{"application/xml", "<a/>", event.EncodingBinary, false},
		{"", `{"a":1}`, event.EncodingJSON, false},
		{"", `"s"`, event.EncodingJSON, false},
		{"", "words", event.EncodingText, false},
		{"", "", event.EncodingText, false},
		{"", "\x00\xff", event.EncodingBinary, false},
		{"application/x-www-form-urlencoded", `[1]`, event.EncodingJSON, false},
		{"application/x-www-form-urlencoded", "a=1", event.EncodingText, false},
		{"application/x-www-form-urlencoded", "\xfe", event.EncodingBinary, false},
		{"text/plain; charset", "x", 0, true},
		{";", "x", 0, true},
	}
	for _, tt := range tests {
		got, err := bodyEncoding(tt.ct, []byte(tt.body))
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("bodyEncoding(%q, %q) = %v, %v; want %v (error %v)", tt.ct, tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseWait(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"0", 0, false},
		{"30", 30 * time.Second, false},
		{"30s", 30 * time.Second, false},
		{"1m", time.Minute, false},
		{"250ms", 250 * time.Millisecond, false},
		{"-1", 0, true},
		{"-1s", 0, true},
		{"soon", 0, true},
		{"", 0, true},
		{"1.5", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseWait(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseWait(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMethodsAllowHeader(t *testing.T) {
	f := newFixture(t, Options{})
	for i := 0; i < 20; i++ { // map order must not show
		rec := f.do(http.MethodPut, "/v1/events", nil)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, POST" {
			t.Fatalf("PUT /v1/events: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
		}
	}
	// HEAD is served by the GET handler.
	if rec := f.do(http.MethodHead, "/v1/topics", nil); rec.Code != http.StatusOK {
		t.Errorf("HEAD /v1/topics: %d", rec.Code)
	}
}

func TestPublishHeadersLimits(t *testing.T) {
	f := newFixture(t, Options{})
	hdr := []string{"Content-Type", "text/plain"}
	for i := 0; i < MaxHeaders; i++ {
		hdr = append(hdr, "Herald-Header-H"+strings.Repeat("x", i), "v")
	}
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), hdr...); rec.Code != http.StatusCreated {
		t.Errorf("%d headers: %d %s", MaxHeaders, rec.Code, rec.Body)
	}
	hdr = append(hdr, "Herald-Header-One-Too-Many", "v")
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), hdr...); rec.Code != http.StatusBadRequest {
		t.Errorf("%d headers: %d %s", MaxHeaders+1, rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), "Herald-Header-X", "bad\xff"); rec.Code != http.StatusBadRequest {
		t.Errorf("a header value that is not UTF-8: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), "Herald-Event-Type", "t\x7f"); rec.Code != http.StatusBadRequest {
		t.Errorf("a type with DEL: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), "Herald-Event-Type", strings.Repeat("t", MaxTypeLen)); rec.Code != http.StatusCreated {
		t.Errorf("a type of %d bytes: %d %s", MaxTypeLen, rec.Code, rec.Body)
	}
	if rec := f.do(http.MethodPost, "/v1/topics/h.a/events", []byte("x"), "Idempotency-Key", strings.Repeat("k", MaxKeyLen)); rec.Code != http.StatusCreated {
		t.Errorf("a key of %d bytes: %d %s", MaxKeyLen, rec.Code, rec.Body)
	}
	if info, _, _ := f.hub.Info(hub.Internal(t.Context()), "h.a"); info.Last != 3 {
		t.Errorf("stored %d events, want 3", info.Last)
	}
}

func TestPullMergesTopicsByTime(t *testing.T) {
	f := newFixture(t, Options{})
	for i, topic := range []string{"m.a", "m.b", "m.a", "m.c", "m.b"} {
		body := []byte(`{"i":` + string(rune('0'+i)) + `}`)
		if rec := f.do(http.MethodPost, "/v1/topics/"+topic+"/events", body, "Content-Type", "application/json"); rec.Code != http.StatusCreated {
			t.Fatalf("publish: %d", rec.Code)
		}
	}
	rec := f.do(http.MethodGet, "/v1/events?topic=m.c&topic=m.b&topic=m.a", nil)
	var res struct {
		Events []struct {
			Topic  string
			Offset uint64
			Time   string
		}
		Cursor string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(res.Events) != 5 {
		t.Fatalf("events = %+v", res.Events)
	}
	last := map[string]uint64{}
	for i, ev := range res.Events {
		if ev.Offset != last[ev.Topic]+1 {
			t.Errorf("%s out of order: %+v", ev.Topic, res.Events)
		}
		last[ev.Topic] = ev.Offset
		if i > 0 && ev.Time < res.Events[i-1].Time {
			t.Errorf("not merged by time: %+v", res.Events)
		}
	}
	c, err := cursor.Parse(res.Cursor)
	if err != nil || c.Len() != 3 {
		t.Errorf("cursor %q: %v", res.Cursor, err)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("pull Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}
}

// TestBatchMediaType: the batch endpoint takes application/json only. A
// form (curl -d's default) or text/plain POST is a CORS simple request any
// web page could send without a preflight; no type at all is refused too.
func TestBatchMediaType(t *testing.T) {
	fx := newFixture(t, Options{})
	body := []byte(`{"events":[{"topic":"mt","data":1}]}`)
	for _, tt := range []struct {
		ct   string
		want int
	}{
		{"application/json", http.StatusOK},
		{"application/json; charset=utf-8", http.StatusOK},
		{"APPLICATION/JSON", http.StatusOK},
		{"", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"text/plain", http.StatusUnsupportedMediaType},
		{"multipart/form-data; boundary=x", http.StatusUnsupportedMediaType},
		{"application/json; charset", http.StatusUnsupportedMediaType},
		{"application/jsonx", http.StatusUnsupportedMediaType},
	} {
		var hdr []string
		if tt.ct != "" {
			hdr = []string{"Content-Type", tt.ct}
		}
		if rec := fx.do(http.MethodPost, "/v1/events", body, hdr...); rec.Code != tt.want {
			t.Errorf("Content-Type %q: status %d, want %d: %s", tt.ct, rec.Code, tt.want, rec.Body)
		}
	}
}
