package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
)

// sseNotice is a presence notice as an SSE stream carries it.
type sseNotice struct {
	event  string // join or leave
	client string
	name   string // info.name
}

// presenceStream is an SSE stream on one topic, with presence info, that
// hands its join and leave notices to a channel.
type presenceStream struct {
	cancel  context.CancelFunc
	notices chan sseNotice
	done    chan struct{}
}

func openPresenceStream(t *testing.T, node, topic, name string) *presenceStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	q := url.Values{"topic": {topic}}
	if name != "" {
		q.Set("presence", `{"name":"`+name+`"}`)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+node+"/v1/sse?"+q.Encode(), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("open SSE on %s: %v %v", node, res, err)
	}
	s := &presenceStream{cancel: cancel, notices: make(chan sseNotice, 64), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev == "join" || ev == "leave" {
					var d struct {
						Client string
						Info   struct{ Name string }
					}
					_ = json.Unmarshal([]byte(data), &d)
					s.notices <- sseNotice{ev, d.Client, d.Info.Name}
				}
				ev, data = "", ""
			case strings.HasPrefix(line, "event: "):
				ev = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *presenceStream) close() { s.cancel(); <-s.done }

// next returns the stream's next notice, failing after limit.
func (s *presenceStream) next(t *testing.T, limit time.Duration) sseNotice {
	t.Helper()
	select {
	case n := <-s.notices:
		return n
	case <-time.After(limit):
		t.Fatalf("no presence notice within %v", limit)
		return sseNotice{}
	}
}

// topicPresence returns the names (info.name) present on topic as node
// answers GET /v1/topics/{topic}, sorted, and the count.
func topicPresence(t *testing.T, node, topic string) ([]string, int) {
	t.Helper()
	res, err := http.Get("http://" + node + "/v1/topics/" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info struct {
		Presence *struct {
			Count   int
			Members []struct{ Info struct{ Name string } }
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil || res.StatusCode != http.StatusOK || info.Presence == nil {
		t.Fatalf("GET /v1/topics/%s on %s: %d, %v, %+v", topic, node, res.StatusCode, err, info)
	}
	var names []string
	for _, m := range info.Presence.Members {
		names = append(names, m.Info.Name)
	}
	slices.Sort(names)
	return names, info.Presence.Count
}

// waitPresence polls node's presence of topic until it is want, failing
// after limit.
func waitPresence(t *testing.T, node, topic string, limit time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		names, count := topicPresence(t, node, topic)
		if slices.Equal(names, want) && count == len(want) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("presence of %s on %s after %v: %q (count %d), want %q", topic, node, limit, names, count, want)
		}
		time.Sleep(10 * time.Millisecond) // no signal for Redis's state: poll it
	}
}

// TestRedisNodesPresence runs three herald processes on one Redis with
// presence on and a presence TTL of 1 s: the clients of every node are in
// every node's presence list, SSE streams are told the joins and leaves
// made on other nodes, and the clients of a node killed with SIGKILL
// vanish after the TTL, with their leave told.
func TestRedisNodesPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald and runs three processes; skipped with -short")
	}
	srv := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	bin := filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte("namespaces:\n  room:\n    presence: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*redisNode
	for range 3 {
		n := &redisNode{http: freeAddr(t), grpc: freeAddr(t)}
		n.cmd = exec.Command(bin, "serve", "--config", cfg, "--engine", "redis", "--redis-url", srv.URL(), "--addr", n.http, "--grpc-addr", n.grpc, "--log-level", "warn")
		n.cmd.Env = append(os.Environ(), "HERALD_REDIS_PREFIX=presence", "HERALD_REDIS_PRESENCE_TTL=1s",
			"HERALD_SSE_HEARTBEAT=200ms") // a closed SSE stream is noticed at a write
		n.cmd.Stderr = os.Stderr
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("start herald: %v", err)
		}
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		})
		waitReady(t, n.http)
		nodes = append(nodes, n)
	}
	const topic = "room.lobby"
	// One event creates the topic, so that every node answers GET
	// /v1/topics/{topic}, not only those with subscribers of it.
	res, err := http.Post("http://"+nodes[0].http+"/v1/topics/"+topic+"/events", "application/json", strings.NewReader(`{"hello":1}`))
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %v %v", res, err)
	}
	res.Body.Close()
	obs := openPresenceStream(t, nodes[1].http, topic, "obs")
	if n := obs.next(t, guardPresence); n.event != "join" || n.name != "obs" {
		t.Fatalf("observer's first notice %+v, want its own join", n)
	}
	waitPresence(t, nodes[0].http, topic, guardPresence, "obs")

	ann := openPresenceStream(t, nodes[0].http, topic, "ann")
	took := waitPresence(t, nodes[1].http, topic, time.Second, "ann", "obs")
	t.Logf("ann (node 0) in node 1's presence after %v", took)
	if n := obs.next(t, guardPresence); n.event != "join" || n.name != "ann" {
		t.Fatalf("observer told %+v, want ann's join", n)
	}
	openPresenceStream(t, nodes[2].http, topic, "cy")
	if n := obs.next(t, guardPresence); n.event != "join" || n.name != "cy" {
		t.Fatalf("observer told %+v, want cy's join", n)
	}
	for _, n := range nodes {
		waitPresence(t, n.http, topic, time.Second, "ann", "cy", "obs")
	}

	ann.close()
	if n := obs.next(t, guardPresence); n.event != "leave" || n.name != "ann" {
		t.Fatalf("observer told %+v, want ann's leave", n)
	}
	waitPresence(t, nodes[1].http, topic, time.Second, "cy", "obs")

	if err := nodes[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nodes[2].cmd.Wait()
	killed := time.Now()
	gone := waitPresence(t, nodes[0].http, topic, 3*time.Second, "obs")
	n := obs.next(t, 3*time.Second)
	if n.event != "leave" || n.name != "cy" {
		t.Fatalf("observer told %+v, want cy's leave", n)
	}
	t.Logf("node 2 killed: cy gone from node 0's presence after %v, leave told on node 1 after %v", gone, time.Since(killed))
}

// guardPresence bounds the wait for what should come at once.
const guardPresence = 10 * time.Second
