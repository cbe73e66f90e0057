package wire

import (
	"net/http"
	"net/netip"
	"strings"
)

// The headers a reverse proxy may name the client in (ForwardedClient).
const (
	HeaderXForwardedFor = "X-Forwarded-For" // 203.0.113.7, 10.0.0.2
	HeaderForwarded     = "Forwarded"       // for=203.0.113.7;proto=https, for="[2001:db8::1]:4711" (RFC 7239)
)

// ForwardedClient returns the address of the client that a request from a
// trusted reverse proxy was made for, as host:port, and true; or
// remoteAddr and false when the peer (remoteAddr) is not a trusted proxy
// or the header names no client.
//
// header is the header the proxies append to (HeaderXForwardedFor or
// HeaderForwarded); every line of it counts, in order. The hops are read
// from the right, the one the peer added, leftward: the first address not
// in trusted is the client, since whatever is left of it came from the
// client and may be forged. A hop that is no address ("unknown", an
// obfuscated name, garbage) stops the walk, and the last trusted hop
// stands; when every hop is trusted, the leftmost is the client. The port
// of the result is the peer's, so that two connections of one client
// through the proxy still differ (the per-connection publish rate counts
// by it).
func ForwardedClient(remoteAddr string, h http.Header, header string, trusted []netip.Prefix) (string, bool) {
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil || !contains(trusted, peer.Addr()) {
		return remoteAddr, false
	}
	lines := h.Values(header)
	if len(lines) == 0 {
		return remoteAddr, false
	}
	client := peer.Addr()
	for i := len(lines) - 1; i >= 0; i-- {
		hops := lines[i]
		for hops != "" {
			var hop string
			if j := strings.LastIndexByte(hops, ','); j >= 0 {
				hops, hop = hops[:j], hops[j+1:]
			} else {
				hop, hops = hops, ""
			}
			var a netip.Addr
			var ok bool
			if header == HeaderForwarded {
				a, ok = forwardedFor(hop)
			} else {
				a, ok = hostAddr(strings.TrimSpace(hop))
			}
			if !ok {
				return result(client, peer)
			}
			client = a
			if !contains(trusted, a) {
				return result(client, peer)
			}
		}
	}
	return result(client, peer)
}

func result(client netip.Addr, peer netip.AddrPort) (string, bool) {
	if client == peer.Addr() {
		return peer.String(), false
	}
	return netip.AddrPortFrom(client, peer.Port()).String(), true
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostAddr reads an X-Forwarded-For hop: an address, or an address and a
// port (some proxies add it), IPv6 then in brackets.
func hostAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return hostAddr(s[1 : len(s)-1])
	}
	return netip.Addr{}, false
}

// forwardedFor reads the for= parameter of a Forwarded element
// ("for=192.0.2.60;proto=http;by=203.0.113.43").
func forwardedFor(element string) (netip.Addr, bool) {
	for _, pair := range strings.Split(element, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(k, "for") {
			continue
		}
		return hostAddr(strings.Trim(v, `"`))
	}
	return netip.Addr{}, false
}
