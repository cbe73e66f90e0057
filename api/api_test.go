package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/api"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/server"
)

// loadDoc decodes the embedded OpenAPI document.
func loadDoc(t *testing.T) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(api.OpenAPI))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("api/openapi.json is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("api/openapi.json has data after its JSON object")
	}
	return doc
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if got := doc["openapi"]; got != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", got)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version, got %v", info)
	}
	schemas, _ := lookup(doc, "/components/schemas").(map[string]any)
	for _, name := range []string{"Event", "PublishAck", "BatchRequest", "BatchResult", "PullResult", "Gap", "Position", "Topic", "Error"} {
		if _, ok := schemas[name]; !ok {
			t.Errorf("components.schemas has no %s", name)
		}
	}
	// Every $ref points at something, and every operation has a unique id
	// and at least one response.
	walk(doc, "", func(path string, v map[string]any) {
		if ref, ok := v["$ref"].(string); ok {
			if !strings.HasPrefix(ref, "#/") || lookup(doc, strings.TrimPrefix(ref, "#")) == nil {
				t.Errorf("%s: $ref %q does not resolve", path, ref)
			}
		}
	})
	ids := map[string]string{}
	for p, item := range doc["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			if m == "parameters" {
				continue
			}
			op := op.(map[string]any)
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s has no operationId", m, p)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %s is used by %s and %s %s", id, prev, m, p)
			}
			ids[id] = m + " " + p
			if r, _ := op["responses"].(map[string]any); len(r) == 0 {
				t.Errorf("%s %s has no responses", m, p)
			}
		}
	}
	// The SSE endpoint is documented as a stream.
	if lookup(doc, "/paths/~1v1~1sse/get/responses/200/content/text~1event-stream") == nil {
		t.Error("GET /v1/sse: the 200 response has no text/event-stream content")
	}
}

// apiDocEndpoints returns "METHOD /path" for every endpoint named in
// docs/api.md: the headings "### `METHOD /path?query`" (several per heading
// where it names several) and the list items "- `METHOD /path`".
func apiDocEndpoints(t *testing.T) []string {
	t.Helper()
	md, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatalf("read docs/api.md: %v", err)
	}
	re := regexp.MustCompile("`(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^`?\\s]*)[^`]*`")
	var out []string
	for _, line := range strings.Split(string(md), "\n") {
		if !strings.HasPrefix(line, "### ") && !strings.HasPrefix(line, "- `") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			if ep := m[1] + " " + m[2]; !slices.Contains(out, ep) {
				out = append(out, ep)
			}
		}
	}
	return out
}

func TestOpenAPICoversAPIDoc(t *testing.T) {
	doc := loadDoc(t)
	paths := doc["paths"].(map[string]any)
	eps := apiDocEndpoints(t)
	// A guard against the parser silently finding nothing.
	for _, want := range []string{"POST /v1/topics/{topic}/events", "POST /v1/events", "GET /v1/events", "GET /v1/sse", "GET /v1/topics/{topic}", "GET /healthz"} {
		if !slices.Contains(eps, want) {
			t.Errorf("docs/api.md: endpoint %s not found by the heading parser (found %q)", want, eps)
		}
	}
	for _, ep := range eps {
		method, path, _ := strings.Cut(ep, " ")
		item, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("docs/api.md documents %s; openapi.json has no path %s", ep, path)
			continue
		}
		if _, ok := item[strings.ToLower(method)]; !ok {
			t.Errorf("docs/api.md documents %s; openapi.json's %s has no %s", ep, path, strings.ToLower(method))
		}
	}
	// And nothing in openapi.json is missing from docs/api.md.
	for path, item := range paths {
		for m := range item.(map[string]any) {
			if m == "parameters" || path == "/v1/openapi.json" {
				continue // the document itself is named in docs/api.md's prose
			}
			if ep := strings.ToUpper(m) + " " + path; !slices.Contains(eps, ep) {
				t.Errorf("openapi.json has %s, which docs/api.md does not document", ep)
			}
		}
	}
}

func TestOpenAPIErrorCodes(t *testing.T) {
	doc := loadDoc(t)
	enum := lookup(doc, "/components/schemas/Error/properties/error/properties/code/enum").([]any)
	md, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	rows := re.FindAllStringSubmatch(string(md), -1)
	if len(rows) < 5 {
		t.Fatalf("docs/api.md: found %d rows in the error table, want the whole table", len(rows))
	}
	for _, r := range rows {
		if !slices.Contains(enum, any(r[2])) {
			t.Errorf("docs/api.md's error code %s (%s) is missing from the Error schema's code enum %v", r[2], r[1], enum)
		}
	}
}

// TestOpenAPIMatchesServer sends real requests to a real server and checks
// every answer against the document: the status is declared for the
// operation, the content type too, and the body validates against the
// declared schema.
func TestOpenAPIMatchesServer(t *testing.T) {
	doc := loadDoc(t)
	cfg := config.Default()
	cfg.Limits.MaxEventBytes = 1024
	cfg.Outbound.AllowNetworks = []string{"127.0.0.1/32"} // a source polling the server itself
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})

	var other cursor.Cursor
	other.Set("chat.room-1", event.Position{Epoch: 1, Offset: 1}) // an epoch the server never made

	type req struct {
		method, url, route string // route: the path as the document names it
		ctype, body        string
		header             map[string]string
		status             int
		check              func(t *testing.T, body []byte)
	}
	hasCode := func(code string) func(*testing.T, []byte) {
		return func(t *testing.T, b []byte) {
			if !bytes.Contains(b, []byte(`"code":"`+code+`"`)) {
				t.Errorf("body %s, want error code %s", b, code)
			}
		}
	}
	cases := []req{
		{method: "POST", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", ctype: "application/json", body: `{"text":"hi"}`,
			header: map[string]string{"Herald-Event-Type": "message", "Herald-Header-Trace": "t-1", "Idempotency-Key": "k1"}, status: 201},
		{method: "POST", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", ctype: "application/json", body: `{"text":"hi"}`,
			header: map[string]string{"Idempotency-Key": "k1"}, status: 200,
			check: func(t *testing.T, b []byte) {
				if !bytes.Contains(b, []byte(`"duplicate":true`)) {
					t.Errorf("a retry with the same Idempotency-Key answered %s, want a duplicate", b)
				}
			}},
		{method: "POST", url: "/v1/topics/chat.room-1/events?type=note", route: "/v1/topics/{topic}/events", ctype: "text/plain", body: "line 1\nline 2", status: 201},
		{method: "POST", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", ctype: "application/octet-stream", body: "\x00\x01\xff", status: 201},
		{method: "POST", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", ctype: "application/json", body: `{not json`, status: 400, check: hasCode("bad_request")},
		{method: "POST", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", ctype: "text/plain", body: strings.Repeat("x", 2000), status: 413, check: hasCode("too_large")},
		{method: "POST", url: "/v1/topics/a..b/events", route: "/v1/topics/{topic}/events", ctype: "text/plain", body: "x", status: 400, check: hasCode("bad_topic")},
		{method: "PUT", url: "/v1/topics/chat.room-1/events", route: "/v1/topics/{topic}/events", status: 405, check: hasCode("method_not_allowed")},
		{method: "POST", url: "/v1/events", route: "/v1/events", ctype: "application/json",
			body: `{"events":[{"topic":"a","data":{"n":1}},{"topic":"b","text":"plain text","type":"note"},{"topic":"a","data_base64":"AAEC","key":"idem-42","headers":{"k":"v"}}]}`, status: 200},
		{method: "POST", url: "/v1/events", route: "/v1/events", ctype: "application/json", body: `{"events":[{"topic":"a","data":1,"text":"x"}]}`, status: 400, check: hasCode("bad_request")},
		{method: "POST", url: "/v1/events", route: "/v1/events", ctype: "text/plain", body: `{}`, status: 415, check: hasCode("unsupported_media_type")},
		{method: "GET", url: "/v1/events?topic=a&topic=b&topic=chat.room-1", route: "/v1/events", status: 200,
			check: func(t *testing.T, b []byte) {
				for _, enc := range []string{`"encoding":"json"`, `"encoding":"text"`, `"encoding":"binary"`, `"headers":{`, `"type":"message"`} {
					if !bytes.Contains(b, []byte(enc)) {
						t.Errorf("the pull answer has no %s: %s", enc, b)
					}
				}
			}},
		{method: "GET", url: "/v1/events?topic=a&wait=10ms&from=latest", route: "/v1/events", status: 200},
		{method: "GET", url: "/v1/events?topic=a&limit=0", route: "/v1/events", status: 400, check: hasCode("bad_request")},
		{method: "GET", url: "/v1/events?topic=a&cursor=%21%21", route: "/v1/events", status: 400, check: hasCode("bad_cursor")},
		{method: "GET", url: "/v1/topics/chat.room-1/events?limit=2&cursor=" + other.String(), route: "/v1/topics/{topic}/events", status: 200,
			check: func(t *testing.T, b []byte) {
				if !bytes.Contains(b, []byte(`"gaps":[{`)) || !bytes.Contains(b, []byte(`"reason":"epoch_changed"`)) {
					t.Errorf("a cursor from another epoch answered %s, want an epoch_changed gap", b)
				}
			}},
		{method: "GET", url: "/v1/topics", route: "/v1/topics", status: 200},
		{method: "GET", url: "/v1/topics/chat.room-1", route: "/v1/topics/{topic}", status: 200},
		{method: "GET", url: "/v1/topics/no.such-topic", route: "/v1/topics/{topic}", status: 404, check: hasCode("not_found")},
		{method: "GET", url: "/v1/topics/a..b", route: "/v1/topics/{topic}", status: 400, check: hasCode("bad_topic")},
		{method: "DELETE", url: "/v1/topics", route: "/v1/topics", status: 405, check: hasCode("method_not_allowed")},
		{method: "GET", url: "/v1/sse", route: "/v1/sse", status: 400, check: hasCode("bad_request")},
		{method: "GET", url: "/v1/sse?topic=a..b", route: "/v1/sse", status: 400, check: hasCode("bad_topic")},
		{method: "POST", url: "/v1/sse?topic=a", route: "/v1/sse", status: 405, check: hasCode("method_not_allowed")},
		{method: "GET", url: "/v1/openapi.json", route: "/v1/openapi.json", status: 200,
			check: func(t *testing.T, b []byte) {
				if !bytes.Equal(b, api.OpenAPI) {
					t.Error("GET /v1/openapi.json does not serve api/openapi.json")
				}
			}},
		{method: "PUT", url: "/v1/sources/s1", route: "/v1/sources/{name}", ctype: "application/json",
			body: `{"url":"` + ts.URL + `/healthz","topic":"src.s1","headers":{"Authorization":"Bearer x"}}`, status: 201},
		{method: "PUT", url: "/v1/sources/s1", route: "/v1/sources/{name}", ctype: "application/json",
			body: `{"url":"` + ts.URL + `/healthz","topic":"src.s1","headers":{"Authorization":"<redacted>"}}`, status: 200},
		{method: "PUT", url: "/v1/sources/s1", route: "/v1/sources/{name}", ctype: "application/json",
			body: `{"url":"` + ts.URL + `/healthz","topic":"src.s1","interval":"1ms"}`, status: 400, check: hasCode("bad_request")},
		{method: "PUT", url: "/v1/sources/s2", route: "/v1/sources/{name}", ctype: "application/json",
			body: `{"url":"http://10.0.0.1/","topic":"src.s2"}`, status: 400, check: hasCode("bad_request")},
		{method: "GET", url: "/v1/sources", route: "/v1/sources", status: 200},
		{method: "GET", url: "/v1/sources/s1", route: "/v1/sources/{name}", status: 200},
		{method: "GET", url: "/v1/sources/nope", route: "/v1/sources/{name}", status: 404, check: hasCode("not_found")},
		{method: "DELETE", url: "/v1/sources/s1", route: "/v1/sources/{name}", status: 204},
		{method: "POST", url: "/v1/sources", route: "/v1/sources", status: 405, check: hasCode("method_not_allowed")},
		{method: "PUT", url: "/v1/groups/g1", route: "/v1/groups/{group}", ctype: "application/json", body: `{"topics":["a","b"],"start":"earliest","backoff":["1s"]}`, status: 201},
		{method: "PUT", url: "/v1/groups/g1", route: "/v1/groups/{group}", ctype: "application/json", body: `{"topics":["a","b"],"start":"earliest","backoff":["1s"]}`, status: 200},
		{method: "PUT", url: "/v1/groups/g1", route: "/v1/groups/{group}", ctype: "application/json", body: `{"topics":["a"]}`, status: 409, check: hasCode("conflict")},
		{method: "PUT", url: "/v1/groups/g2", route: "/v1/groups/{group}", ctype: "application/json", body: `{"topics":["a"],"ack_wait":"0.5ms"}`, status: 400, check: hasCode("bad_request")},
		{method: "PUT", url: "/v1/groups/g2", route: "/v1/groups/{group}", ctype: "application/json", body: `{"topics":["no.such-topic"]}`, status: 404, check: hasCode("not_found")},
		{method: "POST", url: "/v1/groups/g1/fetch", route: "/v1/groups/{group}/fetch", ctype: "application/json", body: `{"member":"w1","limit":2}`, status: 200,
			check: func(t *testing.T, b []byte) {
				if !bytes.Contains(b, []byte(`"delivery":1`)) {
					t.Errorf("fetch answered %s, want deliveries", b)
				}
			}},
		{method: "POST", url: "/v1/groups/g1/fetch", route: "/v1/groups/{group}/fetch", ctype: "application/json", body: `{"limit":2}`, status: 400, check: hasCode("bad_request")},
		{method: "POST", url: "/v1/groups/g1/ack", route: "/v1/groups/{group}/ack", ctype: "application/json", body: `{"ids":["nope"]}`, status: 200,
			check: func(t *testing.T, b []byte) {
				if !bytes.Contains(b, []byte(`"code":"not_found"`)) {
					t.Errorf("ack of an unknown id answered %s, want its not_found result", b)
				}
			}},
		{method: "POST", url: "/v1/groups/g1/nak", route: "/v1/groups/{group}/nak", ctype: "application/json", body: `{"id":"nope","delay":"1s"}`, status: 404, check: hasCode("not_found")},
		{method: "POST", url: "/v1/groups/g1/in_progress", route: "/v1/groups/{group}/in_progress", ctype: "application/json", body: `{"id":"nope"}`, status: 404, check: hasCode("not_found")},
		{method: "POST", url: "/v1/groups/g1/term", route: "/v1/groups/{group}/term", ctype: "application/json", body: `{"id":"nope","reason":"x"}`, status: 404, check: hasCode("not_found")},
		{method: "PUT", url: "/v1/webhooks/w1", route: "/v1/webhooks/{name}", ctype: "application/json", body: `{"url":"http://127.0.0.1:9/hook","topics":["a","chat.>"],"types":["note"]}`, status: 201,
			check: func(t *testing.T, b []byte) {
				if !bytes.Contains(b, []byte(`"generated_secret":"whsec_`)) || !bytes.Contains(b, []byte(`"secrets":["<redacted>"]`)) {
					t.Errorf("a webhook made without a secret answered %s", b)
				}
			}},
		{method: "PUT", url: "/v1/webhooks/w1", route: "/v1/webhooks/{name}", ctype: "application/json", body: `{"url":"http://127.0.0.1:9/hook","topics":["a","chat.>"],"types":["note"]}`, status: 200},
		{method: "PUT", url: "/v1/webhooks/w2", route: "/v1/webhooks/{name}", ctype: "application/json", body: `{"url":"http://10.0.0.1/","topics":["a"]}`, status: 400, check: hasCode("bad_request")},
		{method: "GET", url: "/v1/webhooks", route: "/v1/webhooks", status: 200},
		{method: "GET", url: "/v1/webhooks/w1", route: "/v1/webhooks/{name}", status: 200},
		{method: "GET", url: "/v1/webhooks/nope", route: "/v1/webhooks/{name}", status: 404, check: hasCode("not_found")},
		{method: "POST", url: "/v1/webhooks/w1/test", route: "/v1/webhooks/{name}/test", status: 200},
		{method: "GET", url: "/v1/webhooks/w1/log", route: "/v1/webhooks/{name}/log", status: 200},
		{method: "POST", url: "/v1/webhooks/w1/replay", route: "/v1/webhooks/{name}/replay", ctype: "application/json", body: `{"from":"yesterday"}`, status: 400, check: hasCode("bad_request")},
		{method: "POST", url: "/v1/webhooks/w1/replay", route: "/v1/webhooks/{name}/replay", ctype: "application/json", body: `{"from":"earliest","limit":1}`, status: 202},
		{method: "DELETE", url: "/v1/webhooks/w1", route: "/v1/webhooks/{name}", status: 204},
		{method: "GET", url: "/v1/groups", route: "/v1/groups", status: 200},
		{method: "GET", url: "/v1/groups/g1", route: "/v1/groups/{group}", status: 200},
		{method: "DELETE", url: "/v1/groups/g1", route: "/v1/groups/{group}", status: 204},
		{method: "GET", url: "/v1/groups/g1", route: "/v1/groups/{group}", status: 404, check: hasCode("not_found")},
		{method: "GET", url: "/v1/groups/g1/fetch", route: "/v1/groups/{group}/fetch", status: 405, check: hasCode("method_not_allowed")},
		{method: "GET", url: "/healthz", route: "/healthz", status: 200},
		{method: "GET", url: "/readyz", route: "/readyz", status: 503}, // the server was never started
		{method: "GET", url: "/metrics", route: "/metrics", status: 200},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%02d %s %s", i, c.method, c.url), func(t *testing.T) {
			r, err := http.NewRequest(c.method, ts.URL+c.url, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			resp, err := ts.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
			}
			if c.check != nil {
				c.check(t, body)
			}
			checkResponse(t, doc, c.route, c.method, resp, body)
		})
	}

	t.Run("SSE stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/sse?topic=chat.room-1", nil)
		resp, err := ts.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "retry: ") {
			t.Errorf("first line %q (%v), want a retry: hint", line, err)
		}
		checkResponse(t, doc, "/v1/sse", "GET", resp, nil)
	})
}

// checkResponse checks resp against the document's operation route/method.
// body is validated against the schema when the content is JSON.
func checkResponse(t *testing.T, doc map[string]any, route, method string, resp *http.Response, body []byte) {
	t.Helper()
	op, ok := lookup(doc, "/paths/"+escape(route)+"/"+strings.ToLower(method)).(map[string]any)
	if !ok {
		if resp.StatusCode == http.StatusMethodNotAllowed {
			// A wrong method has no operation; its answer is the API's error.
			validate(t, doc, "405 body", map[string]any{"$ref": "#/components/schemas/Error"}, decodeJSON(t, body))
			if resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			return
		}
		t.Fatalf("the document has no %s %s", method, route)
	}
	status := fmt.Sprint(resp.StatusCode)
	r, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		t.Fatalf("%s %s: status %s is not declared in the document", method, route, status)
	}
	r = deref(doc, r)
	content, _ := r["content"].(map[string]any)
	if content == nil && len(body) == 0 {
		return // an answer declared without content (204)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	mt = strings.TrimSpace(mt)
	media, ok := content[mt].(map[string]any)
	if !ok {
		t.Fatalf("%s %s %s: Content-Type %q is not declared (declared: %v)", method, route, status, mt, keys(content))
	}
	if mt == "application/json" && body != nil {
		validate(t, doc, fmt.Sprintf("%s %s %s body", method, route, status), media["schema"], decodeJSON(t, body))
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("body %s is not JSON: %v", b, err)
	}
	return v
}

// validate checks v against a JSON Schema, reporting every violation. It
// knows the keywords the document uses; an unknown one fails the test, so
// that the checker grows with the document.
func validate(t *testing.T, doc map[string]any, where string, schema, v any) {
	t.Helper()
	for _, e := range (&validator{doc: doc}).check(where, schema, v) {
		t.Error(e)
	}
}

type validator struct{ doc map[string]any }

var annotations = map[string]bool{
	"description": true, "examples": true, "example": true, "default": true, "title": true,
	"contentEncoding": true, "contentMediaType": true,
}

func (vd *validator) check(at string, schema, v any) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: schema %v is not an object", at, schema)}
	}
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, a...)) }
	for kw, arg := range s {
		switch {
		case annotations[kw]:
		case kw == "$ref":
			target := lookup(vd.doc, strings.TrimPrefix(arg.(string), "#"))
			if target == nil {
				fail("$ref %v does not resolve", arg)
				continue
			}
			errs = append(errs, vd.check(at, target, v)...)
		case kw == "type":
			if !hasType(v, arg.(string)) {
				fail("%s is not of type %s", show(v), arg)
			}
		case kw == "enum":
			if !slices.ContainsFunc(arg.([]any), func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
				fail("%s is not one of %v", show(v), arg)
			}
		case kw == "format":
			if str, ok := v.(string); ok && arg == "date-time" {
				if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
					fail("%q is not a date-time: %v", str, err)
				}
			}
		case kw == "pattern":
			if str, ok := v.(string); ok && !regexp.MustCompile(arg.(string)).MatchString(str) {
				fail("%q does not match %s", str, arg)
			}
		case kw == "minLength" || kw == "maxLength":
			if str, ok := v.(string); ok {
				n, lim := utf8.RuneCountInString(str), num(arg)
				if kw == "minLength" && n < int(lim) || kw == "maxLength" && n > int(lim) {
					fail("%d characters breaks %s %v", n, kw, arg)
				}
			}
		case kw == "minimum" || kw == "maximum":
			if n, ok := v.(json.Number); ok {
				f, _ := new(big.Float).SetString(n.String())
				lim := new(big.Float).SetFloat64(num(arg))
				if kw == "minimum" && f.Cmp(lim) < 0 || kw == "maximum" && f.Cmp(lim) > 0 {
					fail("%s breaks %s %v", n, kw, arg)
				}
			}
		case kw == "minItems" || kw == "maxItems" || kw == "minProperties" || kw == "maxProperties":
			n := -1
			switch x := v.(type) {
			case []any:
				n = len(x)
			case map[string]any:
				n = len(x)
			}
			if n >= 0 && (strings.HasPrefix(kw, "min") && n < int(num(arg)) || strings.HasPrefix(kw, "max") && n > int(num(arg))) {
				fail("%d entries breaks %s %v", n, kw, arg)
			}
		case kw == "items":
			for i, e := range asArray(v) {
				errs = append(errs, vd.check(fmt.Sprintf("%s[%d]", at, i), arg, e)...)
			}
		case kw == "properties":
			obj, _ := v.(map[string]any)
			for name, sub := range arg.(map[string]any) {
				if pv, ok := obj[name]; ok {
					errs = append(errs, vd.check(at+"."+name, sub, pv)...)
				}
			}
		case kw == "required":
			if obj, ok := v.(map[string]any); ok {
				for _, name := range arg.([]any) {
					if _, ok := obj[name.(string)]; !ok {
						fail("missing required property %s", name)
					}
				}
			}
		case kw == "additionalProperties":
			obj, _ := v.(map[string]any)
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, declared := props[name]; declared {
					continue
				}
				if arg == false {
					fail("property %s is not in the schema", name)
				} else if sub, ok := arg.(map[string]any); ok {
					errs = append(errs, vd.check(at+"."+name, sub, pv)...)
				}
			}
		case kw == "oneOf":
			n := 0
			for _, sub := range arg.([]any) {
				if len(vd.check(at, sub, v)) == 0 {
					n++
				}
			}
			if n != 1 {
				fail("%s matches %d of oneOf, want exactly 1", show(v), n)
			}
		case kw == "not":
			if len(vd.check(at, arg, v)) == 0 {
				fail("%s matches a schema it must not", show(v))
			}
		default:
			fail("the test's validator does not know keyword %q; teach it", kw)
		}
	}
	return errs
}

func hasType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		return ok && !strings.ContainsAny(n.String(), ".eE")
	}
	return false
}

func num(v any) float64 {
	f, _ := v.(json.Number).Float64()
	return f
}

func asArray(v any) []any { a, _ := v.([]any); return a }

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		b = append(b[:77], "..."...)
	}
	return string(b)
}

// lookup resolves a JSON pointer ("/a/b~1c") in doc; nil when absent.
func lookup(doc any, pointer string) any {
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[tok]; !ok {
			return nil
		}
	}
	return cur
}

// escape turns a path into one JSON pointer token.
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// deref follows a $ref object to its target.
func deref(doc map[string]any, v map[string]any) map[string]any {
	for {
		ref, ok := v["$ref"].(string)
		if !ok {
			return v
		}
		v, _ = lookup(doc, strings.TrimPrefix(ref, "#")).(map[string]any)
	}
}

// walk calls f on every object in v, depth first, with its JSON pointer.
func walk(v any, path string, f func(string, map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(path, x)
		for k, e := range x {
			walk(e, path+"/"+escape(k), f)
		}
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s/%d", path, i), f)
		}
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
