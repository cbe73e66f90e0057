//go:build !linux

package ws

import (
	"errors"
	"net"
)

// Errors of the non-blocking socket calls.
var (
	errWouldBlock = errors.New("socket not ready")
	errNoTry      = errors.New("non-blocking socket calls not available")
)

// sock is not available on this platform: connections are read by a
// goroutine each and pooled writes use a short deadline.
type sock struct{}

func newSock(net.Conn) *sock { return nil }

func (*sock) write([]byte) (int, error) { return 0, errNoTry }
func (*sock) read([]byte) (int, error)  { return 0, errNoTry }
func (*sock) peerClosed() bool          { return false }
