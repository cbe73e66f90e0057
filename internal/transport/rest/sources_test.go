package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
	"github.com/heraldhq/herald/internal/source"
)

// refuseGate refuses one action (on any topic) while set.
type refuseGate struct{ action atomic.Int32 }

func (g *refuseGate) Allow(_ context.Context, a hub.Action, topic string) error {
	if hub.Action(g.action.Load()) == a {
		return fmt.Errorf("%w: no %s grant for %q", hub.ErrForbidden, a, topic)
	}
	return nil
}

func newSourcesFixture(t *testing.T) (*fixture, *refuseGate, string) {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "{}") }))
	t.Cleanup(origin.Close)
	gate := &refuseGate{}
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{Gate: gate})
	m, err := source.New(context.Background(), h, source.Options{
		Guard: netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(h, Options{Sources: m}).Register(mux)
	t.Cleanup(func() {
		m.Close()
		h.Close()
		eng.Close()
	})
	return &fixture{hub: h, mux: mux}, gate, origin.URL
}

func errorCode(t *testing.T, body []byte) (string, string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return e.Error.Code, e.Error.Message
}

func TestSourcesAPI(t *testing.T) {
	f, gate, url := newSourcesFixture(t)
	good := fmt.Sprintf(`{"url":%q,"topic":"feeds.a","interval":"1h","headers":{"Authorization":"Bearer s3cret","Accept":"application/json"}}`, url)

	rec := f.do("PUT", "/v1/sources/a", []byte(good))
	if rec.Code != 201 {
		t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	if strings.Contains(body, "s3cret") || !strings.Contains(body, `"Authorization":"<redacted>"`) || !strings.Contains(body, `"Accept":"application/json"`) {
		t.Errorf("PUT answered %s: want the secret redacted, Accept shown", body)
	}
	var got struct {
		Name, Mode, Interval string
		Status               struct{ State string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Name != "a" || got.Mode != "whole" || got.Interval != "1h0m0s" {
		t.Errorf("PUT answered %s (%v)", body, err)
	}
	// Sending back what was shown (status and all) changes nothing, and
	// keeps the secret.
	if rec := f.do("PUT", "/v1/sources/a", rec.Body.Bytes()); rec.Code != 200 {
		t.Errorf("PUT of the answer: %d %s", rec.Code, rec.Body)
	}
	shown := strings.Replace(good, "Bearer s3cret", source.Redacted, 1)
	if rec := f.do("PUT", "/v1/sources/a", []byte(shown)); rec.Code != 200 {
		t.Errorf("PUT of the shown settings: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("GET", "/v1/sources/a", nil); rec.Code != 200 || strings.Contains(rec.Body.String(), "s3cret") {
		t.Errorf("GET: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("GET", "/v1/sources", nil); rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"sources":[{"name":"a"`) {
		t.Errorf("GET list: %d %s", rec.Code, rec.Body)
	}
	// What the source is, without its status (its poller runs meanwhile).
	settings := func() string {
		b := f.do("GET", "/v1/sources", nil).Body.String()
		return b[:strings.Index(b, `"status"`)]
	}
	before := settings()

	bad := []struct {
		name, target, body string
		status             int
		code, msg          string
	}{
		{"not JSON", "/v1/sources/a", `{`, 400, "bad_request", "JSON object"},
		{"unknown field", "/v1/sources/a", `{"url":"http://x","topic":"t","every":"1s"}`, 400, "bad_request", `unknown field "every"`},
		{"bad interval", "/v1/sources/a", `{"url":"http://x","topic":"t","interval":"1ms"}`, 400, "bad_request", "interval"},
		{"bad duration", "/v1/sources/a", `{"url":"http://x","topic":"t","interval":"often"}`, 400, "bad_request", "interval"},
		{"bad topic", "/v1/sources/a", `{"url":"http://x","topic":"a..b"}`, 400, "bad_topic", "topic"},
		{"bad mode", "/v1/sources/a", `{"url":"http://x","topic":"t","mode":"rss"}`, 400, "bad_request", "unknown mode"},
		{"names differ", "/v1/sources/a", `{"name":"b","url":"http://x","topic":"t"}`, 400, "bad_request", "names source"},
		{"bad name", "/v1/sources/a.b", `{"url":"http://x","topic":"t"}`, 400, "bad_request", "source name"},
		{"loopback", "/v1/sources/a", `{"url":"http://127.0.0.2/","topic":"t"}`, 400, "bad_request", "loopback"},
		{"metadata", "/v1/sources/a", `{"url":"http://169.254.169.254/latest","topic":"t"}`, 400, "bad_request", "cloud metadata"},
		{"unknown redacted", "/v1/sources/a", `{"url":"http://x","topic":"t","headers":{"X-Key":"<redacted>"}}`, 400, "bad_request", "no stored value"},
		{"too large", "/v1/sources/a", `{"url":"http://x","topic":"t","body":"` + strings.Repeat("x", maxSourceBody) + `"}`, 413, "too_large", "over"},
		{"get missing", "/v1/sources/nope", "", 404, "not_found", "no such source"},
		{"delete missing", "/v1/sources/nope", "", 404, "not_found", "no such source"},
		{"post", "/v1/sources/a", "{}", 405, "method_not_allowed", "allowed: DELETE, GET, PUT"},
	}
	for _, c := range bad {
		method := "PUT"
		switch {
		case strings.HasPrefix(c.name, "get"):
			method = "GET"
		case strings.HasPrefix(c.name, "delete"):
			method = "DELETE"
		case c.name == "post":
			method = "POST"
		}
		rec := f.do(method, c.target, []byte(c.body))
		if rec.Code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, rec.Code, rec.Body, c.status)
			continue
		}
		code, msg := errorCode(t, rec.Body.Bytes())
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %s %q, want %s with %q", c.name, code, msg, c.code, c.msg)
		}
	}
	// Refusals of the gate: without admin nothing is shown or changed;
	// without publish on the topic no source is made for it.
	gate.action.Store(int32(hub.ActionAdmin))
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		if rec := f.do(method, "/v1/sources/a", []byte(good)); rec.Code != 403 {
			t.Errorf("%s without admin: %d %s", method, rec.Code, rec.Body)
		}
	}
	gate.action.Store(int32(hub.ActionPublish))
	if rec := f.do("PUT", "/v1/sources/b", []byte(good)); rec.Code != 403 || !strings.Contains(rec.Body.String(), "publishes to its topic for you") {
		t.Errorf("PUT without publish on the topic: %d %s", rec.Code, rec.Body)
	}
	gate.action.Store(0)
	if after := settings(); after != before {
		t.Errorf("refused requests changed the sources:\n%s\n%s", before, after)
	}

	if rec := f.do("DELETE", "/v1/sources/a", nil); rec.Code != 204 || rec.Body.Len() != 0 {
		t.Errorf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("GET", "/v1/sources", nil); rec.Code != 200 || rec.Body.String() != "{\"sources\":[]}\n" {
		t.Errorf("GET list after DELETE: %d %s", rec.Code, rec.Body)
	}
}

func TestSourcesUnavailable(t *testing.T) {
	f := newFixture(t, Options{})
	rec := f.do("GET", "/v1/sources", nil)
	if code, _ := errorCode(t, rec.Body.Bytes()); rec.Code != 503 || code != "unavailable" {
		t.Errorf("GET /v1/sources without a manager: %d %s", rec.Code, rec.Body)
	}
}
