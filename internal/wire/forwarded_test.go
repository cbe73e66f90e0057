package wire

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestForwardedClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name   string
		remote string
		header string
		lines  []string
		want   string
		ok     bool
	}{
		{"untrusted peer", "198.51.100.1:5000", HeaderXForwardedFor, []string{"203.0.113.7"}, "198.51.100.1:5000", false},
		{"no header", "10.0.0.2:5000", HeaderXForwardedFor, nil, "10.0.0.2:5000", false},
		{"one hop", "10.0.0.2:5000", HeaderXForwardedFor, []string{"203.0.113.7"}, "203.0.113.7:5000", true},
		{"forged left of the client", "10.0.0.2:5000", HeaderXForwardedFor, []string{"1.2.3.4, 203.0.113.7"}, "203.0.113.7:5000", true},
		{"two proxies", "10.0.0.2:5000", HeaderXForwardedFor, []string{"1.2.3.4, 203.0.113.7, 10.0.0.9"}, "203.0.113.7:5000", true},
		{"several lines", "10.0.0.2:5000", HeaderXForwardedFor, []string{"1.2.3.4", "203.0.113.7, 10.0.0.9"}, "203.0.113.7:5000", true},
		{"with a port", "10.0.0.2:5000", HeaderXForwardedFor, []string{"203.0.113.7:1234"}, "203.0.113.7:5000", true},
		{"IPv6", "[fd00::2]:5000", HeaderXForwardedFor, []string{"2001:db8::7"}, "[2001:db8::7]:5000", true},
		{"IPv6 bracketed", "10.0.0.2:5000", HeaderXForwardedFor, []string{"[2001:db8::7]"}, "[2001:db8::7]:5000", true},
		{"mapped", "10.0.0.2:5000", HeaderXForwardedFor, []string{"::ffff:203.0.113.7"}, "203.0.113.7:5000", true},
		{"garbage stops at the last trusted", "10.0.0.2:5000", HeaderXForwardedFor, []string{"203.0.113.7, nope, 10.0.0.9"}, "10.0.0.9:5000", true},
		{"garbage at once", "10.0.0.2:5000", HeaderXForwardedFor, []string{"unknown"}, "10.0.0.2:5000", false},
		{"all trusted", "10.0.0.2:5000", HeaderXForwardedFor, []string{"10.0.0.7, 10.0.0.9"}, "10.0.0.7:5000", true},
		{"empty hop", "10.0.0.2:5000", HeaderXForwardedFor, []string{"203.0.113.7,"}, "10.0.0.2:5000", false},
		{"zone", "10.0.0.2:5000", HeaderXForwardedFor, []string{"fe80::1%eth0"}, "10.0.0.2:5000", false},
		{"Forwarded", "10.0.0.2:5000", HeaderForwarded, []string{`for=1.2.3.4, for="[2001:db8::7]:4711";proto=https`}, "[2001:db8::7]:5000", true},
		{"Forwarded through two", "10.0.0.2:5000", HeaderForwarded, []string{"for=203.0.113.7;proto=http", "For=10.0.0.9;by=10.0.0.2"}, "203.0.113.7:5000", true},
		{"Forwarded unknown", "10.0.0.2:5000", HeaderForwarded, []string{"for=unknown"}, "10.0.0.2:5000", false},
		{"Forwarded configured, X-Forwarded-For sent", "10.0.0.2:5000", HeaderForwarded, nil, "10.0.0.2:5000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add(tt.header, l)
			}
			if tt.name == "Forwarded configured, X-Forwarded-For sent" {
				h.Add(HeaderXForwardedFor, "1.2.3.4")
			}
			got, ok := ForwardedClient(tt.remote, h, tt.header, trusted)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ForwardedClient = %s, %v; want %s, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzForwardedClient checks that ForwardedClient does not panic, and that
// a client it finds is an address with the peer's port.
func FuzzForwardedClient(f *testing.F) {
	f.Add("1.2.3.4, 203.0.113.7, 10.0.0.9", false)
	f.Add(`for=1.2.3.4, for="[2001:db8::7]:4711";proto=https`, true)
	f.Add("unknown, [2001:db8::1]:80,,", false)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, value string, std bool) {
		header := HeaderXForwardedFor
		if std {
			header = HeaderForwarded
		}
		h := http.Header{header: {value}}
		got, ok := ForwardedClient("10.0.0.2:5000", h, header, trusted)
		ap, err := netip.ParseAddrPort(got)
		if err != nil || ap.Port() != 5000 || ap.Addr().Zone() != "" {
			t.Fatalf("ForwardedClient(%q) = %q, %v", value, got, ok)
		}
		if !ok && got != "10.0.0.2:5000" {
			t.Fatalf("ForwardedClient(%q) = %q, false; want the peer", value, got)
		}
	})
}
