package limit_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/limit"
)

// guard is how long a test waits for what should happen at once before it
// calls it a failure; it never orders events.
const guard = 10 * time.Second

// listen serves a limit.Listener on loopback with o. Each admitted
// connection is sent "ok\n" and handed to the test on the returned
// channel; each refused one is sent its refusal's key.
func listen(t *testing.T, o limit.ConnsOptions) (*limit.Listener, *limit.Conns, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := limit.NewConns(o)
	l := conns.Listen(ln, func(nc net.Conn, r *limit.Refusal) {
		nc.Write([]byte(r.Key + "\n"))
	})
	accepted := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			nc.Write([]byte("ok\n"))
			accepted <- nc
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for nc := range accepted {
			nc.Close()
		}
	})
	return l, conns, accepted
}

// dial connects to l and returns the server's first line: "ok" or the key
// of the limit that refused the connection.
func dial(t *testing.T, l net.Listener) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(guard))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the server's answer: %v", err)
	}
	return c, strings.TrimSpace(line)
}

func TestListenerLimits(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name string
		opts limit.ConnsOptions
		want []string // each dial's answer, in order
	}{
		{"no limits", limit.ConnsOptions{}, []string{"ok", "ok", "ok"}},
		{"total", limit.ConnsOptions{Max: 2}, []string{"ok", "ok", limit.KeyMaxConnections, limit.KeyMaxConnections}},
		{"per address", limit.ConnsOptions{MaxPerIP: 2}, []string{"ok", "ok", limit.KeyMaxConnectionsPerIP}},
		{"new per address", limit.ConnsOptions{NewPerIP: 0.01, NewPerIPBurst: 2}, []string{"ok", "ok", limit.KeyNewConnectionsPerIP}},
		{"exempt address", limit.ConnsOptions{MaxPerIP: 1, NewPerIP: 0.01, NewPerIPBurst: 1, Exempt: loopback}, []string{"ok", "ok", "ok"}},
		{"exempt address, total", limit.ConnsOptions{Max: 1, MaxPerIP: 5, Exempt: loopback}, []string{"ok", limit.KeyMaxConnections}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _ := listen(t, tt.opts)
			for i, want := range tt.want {
				if _, got := dial(t, l); got != want {
					t.Errorf("connection %d: %q, want %q", i+1, got, want)
				}
			}
		})
	}
}

// TestListenerRelease checks that closing an admitted connection frees its
// place at once, and only once.
func TestListenerRelease(t *testing.T) {
	refusals := make(chan *limit.Refusal, 4)
	l, conns, accepted := listen(t, limit.ConnsOptions{MaxPerIP: 1, OnRefuse: func(r *limit.Refusal) { refusals <- r }})
	dial(t, l)
	nc := <-accepted
	if _, got := dial(t, l); got != limit.KeyMaxConnectionsPerIP {
		t.Fatalf("second connection: %q, want refused", got)
	}
	if r := <-refusals; r.Node || r.RetryAfter < time.Second || !strings.Contains(r.Message, limit.KeyMaxConnectionsPerIP) {
		t.Errorf("refusal %+v", r)
	}
	if _, ok := nc.(syscall.Conn); !ok {
		t.Error("an admitted connection hides its socket (syscall.Conn)")
	}
	nc.Close()
	nc.Close() // a second close frees nothing more
	if n := conns.Open(); n != 0 {
		t.Fatalf("%d open after the close, want 0", n)
	}
	if _, got := dial(t, l); got != "ok" {
		t.Errorf("after the close: %q, want ok", got)
	}
	if n := conns.Open(); n != 1 {
		t.Errorf("%d open, want 1 (a double close must not free a place twice)", n)
	}
	// A lingering close shuts the write side down first: the place is
	// free from then on.
	nc = <-accepted
	if err := nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n := conns.Open(); n != 0 {
		t.Errorf("%d open after CloseWrite, want 0", n)
	}
	nc.Close()
	if n := conns.Open(); n != 0 {
		t.Errorf("%d open after CloseWrite and Close, want 0", n)
	}
}

// TestListenerCloseEndsRefusals checks that Close ends refusals that are
// still under way (a refuser waiting for a client that sends nothing).
func TestListenerCloseEndsRefusals(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	l := limit.NewConns(limit.ConnsOptions{Max: 1}).Listen(ln, func(nc net.Conn, r *limit.Refusal) {
		close(started)
		nc.Read(make([]byte, 1)) // the client sends nothing: only Close ends this
	})
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	select {
	case <-started:
	case <-time.After(guard):
		t.Fatal("the second connection was not refused")
	}
	l.Close() // goleak (TestMain) checks the refusal's goroutine ended
	<-acceptDone
}

func TestClientKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := limit.ClientKey(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
