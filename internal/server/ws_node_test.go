//go:build linux

package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// nodeDir holds the Node test client and its pinned dependencies
// (package-lock.json; .ci/run installs them with npm ci).
var nodeDir = filepath.Join("..", "..", "test", "node")

// nodeOrSkip returns the node binary, or skips the test loudly (fails it
// when HERALD_REQUIRE_INTEGRATION=1, as CI sets).
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	msg := ""
	bin, err := exec.LookPath("node")
	if err != nil {
		msg = "node not found: install Node.js (20 or later)"
	} else if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws", "package.json")); err != nil {
		msg = "test/node/node_modules is missing: run `npm ci` in test/node"
	}
	if msg == "" {
		return bin
	}
	msg = "SKIPPING THE NODE WEBSOCKET TEST: " + msg
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// TestNodeWebSocketClient runs test/node/ws-client.mjs, a client of the
// protocol written with the npm `ws` package, through a server restart:
// it subscribes, publishes over its WebSocket, is closed with
// shutting_down, reconnects to a new server on the same port and resumes
// with its last cursor, and must end with every event exactly once, in
// order (see the script for the steps).
func TestNodeWebSocketClient(t *testing.T) {
	node := nodeOrSkip(t)
	addr := browserFreeAddr(t)
	const topic = "node.e2e"
	eng := memory.New(memory.Options{})
	t.Cleanup(func() { eng.Close() })
	cfg := config.Default()
	cfg.HTTP.Addr = addr
	cfg.GRPC.Addr = "127.0.0.1:0"
	cfg.Presence = true
	cfg.Shutdown.Timeout = 5 * time.Second
	a := browserStartServer(t, cfg, eng)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "ws-client.mjs", "ws://"+addr+"/v1/ws", topic)
	cmd.Dir = nodeDir
	cmd.Stderr = &testLog{t: t, prefix: "node: "}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	done := make(chan error, 1)
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("node printed %q: %v", sc.Text(), err)
				continue
			}
			lines <- m
		}
		close(lines)
		done <- cmd.Wait()
	}()
	step := func(want string) map[string]any {
		t.Helper()
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("node exited (%v) waiting for step %s", <-done, want)
			}
			if m["step"] != want {
				t.Fatalf("node: %v, want step %s", m, want)
			}
			return m
		case <-ctx.Done():
			t.Fatalf("timed out waiting for step %s", want)
			return nil
		}
	}

	step("published")
	if info, ok, err := a.srv.Hub().Info(hub.Internal(context.Background()), topic); err != nil || !ok || info.Last != 5 {
		t.Fatalf("after the node client published: %+v %v %v", info, ok, err)
	}
	a.shutdown()
	step("closed")
	b := browserNewServer(t, cfg, eng)
	for n := 6; n <= 8; n++ {
		rec := event.Record{Data: []byte(strconv.Itoa(n)), Encoding: event.EncodingText}
		if _, err := b.srv.Hub().Publish(hub.Internal(context.Background()), topic, []event.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	b.start()
	io.WriteString(stdin, "go\n")
	res := step("result")
	if res["ok"] != true {
		t.Fatalf("node reports problems: %v", res)
	}
	var data []string
	for _, d := range res["data"].([]any) {
		data = append(data, d.(string))
	}
	want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
	if !slices.Equal(data, want) {
		t.Errorf("node received %q, want %q (each exactly once, in order)", data, want)
	}
	var offsets []float64
	for _, o := range res["offsets"].([]any) {
		offsets = append(offsets, o.(float64))
	}
	for i, o := range offsets {
		if o != float64(i+1) {
			t.Fatalf("offsets %v, want 1..11", offsets)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("node exited with %v", err)
	}
}

// testLog passes a child's output to the test log, line by line.
type testLog struct {
	t      *testing.T
	prefix string
}

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s%s", l.prefix, p)
	return len(p), nil
}
