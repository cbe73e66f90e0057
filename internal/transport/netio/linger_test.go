package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// connPair returns the two ends of a loopback TCP connection.
func connPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// wrapped hides a connection behind NetConn, as net/http's and the fast
// path's wrappers do.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// sendAndRead plays a client that sends n bytes and then reads the answer
// to the end, as Python's httpx and urllib do: a failed send (the server
// reset the connection) is the client's error, and the answer is never
// read. It returns what it read and the error (nil at a clean end).
func sendAndRead(c net.Conn, n int) ([]byte, error) {
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return nil, err
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return io.ReadAll(c)
}

// TestLingerCloseDeliversTheAnswer is the reason for the lingering close:
// the server answers early and closes while the client still sends
// megabytes; the client, which reads only once it has sent everything,
// must still read the answer and a clean end of stream, not a reset.
func TestLingerCloseDeliversTheAnswer(t *testing.T) {
	for i := range 20 {
		srv, cli := connPair(t)
		answer := []byte("HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\n\r\n")
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 100)
			srv.Read(buf) // the request's head
			srv.Write(answer)
			LingerClose(srv, 5*time.Second, 64<<20)
		}()
		got, err := sendAndRead(cli, 20<<20)
		cli.Close() // as a client does at the end of the stream: the linger ends
		<-done
		if err != nil || !bytes.Equal(got, answer) {
			t.Fatalf("round %d: read %q, %v; want the answer and a clean end", i, got, err)
		}
	}
}

func TestLingerCloseBounds(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		srv, cli := connPair(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // a client that never stops sending
			chunk := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cli.Write(chunk); err != nil {
					return
				}
			}
		})
		start := time.Now()
		LingerClose(srv, time.Minute, 1<<20)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("lingered %v past the byte bound", d)
		}
		close(stop)
		cli.Close()
		wg.Wait()
	})
	t.Run("time", func(t *testing.T) {
		srv, cli := connPair(t) // a client that neither sends nor closes
		start := time.Now()
		LingerClose(srv, 100*time.Millisecond, 1<<20)
		if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
			t.Errorf("lingered %v, want about 100ms", d)
		}
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("client read %d, %v; want end of stream", n, err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		srv, cli := connPair(t)
		cli.Write([]byte("bye"))
		cli.Close()
		start := time.Now()
		LingerClose(srv, time.Minute, 1<<20)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("lingered %v after the peer closed", d)
		}
	})
	t.Run("not tcp", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		if err := LingerClose(a, time.Minute, 1<<20); !errors.Is(err, ErrNoCloseWrite) {
			t.Errorf("LingerClose on a pipe = %v, want ErrNoCloseWrite", err)
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("the pipe is not closed: write = %v", err)
		}
	})
}

func TestCloseWriteThroughWrappers(t *testing.T) {
	srv, cli := connPair(t)
	if err := CloseWrite(wrapped{wrapped{srv}}); err != nil {
		t.Fatal(err)
	}
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read %d, %v; want end of stream", n, err)
	}
	if _, err := cli.Write([]byte("still open")); err != nil {
		t.Errorf("the other direction closed too: %v", err)
	}
}

func TestLingerer(t *testing.T) {
	t.Run("close cuts lingers short", func(t *testing.T) {
		l := NewLingerer(LingerOptions{MaxTime: time.Minute})
		var clients []net.Conn
		for range 3 {
			srv, cli := connPair(t)
			clients = append(clients, cli)
			l.Linger(wrapped{srv})
		}
		waitFor(t, "three lingering", func() bool { return l.Lingering() == 3 })
		start := time.Now()
		l.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
		if n := l.Lingering(); n != 0 {
			t.Errorf("%d still lingering after Close", n)
		}
		for _, c := range clients {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("a client's connection is still open")
			}
		}
		srv, cli := connPair(t)
		l.Linger(srv) // after Close: closed at once
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after Close, read = %v, want end of stream", err)
		}
		goleak.VerifyNone(t)
	})
	t.Run("bounded count", func(t *testing.T) {
		l := NewLingerer(LingerOptions{MaxTime: time.Minute, MaxConns: 1})
		defer l.Close()
		srv1, _ := connPair(t)
		srv2, cli2 := connPair(t)
		l.Linger(srv1)
		l.Linger(srv2) // over the bound: closed at once
		cli2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli2.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read = %v, want end of stream", err)
		}
		if n := l.Lingering(); n != 1 {
			t.Errorf("lingering %d, want 1", n)
		}
	})
	t.Run("nil closes at once", func(t *testing.T) {
		var l *Lingerer
		srv, cli := connPair(t)
		l.Linger(srv)
		l.Close()
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read = %v, want end of stream", err)
		}
	})
}
