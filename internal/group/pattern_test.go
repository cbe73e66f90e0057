package group

import "testing"

func TestPattern(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"orders.eu", "orders.eu", true},
		{"orders.eu", "orders.us", false},
		{"orders.*", "orders.eu", true},
		{"orders.*", "orders", false},
		{"orders.*", "orders.eu.1", false},
		{"orders.>", "orders.eu.1", true},
		{"orders.>", "orders", false},
		{"*.alerts", "db.alerts", true},
		{">", "anything.at.all", true},
	}
	for _, tt := range tests {
		p, err := parsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("parsePattern(%q): %v", tt.pattern, err)
		}
		if got := p.match(tt.topic); got != tt.want {
			t.Errorf("%q matches %q: %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
	for _, bad := range []string{"", "a..b", "a.b*", "a.>.b", "a b"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("parsePattern(%q) accepted it", bad)
		}
	}
}
