//go:build !linux

package sse

import (
	"errors"
	"net"
)

// Errors of sink.tryWrite.
var (
	errWouldBlock = errors.New("socket buffer full")
	errNoTry      = errors.New("non-blocking write not available")
)

// nonBlocking is not available on this platform: pooled writes use a
// short deadline instead.
type nonBlocking struct{}

func newNonBlocking(net.Conn) *nonBlocking { return nil }

func (*nonBlocking) write([]byte) (int, error) { return 0, errNoTry }
