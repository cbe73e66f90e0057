//go:build linux

package server_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// TestNodeWebSocketTooLarge sends messages over the default
// ws.max_message_bytes with the npm `ws` package (test/node/ws-too-large.mjs),
// 4 MB and just over the limit, 20 times each: every connection must end
// with the close code the protocol promises, 1009 too_large, not 1006 (a
// reset that dropped the close frame while the message was still
// arriving). The server closes with a lingering close.
func TestNodeWebSocketTooLarge(t *testing.T) {
	node := nodeOrSkip(t)
	ts := startServer(t)
	limit := config.Default().WS.MaxMessageBytes
	for _, size := range []int{4 << 20, limit + 1024} {
		t.Run(strconv.Itoa(size)+" bytes", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "ws-too-large.mjs", "ws://"+ts.addr+"/v1/ws", strconv.Itoa(size), "20")
			cmd.Dir = nodeDir
			cmd.Stderr = &testLog{t: t, prefix: "node: "}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node: %v: %s", err, out)
			}
			var got struct {
				Codes   []int
				Reasons []string
			}
			if err := json.Unmarshal(out, &got); err != nil || len(got.Codes) != 20 {
				t.Fatalf("node printed %s (%v)", out, err)
			}
			for i, code := range got.Codes {
				if code != 1009 {
					t.Errorf("connection %d closed with %d %q, want 1009 too_large", i, code, got.Reasons[i])
				}
			}
		})
	}
}
