package web_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/web"
)

// requireOrSkip skips the test with a loud message, or fails it when
// HERALD_REQUIRE_INTEGRATION=1 (as CI sets).
func requireOrSkip(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes this a failure)")
	}
	t.Skip(msg)
}

// TestClientUnitTests runs herald.js's unit tests under Node's built-in
// test runner, so that `go test ./...` (and CI) runs them.
func TestClientUnitTests(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		requireOrSkip(t, "SKIPPING THE herald.js UNIT TESTS: node not found: install with apt-get install nodejs")
	}
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "client/test/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test client/test/: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("fail 0")) {
		t.Fatalf("node --test client/test/: no summary with 0 failures\n%s", out)
	}
	t.Logf("node --test client/test/:\n%s", lastLines(out, 9))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestClientSize measures herald.js minified (esbuild, pinned in
// test/node) and gzipped (level 9): the budget is 8 KiB.
func TestClientSize(t *testing.T) {
	esbuild := filepath.Join("..", "test", "node", "node_modules", ".bin", "esbuild")
	if _, err := os.Stat(esbuild); err != nil {
		requireOrSkip(t, "SKIPPING THE herald.js SIZE CHECK: esbuild not installed: run npm ci in test/node")
	}
	out, err := exec.Command(esbuild, "--minify", "--format=esm", "client/herald.js").Output()
	if err != nil {
		t.Fatalf("esbuild --minify client/herald.js: %v", err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(out)
	zw.Close()
	const budget = 8 << 10
	t.Logf("herald.js: %d bytes, %d minified, %d minified and gzipped (budget %d)", len(web.Client()), len(out), gz.Len(), budget)
	if gz.Len() > budget {
		t.Errorf("herald.js minified and gzipped is %d bytes, over the budget of %d", gz.Len(), budget)
	}
}

// TestStatic checks what the browser side's files are served with: their
// content type, the cache headers, ETag revalidation, extra headers, and
// index.html at the prefix.
func TestStatic(t *testing.T) {
	client := web.NewStatic("client", "/v1/client/", "public, max-age=600", map[string]string{"Access-Control-Allow-Origin": "*"})
	ui := web.NewStatic("ui", "/ui/", "no-cache", map[string]string{"Content-Security-Policy": "default-src 'self'"})
	for _, tt := range []struct {
		h          *web.Static
		path       string
		ctype      string
		cache      string
		header     string
		bodyPrefix string
	}{
		{client, "/v1/client/herald.js", "text/javascript; charset=utf-8", "public, max-age=600", "Access-Control-Allow-Origin", "// herald.js"},
		{client, "/v1/client/herald.d.ts", "text/plain; charset=utf-8", "public, max-age=600", "Access-Control-Allow-Origin", "//"},
		{ui, "/ui/", "text/html; charset=utf-8", "no-cache", "Content-Security-Policy", "<!doctype html>"},
		{ui, "/ui/index.html", "text/html; charset=utf-8", "no-cache", "Content-Security-Policy", "<!doctype html>"},
		{ui, "/ui/app.js", "text/javascript; charset=utf-8", "no-cache", "Content-Security-Policy", "//"},
		{ui, "/ui/style.css", "text/css; charset=utf-8", "no-cache", "Content-Security-Policy", "/*"},
	} {
		if !tt.h.Has(tt.path) {
			t.Errorf("%s is not served", tt.path)
			continue
		}
		rec := httptest.NewRecorder()
		tt.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		res := rec.Result()
		etag := res.Header.Get("ETag")
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != tt.ctype || res.Header.Get("Cache-Control") != tt.cache ||
			res.Header.Get(tt.header) == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" || len(etag) < 10 ||
			!strings.HasPrefix(rec.Body.String(), tt.bodyPrefix) {
			t.Errorf("GET %s: %d %v %.40q", tt.path, res.StatusCode, res.Header, rec.Body.String())
			continue
		}
		req := httptest.NewRequest(http.MethodGet, tt.path, nil)
		req.Header.Set("If-None-Match", `"other", `+etag)
		rec = httptest.NewRecorder()
		tt.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("GET %s with If-None-Match: %d, %d bytes, want 304 and none", tt.path, rec.Code, rec.Body.Len())
		}
	}
	if client.Has("/v1/client/test/fakes.mjs") || client.Has("/v1/client/") {
		t.Error("the client's tests or an index are served")
	}
}
