package netio

import (
	"io"
	"net"
	"syscall"
)

// Socket reads and writes a connection's socket without waiting: Go keeps
// sockets in non-blocking mode, so read(2) and write(2) return EAGAIN
// instead of blocking. No goroutine parks, and no deadline (so no timer)
// is needed per call.
//
// Write, Read and PeerClosed each have their own state, so each may run
// concurrently with the others (a connection's writer and reader), but
// not with itself. A nil *Socket's calls return ErrNoTry (PeerClosed:
// false), as on platforms without one.
type Socket struct {
	rc syscall.RawConn // static

	// Owned by Write.
	wfn  func(fd uintptr) bool // s.attemptWrite, bound once so a write does not allocate
	wb   []byte                // the bytes of the write in progress
	wn   int                   // how many of them were written
	werr error

	// Owned by Read.
	rfn  func(fd uintptr) bool // s.attemptRead, bound once
	rb   []byte
	rn   int
	rerr error

	// Owned by PeerClosed.
	pfn     func(fd uintptr) bool // s.attemptPeek, bound once
	pbuf    [1]byte
	pclosed bool
}

// NewSocket returns the Socket of nc, or nil when nc exposes no raw
// descriptor (it is not a syscall.Conn, such as a TLS connection).
func NewSocket(nc net.Conn) *Socket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{rc: rc}
	s.wfn = s.attemptWrite
	s.rfn = s.attemptRead
	s.pfn = s.attemptPeek
	return s
}

// Write writes as much of b as the socket takes now. It returns
// ErrWouldBlock, with the count written, when that is not all of b.
func (s *Socket) Write(b []byte) (int, error) {
	if s == nil {
		return 0, ErrNoTry
	}
	s.wb, s.wn, s.werr = b, 0, nil
	if err := s.rc.Write(s.wfn); err != nil {
		s.wb = nil
		return s.wn, err
	}
	n, err := s.wn, s.werr
	s.wb, s.werr = nil, nil
	if err == nil && n < len(b) {
		err = ErrWouldBlock
	}
	return n, err
}

// attemptWrite is the RawConn callback; returning true means "do not wait".
func (s *Socket) attemptWrite(fd uintptr) bool {
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

// Read reads what the socket holds now into b: ErrWouldBlock when it
// holds nothing, io.EOF when the peer closed its end.
func (s *Socket) Read(b []byte) (int, error) {
	if s == nil {
		return 0, ErrNoTry
	}
	s.rb, s.rn, s.rerr = b, 0, nil
	if err := s.rc.Read(s.rfn); err != nil {
		s.rb = nil
		return 0, err
	}
	n, err := s.rn, s.rerr
	s.rb, s.rerr = nil, nil
	return n, err
}

// attemptRead is the RawConn callback; returning true means "do not wait".
func (s *Socket) attemptRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), s.rb)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.rerr = ErrWouldBlock
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

// PeerClosed reports whether the peer has closed its end, without blocking
// and without consuming anything: it peeks at the socket. It is meant for
// a peer that sends nothing, such as an SSE client after its request,
// where a readable end-of-file means it is gone.
func (s *Socket) PeerClosed() bool {
	if s == nil {
		return false
	}
	s.pclosed = false
	s.rc.Read(s.pfn)
	return s.pclosed
}

// attemptPeek is the RawConn callback of PeerClosed.
func (s *Socket) attemptPeek(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), s.pbuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	s.pclosed = n == 0 && err == nil
	return true
}

// Control runs f with the socket's descriptor, which stays open while f
// runs: a socket closed meanwhile makes Control fail instead of f touching
// a reused descriptor (syscall.RawConn.Control).
func (s *Socket) Control(f func(fd uintptr)) error {
	if s == nil {
		return ErrNoTry
	}
	return s.rc.Control(f)
}
