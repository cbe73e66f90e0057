package config_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/config"
)

func TestLimitsLoad(t *testing.T) {
	p := writeFile(t, `
http:
  max_header_bytes: 8192
limits:
  max_event_bytes: 4096
  max_queue_bytes: 1048576
  max_connections: 500
  max_connections_per_ip: 20
  new_connections_per_ip: 2.5
  new_connections_per_ip_burst: 5
  ip_exempt: [10.0.0.0/8, "2001:db8::1"]
  max_subscriptions_per_connection: 16
  publish_rate_per_user: 10
  publish_burst_per_user: 20
namespaces:
  files:
    max_event_bytes: 262144
  tiny:
    max_event_bytes: 16
`)
	c, err := config.Load(p, []string{"HERALD_LIMITS_PUBLISH_RATE_PER_KEY=1000.5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if c.HTTP.MaxHeaderBytes != 8192 || l.MaxConnections != 500 || l.MaxConnectionsPerIP != 20 || l.NewConnectionsPerIP != 2.5 ||
		l.NewConnectionsPerIPBurst != 5 || l.MaxSubscriptionsPerConnection != 16 || l.PublishRatePerUser != 10 ||
		l.PublishBurstPerUser != 20 || l.PublishRatePerKey != 1000.5 {
		t.Errorf("limits = %+v, max_header_bytes %d", l, c.HTTP.MaxHeaderBytes)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}
	if got := l.Exempt(); !reflect.DeepEqual(got, want) {
		t.Errorf("Exempt() = %v, want %v", got, want)
	}
	if got := c.LargestEventBytes(); got != 262144 {
		t.Errorf("LargestEventBytes = %d, want the files namespace's 262144", got)
	}
	lim := c.EventLimit()
	for _, tt := range []struct {
		topic string
		bytes int
		key   string
	}{
		{"files.a", 262144, "namespaces.files.max_event_bytes"},
		{"tiny.a.b", 16, "namespaces.tiny.max_event_bytes"},
		{"chat.a", 4096, "limits.max_event_bytes"},
	} {
		if n, key := lim(tt.topic); n != tt.bytes || key != tt.key {
			t.Errorf("EventLimit(%s) = %d, %s; want %d, %s", tt.topic, n, key, tt.bytes, tt.key)
		}
	}
	if def := config.Default(); def.EventLimit() != nil {
		t.Error("EventLimit without namespace limits is not nil")
	}

	c, err = config.Load("", []string{"HERALD_LIMITS_IP_EXEMPT=192.0.2.0/24,::1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Limits.IPExempt; !reflect.DeepEqual(got, []string{"192.0.2.0/24", "::1"}) {
		t.Errorf("HERALD_LIMITS_IP_EXEMPT gave %q", got)
	}
}

func TestLimitsErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"limits:\n  max_connections: -1\n", "config limits.max_connections: must not be negative"},
		{"limits:\n  max_connections_per_ip: -1\n", "config limits.max_connections_per_ip"},
		{"limits:\n  new_connections_per_ip: -2\n", "config limits.new_connections_per_ip"},
		{"limits:\n  new_connections_per_ip_burst: 0\n", "config limits.new_connections_per_ip_burst: must be at least 1 while limits.new_connections_per_ip is set"},
		{"limits:\n  publish_rate_per_key: 5\n  publish_burst_per_key: 0\n", "config limits.publish_burst_per_key"},
		{"limits:\n  publish_rate_per_connection: -1\n", "config limits.publish_rate_per_connection"},
		{"limits:\n  max_subscriptions_per_connection: 0\n", "config limits.max_subscriptions_per_connection"},
		{"limits:\n  ip_exempt: [10.0.0.0/8, nope]\n", `config limits.ip_exempt[1]: "nope" is not an IP address`},
		{"limits:\n  ip_exempt: [10.0.0.0/33]\n", "config limits.ip_exempt[0]"},
		{"http:\n  max_header_bytes: 10\n", "config http.max_header_bytes"},
		{"namespaces:\n  chat:\n    max_event_bytes: -1\n", "config namespaces.chat.max_event_bytes"},
		{"namespaces:\n  files:\n    max_event_bytes: 4194304\n", "config limits.max_queue_bytes: must be at least namespaces.files.max_event_bytes (4194304)"},
	}
	for _, tt := range tests {
		_, err := config.Load(writeFile(t, tt.file), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.file, err, tt.want)
		}
	}
}

func TestProxyProtocolLoad(t *testing.T) {
	def := config.Default()
	if len(def.ProxyProtocol.Trusted) != 0 || def.ProxyProtocol.HeaderTimeout <= 0 {
		t.Errorf("default proxy_protocol = %+v, want off with a header timeout", def.ProxyProtocol)
	}
	p := writeFile(t, "proxy_protocol:\n  trusted: [10.0.0.0/8, \"fd00::1\"]\n  header_timeout: 2s\n")
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::1/128")}
	if got := c.ProxyProtocol.TrustedPrefixes(); !reflect.DeepEqual(got, want) || c.ProxyProtocol.HeaderTimeout.String() != "2s" {
		t.Errorf("proxy_protocol = %v, %v; want %v, 2s", got, c.ProxyProtocol.HeaderTimeout, want)
	}
	c, err = config.Load("", []string{"HERALD_PROXY_PROTOCOL_TRUSTED=192.0.2.10,192.0.2.11"}, map[string]string{"proxy_protocol.header_timeout": "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ProxyProtocol.Trusted; !reflect.DeepEqual(got, []string{"192.0.2.10", "192.0.2.11"}) || c.ProxyProtocol.HeaderTimeout.String() != "1s" {
		t.Errorf("HERALD_PROXY_PROTOCOL_TRUSTED gave %q, header_timeout %v", got, c.ProxyProtocol.HeaderTimeout)
	}
	for file, want := range map[string]string{
		"proxy_protocol:\n  trusted: [10.0.0.0/8, nope]\n": `config proxy_protocol.trusted[1]: "nope" is not an IP address`,
		"proxy_protocol:\n  header_timeout: 0s\n":          "config proxy_protocol.header_timeout: must be a positive duration",
		"http:\n  trusted_proxies: [10.0.0.0/33]\n":        "config http.trusted_proxies[0]",
		"http:\n  forwarded_header: x-real-ip\n":           `config http.forwarded_header: must be x-forwarded-for or forwarded, got "x-real-ip"`,
	} {
		if _, err := config.Load(writeFile(t, file), nil, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", file, err, want)
		}
	}
}
