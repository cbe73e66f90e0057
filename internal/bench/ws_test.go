package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

func TestFanoutWS(t *testing.T) {
	base := startServer(t)
	for _, tt := range []struct {
		name          string
		subs, payload int
	}{
		{"small", 50, 128},
		{"64 KiB+", 3, 70_000}, // a 64-bit length, over the read buffer
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
				Server: base, Transport: bench.TransportWS, Subs: tt.subs, Rate: 50,
				Duration: time.Second, Payload: tt.payload, PID: os.Getpid(),
			})
			if err != nil {
				t.Fatalf("RunFanout: %v", err)
			}
			checkExact(t, res, 50)
		})
	}
}

func TestIdleWS(t *testing.T) {
	base := startServer(t)
	res, err := bench.RunIdle(t.Context(), bench.IdleConfig{
		Server: base, Transport: bench.TransportWS, Conns: 200, Settle: 200 * time.Millisecond, PID: os.Getpid(),
	})
	if err != nil {
		t.Fatalf("RunIdle: %v", err)
	}
	if res.RSSAfter == 0 || res.Disconnected != 0 || len(res.Errors) != 0 {
		t.Errorf("rss after %d, disconnected %d, errors %v", res.RSSAfter, res.Disconnected, res.Errors)
	}
}

// TestFanoutWSServerEnds: connections the server closes (here with
// shutting_down) are counted as ended early.
func TestFanoutWSServerEnds(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0"
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
		Server: "http://" + srv.HTTPAddr(), Transport: bench.TransportWS, Subs: 10, Rate: 10,
		Duration: 1500 * time.Millisecond, Publishers: 1, Grace: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	if res.Disconnected != 10 {
		t.Errorf("disconnected %d, want 10 (errors %v)", res.Disconnected, res.Errors)
	}
	t.Logf("errors: %q", res.Errors)
}
