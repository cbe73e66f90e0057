package ws

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// Errors of the non-blocking socket calls.
var (
	errWouldBlock = errors.New("socket not ready")
	errNoTry      = errors.New("non-blocking socket calls not available")
)

// sock reads and writes a connection's socket without waiting: Go keeps
// sockets in non-blocking mode, so read(2) and write(2) return EAGAIN
// instead of blocking. No goroutine parks, and no deadline (so no timer)
// is needed per call. The reader and the writer have separate state, as
// they run concurrently.
type sock struct {
	rc syscall.RawConn

	wfn  func(fd uintptr) bool // attemptWrite, bound once so a write does not allocate
	wb   []byte                // the bytes of the write in progress
	wn   int                   // how many of them were written
	werr error

	rfn  func(fd uintptr) bool // attemptRead, bound once
	rb   []byte
	rn   int
	rerr error
}

func newSock(nc net.Conn) *sock {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sock{rc: rc}
	s.wfn = s.attemptWrite
	s.rfn = s.attemptRead
	return s
}

// write writes as much of b as the socket takes now.
func (s *sock) write(b []byte) (int, error) {
	s.wb, s.wn, s.werr = b, 0, nil
	if err := s.rc.Write(s.wfn); err != nil {
		s.wb = nil
		return s.wn, err
	}
	n, err := s.wn, s.werr
	s.wb, s.werr = nil, nil
	if err == nil && n < len(b) {
		err = errWouldBlock
	}
	return n, err
}

// attemptWrite is the RawConn callback; returning true means "do not wait".
func (s *sock) attemptWrite(fd uintptr) bool {
	for s.wn < len(s.wb) {
		m, err := syscall.Write(int(fd), s.wb[s.wn:])
		if m > 0 {
			s.wn += m
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			s.werr = err
			return true
		case m <= 0:
			s.werr = io.ErrShortWrite
			return true
		}
	}
	return true
}

// read reads what the socket holds now into b: errWouldBlock when it holds
// nothing, io.EOF when the client closed its end.
func (s *sock) read(b []byte) (int, error) {
	s.rb, s.rn, s.rerr = b, 0, nil
	if err := s.rc.Read(s.rfn); err != nil {
		s.rb = nil
		return 0, err
	}
	n, err := s.rn, s.rerr
	s.rb, s.rerr = nil, nil
	return n, err
}

func (s *sock) attemptRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), s.rb)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.rerr = errWouldBlock
		case err != nil:
			s.rerr = err
		case n == 0:
			s.rerr = io.EOF
		default:
			s.rn = n
		}
		return true
	}
}

// peerClosed reports whether the client has closed its end, without
// blocking: it peeks at the socket.
func (s *sock) peerClosed() bool {
	closed := false
	var buf [1]byte
	s.rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil
		return true
	})
	return closed
}
