package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, closed at
// the end of the test.
func tcpPair(t *testing.T) (local, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	local, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	peer = <-accepted
	if peer == nil {
		local.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { local.Close(); peer.Close() })
	return local, peer
}

// newTestSocket returns the Socket of nc, failing the test if there is none.
func newTestSocket(t *testing.T, nc net.Conn) *Socket {
	t.Helper()
	s := NewSocket(nc)
	if s == nil {
		t.Fatal("NewSocket of a TCP connection = nil")
	}
	return s
}

func TestSocketWriteUntilFull(t *testing.T) {
	local, peer := tcpPair(t)
	local.SetWriteBuffer(16 << 10)
	peer.SetReadBuffer(16 << 10)
	s := newTestSocket(t, local)

	chunk := make([]byte, 64<<10)
	var sent bytes.Buffer
	for i := 0; ; i++ {
		if i == 10_000 {
			t.Fatalf("wrote %d bytes without ErrWouldBlock", sent.Len())
		}
		for j := range chunk {
			chunk[j] = byte(sent.Len() + j)
		}
		n, err := s.Write(chunk)
		sent.Write(chunk[:n])
		if err == ErrWouldBlock {
			if n >= len(chunk) {
				t.Fatalf("ErrWouldBlock with n = %d, the whole chunk", n)
			}
			break
		}
		if err != nil || n != len(chunk) {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(chunk))
		}
	}

	got := make([]byte, sent.Len())
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("reading back %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatal("the peer read other bytes than were written")
	}

	// Drained: the socket takes a small write whole again.
	if n, err := s.Write([]byte("more")); n != 4 || err != nil {
		t.Errorf("Write after drain = %d, %v; want 4, nil", n, err)
	}
}

func TestSocketRead(t *testing.T) {
	local, peer := tcpPair(t)
	s := newTestSocket(t, local)
	buf := make([]byte, 64)

	if n, err := s.Read(buf); n != 0 || err != ErrWouldBlock {
		t.Fatalf("Read of an empty socket = %d, %v; want 0, ErrWouldBlock", n, err)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	waitFor(t, "the peer's bytes", func() bool {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && err != ErrWouldBlock {
			t.Fatalf("Read: %v", err)
		}
		return len(got) >= 5
	})
	if string(got) != "hello" {
		t.Errorf("Read got %q, want %q", got, "hello")
	}

	peer.Close()
	waitFor(t, "end of file", func() bool {
		_, err := s.Read(buf)
		return errors.Is(err, io.EOF)
	})
}

func TestSocketPeerClosed(t *testing.T) {
	local, peer := tcpPair(t)
	s := newTestSocket(t, local)

	if s.PeerClosed() {
		t.Error("PeerClosed = true with the peer open")
	}
	peer.Write([]byte("x")) // pending bytes are not end of file
	time.Sleep(10 * time.Millisecond)
	if s.PeerClosed() {
		t.Error("PeerClosed = true with bytes pending")
	}
	buf := make([]byte, 1)
	if n, err := s.Read(buf); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v; want 1, nil (the peek must not consume)", n, err)
	}
	peer.Close()
	waitFor(t, "PeerClosed", s.PeerClosed)
}

func TestSocketControl(t *testing.T) {
	local, _ := tcpPair(t)
	s := newTestSocket(t, local)
	var got uintptr
	if err := s.Control(func(fd uintptr) { got = fd }); err != nil {
		t.Fatalf("Control: %v", err)
	}
	if got == 0 {
		t.Error("Control ran without a descriptor")
	}
	local.Close()
	if err := s.Control(func(uintptr) {}); err == nil {
		t.Error("Control on a closed socket succeeded")
	}
}

func TestSocketAllocs(t *testing.T) {
	local, peer := tcpPair(t)
	drained := make(chan struct{})
	go func() { io.Copy(io.Discard, peer); close(drained) }()
	t.Cleanup(func() { local.Close(); <-drained })
	s := newTestSocket(t, local)
	msg := make([]byte, 256)
	buf := make([]byte, 64)
	tests := []struct {
		name string
		call func()
	}{
		{"Write", func() { s.Write(msg) }},
		{"Read", func() { s.Read(buf) }}, // nothing to read: ErrWouldBlock
		{"PeerClosed", func() { s.PeerClosed() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(1000, tt.call); got != 0 {
				t.Errorf("%s: %v allocations per call, want 0", tt.name, got)
			}
		})
	}
}
