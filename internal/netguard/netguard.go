// Package netguard keeps herald's outbound HTTP requests — source pollers
// today, webhook deliveries next — away from the networks they must not
// reach: loopback, private and link-local ranges, multicast, the
// unspecified address, and the cloud metadata services
// (169.254.169.254, fd00:ec2::254, …). A URL given to herald through its
// API is an attacker's way into the network herald sits in (server-side
// request forgery); the guard is what stops it.
//
// The check is made on the address of every connection, after name
// resolution, in the dialer's Control hook: a name that resolves to a
// public address when a URL is accepted and to 127.0.0.1 when it is
// fetched (DNS rebinding) is refused all the same, and so is a redirect to
// a refused address. The ranges are Svix's list (docs/decisions/0013):
// stricter than RFC 1918 alone.
//
// An allowlist of networks (CIDR prefixes or single addresses) and of host
// names lets a development setup reach what it needs: tests allow
// 127.0.0.1 to reach their local servers.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal of the guard.
var ErrRefused = errors.New("refused by the outbound network guard")

// RefusedError is a refused connection: the address and the range it is
// in.
type RefusedError struct {
	Addr  netip.Addr
	Range string // "loopback", "private", "cloud metadata", …
}

// Error says what was refused and how to allow it.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%v: %s is a %s address (allow it with outbound.allow_networks)", ErrRefused, e.Addr, e.Range)
}

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// refused are the ranges refused by default, the more specific first so
// that a refusal names the narrowest range (a metadata address before the
// link-local range that holds it).
var refused = func() []struct {
	prefix netip.Prefix
	name   string
} {
	rows := [][2]string{
		// Cloud metadata services: AWS, GCP, Azure, OpenStack, Oracle
		// (169.254.169.254), AWS over IPv6, Alibaba, Azure's wire server.
		{"169.254.169.254/32", "cloud metadata"},
		{"fd00:ec2::254/128", "cloud metadata"},
		{"100.100.100.200/32", "cloud metadata"},
		{"168.63.129.16/32", "cloud metadata"},
		// IPv4.
		{"0.0.0.0/8", "unspecified (this network)"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "shared (carrier-grade NAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "IETF protocol assignment"},
		{"192.0.2.0/24", "documentation"},
		{"192.88.99.0/24", "6to4 relay"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"}, // with 255.255.255.255, broadcast
		// IPv6 (IPv4-mapped addresses are checked as IPv4).
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible"},
		{"::ffff:0:0:0/96", "IPv4-translated"},
		{"64:ff9b::/96", "NAT64"},
		{"64:ff9b:1::/48", "NAT64 (local)"},
		{"100::/64", "discard"},
		{"2001::/23", "IETF protocol assignment"},
		{"2001:db8::/32", "documentation"},
		{"2002::/16", "6to4"},
		{"3fff::/20", "documentation"},
		{"5f00::/16", "segment routing (SRv6)"},
		{"fc00::/7", "private (unique local)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local"},
		{"ff00::/8", "multicast"},
	}
	out := make([]struct {
		prefix netip.Prefix
		name   string
	}, len(rows))
	for i, r := range rows {
		out[i].prefix = netip.MustParsePrefix(r[0])
		out[i].name = r[1]
	}
	return out
}()

// Options configure a Guard. Zero fields take the defaults noted.
type Options struct {
	// AllowNetworks are the networks connections may reach even though
	// they are in a refused range (127.0.0.1/32 for a local test server).
	AllowNetworks []netip.Prefix
	// AllowHosts are host names whose connections are not checked at all,
	// whatever they resolve to (an internal service's name). Compared
	// without case and without a final dot.
	AllowHosts []string
	// Resolver resolves names; nil uses the system's.
	Resolver *net.Resolver
	// ConnectTimeout bounds each connection's establishment; default 10s.
	ConnectTimeout time.Duration
}

// Guard decides which addresses outbound connections may reach, and dials
// them. It is immutable once made and safe for concurrent use.
type Guard struct {
	allow    []netip.Prefix
	hosts    []string
	resolver *net.Resolver
	connect  time.Duration
}

// New returns a guard with opts.
func New(opts Options) *Guard {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	g := &Guard{allow: slices.Clone(opts.AllowNetworks), resolver: opts.Resolver, connect: opts.ConnectTimeout}
	for _, h := range opts.AllowHosts {
		g.hosts = append(g.hosts, canonicalHost(h))
	}
	return g
}

// ParseAllow reads an allowlist as the configuration gives it: each entry
// an IP address, a CIDR prefix, or a host name. It returns the networks
// and the names, or an error naming the first entry that is none.
func ParseAllow(entries []string) ([]netip.Prefix, []string, error) {
	var nets []netip.Prefix
	var hosts []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			nets = append(nets, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			nets = append(nets, netip.PrefixFrom(a.WithZone(""), a.BitLen()))
			continue
		}
		if !validHostName(e) {
			return nil, nil, fmt.Errorf("%q is not an IP address, a CIDR prefix (10.0.0.0/8) or a host name", e)
		}
		hosts = append(hosts, canonicalHost(e))
	}
	return nets, hosts, nil
}

// validHostName reports whether s has the shape of a DNS name.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func canonicalHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// Check returns nil when a connection to a may be made, and a
// *RefusedError otherwise.
func (g *Guard) Check(a netip.Addr) error {
	a = a.WithZone("").Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	if !a.IsValid() {
		return &RefusedError{Addr: a, Range: "invalid"}
	}
	for _, r := range refused {
		if r.prefix.Contains(a) {
			return &RefusedError{Addr: a, Range: r.name}
		}
	}
	return nil
}

// CheckHost refuses early a URL's host that is an address literal in a
// refused range, so an API can answer a bad URL at once. A name passes:
// what it resolves to is checked on every connection.
func (g *Guard) CheckHost(host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if slices.Contains(g.hosts, canonicalHost(host)) {
		return nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return g.Check(a)
}

type trustedKey struct{}

// DialContext connects to address like net.Dialer.DialContext, checking
// the address of every connection attempt after resolution.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(address); err == nil && slices.Contains(g.hosts, canonicalHost(host)) {
		ctx = context.WithValue(ctx, trustedKey{}, true)
	}
	d := net.Dialer{
		Timeout:        g.connect,
		KeepAlive:      30 * time.Second,
		Resolver:       g.resolver,
		ControlContext: g.control,
	}
	return d.DialContext(ctx, network, address)
}

// control runs after a socket is made and before it connects: address is
// the resolved IP and port the socket is about to connect to.
func (g *Guard) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	if ctx.Value(trustedKey{}) != nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s address %q is not an IP address and port", ErrRefused, network, address)
	}
	return g.Check(ap.Addr())
}

// Transport returns an HTTP transport whose every connection goes through
// the guard. It uses no proxy: a proxy would make the connection, and the
// guard would see only the proxy's address.
func (g *Guard) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            g.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}
