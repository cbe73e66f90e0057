//go:build linux

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestBrowserWebSocket drives a page in headless chromium that speaks the
// WebSocket protocol with the browser's own WebSocket
// (testdata/browser/ws.html):
//
//  1. The page (another origin, allowed by http.cors_origins) connects to
//     server A, gets an error frame for a bad subscribe, subscribes, and
//     publishes 1..5 over its WebSocket; all five come back as events.
//  2. A shuts down: the page sees close code 1001 and reconnects by
//     itself with backoff.
//  3. Server B, on the same engine and port, has 6..8 in its history
//     before it listens; the page resumes with the cursor of the last
//     event it got, so 6..8 can only come from that cursor.
//  4. The test lets the page finish: it publishes 9, 10 and "done" over
//     its WebSocket. It must have every event 1..10 exactly once, in
//     order, each with a cursor at its own offset.
func TestBrowserWebSocket(t *testing.T) {
	bin := browserChromium(t)
	addr := browserFreeAddr(t)
	const topic = "browser.ws"

	eng := memory.New(memory.Options{})
	t.Cleanup(func() { eng.Close() })
	reports := make(chan wsPageReport, 256)
	var release atomic.Bool
	page := httptest.NewServer(wsPageHandler(t, "ws://"+addr+"/v1/ws", topic, reports, &release))
	t.Cleanup(page.Close)

	cfg := config.Default()
	cfg.HTTP.Addr = addr
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.HTTP.CORSOrigins = []string{page.URL}
	cfg.Shutdown.Timeout = 5 * time.Second

	a := browserStartServer(t, cfg, eng)
	chrome := browserStartChromium(t, bin, page.URL+"/")
	w := &wsPageWatch{t: t, reports: reports, chrome: chrome}

	first := w.until("events 1..5 published over the WebSocket", func(r *wsPageReport) bool {
		return r.Phase == "published" && r.Acks >= 5
	})
	if len(first.Errors) != 1 || first.Errors[0].Code != "bad_topic" || first.Errors[0].ID != 1 {
		t.Errorf("error frames %+v, want one bad_topic for command 1", first.Errors)
	}
	a.shutdown()
	w.until("the close", func(r *wsPageReport) bool { return len(r.Closes) >= 1 })

	b := browserNewServer(t, cfg, eng)
	for n := 6; n <= 8; n++ {
		rec := event.Record{Data: []byte(strconv.Itoa(n)), Encoding: event.EncodingText}
		if _, err := b.srv.Hub().Publish(hub.Internal(context.Background()), topic, []event.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	b.start()
	w.until("the page to reconnect and recover 6..8", func(r *wsPageReport) bool { return len(r.Events) >= 8 })
	release.Store(true)
	final := w.until("the done event", func(r *wsPageReport) bool { return r.Phase == "done" })

	var got []string
	for i, e := range final.Events {
		if e.Type == "done" {
			continue
		}
		got = append(got, e.Data)
		c, err := cursor.Parse(e.Cursor)
		pos, ok := c.Get(topic)
		if err != nil || !ok || pos.Offset != uint64(i+1) || e.Offset != uint64(i+1) {
			t.Errorf("event %d: offset %d, cursor %q holds %v (%v)", i, e.Offset, e.Cursor, pos, err)
		}
	}
	want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
	if !slices.Equal(got, want) {
		t.Fatalf("the page received %q, want %q (each exactly once, in order)", got, want)
	}
	if final.Closes[0].Code != 1001 || !strings.HasPrefix(final.Closes[0].Reason, "shutting_down: ") {
		t.Errorf("first close %+v, want 1001 shutting_down", final.Closes[0])
	}
	if final.Opens < 2 {
		t.Errorf("%d opens, want at least 2", final.Opens)
	}
	t.Logf("page: %d opens, closes %+v, %d reports", final.Opens, final.Closes, final.Seq)
}

// wsPageReport is the page's whole state (testdata/browser/ws.html).
type wsPageReport struct {
	Seq    int    `json:"seq"`
	Kind   string `json:"kind"`
	Opens  int    `json:"opens"`
	Closes []struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"closes"`
	Events []struct {
		Data   string `json:"data"`
		Offset uint64 `json:"offset"`
		Cursor string `json:"cursor"`
		Type   string `json:"type"`
	} `json:"events"`
	Acks   int `json:"acks"`
	Errors []struct {
		ID   int    `json:"id"`
		Code string `json:"code"`
	} `json:"errors"`
	Phase    string   `json:"phase"`
	Client   string   `json:"client"`
	Problems []string `json:"problems"`
}

// wsPageHandler serves the page (GET /), takes its reports (POST /report)
// and tells it when to finish (GET /go: 200 once release is set).
func wsPageHandler(t *testing.T, wsURL, topic string, reports chan<- wsPageReport, release *atomic.Bool) http.Handler {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "browser", "ws.html"))
	if err != nil {
		t.Fatalf("parse the test page: %v", err)
	}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, struct{ WSURL, Topic string }{wsURL, topic}); err != nil {
		t.Fatalf("render the test page: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(page.Bytes())
	})
	mux.HandleFunc("GET /go", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !release.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Write([]byte("go"))
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep wsPageReport
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
	return mux
}

// wsPageWatch follows the page's reports.
type wsPageWatch struct {
	t       *testing.T
	reports <-chan wsPageReport
	chrome  *browserProc
	last    *wsPageReport
}

// until waits for a report that satisfies ok and returns it.
func (w *wsPageWatch) until(what string, ok func(*wsPageReport) bool) *wsPageReport {
	w.t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for w.last == nil || !ok(w.last) {
		select {
		case r := <-w.reports:
			if w.last != nil && r.Seq != w.last.Seq+1 {
				w.t.Fatalf("page report %d arrived after %d: reports are sent one at a time", r.Seq, w.last.Seq)
			}
			if len(r.Problems) > 0 {
				w.t.Fatalf("the page reports problems: %q", r.Problems)
			}
			w.last = &r
		case <-w.chrome.exited:
			w.t.Fatalf("chromium exited (%v) while waiting for %s\n%s", w.chrome.err, what, w.chrome.logTail())
		case <-timeout.C:
			w.t.Fatalf("timed out waiting for %s; the page's last report: %+v\n%s", what, w.last, w.chrome.logTail())
		}
	}
	return w.last
}
