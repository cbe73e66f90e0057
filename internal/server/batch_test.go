package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/config"
)

func TestBatchOrder(t *testing.T) {
	ts := startServer(t)
	res := ts.batch(`{"events":[
		{"topic":"bt.a","data":{"n":1}},
		{"topic":"bt.b","text":"plain text","type":"note"},
		{"topic":"bt.a","data_base64":"AAEC","key":"idem-42","headers":{"k":"v"}},
		{"topic":"bt.c","data":[1,2]},
		{"topic":"bt.a","text":"third"},
		{"topic":"bt.b","data_base64":"_-8"},
		{"topic":"bt.a","data":null}
	]}`)
	want := []struct {
		topic string
		off   uint64
	}{{"bt.a", 1}, {"bt.b", 1}, {"bt.a", 2}, {"bt.c", 1}, {"bt.a", 3}, {"bt.b", 2}, {"bt.a", 4}}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(res), len(want), res)
	}
	for i, w := range want {
		if res[i].Topic != w.topic || res[i].Offset != w.off || res[i].Duplicate || !hex16.MatchString(res[i].Epoch) {
			t.Errorf("result %d = %+v, want %s:%d", i, res[i], w.topic, w.off)
		}
	}
	a := ts.pull("/v1/topics/bt.a/events").Events
	if len(a) != 4 {
		t.Fatalf("bt.a has %s", fmtOffsets(a))
	}
	for i, w := range []struct{ enc, data string }{
		{"json", `{"n":1}`}, {"binary", `"AAEC"`}, {"text", `"third"`}, {"json", `null`},
	} {
		if a[i].Encoding != w.enc || string(a[i].Data) != w.data || a[i].Epoch != res[0].Epoch {
			t.Errorf("bt.a event %d = %s %s, want %s %s", i, a[i].Encoding, a[i].Data, w.enc, w.data)
		}
	}
	if a[1].Headers["k"] != "v" {
		t.Errorf("headers = %v", a[1].Headers)
	}
	b := ts.pull("/v1/topics/bt.b/events").Events
	if len(b) != 2 || b[0].Type != "note" || string(b[0].Data) != `"plain text"` || string(b[1].Data) != `"/+8="` {
		t.Errorf("bt.b = %+v", b)
	}

	// The same key again, and twice within one batch.
	res = ts.batch(`{"events":[
		{"topic":"bt.a","data":1,"key":"idem-42"},
		{"topic":"bt.a","data":2,"key":"k2"},
		{"topic":"bt.a","data":3,"key":"k2"}
	]}`)
	if !res[0].Duplicate || res[0].Offset != 2 || res[1].Duplicate || res[1].Offset != 5 || !res[2].Duplicate || res[2].Offset != 5 {
		t.Errorf("duplicates = %+v", res)
	}
	if ti, _ := ts.info("bt.a"); ti.Last != 5 {
		t.Errorf("bt.a last = %d, want 5", ti.Last)
	}
}

func TestBatchRefused(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Limits.MaxEventBytes = 64 })
	ts.batch(`{"events":[{"topic":"br.a","data":0}]}`)
	big := strings.Repeat("x", 65)
	tests := []struct {
		name   string
		ct     string
		body   string
		status int
		code   string
		msg    string // the message must contain it
	}{
		{"bad topic", "application/json", `{"events":[{"topic":"br.a","data":1},{"topic":"br.b","data":1},{"topic":"br..c","data":1}]}`, 400, "bad_topic", "event 2"},
		{"slash in topic", "", `{"events":[{"topic":"br.a","data":1},{"topic":"br/b","data":1}]}`, 400, "bad_topic", "event 1"},
		{"no topic", "", `{"events":[{"data":1}]}`, 400, "bad_topic", "event 0"},
		{"data and text", "", `{"events":[{"topic":"br.a","data":1},{"topic":"br.b","data":1,"text":"x"}]}`, 400, "bad_request", "event 1"},
		{"text and base64", "", `{"events":[{"topic":"br.b","text":"x","data_base64":"AA=="}]}`, 400, "bad_request", "event 0"},
		{"no payload", "", `{"events":[{"topic":"br.b","data":1},{"topic":"br.b"}]}`, 400, "bad_request", "event 1"},
		{"bad base64", "", `{"events":[{"topic":"br.b","data_base64":"!!"}]}`, 400, "bad_request", "event 0"},
		{"reserved type", "", `{"events":[{"topic":"br.b","data":1},{"topic":"br.a","data":1,"type":"error"}]}`, 400, "bad_request", "event 1"},
		{"type with a line break", "", `{"events":[{"topic":"br.b","data":1,"type":"a\nb"}]}`, 400, "bad_request", "event 0"},
		{"oversize event", "", `{"events":[{"topic":"br.b","data":1},{"topic":"br.a","text":"` + big + `"}]}`, 413, "too_large", "event 1"},
		{"unknown field", "", `{"events":[{"topic":"br.b","data":1,"bogus":2}]}`, 400, "bad_request", "bogus"},
		{"unknown top-level field", "", `{"events":[{"topic":"br.b","data":1}],"more":[]}`, 400, "bad_request", "more"},
		{"empty batch", "", `{"events":[]}`, 400, "bad_request", "no events"},
		{"no events", "", `{}`, 400, "bad_request", "no events"},
		{"not an object", "", `[{"topic":"br.b","data":1}]`, 400, "bad_request", ""},
		{"truncated", "", `{"events":[{"topic":"br.b","data":1}`, 400, "bad_request", ""},
		{"trailing data", "", `{"events":[{"topic":"br.b","data":1}]}{"events":[]}`, 400, "bad_request", ""},
		{"empty body", "", ``, 400, "bad_request", ""},
		{"text/plain", "text/plain", `{"events":[{"topic":"br.b","data":1}]}`, 415, "unsupported_media_type", ""},
		{"xml", "application/xml", `{"events":[{"topic":"br.b","data":1}]}`, 415, "unsupported_media_type", ""},
		// A form POST is a CORS simple request: any web page could send it.
		{"form type", "application/x-www-form-urlencoded", `{"events":[{"topic":"br.b","data":1}]}`, 415, "unsupported_media_type", "application/json"},
		{"no type", "none", `{"events":[{"topic":"br.b","data":1}]}`, 415, "unsupported_media_type", "application/json"},
		{"malformed type", "application/json; charset", `{"events":[{"topic":"br.b","data":1}]}`, 415, "unsupported_media_type", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := ts.in(t)
			var hdr []string
			switch tt.ct {
			case "none":
			case "":
				hdr = []string{"Content-Type", "application/json"}
			default:
				hdr = []string{"Content-Type", tt.ct}
			}
			e := wantError(t, ts.do(http.MethodPost, "/v1/events", []byte(tt.body), hdr...), tt.status, tt.code)
			if !strings.Contains(e.Error.Message, tt.msg) {
				t.Errorf("message %q does not name %q", e.Error.Message, tt.msg)
			}
		})
	}
	r := ts.get("/v1/topics")
	var list struct{ Topics []topicInfo }
	json.Unmarshal(r.body, &list)
	if len(list.Topics) != 1 || list.Topics[0].Name != "br.a" || list.Topics[0].Last != 1 {
		t.Errorf("refused batches stored something: %s", r.body)
	}

	// application/json with parameters, in any case.
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON"} {
		r := ts.do(http.MethodPost, "/v1/events", []byte(`{"events":[{"topic":"br.ok","data":1}]}`), "Content-Type", ct)
		if r.status != http.StatusOK {
			t.Errorf("Content-Type %q: status %d: %s", ct, r.status, r.body)
		}
	}
}

func TestBatchTooLarge(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.HTTP.MaxBodyBytes = 4096 })
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := 0; b.Len() < 5000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"topic":"bb.t%d","data":{"n":%d}}`, i%3, i)
	}
	b.WriteString("]}")
	wantError(t, ts.do(http.MethodPost, "/v1/events", []byte(b.String()), "Content-Type", "application/json"),
		http.StatusRequestEntityTooLarge, "too_large")
	r := ts.get("/v1/topics")
	if !strings.Contains(string(r.body), `"topics":[]`) {
		t.Errorf("an oversize batch stored something: %s", r.body)
	}
}
