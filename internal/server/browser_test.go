//go:build linux

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/browsertest"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// TestBrowserSSEReconnect drives a real browser (Debian's headless
// chromium) through a server restart:
//
//  1. Server A listens on a fixed loopback port over a memory engine the
//     test owns. A page served by the test from another origin opens
//     EventSource on A's /v1/sse (CORS) and reports every message it gets
//     to the test by POST /report on its own origin.
//  2. Events 1..5 are published over HTTP and reach the page live.
//  3. A is shut down: its stream ends with "event: error" shutting_down and
//     a short retry: hint, and the connection closes.
//  4. Server B is built on the same engine; events 6..8 are published
//     through B's hub before B listens, so they can only reach the page from
//     history. B then listens on the same port.
//  5. The browser reconnects by itself with Last-Event-ID (the page never
//     passes a cursor, and a stream without one starts at the latest event,
//     so 6..8 arriving proves the header was sent and honoured). Events 9
//     and 10 are published over HTTP, then an event of type "done" that
//     tells the page its list is final (the stream is ordered, so any
//     duplicate would have arrived before it).
//
// The page must end with 1..10 exactly once, in order, each with a
// non-empty Last-Event-ID that decodes to a cursor at that event.
func TestBrowserSSEReconnect(t *testing.T) {
	bin := browserChromium(t)
	addr := browserFreeAddr(t)
	const topic = "browser.e2e"

	eng := memory.New(memory.Options{})
	t.Cleanup(func() { eng.Close() })

	reports := make(chan browserReport, 256)
	page := httptest.NewServer(browserPageHandler(t, "http://"+addr+"/v1/sse?topic="+topic, reports))
	t.Cleanup(page.Close)

	cfg := config.Default()
	cfg.HTTP.Addr = addr
	cfg.GRPC.Enabled = false // not under test; the default port is fixed
	cfg.HTTP.CORSOrigins = []string{page.URL}
	cfg.SSE.Retry = 200 * time.Millisecond // the reconnect hint; keeps the test fast
	cfg.Shutdown.Timeout = 5 * time.Second

	pub := &browserPublisher{t: t, url: "http://" + addr + "/v1/topics/" + topic + "/events"}
	a := browserStartServer(t, cfg, eng)
	chrome := browserStartChromium(t, bin, page.URL+"/")
	w := &browserWatch{t: t, reports: reports, chrome: chrome}

	w.until("the page's EventSource to open", func(r *browserReport) bool { return r.Opens >= 1 })
	var epoch string
	for n := 1; n <= 5; n++ {
		ack := pub.publish(strconv.Itoa(n), "")
		if ack.Offset != uint64(n) {
			t.Fatalf("publish %d: offset %d, want %d", n, ack.Offset, n)
		}
		epoch = ack.Epoch
	}
	w.until("events 1..5 to reach the page", func(r *browserReport) bool { return len(r.Messages) >= 5 })

	a.shutdown()

	b := browserNewServer(t, cfg, eng)
	for n := 6; n <= 8; n++ {
		rec := event.Record{Data: []byte(strconv.Itoa(n)), Encoding: event.EncodingText}
		acks, err := b.srv.Hub().Publish(hub.Internal(context.Background()), topic, []event.Record{rec})
		if err != nil {
			t.Fatalf("publish %d through server B's hub: %v", n, err)
		}
		if got := acks[0]; got.Offset != uint64(n) || got.Epoch.String() != epoch {
			t.Fatalf("publish %d through server B's hub: position %s/%d, want %s/%d", n, got.Epoch, got.Offset, epoch, n)
		}
	}
	b.start()

	w.until("the browser to reconnect and recover 6..8 from history", func(r *browserReport) bool {
		return r.Opens >= 2 && len(r.Messages) >= 8
	})
	for n := 9; n <= 10; n++ {
		if ack := pub.publish(strconv.Itoa(n), ""); ack.Offset != uint64(n) || ack.Epoch != epoch {
			t.Fatalf("publish %d: position %s/%d, want %s/%d", n, ack.Epoch, ack.Offset, epoch, n)
		}
	}
	pub.publish("end of test", "done")
	final := w.until(`the "done" event`, func(r *browserReport) bool { return r.Done })

	var got []string
	for _, m := range final.Messages {
		got = append(got, m.Data)
	}
	want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
	if !slices.Equal(got, want) {
		t.Fatalf("the page received %q, want %q (each exactly once, in order)", got, want)
	}
	for i, m := range final.Messages {
		browserCheckID(t, fmt.Sprintf("message %s", m.Data), m.ID, topic, epoch, uint64(i+1))
	}
	browserCheckID(t, `the "done" event`, final.DoneID, topic, epoch, 11)

	if len(final.Signals) != 1 {
		t.Fatalf("server error frames seen by the page: %q, want exactly one (shutting_down from server A)", final.Signals)
	}
	var sig struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(final.Signals[0]), &sig); err != nil || sig.Code != "shutting_down" || sig.Message == "" {
		t.Errorf("server A's last frame: %s (%v), want an error with code shutting_down and a message", final.Signals[0], err)
	}
	if final.Opens < 2 || final.Drops < 1 {
		t.Errorf("the page saw %d opens and %d dropped connections, want at least 2 and 1", final.Opens, final.Drops)
	}
	t.Logf("page: %d opens, %d drops, %d reports", final.Opens, final.Drops, final.Seq)
}

// browserCheckID checks that id, a message's lastEventId, is a cursor
// positioned at offset of topic in epoch.
func browserCheckID(t *testing.T, what, id, topic, epoch string, offset uint64) {
	t.Helper()
	if id == "" {
		t.Errorf("%s: empty lastEventId, want a cursor", what)
		return
	}
	c, err := cursor.Parse(id)
	if err != nil {
		t.Errorf("%s: lastEventId %q is not a cursor: %v", what, id, err)
		return
	}
	pos, ok := c.Get(topic)
	if !ok || pos.Epoch.String() != epoch || pos.Offset != offset {
		t.Errorf("%s: lastEventId %q holds %s at %v (present %v), want %s/%d", what, id, topic, pos, ok, epoch, offset)
	}
}

// browserChromium returns the chromium binary, or skips the test (fails it
// when HERALD_REQUIRE_INTEGRATION=1, as CI sets).
func browserChromium(t *testing.T) string {
	t.Helper()
	return browsertest.Chromium(t)
}

// browserFreeAddr returns a loopback address with a port free right now.
// The test needs the port before listening because server B must take over
// server A's port for the browser to find it again.
func browserFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// browserServer is a herald server that is shut down exactly once: by the
// test, or at cleanup.
type browserServer struct {
	t    *testing.T
	srv  *server.Server
	up   bool
	down bool
}

func browserNewServer(t *testing.T, cfg config.Config, eng *memory.Engine) *browserServer {
	t.Helper()
	srv, err := server.New(cfg, nil, server.WithEngine(eng))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	s := &browserServer{t: t, srv: srv}
	t.Cleanup(func() {
		if s.up && !s.down {
			s.shutdown()
		}
	})
	return s
}

func browserStartServer(t *testing.T, cfg config.Config, eng *memory.Engine) *browserServer {
	t.Helper()
	s := browserNewServer(t, cfg, eng)
	s.start()
	return s
}

func (s *browserServer) start() {
	s.t.Helper()
	if err := s.srv.Start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
	s.up = true
}

func (s *browserServer) shutdown() {
	s.t.Helper()
	s.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.t.Errorf("shutdown server on %s: %v", s.srv.HTTPAddr(), err)
	}
}

// browserPublisher publishes text events over HTTP. Keep-alives are off so
// that no pooled connection to a stopped server is reused.
type browserPublisher struct {
	t   *testing.T
	url string
}

type browserAck struct {
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Cursor    string `json:"cursor"`
	Duplicate bool   `json:"duplicate"`
}

var browserHTTP = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func (p *browserPublisher) publish(data, typ string) browserAck {
	p.t.Helper()
	u := p.url
	if typ != "" {
		u += "?type=" + typ
	}
	resp, err := browserHTTP.Post(u, "text/plain; charset=utf-8", strings.NewReader(data))
	if err != nil {
		p.t.Fatalf("publish %q: %v", data, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		p.t.Fatalf("publish %q: %s: %s", data, resp.Status, body)
	}
	var ack browserAck
	if err := json.Unmarshal(body, &ack); err != nil || ack.Cursor == "" {
		p.t.Fatalf("publish %q: answer %s: %v", data, body, err)
	}
	return ack
}

// browserReport is the page's whole state, posted after every change
// (testdata/browser/page.html).
type browserReport struct {
	Seq      int    `json:"seq"`
	Kind     string `json:"kind"`
	Opens    int    `json:"opens"`
	Drops    int    `json:"drops"`
	Messages []struct {
		Data string `json:"data"`
		ID   string `json:"id"`
	} `json:"messages"`
	Signals    []string `json:"signals"`
	Done       bool     `json:"done"`
	DoneID     string   `json:"doneId"`
	ReadyState int      `json:"readyState"`
	Problems   []string `json:"problems"`
}

// browserPageHandler serves the test page (GET /) and takes its reports
// (POST /report), passing them to reports.
func browserPageHandler(t *testing.T, sseURL string, reports chan<- browserReport) http.Handler {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "browser", "page.html"))
	if err != nil {
		t.Fatalf("parse the test page: %v", err)
	}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, struct{ SSEURL string }{sseURL}); err != nil {
		t.Fatalf("render the test page: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(page.Bytes())
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep browserReport
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

// browserWatch follows the page's reports.
type browserWatch struct {
	t       *testing.T
	reports <-chan browserReport
	chrome  *browserProc
	last    *browserReport
}

// until waits for a report that satisfies ok and returns it. The timeout
// only guards against a hang; a passing run takes a fraction of it.
func (w *browserWatch) until(what string, ok func(*browserReport) bool) *browserReport {
	w.t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for w.last == nil || !ok(w.last) {
		select {
		case r := <-w.reports:
			want := 1
			if w.last != nil {
				want = w.last.Seq + 1
			}
			if r.Seq != want {
				w.t.Fatalf("page report %d arrived, want %d: reports are sent one at a time", r.Seq, want)
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

// browserProc is a running chromium. Its processes share one process group,
// led by the browser process.
type browserProc struct {
	cmd     *exec.Cmd
	home    string // HOME of chromium's processes, a temporary directory
	logPath string
	exited  chan struct{} // closed when cmd.Wait returns
	err     error         // cmd.Wait's result, set before exited is closed
}

// browserStartChromium starts headless chromium on url and stops it, with
// every process it started, at cleanup.
//
// The flags are those known to work on this project's machines
// (--disable-background-networking and friends keep chromium off the
// closed network; --no-sandbox because tests run as root).
// HOME points into a temporary directory so that nothing is written to the
// real home (the crash handler keeps its database there), and so that the
// cleanup can find the crash handlers, which leave the process group.
// (--disable-crashpad-for-testing would keep them from starting, but with it
// this chromium's network service crashes at start: "FD ownership
// violation".) Plain --headless (the new headless mode in
// current Chromium) keeps running until it is told to stop.
func browserStartChromium(t *testing.T, bin, url string) *browserProc {
	t.Helper()
	home := t.TempDir()
	profile := t.TempDir()
	p := &browserProc{home: home, logPath: filepath.Join(home, "chromium.log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor

	// The context is a last resort: the cleanup below stops chromium first.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, bin,
		"--headless",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--user-data-dir="+profile,
		url,
	)
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		defer cancel()
		p.stop(t)
	})
	return p
}

// stop ends chromium and makes sure none of its processes is left. SIGTERM
// to the browser process alone lets it shut its helpers down and reap them;
// SIGKILL is the fallback.
func (p *browserProc) stop(t *testing.T) {
	t.Helper()
	pgid := p.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("chromium did not exit within 10s of SIGTERM; killing its process group\n%s", p.logTail())
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := browserLeftovers(pgid, p.home)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("chromium's processes %v outlived it by 10s; killed them", left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browserLeftovers lists the processes chromium started that have not
// exited: those of its process group, and the crash handlers, which run in
// sessions of their own but name the test's home directory on their command
// line. Zombies waiting for init to reap them have exited and do not count.
func browserLeftovers(pgid int, home string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var alive []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone already
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			alive = append(alive, pid)
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(home)) {
			alive = append(alive, pid)
		}
	}
	return alive
}

// logTail returns the end of chromium's output, for failure messages.
func (p *browserProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "chromium log: " + err.Error()
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "chromium log (tail):\n" + string(b)
}
