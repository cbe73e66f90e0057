package ws

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// poller tells the handler which connections have something to read, with
// no goroutine per connection: connections are registered with one epoll
// instance (level-triggered, one-shot), and one goroutine waits on it.
// When a connection is readable the poller queues it for a reader pool
// worker (conn.readReady), which reads until the socket is empty, handles
// what it read, and re-arms the registration. An idle connection thus costs
// no goroutine and no read buffer.
//
// The loop never blocks in epoll_wait, which would hold its thread and P:
// the epoll descriptor is itself registered with Go's network poller
// (epoll instances nest), so the loop parks like any goroutine waiting to
// read, and on waking drains the ready list with epoll_wait(timeout 0).
//
// Every epoll_ctl call on a connection's descriptor runs inside its
// RawConn.Control, which holds the descriptor open: a connection closed
// meanwhile makes the call fail instead of touching a reused descriptor.
type poller struct {
	h    *Handler
	epfd int
	file *os.File        // epfd, registered with Go's netpoller; closing it ends the loop
	raw  syscall.RawConn // file's, for parking until epfd is readable

	mu    sync.Mutex       // guards conns and next
	conns map[uint64]*conn // by registration id (the epoll event's data)
	next  uint64

	loop sync.WaitGroup // the loop goroutine
	once sync.Once
}

// newPoller starts the poller's loop.
func newPoller(h *Handler) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("epoll descriptor non-blocking: %w", err)
	}
	p := &poller{h: h, epfd: epfd, file: os.NewFile(uintptr(epfd), "epoll"), conns: make(map[uint64]*conn)}
	if p.raw, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	p.loop.Add(1)
	go p.run()
	return p, nil
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers c; its reader starts when it has something to read.
func (p *poller) add(c *conn) error {
	if c.out.Sock == nil {
		return errors.New("no raw socket")
	}
	p.mu.Lock()
	p.next++
	id := p.next
	c.pollID = id
	p.conns[id] = c
	p.mu.Unlock()
	var ctlErr error
	err := c.out.Sock.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(id), Pad: int32(id >> 32)}
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.conns, id)
		p.mu.Unlock()
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// rearm asks for c's next readiness. It fails once c is closed. The
// next reader starts only after this call, but through the kernel, which
// the Go memory model does not see: the atomic store here and the load at
// the start of readReady order the readers' use of the reader state.
func (p *poller) rearm(c *conn) error {
	c.readTurn.Add(1)
	var ctlErr error
	err := c.out.Sock.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(c.pollID), Pad: int32(c.pollID >> 32)}
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	return err
}

// remove unregisters c. Call it before closing c's socket.
func (p *poller) remove(c *conn) {
	c.out.Sock.Control(func(fd uintptr) {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.mu.Lock()
	delete(p.conns, c.pollID)
	p.mu.Unlock()
}

// run is the loop goroutine. It returns when the poller is closed.
func (p *poller) run() {
	defer p.loop.Done()
	events := make([]syscall.EpollEvent, 128)
	p.raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				p.h.opts.Log.Error("ws: epoll_wait failed; connections are no longer read", "err", err)
				return true
			}
			if n == 0 {
				return false // park until the epoll descriptor is readable again
			}
			p.mu.Lock()
			for i := range n {
				id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
				if c := p.conns[id]; c != nil {
					p.h.readers.Add(1)
					p.h.rpool.Submit(c)
				}
			}
			p.mu.Unlock()
		}
	})
}

// close ends the loop and waits for it. Connections still registered are
// not touched: they are closed by their writers.
func (p *poller) close() {
	p.once.Do(func() {
		p.file.Close() // wakes the loop with an error; closes epfd
		p.loop.Wait()
	})
}
