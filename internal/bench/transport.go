package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
)

// A Transport opens subscriber streams over one wire protocol. SSE,
// WebSocket and long polling exist; a gRPC transport only has to provide
// Open and a Stream, and a case in NewTransport.
type Transport interface {
	// Open subscribes to topic from its latest position and returns once
	// the server has accepted the subscription, so that every event
	// published after Open returns is delivered on the stream.
	Open(ctx context.Context, topic string) (Stream, error)
}

// A Stream yields the payloads of the events delivered to one subscriber.
type Stream interface {
	// Next blocks until the next event and returns its payload, valid until
	// the next call. A gap signalled by the server is reported as an error
	// matching ErrGap, after which Next may be called again; any other
	// error ends the stream.
	Next() ([]byte, error)
	// Close ends the stream and makes a blocked Next return. It may be
	// called from any goroutine, more than once.
	Close() error
}

// ErrGap is returned by Stream.Next when the server signals that some
// events cannot be delivered (an SSE "gap" event, a pull answer's gaps).
var ErrGap = errors.New("server signalled a gap")

// ServerError is the error frame a server sent before ending a stream
// (SSE "error" event), such as slow_consumer or shutting_down.
type ServerError struct {
	Data string // the frame's data: {"code":…,"message":…}
}

// Error includes the frame's data, which names the reason.
func (e *ServerError) Error() string { return "server ended the stream: " + e.Data }

// Transport names accepted by NewTransport.
const (
	TransportSSE  = "sse"
	TransportPoll = "poll"
	TransportWS   = "ws"
	TransportGRPC = "grpc"
)

// NewTransport returns the transport called name, connecting through d.
func NewTransport(name string, d *Dialer) (Transport, error) {
	switch name {
	case TransportSSE:
		return &SSE{d: d}, nil
	case TransportPoll:
		return &LongPoll{d: d}, nil
	case TransportWS:
		return &WS{d: d}, nil
	case TransportGRPC:
		return &GRPC{d: d.forGRPC(), perConn: max(d.perConn, 1)}, nil
	default:
		return nil, fmt.Errorf("unknown transport %q: use %q, %q, %q or %q", name, TransportSSE, TransportWS, TransportPoll, TransportGRPC)
	}
}

// Readers: how SSE streams are read once connected. Other transports
// always use a goroutine each.
//
// ReaderGoroutine is the default. ReaderEpoll holds no goroutine per
// connection (less memory for many idle streams), but on the project's
// 2-core machines it measured no cheaper per delivery (4–7 µs either way):
// with few deliveries per wake, waking an epoll loop through the netpoller
// costs what waking a goroutine does. (Blocking in epoll_wait was ~30%
// cheaper but held Ps and delayed the publisher by up to 150 ms.)
const (
	ReaderGoroutine = "goroutine" // one goroutine per stream
	ReaderEpoll     = "epoll"     // GOMAXPROCS epoll loops read every stream (Linux)
)

// useEpoll decides whether the epoll reader reads a run's streams.
func useEpoll(reader, transport string) (bool, error) {
	switch reader {
	case ReaderEpoll:
		if transport != TransportSSE {
			return false, fmt.Errorf("--reader %s reads sse streams only", ReaderEpoll)
		}
		if runtime.GOOS != "linux" {
			return false, fmt.Errorf("--reader %s needs Linux", ReaderEpoll)
		}
		return true, nil
	case "", ReaderGoroutine:
		return false, nil
	default:
		return false, fmt.Errorf("unknown reader %q: use %q or %q", reader, ReaderEpoll, ReaderGoroutine)
	}
}

// subscriberSetup is what every subscriber scenario needs before it
// connects: the transport, the reader mode, the run id and the topic.
type subscriberSetup struct {
	d     *Dialer
	tr    Transport
	epoll bool
	runID uint64
	topic string
}

// setupSubscribers builds a subscriber scenario's transport and names its
// topic (prefix plus the run id) when topic is empty.
func setupSubscribers(server, grpcAddr string, perConn, sourceAddrs int, transport, reader, topic, prefix string) (subscriberSetup, error) {
	d, err := NewDialer(server, sourceAddrs, 0)
	if err != nil {
		return subscriberSetup{}, err
	}
	if err := d.UseGRPC(grpcAddr, perConn); err != nil {
		return subscriberSetup{}, err
	}
	tr, err := NewTransport(transport, d)
	if err != nil {
		return subscriberSetup{}, err
	}
	epoll, err := useEpoll(reader, transport)
	if err != nil {
		return subscriberSetup{}, err
	}
	st := subscriberSetup{d: d, tr: tr, epoll: epoll, runID: newRunID(), topic: topic}
	if st.topic == "" {
		st.topic = prefix + strconv.FormatUint(st.runID, 36)
	}
	return st, nil
}
