package bench_test

// These tests run the scenarios against the real server, started in-process
// on a free port.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// workerEnv makes the test binary act as a fanout --procs worker, the role
// `herald bench fanout-worker` has in the real binary.
const workerEnv = "HERALD_BENCH_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := bench.RunFanoutWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// startServer starts a herald server on a free port and stops it when the
// test ends; it returns the base URL.
func startServer(t *testing.T) string {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with the configuration changed by edit.
func startServerWith(t *testing.T, edit func(*config.Config)) string {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0" // never the fixed default port
	// These tests check what the load generator counts, not slow-consumer
	// handling: a queue that holds a whole run (3.5 MB of 70 kB events in
	// the largest) keeps a generator slowed by the race detector on a
	// loaded machine from being cut off as a slow consumer.
	cfg.Limits.MaxQueueBytes = 16 << 20
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return "http://" + srv.HTTPAddr()
}

// checkExact fails t unless every expected delivery arrived exactly once,
// in order.
func checkExact(t *testing.T, res *bench.FanoutResult, wantSent uint64) {
	t.Helper()
	if res.Sent != wantSent || res.PublishErrors != 0 {
		t.Errorf("sent %d with %d publish errors, want %d and 0 (errors: %v)", res.Sent, res.PublishErrors, wantSent, res.Errors)
	}
	if want := wantSent * uint64(res.Subscribers); res.Expected != want || res.Delivered != want {
		t.Errorf("expected %d, delivered %d; want both %d", res.Expected, res.Delivered, want)
	}
	if res.Lost != 0 || res.Duplicates != 0 || res.OutOfOrder != 0 || res.Gaps != 0 || res.Disconnected != 0 || res.Foreign != 0 {
		t.Errorf("lost %d, duplicate %d, out-of-order %d, gaps %d, disconnected %d, foreign %d; want all 0 (errors: %v)",
			res.Lost, res.Duplicates, res.OutOfOrder, res.Gaps, res.Disconnected, res.Foreign, res.Errors)
	}
	if res.Latency.Count != res.Delivered {
		t.Errorf("latency histogram has %d samples, want one per delivery (%d)", res.Latency.Count, res.Delivered)
	}
	if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Errorf("implausible latency summary %+v", res.Latency)
	}
	if err := res.Failed(false); err != nil {
		t.Errorf("Failed(false) = %v, want nil", err)
	}
}

func TestFanoutSSE(t *testing.T) {
	base := startServer(t)
	for _, reader := range []string{bench.ReaderEpoll, bench.ReaderGoroutine} {
		t.Run(reader, func(t *testing.T) {
			res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
				Server: base, Transport: bench.TransportSSE, Reader: reader, Subs: 50, Rate: 50,
				Duration: 2 * time.Second, Payload: 128, PID: os.Getpid(),
			})
			if err != nil {
				t.Fatalf("RunFanout: %v", err)
			}
			checkExact(t, res, 100)
			if res.ServerStats == nil || res.ServerStats.CPUSeconds <= 0 || res.ServerStats.RSSBytes == 0 {
				t.Errorf("server stats %+v, want cpu and rss of the test process", res.ServerStats)
			}
		})
	}
}

// TestFanoutServerEnds checks that streams the server ends are counted:
// shutting the server down while subscribers are connected ends them all.
func TestFanoutServerEnds(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0" // never the fixed default port
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		time.Sleep(700 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	defer func() { <-stopped }()
	res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
		Server: "http://" + srv.HTTPAddr(), Subs: 10, Rate: 10, Duration: 1500 * time.Millisecond,
		Publishers: 1, Grace: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	if res.Disconnected != 10 {
		t.Errorf("disconnected %d, want 10 (errors %v)", res.Disconnected, res.Errors)
	}
	t.Logf("errors: %q", res.Errors)
	if res.PublishErrors == 0 || res.Failed(false) == nil {
		t.Errorf("publish errors %d, Failed(false) = %v: want errors and failure", res.PublishErrors, res.Failed(false))
	}
}

func TestFanoutLongPoll(t *testing.T) {
	base := startServer(t)
	res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
		Server: base, Transport: bench.TransportPoll, Subs: 20, Rate: 40, Duration: time.Second, Payload: 64,
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	checkExact(t, res, 40)
}

func TestFanoutProcs(t *testing.T) {
	base := startServer(t)
	t.Setenv(workerEnv, "1") // inherited by the worker processes
	res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
		Server: base, Subs: 30, Rate: 30, Duration: time.Second, Payload: 128,
		Procs: 3, WorkerArgs: []string{"-test.run=^$"},
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	checkExact(t, res, 30)
	if res.Loadgen.CPUSeconds <= 0 {
		t.Errorf("loadgen cpu %v, want the workers' time included", res.Loadgen.CPUSeconds)
	}
}

func TestIdle(t *testing.T) {
	base := startServer(t)
	res, err := bench.RunIdle(t.Context(), bench.IdleConfig{
		Server: base, Conns: 200, Settle: 200 * time.Millisecond, PID: os.Getpid(), MetricsURL: base + "/metrics",
	})
	if err != nil {
		t.Fatalf("RunIdle: %v", err)
	}
	if res.RSSBefore == 0 || res.RSSAfter == 0 || res.MetricsAfter == 0 {
		t.Errorf("rss before %d, after %d, metrics after %d: want all measured", res.RSSBefore, res.RSSAfter, res.MetricsAfter)
	}
	if res.Disconnected != 0 || len(res.Errors) != 0 {
		t.Errorf("disconnected %d, errors %v; want none", res.Disconnected, res.Errors)
	}
}

func TestPublish(t *testing.T) {
	base := startServer(t)
	for _, batch := range []int{1, 50} {
		res, err := bench.RunPublish(t.Context(), bench.PublishConfig{
			Server: base, Conns: 4, Duration: 500 * time.Millisecond, Batch: batch, Payload: 128, PID: os.Getpid(),
		})
		if err != nil {
			t.Fatalf("batch %d: RunPublish: %v", batch, err)
		}
		if res.Requests == 0 || res.Errors != 0 || res.Events != res.Requests*uint64(batch) {
			t.Errorf("batch %d: %d requests, %d events, %d errors %v", batch, res.Requests, res.Events, res.Errors, res.ErrorList)
		}
		if res.Latency.Count != res.Requests {
			t.Errorf("batch %d: latency has %d samples, want %d", batch, res.Latency.Count, res.Requests)
		}
	}
}

func TestPublishBadServer(t *testing.T) {
	_, err := bench.RunPublish(t.Context(), bench.PublishConfig{
		Server: "http://127.0.0.1:1", Conns: 1, Duration: time.Second,
	})
	if err == nil {
		t.Fatal("RunPublish against a closed port succeeded")
	}
}

func TestPublishWS(t *testing.T) {
	base := startServer(t)
	res, err := bench.RunPublish(t.Context(), bench.PublishConfig{
		Server: base, Transport: bench.TransportWS, Conns: 3, InFlight: 8, Duration: 500 * time.Millisecond, Payload: 64,
	})
	if err != nil {
		t.Fatalf("RunPublish: %v", err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Events != res.Requests || res.Latency.Count != res.Requests {
		t.Errorf("requests %d, events %d, errors %d %v, latency samples %d", res.Requests, res.Events, res.Errors, res.ErrorList, res.Latency.Count)
	}
	// A refused publish fails the probe with the server's reason.
	if _, err := bench.RunPublish(t.Context(), bench.PublishConfig{
		Server: base, Transport: bench.TransportWS, Topic: "bad topic", Conns: 1, Duration: time.Second,
	}); err == nil || !strings.Contains(err.Error(), "bad_topic") {
		t.Errorf("publishing to a bad topic: %v, want the server's bad_topic", err)
	}
}
