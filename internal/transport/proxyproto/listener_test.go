package proxyproto

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rejects records the reasons a Listener gives OnReject.
type rejects struct {
	mu  sync.Mutex
	got []string
}

func (r *rejects) add(why string) {
	r.mu.Lock()
	r.got = append(r.got, why)
	r.mu.Unlock()
}

func (r *rejects) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// listen starts a Listener on 127.0.0.1 with opts; accepted connections
// arrive on the returned channel. It is closed when the test ends.
func listen(t *testing.T, opts Options) (*Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ln, opts)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	return l, accepted
}

// dial connects to l from local (an address on the loopback interface,
// "" for any) and sends what.
func dial(t *testing.T, l net.Listener, local string, what []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(what) > 0 {
		if _, err := c.Write(what); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func accept(t *testing.T, accepted <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-accepted:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted within 5s")
		return nil
	}
}

// readN reads n bytes from c within 5s.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return string(b)
}

// wantClosed checks that the server closes c within d.
func wantClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the connection is still open after %v", d)
		}
	}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func TestTrustedPeerGivesTheClientAddress(t *testing.T) {
	tests := []struct {
		name   string
		header []byte
		want   string // RemoteAddr; "" for the peer's own
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"), "203.0.113.7:51234"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n"), "[2001:db8::1]:4000"},
		{"v2 INET", v2Inet(src4, dst4), "203.0.113.7:51234"},
		{"v2 INET6 with TLV", v2Inet(src6, dst6, 0xea, 0, 1, 'x'), "[2001:db8::1]:51234"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), ""},
		{"v2 LOCAL", v2(0, 0, nil), ""},
	}
	var rej rejects
	l, accepted := listen(t, Options{Trusted: loopback, OnReject: rej.add})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The client's first bytes come with the header, as AWS's NLB
			// sends them: they must reach the connection's reader.
			c := dial(t, l, "", append(append([]byte(nil), tt.header...), "hello"...))
			sc := accept(t, accepted)
			defer sc.Close()
			want := tt.want
			if want == "" {
				want = c.LocalAddr().String()
			}
			if got := sc.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if got := readN(t, sc, 5); got != "hello" {
				t.Errorf("read %q after the header, want hello", got)
			}
			if _, ok := sc.(interface{ CloseWrite() error }); !ok {
				t.Errorf("%T has no CloseWrite", sc)
			}
		})
	}
	if got := rej.list(); len(got) != 0 {
		t.Errorf("rejected %v", got)
	}
}

func TestUntrustedPeerHeaderIsData(t *testing.T) {
	var rej rejects
	l, accepted := listen(t, Options{Trusted: loopback, OnReject: rej.add})
	header := "PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"
	c := dial(t, l, "127.0.0.2", []byte(header))
	sc := accept(t, accepted)
	defer sc.Close()
	if _, wrapped := sc.(*Conn); wrapped {
		t.Errorf("an untrusted peer's connection is wrapped (%T)", sc)
	}
	if got, want := sc.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want the peer's %s", got, want)
	}
	if got := readN(t, sc, len(header)); got != header {
		t.Errorf("read %q, want the header as data", got)
	}
	if got := rej.list(); len(got) != 0 {
		t.Errorf("rejected %v", got)
	}
}

func TestBadHeaderClosesTheConnection(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name   string
		send   []byte
		reason string
	}{
		{"no header", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), RejectMalformed},
		{"bad address", []byte("PROXY TCP4 203.0.113.300 10.0.0.1 51234 443\r\n"), RejectMalformed},
		{"half a header", []byte("PROXY TCP4 203.0.113.7 10.0"), RejectTimeout},
		{"nothing", nil, RejectTimeout},
		{"v2 over the bound", v2(1, 0x11, make([]byte, MaxV2Bytes)), RejectMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rej rejects
			l, accepted := listen(t, Options{Trusted: loopback, Timeout: timeout, OnReject: rej.add})
			start := time.Now()
			c := dial(t, l, "", tt.send)
			wantClosed(t, c, 5*time.Second)
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("closed after %v, want within %v", d, timeout)
			}
			waitFor(t, func() bool { return len(rej.list()) == 1 })
			if got := rej.list(); got[0] != tt.reason {
				t.Errorf("reason %q, want %q", got[0], tt.reason)
			}
			select {
			case sc := <-accepted:
				t.Errorf("accepted %v", sc.RemoteAddr())
			default:
			}
			l.mu.Lock()
			pending := len(l.pending)
			l.mu.Unlock()
			if pending != 0 {
				t.Errorf("%d connections still pending", pending)
			}
		})
	}
}

func TestSlowHeaderHoldsUpNoOther(t *testing.T) {
	var rej rejects
	l, accepted := listen(t, Options{Trusted: loopback, Timeout: 2 * time.Second, OnReject: rej.add})
	slow := dial(t, l, "", []byte("PROXY TCP4 198.51.100.1 "))
	// Accept is waiting in the listener now; the header of the next
	// connection must wake it.
	time.Sleep(50 * time.Millisecond)
	dial(t, l, "", v2Inet(src4, dst4))
	if got := accept(t, accepted).RemoteAddr().String(); got != src4.String() {
		t.Errorf("RemoteAddr = %s, want %s", got, src4)
	}
	// An untrusted one meanwhile, and the slow one ends its header.
	dial(t, l, "127.0.0.2", []byte("x"))
	if got := accept(t, accepted).RemoteAddr().String(); got[:10] != "127.0.0.2:" {
		t.Errorf("RemoteAddr = %s, want 127.0.0.2", got)
	}
	slow.Write([]byte("10.0.0.1 1 2\r\n"))
	if got := accept(t, accepted).RemoteAddr().String(); got != "198.51.100.1:1" {
		t.Errorf("RemoteAddr = %s, want 198.51.100.1:1", got)
	}
	if got := rej.list(); len(got) != 0 {
		t.Errorf("rejected %v", got)
	}
}

func TestManyHeadersAtOnce(t *testing.T) {
	l, accepted := listen(t, Options{Trusted: loopback})
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 1000)
			dial(t, l, "", v2Inet(src, dst4))
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for range n {
		c := accept(t, accepted)
		seen[c.RemoteAddr().String()] = true
		c.Close()
	}
	if len(seen) != n {
		t.Errorf("%d distinct addresses, want %d", len(seen), n)
	}
}

func TestMaxPending(t *testing.T) {
	var rej rejects
	l, _ := listen(t, Options{Trusted: loopback, MaxPending: 1, OnReject: rej.add})
	dial(t, l, "", []byte("PROXY "))
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.pending) == 1 })
	c := dial(t, l, "", v2Inet(src4, dst4))
	wantClosed(t, c, 5*time.Second)
	waitFor(t, func() bool { return len(rej.list()) == 1 })
	if got := rej.list(); got[0] != RejectBusy {
		t.Errorf("reason %q, want %q", got[0], RejectBusy)
	}
}

func TestCloseEndsPendingHeaders(t *testing.T) {
	l, _ := listen(t, Options{Trusted: loopback, Timeout: time.Minute})
	c := dial(t, l, "", []byte("PROXY TCP4 "))
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.pending) == 1 })
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a pending header")
	}
	wantClosed(t, c, 5*time.Second)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
