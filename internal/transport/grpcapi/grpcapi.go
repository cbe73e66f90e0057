// Package grpcapi serves herald's gRPC API (api/herald/v1/herald.proto,
// docs/grpc.md) on its own listener, with the standard health service and
// server reflection, so that grpcurl works without the proto file.
//
// The protocol, in brief (the .proto file is the reference):
//
//	Publish        unary: one event or a batch → one Ack per event
//	PublishStream  bidi: PublishRequest → PublishResponse (same id), in order
//	Subscribe      server stream: Delivery{cursor} first, then
//	               Delivery{gaps, events, cursor} as they come
//	Connect        bidi: commands (subscribe, unsubscribe, publish, grant)
//	               → replies (same id) and deliveries; at most as many
//	               events as granted
//	Pull           unary: like GET /v1/events, wait bounded by the deadline
//	Consume        bidi: open{group, member}, grants and answers (ack, nak,
//	               in_progress, term) → opened, messages as credit allows,
//	               answered (same id); a consumer group member (consume.go)
//	ListTopics, GetTopic
//
// Every call reaches topics through the hub (Publish, NewSubscriber and
// Subscribe, Pull, Info, Topics), so the hub's Gate stays the one place
// that authorizes. Errors are statuses with a google.rpc.ErrorInfo whose
// reason is herald's error code (Classify). A stream the hub ends ends with
// RESOURCE_EXHAUSTED slow_consumer or UNAVAILABLE shutting_down (with a
// RetryInfo and the stream's cursor in the ErrorInfo metadata): resume from
// the last cursor.
//
// Goroutines: gRPC owns each call's handler goroutine (and its stream
// workers, grpc.NumStreamWorkers). A Subscribe or Connect call's writer role
// (the only sender on the stream) runs on the Server's writerPool when the
// stream has something to send (pool.go); a Connect call also has a reader
// goroutine. The pool's goroutines and the readers are counted in
// Server.workers, which Drain and Stop wait for. A handler returns when its
// writer hands it the end status, or shortly after the hub ended the
// subscriber when the writer is stuck in a send to a consumer that stopped
// reading: returning ends the stream, which unblocks the send.
package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

// ServiceName is the full name of herald's gRPC service.
const ServiceName = "herald.v1.Herald"

// Options configure the gRPC server. Zero fields take the defaults noted.
type Options struct {
	MaxEventBytes   int           // largest payload accepted; default 1 MiB
	MaxMessageBytes int           // largest request message; default 16 MiB
	MaxQueueBytes   int           // per stream; 0 uses the hub's
	MaxWait         time.Duration // longest Pull wait; default 120s
	// Retry is the base of the resume hint (RetryInfo) of streams ended by
	// a drain: each gets one to four times it, spreading the reconnects.
	// Default 2s.
	Retry time.Duration
	// HandshakeTimeout bounds how long a new connection may take to
	// complete its HTTP/2 handshake, so that a client that connects and
	// sends nothing does not hold a connection slot (the HTTP listener's
	// read_header_timeout). Default 10s.
	HandshakeTimeout time.Duration
	// OnConn is told of Subscribe and Connect streams opening (+1) and
	// ending (-1).
	OnConn func(delta int)
	// Groups serves Consume (consume.go); nil answers UNAVAILABLE.
	Groups *group.Manager
	Log    *slog.Logger
}

// Server is herald's gRPC server. Create it with New, serve a listener with
// Serve, and end it with Drain (graceful) or Stop.
type Server struct {
	hub   *hub.Hub
	opts  Options // static after New
	codec *codec  // static after New

	gs     *grpc.Server
	health *health.Server
	pool   *writerPool // runs the streams' writers

	workers sync.WaitGroup // the pool's goroutines and Connect and Consume readers

	// draining is cancelled by Drain and Stop: Consume streams, which have
	// no hub subscriber for the hub's Close to end, end with it.
	draining    context.Context
	stopServing context.CancelFunc
}

// New returns a gRPC server over h, with herald's service, the health
// service (SERVING until Drain) and reflection registered.
func New(h *hub.Hub, opts Options) (*Server, error) {
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = 1 << 20
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 16 << 20
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 120 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = 2 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.OnConn == nil {
		opts.OnConn = func(int) {}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	s := &Server{hub: h, opts: opts, codec: c, health: health.NewServer()}
	s.draining, s.stopServing = context.WithCancel(context.Background())
	s.pool = newWriterPool(&s.workers)
	s.gs = grpc.NewServer(
		grpc.ForceServerCodecV2(c),
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.ConnectionTimeout(opts.HandshakeTimeout),
		// Find peers that vanished without a FIN (the SSE heartbeat's job),
		// and let clients keep idle connections alive with their own pings.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Calls run on goroutines whose stacks have already grown: with a
		// new goroutine per unary call, growing its stack took a fifth of
		// the server's CPU (docs/decisions/0007-grpc.md). A call holds its
		// worker while it waits for its request message, and a stream for
		// its life; when all are taken, a call gets a goroutine of its own.
		grpc.NumStreamWorkers(uint32(streamWorkers())),
		// Every call of herald's service carries its caller's identity to
		// the hub (auth.go).
		grpc.UnaryInterceptor(s.unaryAuth),
		grpc.StreamInterceptor(s.streamAuth),
	)
	s.gs.RegisterService(s.serviceDesc(), &service{s: s})
	healthpb.RegisterHealthServer(s.gs, s.health)
	reflection.Register(s.gs)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Serve accepts connections on ln until Drain or Stop. It returns nil after
// those, else the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.gs.Serve(ln); err != nil && err != grpc.ErrServerStopped {
		return fmt.Errorf("grpc serve: %w", err)
	}
	return nil
}

// Drain stops the server gracefully: the health service turns NOT_SERVING,
// every connection gets a GOAWAY (clients send new calls elsewhere), and
// calls in flight may finish. Streams end through the hub: the caller
// closes the hub, which ends each with UNAVAILABLE shutting_down and a
// resume hint. When ctx ends first, the remaining calls are cut off. Drain
// returns once every call and stream goroutine has ended.
func (s *Server) Drain(ctx context.Context) error {
	s.health.Shutdown()
	s.stopServing()
	done := make(chan struct{})
	go func() {
		s.gs.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.gs.Stop()
		<-done
		err = fmt.Errorf("grpc drain: %w", ctx.Err())
	}
	s.workers.Wait()
	return err
}

// Stop ends every call and connection at once and waits for the stream
// goroutines.
func (s *Server) Stop() {
	s.health.Shutdown()
	s.stopServing()
	s.gs.Stop()
	s.workers.Wait()
}

// serviceDesc is the generated service description with the Publish
// handler replaced by the hand-decoding one.
func (s *Server) serviceDesc() *grpc.ServiceDesc {
	desc := heraldv1.Herald_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "Publish" {
			desc.Methods[i].Handler = s.publishHandler
		}
	}
	return &desc
}

// streamWorkers is the number of gRPC's stream workers: enough for the
// calls in flight of a busy server, at most 1024.
func streamWorkers() int { return min(64*runtime.GOMAXPROCS(0), 1024) }

// service implements heraldv1.HeraldServer.
type service struct {
	heraldv1.UnimplementedHeraldServer
	s *Server
}
