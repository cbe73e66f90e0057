//go:build linux

package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// TestBrowserAuth drives headless chromium through the browser's ways of
// presenting a token, against a server with authentication on:
//
//  1. A page of herald's own origin opens EventSource with the token in
//     the access_token query parameter, and receives an event.
//  2. The next page's answer sets the herald_token cookie (HttpOnly,
//     SameSite=Lax) for herald's origin; it opens EventSource with no
//     token in the URL: the browser sends the cookie, herald takes it, and
//     the page receives an event.
//  3. A page of a foreign origin (another local listener: same site, so
//     the browser sends the cookie along) opens a WebSocket to herald. The
//     upgrade is refused (403: the origin is not in http.cors_origins)
//     although the cookie came with it, and nothing is subscribed.
//
// herald's handler is served behind a recording front on one listener,
// which also serves the pages of herald's origin: the test sees what the
// browser sent (cookie, Origin) and what herald answered.
func TestBrowserAuth(t *testing.T) {
	bin := browserChromium(t)
	key, keyCfg := newAPIKey(t, "publisher", config.Grants{Publish: []string{"auth.>"}, Admin: true})
	token := hs256(t, userClaims("kim", time.Now().Add(time.Hour), config.Grants{Subscribe: []string{"auth.>"}}))

	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0" // not listened on: the front serves the handler
	cfg.GRPC.Enabled = false
	cfg.Auth.JWT.HMACSecret = string(authSecret)
	cfg.Auth.JWT.Audience = testAudience
	cfg.Auth.JWT.Issuer = testIssuer
	cfg.Auth.APIKeys = []config.APIKey{keyCfg}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}

	reports := make(chan authPageReport, 64)
	rec := &requestRecorder{}
	foreign := httptest.NewServer(authPages(t, reports, nil))
	t.Cleanup(foreign.Close)
	front := httptest.NewUnstartedServer(nil)
	heraldURL := "http://" + front.Listener.Addr().String()
	front.Config.Handler = authPages(t, reports, map[string]string{
		"query":  `new EventSource("/v1/sse?topic=auth.q&access_token=` + token + `")`,
		"cookie": `new EventSource("/v1/sse?topic=auth.c")`,
		"next":   foreign.URL + "/p/ws?herald=" + heraldURL,
		"token":  token,
	}, rec.wrap(srv.Handler()))
	front.Start()
	t.Cleanup(front.Close)
	t.Cleanup(func() { // before the front closes
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	publish := func(topic, data string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, heraldURL+"/v1/topics/"+topic+"/events", strings.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "text/plain")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("publish to %s: %s", topic, res.Status)
		}
	}

	chrome := browserStartChromium(t, bin, heraldURL+"/p/query")
	w := &authPageWatch{t: t, reports: reports, chrome: chrome}

	w.until("query", "open")
	publish("auth.q", "by query")
	if r := w.until("query", "message"); r.Data != "by query" {
		t.Errorf("the access_token page got %q", r.Data)
	}
	w.until("cookie", "open")
	publish("auth.c", "by cookie")
	if r := w.until("cookie", "message"); r.Data != "by cookie" {
		t.Errorf("the cookie page got %q", r.Data)
	}
	r := w.until("ws", "close")
	if r.Opened {
		t.Errorf("the foreign page's WebSocket opened")
	}
	t.Logf("the foreign page's WebSocket closed with %d", r.Code)

	sse := rec.find("/v1/sse")
	if len(sse) != 2 {
		t.Fatalf("SSE requests %+v, want 2", sse)
	}
	if !sse[0].token || sse[0].cookie || sse[0].status != hijacked {
		t.Errorf("the access_token stream: %+v, want the token in the URL, no cookie, a stream", sse[0])
	}
	if sse[1].token || !sse[1].cookie || sse[1].status != hijacked {
		t.Errorf("the cookie stream: %+v, want the cookie only, a stream", sse[1])
	}
	wsReqs := rec.find("/v1/ws")
	if len(wsReqs) != 1 {
		t.Fatalf("WebSocket requests %+v, want 1", wsReqs)
	}
	if q := wsReqs[0]; q.origin != foreign.URL || !q.cookie || q.status != http.StatusForbidden {
		t.Errorf("the foreign page's upgrade: %+v, want Origin %s, the cookie, 403", q, foreign.URL)
	}
	for _, topic := range []string{"auth.q", "auth.c"} {
		if n := srv.Hub().Subscribers(topic); n > 1 {
			t.Errorf("%d subscribers of %s, want at most the page's stream", n, topic)
		}
	}
	res, err := http.Get(heraldURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var text strings.Builder
	bufio.NewReader(res.Body).WriteTo(&text)
	if v := sample([]byte(text.String()), `herald_connections{transport="ws"}`); v > 0 {
		t.Errorf("%v WebSocket connections after the refused upgrade", v)
	}
}

// authPageReport is what a page of TestBrowserAuth reports.
type authPageReport struct {
	Step   string `json:"step"` // query, cookie, ws
	Kind   string `json:"kind"` // open, message, close, problem
	Data   string `json:"data"`
	Code   int    `json:"code"` // a WebSocket close code
	Opened bool   `json:"opened"`
}

// authPages serves the test's pages under /p/ and their reports at
// /report; anything else goes to next (herald's handler) when not nil.
// steps holds what the pages of herald's origin need: the EventSource of
// the query and cookie pages, the token the cookie carries, and the URL of
// the foreign page.
func authPages(t *testing.T, reports chan<- authPageReport, steps map[string]string, next ...http.Handler) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, script string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, authPageHTML, script)
	}
	// An EventSource page: report open and the first message, then go on.
	sse := func(step, source, then string) string {
		return fmt.Sprintf(`const step = %q;
const es = %s;
es.onopen = () => report({kind: "open"});
es.onmessage = (e) => { es.close(); report({kind: "message", data: e.data}).then(() => { location = %q; }); };
es.onerror = () => report({kind: "problem", data: "EventSource error, readyState " + es.readyState});`, step, source, then)
	}
	mux.HandleFunc("GET /p/query", func(w http.ResponseWriter, r *http.Request) {
		page(w, sse("query", steps["query"], "/p/cookie"))
	})
	mux.HandleFunc("GET /p/cookie", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "herald_token", Value: steps["token"],
			Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		page(w, sse("cookie", steps["cookie"], steps["next"]))
	})
	mux.HandleFunc("GET /p/ws", func(w http.ResponseWriter, r *http.Request) {
		u := "ws" + strings.TrimPrefix(r.URL.Query().Get("herald"), "http") + "/v1/ws"
		page(w, fmt.Sprintf(`const step = "ws";
let opened = false;
const ws = new WebSocket(%q);
ws.onopen = () => { opened = true; ws.send(JSON.stringify({op: "subscribe", id: 1, topics: ["auth.c"]})); };
ws.onclose = (e) => report({kind: "close", code: e.code, opened});`, u))
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep authPageReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case reports <- rep:
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done():
		}
	})
	if len(next) > 0 {
		mux.Handle("/", next[0])
	}
	return mux
}

// authPageHTML is a page of TestBrowserAuth around its script; report
// posts to the page's own origin.
const authPageHTML = `<!doctype html>
<meta charset="utf-8">
<title>herald auth test</title>
<script>
"use strict";
function report(r) {
  r.step = step;
  return fetch("/report", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(r)})
    .catch(() => {});
}
window.addEventListener("error", (e) => report({kind: "problem", data: e.message}));
%s
</script>`

// authPageWatch follows the pages' reports.
type authPageWatch struct {
	t       *testing.T
	reports <-chan authPageReport
	chrome  *browserProc
}

// until waits for the report of step and kind, failing on a problem.
func (w *authPageWatch) until(step, kind string) authPageReport {
	w.t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case r := <-w.reports:
			if r.Kind == "problem" {
				w.t.Fatalf("page %s reports a problem: %s", r.Step, r.Data)
			}
			if r.Step == step && r.Kind == kind {
				return r
			}
		case <-w.chrome.exited:
			w.t.Fatalf("chromium exited (%v) while waiting for %s %s\n%s", w.chrome.err, step, kind, w.chrome.logTail())
		case <-timeout.C:
			w.t.Fatalf("timed out waiting for %s %s\n%s", step, kind, w.chrome.logTail())
		}
	}
}

// hijacked is the status recorded for a request whose connection herald
// took over (a stream or an upgrade).
const hijacked = -1

// recorded is what the browser sent with one request to herald, and the
// answer's status.
type recorded struct {
	path   string
	origin string
	cookie bool // the herald_token cookie came along
	token  bool // access_token in the URL
	status int
}

// requestRecorder records the requests to herald's API.
type requestRecorder struct {
	mu   sync.Mutex
	reqs []*recorded
}

func (rr *requestRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := r.Cookie("herald_token")
		rec := &recorded{path: r.URL.Path, origin: r.Header.Get("Origin"), cookie: err == nil,
			token: r.URL.Query().Has("access_token")}
		h.ServeHTTP(&statusWriter{ResponseWriter: w, rec: rec, mu: &rr.mu}, r)
		rr.mu.Lock()
		rr.reqs = append(rr.reqs, rec)
		rr.mu.Unlock()
	})
}

// find returns the requests to path, in the order they ended.
func (rr *requestRecorder) find(path string) []recorded {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	var out []recorded
	for _, r := range rr.reqs {
		if r.path == path {
			out = append(out, *r)
		}
	}
	return out
}

// statusWriter records the status of an answer, and passes a hijack on.
type statusWriter struct {
	http.ResponseWriter
	rec *recorded
	mu  *sync.Mutex
}

func (s *statusWriter) WriteHeader(code int) {
	s.mu.Lock()
	s.rec.status = code
	s.mu.Unlock()
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	if s.rec.status == 0 {
		s.rec.status = http.StatusOK
	}
	s.mu.Unlock()
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.mu.Lock()
	s.rec.status = hijacked
	s.mu.Unlock()
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
