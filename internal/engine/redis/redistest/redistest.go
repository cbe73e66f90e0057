// Package redistest starts real redis-server processes for tests: a
// standalone server, or a Redis Cluster of three masters, each on free
// ports of 127.0.0.1 with no persistence unless asked for. A test that
// needs one skips, loudly, when redis-server is not installed, unless
// HERALD_REQUIRE_INTEGRATION=1 (as CI sets), which makes that a failure.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 10 * time.Second

// Require returns the path of redis-server, skipping t (or failing it under
// HERALD_REQUIRE_INTEGRATION=1) when it is missing.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		if _, err = exec.LookPath("redis-cli"); err == nil {
			return path
		}
	}
	msg := "SKIPPING: redis-server/redis-cli not installed (apt-get install redis-server); the Redis engine is NOT tested"
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// Options configure Start.
type Options struct {
	// AOF keeps data across Restart: appendonly with fsync of every write.
	AOF bool
	// Args are extra redis-server arguments, as "--name", "value" pairs.
	Args []string
}

// Server is one redis-server process. Its methods may be called from the
// test's goroutine only.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd // nil while stopped
}

// Start starts a standalone redis-server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Require(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t, false)}
	s.args = []string{"--bind", "127.0.0.1", "--save", ""}
	if opts.AOF {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	s.args = append(s.args, opts.Args...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

func (s *Server) start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--dir", s.dir}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	logf, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start redis-server: %v", err)
	}
	logf.Close()
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	if err := waitReady(s.Addr()); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		s.Stop()
		s.t.Fatalf("redis-server on %s: %v\n%s", s.Addr(), err, log)
	}
}

// Stop kills the server (SIGKILL: as abrupt as a crash) and waits for it
// to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart stops the server and starts it again on the same port. With
// wipe, its data directory is emptied first, as after a failover to a
// replica that had nothing; without, an AOF server comes back with every
// acknowledged write.
func (s *Server) Restart(wipe bool) {
	s.t.Helper()
	s.Stop()
	if wipe {
		entries, _ := os.ReadDir(s.dir)
		for _, e := range entries {
			if e.Name() != "redis.log" {
				_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
			}
		}
	}
	s.start()
}

// Start starts a stopped server again, keeping its data directory.
func (s *Server) Start() { s.t.Helper(); s.start() }

// CLI runs redis-cli against the server and returns its output.
func (s *Server) CLI(args ...string) string {
	s.t.Helper()
	return cli(s.t, s.Addr(), args...)
}

func cli(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Cluster is a Redis Cluster of three masters and no replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts a three-master Redis Cluster and stops it when the
// test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	c := &Cluster{}
	for i := 0; i < 3; i++ {
		bin := Require(t)
		s := &Server{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t, true)}
		s.args = []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}
		s.start()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cli(t, c.Nodes[0].Addr(), args...)
	deadline := time.Now().Add(startTimeout)
	for _, s := range c.Nodes {
		for !strings.Contains(s.CLI("cluster", "info"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster did not become ok: %s", s.CLI("cluster", "info"))
			}
			time.Sleep(50 * time.Millisecond) // no signal to wait on: poll the server
		}
	}
	return c
}

// URL returns a redis:// URL naming every master as a seed address.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, s := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

// FreePort returns a port of 127.0.0.1 free now; with bus, the port 10000
// above it (Redis Cluster's bus port) is free too.
func FreePort(t testing.TB, bus bool) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !bus {
			ln.Close()
			return port
		}
		if port+10000 > 65535 {
			ln.Close()
			continue
		}
		ln2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		ln.Close()
		if err == nil {
			ln2.Close()
			return port
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// waitReady waits until the server at addr answers PING.
func waitReady(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if last = ping(ctx, addr); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // a starting process gives no signal: poll it
	}
	return fmt.Errorf("not ready after %v: %w", startTimeout, last)
}

func ping(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
