package server_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// requireHAProxy returns the haproxy binary's path, or skips the test
// (fails it with HERALD_REQUIRE_INTEGRATION=1) when there is none.
func requireHAProxy(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err == nil {
		return path
	}
	msg := "SKIPPING: haproxy not installed (apt-get install haproxy); the PROXY protocol is NOT tested against a real load balancer"
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// TestProxyProtocolThroughHAProxy puts a real HAProxy (TCP mode,
// send-proxy-v2, from the trusted 127.0.0.2) in front of herald, with
// health checks that send the header too (check-send-proxy): clients at
// 127.0.0.3 and 127.0.0.4 are counted each by their own address (a third
// connection of one is refused naming it, the other is served), requests
// carry the client's address, and no health check is rejected.
func TestProxyProtocolThroughHAProxy(t *testing.T) {
	bin := requireHAProxy(t)
	rec := &addrAuth{}
	ts := startServerWith(t, []server.Option{server.WithAccess(rec, allowAll{})}, noExempt, withProxy, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 2
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind %s
  default_backend be
backend be
  source %s
  server herald %s send-proxy-v2 check check-send-proxy inter 100ms
`, front, proxyAddr, ts.addr)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", path, "-db")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	waitFor(t, "haproxy listening", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", front)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	health := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	publish := "POST /v1/topics/ha.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
	for range 2 { // client A's two connections: its cap
		if r, _ := proxyDo(t, "127.0.0.3", front, nil, health); r.status != http.StatusOK {
			t.Fatalf("client A through haproxy: %d %s", r.status, r.body)
		}
	}
	r, _ := proxyDo(t, "127.0.0.3", front, nil, health)
	wantLimit(t, r, http.StatusTooManyRequests, "limit_reached", "limits.max_connections_per_ip", 1)
	if !strings.Contains(string(r.body), "127.0.0.3") {
		t.Errorf("refusal %s does not name the client 127.0.0.3", r.body)
	}
	if r, _ := proxyDo(t, "127.0.0.4", front, nil, publish); r.status != http.StatusCreated {
		t.Fatalf("client B's publish through haproxy: %d %s", r.status, r.body)
	}
	// (haproxy's health checks send a LOCAL header: those connections
	// keep the proxy's own address, as the specification says.)
	if !rec.saw("rest", "127.0.0.4") || !rec.saw("rest", "127.0.0.3") {
		t.Errorf("identities carried %q, want the clients' addresses 127.0.0.3 and 127.0.0.4", rec.seen)
	}
	time.Sleep(500 * time.Millisecond) // a few health checks
	for _, reason := range []string{"malformed", "timeout", "closed"} {
		if got := ts.metric(`herald_proxy_protocol_rejected_total{listener="http",reason="` + reason + `"}`); got != 0 {
			t.Errorf("%v connections rejected (%s): haproxy's health checks or clients came without a header", got, reason)
		}
	}
}
