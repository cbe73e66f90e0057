//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
)

// The epoll reader (--reader epoll) takes SSE connections off Go's
// netpoller once their handshake is done and reads them from a few epoll
// loops, one per GOMAXPROCS: one read(2) per readiness, and no goroutine
// per connection. See ReaderEpoll for how it compares.
//
// Each loop owns the connections registered with it: their buffers, frame
// builders and subscribers are touched by that loop only, until stop.
//
// A loop never blocks in epoll_wait, which would hold its thread and P
// until the scheduler noticed and slow the publisher down: the epoll
// descriptor is itself registered with Go's netpoller (epoll instances
// nest), the loop parks like any goroutine waiting to read, and on waking
// drains the ready list with epoll_wait(timeout 0).

// reactor is a set of epoll loops. Connections are added by any goroutine;
// stop ends the loops and closes every connection still open.
type reactor struct {
	loops []*epollLoop
	next  atomic.Uint64
	wg    sync.WaitGroup
	stopc atomic.Bool
	once  sync.Once

	// onFrame handles one frame of a subscriber; an error ends the
	// connection. onEnd is told of a connection the server ended.
	onFrame func(s *subscriber, f *Frame) error
	onEnd   func(s *subscriber, err error)
}

// epollLoop is one epoll instance and the goroutine waiting on it.
type epollLoop struct {
	epfd  int
	file  *os.File                // epfd, registered with Go's netpoller; closing it ends the loop
	raw   syscall.RawConn         // file's, for parking until epfd is readable
	conns []atomic.Pointer[rconn] // indexed by fd; set before EPOLL_CTL_ADD
}

// rconn is one connection read by a loop.
type rconn struct {
	fd  int
	buf []byte // read but not yet parsed: at most a partial line
	b   frameBuilder
	sub *subscriber
}

// newReactor starts n epoll loops.
func newReactor(n int, onFrame func(*subscriber, *Frame) error, onEnd func(*subscriber, error)) (*reactor, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("get open file limit: %w", err)
	}
	r := &reactor{onFrame: onFrame, onEnd: onEnd}
	for range max(n, 1) {
		l, err := newEpollLoop(int(lim.Cur) + 16)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.loops = append(r.loops, l)
	}
	for _, l := range r.loops {
		r.wg.Go(func() { r.run(l) })
	}
	return r, nil
}

func newEpollLoop(maxFD int) (*epollLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	l := &epollLoop{epfd: epfd, file: os.NewFile(uintptr(epfd), "epoll"), conns: make([]atomic.Pointer[rconn], maxFD)}
	if l.raw, err = l.file.SyscallConn(); err != nil {
		l.file.Close()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	return l, nil
}

// add takes over an SSE stream whose handshake is done. On success the
// stream's connection belongs to the reactor.
func (r *reactor) add(st *sseStream, s *subscriber) error {
	if st.chunked {
		return errors.New("chunked stream: not for the epoll reader")
	}
	tcp, ok := st.conn.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return fmt.Errorf("detach connection: %w", err)
	}
	// A duplicate of the descriptor outlives closing the net.Conn, which
	// takes the original off Go's netpoller. Both share one open file
	// description, so the duplicate stays non-blocking.
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(orig uintptr) {
		r1, _, e := syscall.Syscall(syscall.SYS_FCNTL, orig, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			dupErr = e
			return
		}
		fd = int(r1)
	}); err != nil {
		return fmt.Errorf("detach connection: %w", err)
	}
	if dupErr != nil {
		return fmt.Errorf("dup connection: %w", dupErr)
	}
	l := r.loops[r.next.Add(1)%uint64(len(r.loops))]
	if fd >= len(l.conns) {
		syscall.Close(fd)
		return fmt.Errorf("descriptor %d over the open file limit", fd)
	}
	rc := &rconn{fd: fd, b: st.fr.b, sub: s, buf: make([]byte, 0, sseReadBuffer)}
	if n := st.br.Buffered(); n > 0 {
		p, _ := st.br.Peek(n)
		rc.buf = append(rc.buf, p...)
	}
	st.Close()
	// From here on the connection is the reactor's: failures are reported
	// as the stream's end. rc is complete before the Store that publishes
	// it to the loop.
	if len(rc.buf) > 0 && !r.parse(rc) {
		syscall.Close(fd)
		return nil
	}
	l.conns[fd].Store(rc)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.conns[fd].Store(nil)
		syscall.Close(fd)
		r.onEnd(s, fmt.Errorf("epoll_ctl add: %w", err))
	}
	return nil
}

// run is one loop's goroutine. It returns when the loop's file is closed.
func (r *reactor) run(l *epollLoop) {
	events := make([]syscall.EpollEvent, 256)
	var waitErr error
	err := l.raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				waitErr = fmt.Errorf("epoll_wait: %w", err)
				return true
			}
			if n == 0 {
				return false // park until the epoll fd is readable again
			}
			for i := range n {
				if rc := l.conns[events[i].Fd].Load(); rc != nil {
					r.read(l, rc)
				}
			}
		}
	})
	if err == nil {
		err = waitErr
	}
	if err != nil && !r.stopc.Load() {
		r.closeAll(l, fmt.Errorf("epoll reader: %w", err))
	}
}

// read does one read(2) of rc and handles every complete line.
func (r *reactor) read(l *epollLoop, rc *rconn) {
	if len(rc.buf) == cap(rc.buf) {
		if len(rc.buf) >= maxLineBytes {
			r.end(l, rc, errLineTooLong)
			return
		}
		rc.buf = append(rc.buf, 0)[:len(rc.buf)] // grow for a long line
	}
	n, err := syscall.Read(rc.fd, rc.buf[len(rc.buf):cap(rc.buf)])
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		return
	case err != nil:
		r.end(l, rc, fmt.Errorf("read sse stream: %w", err))
		return
	case n == 0:
		r.end(l, rc, fmt.Errorf("read sse stream: %w", io.EOF))
		return
	}
	rc.buf = rc.buf[:len(rc.buf)+n]
	if !r.parse(rc) {
		r.end(l, rc, nil)
	}
}

// parse hands every complete line in rc.buf to the frame builder and
// keeps the rest. It returns false when a frame ended the stream.
func (r *reactor) parse(rc *rconn) bool {
	start := 0
	for {
		i := bytes.IndexByte(rc.buf[start:], '\n')
		if i < 0 {
			break
		}
		line := rc.buf[start : start+i]
		start += i + 1
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if f := rc.b.line(line); f != nil {
			if err := r.onFrame(rc.sub, f); err != nil {
				r.onEnd(rc.sub, err)
				return false
			}
		}
	}
	rc.buf = rc.buf[:copy(rc.buf, rc.buf[start:])]
	return true
}

// end closes a connection the server ended (err != nil) or that a frame
// ended (err == nil, already reported).
func (r *reactor) end(l *epollLoop, rc *rconn, err error) {
	l.conns[rc.fd].Store(nil)
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, rc.fd, nil)
	syscall.Close(rc.fd)
	if err != nil && !r.stopc.Load() {
		r.onEnd(rc.sub, err)
	}
}

// closeAll closes every connection of l; err, when set, is reported for
// each as the reason it ended.
func (r *reactor) closeAll(l *epollLoop, err error) {
	for fd := range l.conns {
		if rc := l.conns[fd].Load(); rc != nil {
			l.conns[fd].Store(nil)
			syscall.Close(rc.fd)
			if err != nil {
				r.onEnd(rc.sub, err)
			}
		}
	}
}

// stop ends the loops, closes every connection and the epoll instances,
// and waits. Call it once no add is in progress; calls after the first do
// nothing.
func (r *reactor) stop() {
	r.once.Do(func() {
		r.stopc.Store(true)
		for _, l := range r.loops {
			l.file.Close() // wakes the loop with an error; closes epfd
		}
		r.wg.Wait()
		for _, l := range r.loops {
			r.closeAll(l, nil)
		}
	})
}

// dieWithParent has the kernel kill cmd's process when this one dies, so
// that no bench worker outlives an interrupted run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
