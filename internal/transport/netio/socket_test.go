package netio

import (
	"net"
	"testing"
)

func TestSocketUnavailable(t *testing.T) {
	a, b := net.Pipe() // no raw descriptor
	defer a.Close()
	defer b.Close()
	s := NewSocket(a)
	if s != nil {
		t.Fatalf("NewSocket(net.Pipe) = %v, want nil", s)
	}
	if _, err := s.Write([]byte("x")); err != ErrNoTry {
		t.Errorf("Write: err = %v, want ErrNoTry", err)
	}
	if _, err := s.Read(make([]byte, 1)); err != ErrNoTry {
		t.Errorf("Read: err = %v, want ErrNoTry", err)
	}
	if s.PeerClosed() {
		t.Error("PeerClosed = true, want false")
	}
	if err := s.Control(func(uintptr) {}); err != ErrNoTry {
		t.Errorf("Control: err = %v, want ErrNoTry", err)
	}
}
