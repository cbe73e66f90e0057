package netio

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Lingering close. A server that closes a TCP connection while the client
// is still sending, or with the client's bytes unread in its receive
// buffer, makes the kernel answer with a reset; the reset makes the
// client's kernel drop what it had received and not yet handed to the
// client, which is often the very answer that explains the close (an HTTP
// 413, a WebSocket close frame 1009). The client then sees "connection
// reset" or close code 1006 instead.
//
// A lingering close (RFC 9112 §9.6) avoids it: shut the write side down
// (the client reads our last bytes, then end of stream), read and discard
// what the client still sends until it closes its side, and only then close.
// The wait is bounded in time and bytes, so a client that never stops
// costs a bounded amount.

// Linger defaults.
const (
	DefaultLingerTime  = 5 * time.Second
	DefaultLingerBytes = 64 << 20
	DefaultLingerConns = 1024
)

// LingerOptions configure a Lingerer. Zero fields take the defaults.
type LingerOptions struct {
	MaxTime  time.Duration // longest a connection lingers; DefaultLingerTime
	MaxBytes int64         // most bytes discarded from one connection; DefaultLingerBytes
	// MaxConns bounds the connections lingering at once (each has a
	// goroutine and a buffer); over it a connection is closed at once.
	MaxConns int
}

// Lingerer closes connections with a lingering close, each on a goroutine
// it owns. Close cuts every linger short and waits for the goroutines.
// A nil *Lingerer closes connections at once.
type Lingerer struct {
	opts LingerOptions // static

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the lingering goroutines
}

// NewLingerer returns a Lingerer; stop it with Close.
func NewLingerer(opts LingerOptions) *Lingerer {
	if opts.MaxTime <= 0 {
		opts.MaxTime = DefaultLingerTime
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultLingerBytes
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultLingerConns
	}
	return &Lingerer{opts: opts, conns: make(map[net.Conn]struct{})}
}

// Linger takes nc over and closes it with a lingering close, in the
// background: it returns at once. nc must have nothing more to write;
// whatever wrote to it has finished.
func (l *Lingerer) Linger(nc net.Conn) {
	if l == nil {
		nc.Close()
		return
	}
	l.mu.Lock()
	if l.closed || len(l.conns) >= l.opts.MaxConns {
		l.mu.Unlock()
		nc.Close()
		return
	}
	// The deadline is set under mu, so that Close's cannot come first
	// and be overwritten.
	nc.SetReadDeadline(time.Now().Add(l.opts.MaxTime))
	l.conns[nc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		drainClose(nc, l.opts.MaxBytes)
		l.mu.Lock()
		delete(l.conns, nc)
		l.mu.Unlock()
	}()
}

// Lingering returns how many connections are lingering now.
func (l *Lingerer) Lingering() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Close ends every linger now (the connections close) and waits for the
// goroutines; connections given to Linger afterwards are closed at once.
func (l *Lingerer) Close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	for nc := range l.conns {
		nc.SetReadDeadline(time.Now()) // the read in LingerClose returns
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// LingerClose closes nc with a lingering close, on the calling goroutine:
// it shuts down nc's write side, then reads and discards until the peer
// closes its side, maxTime passes or maxBytes were discarded, and closes
// nc. A connection whose write side cannot be shut down alone (it is not
// TCP) is closed at once.
func LingerClose(nc net.Conn, maxTime time.Duration, maxBytes int64) error {
	nc.SetReadDeadline(time.Now().Add(maxTime))
	return drainClose(nc, maxBytes)
}

// drainClose is LingerClose with the read deadline already set.
func drainClose(nc net.Conn, maxBytes int64) error {
	// Only a connection without a write side of its own is closed at
	// once; another error (the write side was shut down already, or the
	// peer reset) leaves the reads below to find out.
	if err := CloseWrite(nc); errors.Is(err, ErrNoCloseWrite) {
		nc.Close()
		return err
	}
	bp := lingerBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(io.Discard, io.LimitReader(readerOnly{nc}, maxBytes), *bp)
	lingerBufs.Put(bp)
	cerr := nc.Close()
	if err != nil {
		return err
	}
	return cerr
}

// readerOnly hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given (not a WriterTo or ReaderFrom of the connection).
type readerOnly struct{ io.Reader }

var lingerBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ErrNoCloseWrite reports a connection whose write side cannot be shut
// down on its own.
var ErrNoCloseWrite = errors.New("connection cannot shut down its write side")

// CloseWrite shuts down nc's write side (TCP: sends FIN), looking through
// wrappers that expose the connection they wrap with NetConn, such as
// net/http's handed-off and TLS connections.
func CloseWrite(nc net.Conn) error {
	for {
		switch c := nc.(type) {
		case interface{ CloseWrite() error }:
			return c.CloseWrite()
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return ErrNoCloseWrite
		}
	}
}
