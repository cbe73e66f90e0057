// Package browsertest drives a real headless chromium (Debian's
// /usr/bin/chromium) over the DevTools protocol with chromedp, for the
// tests of herald.js, the dashboard and the examples
// (docs/decisions/0012-browser-client.md).
//
// A test starts one Browser, opens Pages (tabs) in it, evaluates
// JavaScript in them (awaiting promises, so a test waits for a condition
// inside the page rather than sleeping), reads their console, and saves
// screenshots under its temporary directory. Without chromium the test is
// skipped with a loud message; with HERALD_REQUIRE_INTEGRATION=1 it fails.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
)

// Chromium returns the chromium binary, or skips the test (fails it when
// HERALD_REQUIRE_INTEGRATION=1, as CI sets).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "SKIPPING THE BROWSER TEST: chromium not found: install with apt-get install chromium"
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes a missing chromium a failure)")
	}
	t.Skip(msg)
	return ""
}

// Browser is a headless chromium. It is stopped, with every process it
// started, at the test's cleanup.
type Browser struct {
	t    testing.TB
	ctx  context.Context // the browser's chromedp context
	home string          // HOME and user data of its processes: a temporary directory
}

// Start starts chromium. The flags are those of the project's other
// browser tests (internal/server/browser_test.go): --no-sandbox because
// tests run as root, no background networking on a closed network.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin := Chromium(t)
	home := t.TempDir()
	profile := filepath.Join(home, "profile")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Env("HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache")),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{t: t, ctx: ctx, home: home}
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		acancel() // waits for the browser process
		killLeftovers(t, home)
	})
	return b
}

// killLeftovers ends processes chromium started that outlived it (its
// crash handler runs in a session of its own), found by the temporary
// home on their command line.
func killLeftovers(t testing.TB, home string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := processesNaming(home)
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			t.Errorf("chromium's processes %v outlived it; killed them", left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesNaming lists live processes whose command line contains s.
func processesNaming(s string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
				continue // exited, waiting to be reaped
			}
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Page is one tab of a Browser.
type Page struct {
	t      testing.TB
	ctx    context.Context
	cancel context.CancelFunc
	name   string
	perfOn bool // the Performance domain is enabled; used by the test's goroutine only

	mu      sync.Mutex // guards console
	console []chromedp.ConsoleMessage
	done    chan struct{} // closed when the console reader ends
}

// Open opens url in a new tab, for the test t (the browser's or a
// subtest of it), which closes the tab at its end. name labels the tab in
// failures and screenshots.
func (b *Browser) Open(t testing.TB, name, url string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{t: t, ctx: ctx, cancel: cancel, name: name, done: make(chan struct{})}
	msgs := chromedp.Console(ctx) // subscribed now: nothing of the load is missed
	go func() {
		defer close(p.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, m)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	if err := chromedp.Do(p.ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open %s: %v", name, url, err)
	}
	return p
}

// Context is the tab's chromedp context, for actions this package does
// not wrap (clicks, typing).
func (p *Page) Context() context.Context { return p.ctx }

// Do runs chromedp actions in the tab, failing the test on an error.
func (p *Page) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v\n%s", p.name, what, err, p.ConsoleText())
	}
}

// Eval evaluates expr in the page, awaiting it when it is a promise, and
// decodes its value into T. It fails the test on an exception or after
// timeout (a guard: a passing run takes a fraction of it).
func Eval[T any](p *Page, timeout time.Duration, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %.300s: %v\n%s", p.name, expr, err, p.ConsoleText())
	}
	return v
}

// Until evaluates cond (a JavaScript expression) in the page until it is
// truthy, waiting inside the page between tries, and fails the test if
// it is not within timeout.
func (p *Page) Until(what string, timeout time.Duration, cond string) {
	p.t.Helper()
	js := fmt.Sprintf(`new Promise((resolve) => {
		const end = Date.now() + %d
		const check = () => {
			let ok = false, err = ''
			try { ok = !!(%s) } catch (e) { err = String(e) }
			if (ok || Date.now() > end) resolve({ok, err}); else setTimeout(check, 10)
		}
		check()
	})`, timeout.Milliseconds(), cond)
	r := Eval[struct {
		OK  bool   `json:"ok"`
		Err string `json:"err"`
	}](p, timeout+10*time.Second, js)
	if !r.OK {
		p.t.Fatalf("%s: timed out after %v waiting for %s (%s) %s\n%s", p.name, timeout, what, cond, r.Err, p.ConsoleText())
	}
}

// Screenshot saves a PNG of the whole page under the test's temporary
// directory and returns its path.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(p.t.TempDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("%s: screenshot %s", p.name, path)
	return path
}

// Console returns what the page wrote to its console so far: console API
// calls, uncaught exceptions and the browser's log (failed loads, CSP
// violations).
func (p *Page) Console() []chromedp.ConsoleMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), p.console...)
}

// Errors returns the console's errors and exceptions.
func (p *Page) Errors() []string {
	var out []string
	for _, m := range p.Console() {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, fmt.Sprintf("%s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
		}
	}
	return out
}

// ConsoleText is the console as text, for failure messages.
func (p *Page) ConsoleText() string {
	var b strings.Builder
	for _, m := range p.Console() {
		fmt.Fprintf(&b, "console %s: %s\n", m.Type, m.Text)
	}
	return b.String()
}

// MainThread returns the CPU time the tab's main thread has spent on
// tasks so far (the DevTools Performance domain's TaskDuration, measured
// in thread ticks: CPU time, not wall time, so a loaded machine does not
// inflate it). The difference of two calls is the main-thread cost of
// what happened between them.
func (p *Page) MainThread() time.Duration {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	m, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (map[string]float64, error) {
		if !p.perfOn {
			if _, err := cdp.Call(ctx, t, performance.Enable, performance.EnableParams{TimeDomain: performance.EnableTimeDomainThreadTicks}); err != nil {
				return nil, err
			}
			p.perfOn = true
		}
		r, err := cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, x := range r.Metrics {
			out[x.Name] = x.Value
		}
		return out, nil
	})
	if err != nil {
		p.t.Fatalf("%s: performance metrics: %v", p.name, err)
	}
	return time.Duration(m["TaskDuration"] * float64(time.Second))
}

// Close closes the tab (its connections end as when a user closes it).
func (p *Page) Close() {
	p.cancel()
	<-p.done
}
