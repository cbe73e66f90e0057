package sse

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// Errors of sink.tryWrite.
var (
	errWouldBlock = errors.New("socket buffer full")
	errNoTry      = errors.New("non-blocking write not available")
)

// nonBlocking writes to a socket without waiting: Go keeps sockets in
// non-blocking mode, so write(2) returns EAGAIN when the kernel buffer is
// full. It needs no deadline, and so no timer, per write.
type nonBlocking struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // w.attempt, bound once so a write does not allocate
	b   []byte                // the bytes of the write in progress
	n   int                   // how many of them were written
	err error
}

func newNonBlocking(nc net.Conn) *nonBlocking {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &nonBlocking{rc: rc}
	w.fn = w.attempt
	return w
}

// write writes as much of b as the socket takes now.
func (w *nonBlocking) write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	if err := w.rc.Write(w.fn); err != nil {
		w.b = nil
		return w.n, err
	}
	n, err := w.n, w.err
	w.b, w.err = nil, nil
	if err == nil && n < len(b) {
		err = errWouldBlock
	}
	return n, err
}

// attempt is the RawConn callback; returning true means "do not wait".
func (w *nonBlocking) attempt(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			w.err = err
			return true
		case m <= 0:
			w.err = io.ErrShortWrite
			return true
		}
	}
	return true
}
