package grpcapi

import (
	"testing"
	"time"
)

// TestLookahead: the reader waits once over the bound, until the handler
// takes enough, or until the stream ends.
func TestLookahead(t *testing.T) {
	l := newLookahead()
	if l.add(maxAheadBytes) {
		t.Fatal("over the bound at the bound")
	}
	if !l.add(1) {
		t.Fatal("not over the bound past it")
	}
	done := make(chan bool)
	stop := make(chan struct{})
	go func() { done <- l.wait(stop) }()
	select {
	case <-done:
		t.Fatal("wait returned while over the bound")
	case <-time.After(50 * time.Millisecond):
	}
	l.take(1)
	if ok := <-done; !ok {
		t.Fatal("wait: false after the handler took enough")
	}
	l.add(2)
	go func() { done <- l.wait(stop) }()
	close(stop)
	if ok := <-done; ok {
		t.Fatal("wait: true over the bound after stop")
	}
}

// TestPublishInSize counts payloads and an overhead per event.
func TestPublishInSize(t *testing.T) {
	in := &publishIn{events: []publishEvent{{data: make([]byte, 100)}, {data: nil}}}
	if n := in.size(); n != 100+2*64 {
		t.Errorf("size %d, want %d", n, 100+2*64)
	}
}
