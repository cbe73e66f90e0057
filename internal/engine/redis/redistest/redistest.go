// Package redistest starts real redis-server processes for tests: a
// standalone server, a Redis Cluster of three masters, or a master with a
// replica watched by Sentinels, each on free ports of 127.0.0.1 with no
// persistence unless asked for. A test that
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
	conf string // a configuration file, given first (Sentinel)
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
	if s.conf != "" {
		args = append([]string{s.conf}, args...)
	}
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

// Owner returns the master that serves slot.
func (c *Cluster) Owner(slot int) *Server {
	t := c.Nodes[0].t
	t.Helper()
	for _, line := range strings.Split(c.Nodes[0].CLI("cluster", "nodes"), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && l <= slot && slot <= h {
				return c.node(f[1])
			}
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return nil
}

// node returns the node whose address (as CLUSTER NODES shows it,
// host:port@bus) is addr.
func (c *Cluster) node(addr string) *Server {
	addr, _, _ = strings.Cut(addr, "@")
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	c.Nodes[0].t.Fatalf("no node at %s", addr)
	return nil
}

// MigrateSlot moves slot to the master to as redis-cli --cluster reshard
// does, one step at a time: it marks the slot importing on to and
// migrating on its owner, moves the slot's keys with MIGRATE, and gives the
// slot to to on every master. It calls pause after marking the slot and
// after moving the keys, so that a test can act while the slot is between
// nodes.
func (c *Cluster) MigrateSlot(slot int, to *Server, pause func(phase string)) {
	t := c.Nodes[0].t
	t.Helper()
	from := c.Owner(slot)
	if from == to {
		t.Fatalf("slot %d is already on %s", slot, to.Addr())
	}
	sl := strconv.Itoa(slot)
	fromID, toID := from.CLI("cluster", "myid"), to.CLI("cluster", "myid")
	to.CLI("cluster", "setslot", sl, "importing", fromID)
	from.CLI("cluster", "setslot", sl, "migrating", toID)
	pause("migrating")
	for {
		keys := strings.Fields(from.CLI("cluster", "getkeysinslot", sl, "100"))
		if len(keys) == 0 {
			break
		}
		// One MIGRATE for all of them: keys used together (a topic's) are
		// never split between the nodes for long.
		if out := from.CLI(append([]string{"migrate", "127.0.0.1", strconv.Itoa(to.port), "", "0", "5000", "keys"}, keys...)...); out != "OK" && out != "NOKEY" {
			t.Fatalf("MIGRATE of slot %d: %s", slot, out)
		}
	}
	pause("keys moved")
	to.CLI("cluster", "setslot", sl, "node", toID)
	from.CLI("cluster", "setslot", sl, "node", toID)
	for _, s := range c.Nodes {
		if s != to && s != from {
			s.CLI("cluster", "setslot", sl, "node", toID)
		}
	}
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

// Sentinel is a master and one replica watched by Sentinels, as a
// Sentinel deployment of herald's Redis runs. Sentinels notice a master
// down after one second.
type Sentinel struct {
	// Name is the master set's name.
	Name string
	// Servers are the master and the replica, in the order started: which
	// one is master changes with failovers (see Master).
	Servers   []*Server
	Sentinels []*Server
}

// StartSentinel starts a master, a replica of it and n Sentinels
// (quorum: a majority of them), waits until the Sentinels know the
// replica, and stops them all when the test ends.
func StartSentinel(t testing.TB, n int) *Sentinel {
	t.Helper()
	quick := []string{"--repl-diskless-sync-delay", "0"} // a replica syncs at once, not after 5 s
	master := Start(t, Options{Args: quick})
	replica := Start(t, Options{Args: append(quick, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))})
	sn := &Sentinel{Name: "herald", Servers: []*Server{master, replica}}
	for i := 0; i < n; i++ {
		s := &Server{t: t, bin: master.bin, dir: t.TempDir(), port: FreePort(t, false), args: []string{"--sentinel"}}
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		conf := fmt.Sprintf("bind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d %d\n"+
			"sentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n", sn.Name, master.port, n/2+1)
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.start()
		t.Cleanup(s.Stop)
		sn.Sentinels = append(sn.Sentinels, s)
	}
	sn.waitReplica(replica)
	return sn
}

// URL returns the redis:// URL of the master set, naming every Sentinel.
func (sn *Sentinel) URL() string {
	u := "redis://" + sn.Sentinels[0].Addr() + "?master_set=" + sn.Name
	for _, s := range sn.Sentinels[1:] {
		u += "&addr=" + s.Addr()
	}
	return u
}

// Master returns the server the Sentinels name master now.
func (sn *Sentinel) Master() *Server {
	sn.Sentinels[0].t.Helper()
	f := strings.Fields(sn.Sentinels[0].CLI("sentinel", "get-master-addr-by-name", sn.Name))
	for _, s := range sn.Servers {
		if len(f) == 2 && f[1] == strconv.Itoa(s.port) {
			return s
		}
	}
	sn.Sentinels[0].t.Fatalf("sentinel names master %q: not one of the servers", f)
	return nil
}

// Failover makes the Sentinels promote the replica, once it has every
// write of the master (a failover that loses nothing), waits until every
// Sentinel names it master and it takes writes, makes the old master its
// replica, and returns the new master.
func (sn *Sentinel) Failover() *Server {
	t := sn.Sentinels[0].t
	t.Helper()
	old := sn.Master()
	next := sn.Servers[0]
	if next == old {
		next = sn.Servers[1]
	}
	deadline := time.Now().Add(startTimeout)
	for replOffset(t, old, "master_repl_offset") != replOffset(t, next, "slave_repl_offset") {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not catch up with the master: %s", next.CLI("info", "replication"))
		}
		time.Sleep(20 * time.Millisecond) // replication gives no signal: poll
	}
	sn.Sentinels[0].CLI("sentinel", "failover", sn.Name)
	for _, s := range sn.Sentinels {
		for !strings.HasSuffix(s.CLI("sentinel", "get-master-addr-by-name", sn.Name), strconv.Itoa(next.port)) ||
			!strings.Contains(next.CLI("info", "replication"), "role:master") {
			if time.Now().After(deadline) {
				t.Fatalf("failover to %s did not complete: %s", next.Addr(), s.CLI("sentinel", "master", sn.Name))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Sentinel turns the old master into a replica of the new one only
	// when it next polls it (up to 10 s); do it now, as an operator would,
	// so that the next failover has a replica.
	old.CLI("replicaof", "127.0.0.1", strconv.Itoa(next.port))
	sn.waitReplica(old)
	return next
}

// waitReplica waits until every Sentinel knows r as a replica in sync.
func (sn *Sentinel) waitReplica(r *Server) {
	t := sn.Sentinels[0].t
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for _, s := range sn.Sentinels {
		for {
			out := s.CLI("sentinel", "replicas", sn.Name)
			if strings.Contains(out, strconv.Itoa(r.port)) && strings.Contains(r.CLI("info", "replication"), "master_link_status:up") &&
				!strings.Contains(out, "s_down") && !strings.Contains(out, "disconnected") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sentinel %s does not know replica %s: %s", s.Addr(), r.Addr(), out)
			}
			time.Sleep(50 * time.Millisecond) // Sentinel polls its servers; nothing to wait on
		}
	}
}

// replOffset reads an offset field of INFO replication.
func replOffset(t testing.TB, s *Server, field string) string {
	t.Helper()
	for _, line := range strings.Split(s.CLI("info", "replication"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
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
