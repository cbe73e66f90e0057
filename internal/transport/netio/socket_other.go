//go:build !linux

package netio

import "net"

// Socket is not available on this platform: NewSocket returns nil, and a
// nil *Socket's calls return ErrNoTry (PeerClosed: false). Callers fall
// back to blocking calls with deadlines, and a goroutine per reader.
type Socket struct{}

// NewSocket returns nil: there are no non-blocking socket calls here.
func NewSocket(net.Conn) *Socket { return nil }

// Write returns ErrNoTry.
func (*Socket) Write([]byte) (int, error) { return 0, ErrNoTry }

// Read returns ErrNoTry.
func (*Socket) Read([]byte) (int, error) { return 0, ErrNoTry }

// PeerClosed returns false: a closed peer is found by the next failed write.
func (*Socket) PeerClosed() bool { return false }

// Control returns ErrNoTry.
func (*Socket) Control(func(fd uintptr)) error { return ErrNoTry }
