//go:build !linux

package ws

import "errors"

// poller is the epoll reader, which exists on Linux only; elsewhere every
// connection is read by a goroutine of its own (conn.readLoop).
type poller struct{}

func newPoller(*Handler) (*poller, error) { return nil, errors.New("no epoll on this platform") }

func (*poller) add(*conn) error   { return errors.New("no epoll on this platform") }
func (*poller) rearm(*conn) error { return nil }
func (*poller) remove(*conn)      {}
func (*poller) close()            {}
