package bench_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
)

// startRedisNode is startServer with the redis engine on the Redis at url,
// as one node of a deployment.
func startRedisNode(t *testing.T, url string) string {
	t.Helper()
	return startServerWith(t, func(c *config.Config) {
		c.Engine = "redis"
		c.Redis.URL = url
		c.Redis.Prefix = "bench" + strings.ReplaceAll(t.Name(), "/", "-")
	})
}

// TestFanoutNodes spreads SSE and WebSocket subscribers over two nodes on
// one Redis while publishing to the first: every subscriber gets every event.
func TestFanoutNodes(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	a, b := startRedisNode(t, rs.URL()), startRedisNode(t, rs.URL())
	t.Setenv(workerEnv, "1") // inherited by the worker processes
	res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
		Server: a, SubscribeServers: []string{a, b}, Transports: []string{bench.TransportSSE, bench.TransportWS},
		Subs: 40, Rate: 20, Duration: time.Second, Payload: 128, Procs: 4, WorkerArgs: []string{"-test.run=^$"},
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	checkExact(t, res, 20)
	if res.Transport != "sse+ws" || len(res.Subscribe) != 2 {
		t.Errorf("transport %q, subscribe servers %v; want sse+ws over 2", res.Transport, res.Subscribe)
	}
}

func TestFanoutNodesNeedProcs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   bench.FanoutConfig
		procs int
	}{
		{"servers", bench.FanoutConfig{SubscribeServers: []string{"http://a", "http://b", "http://c"}, Procs: 2}, 3},
		{"transports", bench.FanoutConfig{Transports: []string{"sse", "ws"}}, 2},
		{"both", bench.FanoutConfig{SubscribeServers: []string{"http://a", "http://b"}, Transports: []string{"sse", "ws"}, Procs: 3}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Server, tc.cfg.Subs, tc.cfg.Rate, tc.cfg.Duration = "http://a", 10, 1, time.Second
			tc.cfg.WorkerArgs = []string{"x"}
			_, err := bench.RunFanout(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--procs %d", tc.procs)) {
				t.Errorf("RunFanout = %v, want an error asking for --procs %d", err, tc.procs)
			}
		})
	}
}
