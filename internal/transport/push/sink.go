package push

import (
	"net"
	"time"

	"github.com/heraldhq/herald/internal/transport/netio"
)

// ConnSink is the Sink of a connection taken over from net/http: blocking
// writes on the net.Conn, non-blocking ones on its raw socket where the
// platform has them. Transports embed it in their connection.
type ConnSink struct {
	Conn net.Conn
	Sock *netio.Socket // nil where non-blocking socket calls are not available
	// Peek makes PeerClosed look at the socket: right for a protocol whose
	// client sends nothing after its request (SSE), so that a readable
	// end of stream means it is gone.
	Peek bool
}

// NewConnSink returns the sink of nc.
func NewConnSink(nc net.Conn, peek bool) ConnSink {
	return ConnSink{Conn: nc, Sock: netio.NewSocket(nc), Peek: peek}
}

// Write writes b with a blocking write.
func (s *ConnSink) Write(b []byte) (int, error) { return s.Conn.Write(b) }

// TryWrite writes what the socket takes now; netio.ErrNoTry when Sock is nil.
func (s *ConnSink) TryWrite(b []byte) (int, error) { return s.Sock.Write(b) }

// SetWriteDeadline sets the connection's write deadline.
func (s *ConnSink) SetWriteDeadline(t time.Time) { s.Conn.SetWriteDeadline(t) }

// PeerClosed peeks at the socket when Peek is set, without a reader
// goroutine. Where it cannot peek, a closed peer is found by the next
// failed write instead.
func (s *ConnSink) PeerClosed() bool { return s.Peek && s.Sock.PeerClosed() }
