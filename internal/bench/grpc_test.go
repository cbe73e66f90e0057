package bench_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// startGRPCServer starts a server on free ports; it returns the HTTP base
// URL and the gRPC address.
func startGRPCServer(t *testing.T) (string, string) {
	t.Helper()
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return "http://" + srv.HTTPAddr(), srv.GRPCAddr()
}

func TestFanoutGRPC(t *testing.T) {
	base, addr := startGRPCServer(t)
	for _, perConn := range []int{1, 16} {
		t.Run("streams-per-conn="+strconv.Itoa(perConn), func(t *testing.T) {
			res, err := bench.RunFanout(t.Context(), bench.FanoutConfig{
				Server: base, GRPCAddr: addr, Transport: bench.TransportGRPC, StreamsPerConn: perConn,
				Subs: 50, Rate: 50, Duration: 2 * time.Second, Payload: 128,
			})
			if err != nil {
				t.Fatalf("RunFanout: %v", err)
			}
			checkExact(t, res, 100)
		})
	}
}

func TestPublishGRPC(t *testing.T) {
	base, addr := startGRPCServer(t)
	for _, tc := range []struct {
		name   string
		stream bool
		batch  int
	}{{"unary", false, 1}, {"unary batch", false, 10}, {"stream", true, 10}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := bench.RunPublish(t.Context(), bench.PublishConfig{
				Server: base, GRPCAddr: addr, Transport: bench.TransportGRPC, Stream: tc.stream,
				Conns: 2, InFlight: 4, Batch: tc.batch, Duration: 500 * time.Millisecond, Payload: 64,
			})
			if err != nil {
				t.Fatalf("RunPublish: %v", err)
			}
			if res.Requests == 0 || res.Errors != 0 || res.Events != res.Requests*uint64(tc.batch) {
				t.Errorf("requests %d, events %d, errors %d %v", res.Requests, res.Events, res.Errors, res.ErrorList)
			}
		})
	}
	// A refused publish fails the probe with the server's reason.
	_, err := bench.RunPublish(t.Context(), bench.PublishConfig{
		Server: base, GRPCAddr: addr, Transport: bench.TransportGRPC, Topic: "bad topic", Conns: 1, Duration: time.Second,
	})
	if err == nil {
		t.Error("publishing to a bad topic succeeded")
	}
}
