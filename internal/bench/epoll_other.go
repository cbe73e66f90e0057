//go:build !linux

package bench

import (
	"errors"
	"os/exec"
)

// reactor is the epoll reader, which exists on Linux only; elsewhere every
// stream is read by its own goroutine.
type reactor struct{}

func newReactor(int, func(*subscriber, *Frame) error, func(*subscriber, error)) (*reactor, error) {
	return nil, errors.New("the epoll reader needs Linux")
}

func (r *reactor) add(*sseStream, *subscriber) error {
	return errors.New("the epoll reader needs Linux")
}

func (r *reactor) stop() {}

// dieWithParent does nothing where the kernel has no parent-death signal;
// workers end when their stdin closes.
func dieWithParent(*exec.Cmd) {}
