package sse

import (
	"net"
	"syscall"
)

// peerClosed reports whether the client has closed its end, without
// blocking and without a reader goroutine: it peeks at the socket. An SSE
// client sends nothing after its request, so a readable end-of-file means
// it is gone.
func peerClosed(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil
		return true
	})
	return closed
}
