package netguard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/heraldhq/herald/internal/netguard"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	loopback := netguard.New(netguard.Options{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	cases := []struct {
		addr      string
		g         *netguard.Guard
		wantRange string // "" means allowed
	}{
		{"127.0.0.1", nil, "loopback"},
		{"127.255.0.9", nil, "loopback"},
		{"10.0.0.1", nil, "private"},
		{"172.16.5.4", nil, "private"},
		{"192.168.1.1", nil, "private"},
		{"169.254.169.254", nil, "cloud metadata"},
		{"169.254.1.1", nil, "link-local"},
		{"100.100.100.200", nil, "cloud metadata"},
		{"168.63.129.16", nil, "cloud metadata"},
		{"100.64.0.1", nil, "shared (carrier-grade NAT)"},
		{"0.0.0.0", nil, "unspecified (this network)"},
		{"224.0.0.1", nil, "multicast"},
		{"255.255.255.255", nil, "reserved"},
		{"198.18.0.1", nil, "benchmarking"},
		{"::1", nil, "loopback"},
		{"::", nil, "unspecified"},
		{"::ffff:127.0.0.1", nil, "loopback"}, // IPv4-mapped: checked as IPv4
		{"::ffff:10.1.2.3", nil, "private"},
		{"fd00:ec2::254", nil, "cloud metadata"},
		{"fd12:3456::1", nil, "private (unique local)"},
		{"fe80::1%eth0", nil, "link-local"},
		{"ff02::1", nil, "multicast"},
		{"64:ff9b::7f00:1", nil, "NAT64"},
		{"2002:7f00:1::", nil, "6to4"},
		{"2001:db8::1", nil, "documentation"},
		{"8.8.8.8", nil, ""},
		{"1.1.1.1", nil, ""},
		{"2606:4700:4700::1111", nil, ""},
		{"2001:4860:4860::8888", nil, ""},
		{"127.0.0.1", loopback, ""},
		{"::ffff:127.0.0.1", loopback, ""},
		{"127.0.0.2", loopback, "loopback"},
		{"10.0.0.1", loopback, "private"},
	}
	def := netguard.New(netguard.Options{})
	for _, c := range cases {
		g := c.g
		if g == nil {
			g = def
		}
		err := g.Check(netip.MustParseAddr(c.addr))
		if c.wantRange == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", c.addr, err)
			}
			continue
		}
		var re *netguard.RefusedError
		if !errors.As(err, &re) || !errors.Is(err, netguard.ErrRefused) {
			t.Errorf("Check(%s) = %v, want a refusal", c.addr, err)
			continue
		}
		if re.Range != c.wantRange {
			t.Errorf("Check(%s) refused as %q, want %q", c.addr, re.Range, c.wantRange)
		}
		if !strings.Contains(err.Error(), "outbound.allow_networks") {
			t.Errorf("Check(%s): %q does not say how to allow it", c.addr, err)
		}
	}
}

func TestCheckHost(t *testing.T) {
	g := netguard.New(netguard.Options{AllowHosts: []string{"Internal.Example."}})
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", false}, {"[::1]", false}, {"10.0.0.1", false}, {"169.254.169.254", false},
		{"example.com", true}, {"localhost", true}, // names are checked when dialled
		{"internal.example", true}, {"8.8.8.8", true},
	} {
		if err := g.CheckHost(c.host); (err == nil) != c.ok {
			t.Errorf("CheckHost(%s) = %v, want ok=%v", c.host, err, c.ok)
		}
	}
}

func TestParseAllow(t *testing.T) {
	nets, hosts, err := netguard.ParseAllow([]string{"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "svc.internal", "Other.Example."})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(nets), "[127.0.0.1/32 10.0.0.0/8 ::1/128 fd00::/8]"; got != want {
		t.Errorf("networks %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(hosts), "[svc.internal other.example]"; got != want {
		t.Errorf("hosts %s, want %s", got, want)
	}
	for _, bad := range []string{"", "10.0.0.0/33", "a b", "http://x", "-x.example", "x..y"} {
		if _, _, err := netguard.ParseAllow([]string{bad}); err == nil {
			t.Errorf("ParseAllow(%q) accepted", bad)
		}
	}
}

// dnsServer answers A queries for its names from a map, over UDP on
// 127.0.0.1: a real resolver the test controls.
type dnsServer struct {
	pc   net.PacketConn
	a    map[string]netip.Addr // name with the final dot → address
	wg   sync.WaitGroup
	addr string
}

func startDNS(t *testing.T, a map[string]netip.Addr) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{pc: pc, a: a, addr: pc.LocalAddr().String()}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		pc.Close()
		s.wg.Wait()
	})
	return s
}

func (s *dnsServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		addr, ok := s.a[strings.ToLower(q.Name.String())]
		if ok && q.Type == dnsmessage.TypeA && addr.Is4() {
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: addr.As4()})
		}
		msg, err := b.Finish()
		if err == nil {
			s.pc.WriteTo(msg, from)
		}
	}
}

// resolver returns a resolver that asks s only.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.addr)
	}}
}

// TestDialRefused dials real addresses through the guard: every refused
// one fails before connecting, with ErrRefused, and the allowlist lets the
// local test server through.
func TestDialRefused(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer ts.Close()
	ts6 := newServer6(t)
	port := ts.Listener.Addr().(*net.TCPAddr).Port
	dns := startDNS(t, map[string]netip.Addr{"evil.test.": netip.MustParseAddr("127.0.0.1")})
	local := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

	cases := []struct {
		name string
		opts netguard.Options
		url  string
		ok   bool
	}{
		{"loopback", netguard.Options{}, ts.URL, false},
		{"private", netguard.Options{}, "http://10.0.0.1/", false},
		{"metadata", netguard.Options{}, "http://169.254.169.254/latest/meta-data/", false},
		{"ipv6 loopback", netguard.Options{}, ts6, false},
		{"name resolving to loopback", netguard.Options{}, fmt.Sprintf("http://evil.test:%d/", port), false},
		{"allowed network", netguard.Options{AllowNetworks: local}, ts.URL, true},
		{"allowed network, name", netguard.Options{AllowNetworks: local}, fmt.Sprintf("http://evil.test:%d/", port), true},
		{"allowed host", netguard.Options{AllowHosts: []string{"evil.test"}}, fmt.Sprintf("http://evil.test:%d/", port), true},
		{"allowed network, metadata still refused", netguard.Options{AllowNetworks: local}, "http://169.254.169.254/", false},
		{"redirect to a refused address", netguard.Options{AllowNetworks: local},
			ts.URL + "/redirect?to=" + fmt.Sprintf("http://127.0.0.2:%d/", port), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Resolver = dns.resolver()
			c.opts.ConnectTimeout = 5 * time.Second
			tr := netguard.New(c.opts).Transport()
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", c.url, nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if c.ok {
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("GET %s: %v, want 200", c.url, err)
				}
				return
			}
			if !errors.Is(err, netguard.ErrRefused) {
				t.Fatalf("GET %s: %v, want a refusal by the guard", c.url, err)
			}
		})
	}
}

// newServer6 returns the URL of a server on [::1], or of a port on [::1]
// nothing listens on when the host has no IPv6 loopback: the guard
// refuses before connecting either way.
func newServer6(t *testing.T) string {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return "http://[::1]:9/"
	}
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}
