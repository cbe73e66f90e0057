package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/event"
)

// validate checks the limits section (max_event_bytes and max_queue_bytes
// are checked with the rest of Validate).
func (l *Limits) validate(bad func(key, format string, args ...any)) {
	notNegative := []struct {
		key string
		v   float64
	}{
		{"limits.max_connections", float64(l.MaxConnections)},
		{"limits.max_connections_per_ip", float64(l.MaxConnectionsPerIP)},
		{"limits.max_connections_per_user", float64(l.MaxConnectionsPerUser)},
		{"limits.new_connections_per_ip", l.NewConnectionsPerIP},
		{"limits.publish_rate_per_key", l.PublishRatePerKey},
		{"limits.publish_rate_per_user", l.PublishRatePerUser},
		{"limits.publish_rate_per_ip", l.PublishRatePerIP},
		{"limits.publish_rate_per_connection", l.PublishRatePerConnection},
	}
	for _, n := range notNegative {
		if n.v < 0 {
			bad(n.key, "must not be negative (0 means no limit), got %v", n.v)
		}
	}
	bursts := []struct {
		key, rateKey string
		burst        int
		rate         float64
	}{
		{"limits.new_connections_per_ip_burst", "limits.new_connections_per_ip", l.NewConnectionsPerIPBurst, l.NewConnectionsPerIP},
		{"limits.publish_burst_per_key", "limits.publish_rate_per_key", l.PublishBurstPerKey, l.PublishRatePerKey},
		{"limits.publish_burst_per_user", "limits.publish_rate_per_user", l.PublishBurstPerUser, l.PublishRatePerUser},
		{"limits.publish_burst_per_ip", "limits.publish_rate_per_ip", l.PublishBurstPerIP, l.PublishRatePerIP},
		{"limits.publish_burst_per_connection", "limits.publish_rate_per_connection", l.PublishBurstPerConnection, l.PublishRatePerConnection},
	}
	for _, b := range bursts {
		if b.rate > 0 && b.burst < 1 {
			bad(b.key, "must be at least 1 while %s is set, got %d", b.rateKey, b.burst)
		}
	}
	if l.MaxSubscriptionsPerConnection < 1 {
		bad("limits.max_subscriptions_per_connection", "must be at least 1, got %d", l.MaxSubscriptionsPerConnection)
	}
	for i, s := range l.IPExempt {
		if _, err := ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("limits.ip_exempt[%d]", i), "%v", err)
		}
	}
}

// ProxyProtocol configures the PROXY protocol (HAProxy's, versions 1 and
// 2) on both listeners: a load balancer or reverse proxy that sends it
// tells herald the client's address, so that the per-address limits
// count clients and not the proxy (docs/security.md, "Client addresses").
type ProxyProtocol struct {
	// Trusted lists the proxies' addresses (IPs or CIDR prefixes). A
	// connection from one must start with a PROXY protocol header, or is
	// closed; a connection from elsewhere is served as it is, and a header
	// it sends is not honoured. Empty: the PROXY protocol is off.
	Trusted []string `koanf:"trusted"`
	// HeaderTimeout bounds the time a trusted peer takes to send the
	// header, from the connection's opening.
	HeaderTimeout time.Duration `koanf:"header_timeout"`
}

// validate checks the proxy_protocol section (header_timeout is checked
// with the other durations).
func (p *ProxyProtocol) validate(bad func(key, format string, args ...any)) {
	for i, s := range p.Trusted {
		if _, err := ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("proxy_protocol.trusted[%d]", i), "%v", err)
		}
	}
}

// TrustedPrefixes returns proxy_protocol.trusted parsed. Validate has
// checked it.
func (p *ProxyProtocol) TrustedPrefixes() []netip.Prefix {
	return parsePrefixes(p.Trusted)
}

// TrustedProxyPrefixes returns http.trusted_proxies parsed. Validate has
// checked it.
func (h *HTTP) TrustedProxyPrefixes() []netip.Prefix { return parsePrefixes(h.TrustedProxies) }

// ParsePrefix reads an entry of limits.ip_exempt, proxy_protocol.trusted
// or http.trusted_proxies: a CIDR prefix (10.0.0.0/8, fd00::/8) or one
// address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Exempt returns limits.ip_exempt parsed. Validate has checked it.
func (l *Limits) Exempt() []netip.Prefix { return parsePrefixes(l.IPExempt) }

// parsePrefixes parses a validated list of prefixes.
func parsePrefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// largestEvent returns the largest payload any topic takes
// (limits.max_event_bytes, or a namespace's larger max_event_bytes) and
// the key that sets it.
func (c *Config) largestEvent() (int, string) {
	n, key := c.Limits.MaxEventBytes, "limits.max_event_bytes"
	for _, name := range sortedKeys(c.Namespaces) {
		if m := c.Namespaces[name].MaxEventBytes; m > n {
			n, key = m, "namespaces."+name+".max_event_bytes"
		}
	}
	return n, key
}

// LargestEventBytes returns the largest payload any topic takes: what the
// transports must let through for the hub to check per topic.
func (c *Config) LargestEventBytes() int {
	n, _ := c.largestEvent()
	return n
}

// EventLimit returns the hub's per-topic event size lookup: a namespace's
// max_event_bytes where set, with the key that sets it. It returns nil
// when no namespace sets one (limits.max_event_bytes holds everywhere).
func (c *Config) EventLimit() func(topic string) (int, string) {
	type limit struct {
		bytes int
		key   string
	}
	set := make(map[string]limit)
	for name, ns := range c.Namespaces {
		if ns.MaxEventBytes > 0 {
			set[name] = limit{ns.MaxEventBytes, "namespaces." + name + ".max_event_bytes"}
		}
	}
	if len(set) == 0 {
		return nil
	}
	def := limit{c.Limits.MaxEventBytes, "limits.max_event_bytes"}
	return func(topic string) (int, string) {
		if l, ok := set[event.Namespace(topic)]; ok {
			return l.bytes, l.key
		}
		return def.bytes, def.key
	}
}
