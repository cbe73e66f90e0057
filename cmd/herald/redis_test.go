package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
)

// redisNode is one `herald serve --engine redis` process.
type redisNode struct {
	cmd        *exec.Cmd
	http, grpc string
}

func startRedisNode(t *testing.T, bin, redisURL string) *redisNode {
	t.Helper()
	n := &redisNode{http: freeAddr(t), grpc: freeAddr(t)}
	n.cmd = exec.Command(bin, "serve", "--engine", "redis", "--redis-url", redisURL, "--addr", n.http, "--grpc-addr", n.grpc, "--log-level", "warn")
	n.cmd.Env = append(os.Environ(), "HERALD_REDIS_PREFIX=nodes")
	n.cmd.Stderr = os.Stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start herald: %v", err)
	}
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		n.cmd.Wait()
	})
	waitReady(t, n.http)
	return n
}

// clientOf returns a client of node n for transport tr.
func (n *redisNode) client(t *testing.T, tr client.Transport) *client.Client {
	t.Helper()
	var c *client.Client
	var err error
	if tr == client.TransportGRPC {
		c, err = client.NewGRPC(n.grpc)
	} else {
		c, err = client.New("http://" + n.http)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// received is one event as a consumer saw it.
type received struct {
	offset uint64
	epoch  string
	id     string
}

// consumer follows the test's topics on one node over one transport, and
// moves to another node, with its cursor, when told to.
type consumer struct {
	name   string
	tr     client.Transport
	mu     sync.Mutex
	got    map[string][]received
	gaps   []client.Gap
	cursor string
	move   chan *redisNode // a node to continue on
}

func (c *consumer) run(t *testing.T, ctx context.Context, n *redisNode, topics []string, ready chan<- struct{}) {
	first := true
	for {
		cl := n.client(t, c.tr)
		opts := []client.SubscribeOption{client.WithTransport(c.tr), client.WithFrom(client.FromEarliest), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}
		c.mu.Lock()
		if c.cursor != "" {
			opts = append(opts, client.WithCursor(c.cursor))
		}
		c.mu.Unlock()
		sctx, cancel := context.WithCancel(ctx)
		sub, err := cl.Subscribe(sctx, topics, opts...)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return
			}
			t.Errorf("%s: subscribe: %v", c.name, err)
			return
		}
		if first {
			ready <- struct{}{}
			first = false
		}
		moved := make(chan struct{})
		var next *redisNode
		go func() {
			select {
			case next = <-c.move:
				cancel()
			case <-sctx.Done():
			}
			close(moved)
		}()
		for {
			m, err := sub.Next(sctx)
			if err != nil {
				break
			}
			if m.Err != nil {
				continue // reconnecting on its own
			}
			c.mu.Lock()
			if m.Gap != nil {
				c.gaps = append(c.gaps, *m.Gap)
			}
			if ev := m.Event; ev != nil {
				var d struct{ ID string }
				_ = json.Unmarshal(ev.Data, &d)
				c.got[ev.Topic] = append(c.got[ev.Topic], received{ev.Offset, ev.Epoch, d.ID})
			}
			if m.Cursor != "" {
				c.cursor = m.Cursor
			}
			c.mu.Unlock()
		}
		sub.Close()
		cancel()
		<-moved
		if next == nil {
			return // the test is over
		}
		n = next
	}
}

func (c *consumer) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got[topic])
}

// TestRedisNodes is issue 19's multi-node check: three herald processes on
// one Redis, consumers on every node over SSE, long poll, WebSocket and
// gRPC, publishers on every node. Midway one node is killed with SIGKILL;
// its consumers continue on another node from their cursors. Every
// consumer must end with every event of every topic once, in offset order,
// with no gap.
func TestRedisNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald and runs three processes; skipped with -short")
	}
	srv := redistest.Start(t, redistest.Options{})
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	nodes := []*redisNode{startRedisNode(t, bin, srv.URL()), startRedisNode(t, bin, srv.URL()), startRedisNode(t, bin, srv.URL())}
	topics := []string{"multi.a", "multi.b"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var consumers []*consumer
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i, n := range nodes {
		for _, tr := range []client.Transport{client.TransportSSE, client.TransportPoll, client.TransportWS, client.TransportGRPC} {
			c := &consumer{name: fmt.Sprintf("node%d/%s", i, tr), tr: tr, got: map[string][]received{}, move: make(chan *redisNode, 1)}
			consumers = append(consumers, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.run(t, ctx, n, topics, ready)
			}()
		}
	}
	for range consumers {
		<-ready
	}

	// Publishers: one per node, alternating topics, each event with a
	// unique id. The third node's stops when it is killed.
	const perNode = 300
	var pwg sync.WaitGroup
	var amu sync.Mutex
	acked := map[string]client.Ack{}
	killAt := make(chan struct{})
	for i, n := range nodes {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			cl := n.client(t, client.TransportSSE)
			for j := 0; j < perNode; j++ {
				if i == 0 && j == perNode/2 {
					close(killAt)
				}
				id := fmt.Sprintf("n%d-%d", i, j)
				ack, err := cl.Publish(ctx, topics[j%2], fmt.Appendf(nil, `{"id":%q}`, id))
				if err != nil {
					if i == 2 {
						return // killed
					}
					t.Errorf("publish %s: %v", id, err)
					return
				}
				amu.Lock()
				acked[id] = ack
				amu.Unlock()
			}
		}()
	}
	<-killAt
	nodes[2].cmd.Process.Signal(syscall.SIGKILL)
	nodes[2].cmd.Wait()
	for _, c := range consumers[8:] {
		c.move <- nodes[0]
	}
	pwg.Wait()

	// The history every consumer must have seen, read from a live node.
	want := map[string][]received{}
	cl := nodes[1].client(t, client.TransportSSE)
	for _, topic := range topics {
		cursor := ""
		for {
			res, err := cl.Pull(ctx, []string{topic}, client.WithCursor(cursor), client.WithFrom(client.FromEarliest), client.WithLimit(1000))
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range res.Events {
				var d struct{ ID string }
				_ = json.Unmarshal(ev.Data, &d)
				want[topic] = append(want[topic], received{ev.Offset, ev.Epoch, d.ID})
			}
			if len(res.Events) == 0 {
				break
			}
			cursor = res.Cursor
		}
	}
	for id, a := range acked {
		w := want[a.Topic]
		if a.Offset == 0 || int(a.Offset) > len(w) || w[a.Offset-1].id != id {
			t.Fatalf("acknowledged %s at %s/%d is not in the history there", id, a.Topic, a.Offset)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range consumers {
		for _, topic := range topics {
			for c.count(topic) < len(want[topic]) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond) // consumers catching up: polled, the end has no signal
			}
		}
	}
	cancel()
	wg.Wait()
	for _, c := range consumers {
		if len(c.gaps) > 0 {
			t.Errorf("%s: gap %+v", c.name, c.gaps[0])
		}
		for _, topic := range topics {
			got, w := c.got[topic], want[topic]
			if len(got) != len(w) {
				t.Errorf("%s: %s: %d events, want %d", c.name, topic, len(got), len(w))
				continue
			}
			for k := range w {
				if got[k] != w[k] {
					t.Errorf("%s: %s: event %d is %+v, want %+v", c.name, topic, k, got[k], w[k])
					break
				}
			}
		}
	}
	t.Logf("%d events on %d topics, %d acknowledged, seen by %d consumers on 3 nodes (one killed midway)", len(want[topics[0]])+len(want[topics[1]]), len(topics), len(acked), len(consumers))
}
