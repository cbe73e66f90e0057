package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

func TestLoadGroups(t *testing.T) {
	p := writeFile(t, `
groups:
  - name: billing
    topics: [orders.eu, "orders.us.>"]
    start: earliest
    ack_wait: 1m
    max_deliveries: 3
    backoff: [1s, 10s]
    ordering_key: header:customer
  - name: audit
    topics: [audit]
`)
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Groups) != 2 {
		t.Fatalf("groups %+v", c.Groups)
	}
	b := c.Groups[0].Config()
	if b.Name != "billing" || !slices.Equal(b.Topics, []string{"orders.eu", "orders.us.>"}) || b.Start != "earliest" || b.AckWait != time.Minute ||
		b.MaxDeliveries != 3 || !slices.Equal(b.Backoff, []time.Duration{time.Second, 10 * time.Second}) || b.OrderingKey != "header:customer" ||
		b.DeadLetter != "billing.dead" || b.MaxInFlight != 1000 {
		t.Errorf("billing: %+v", b)
	}
	if a := c.Groups[1].Config(); a.AckWait != 30*time.Second || a.Start != "latest" {
		t.Errorf("audit's defaults: %+v", a)
	}
}

func TestGroupsErrorsNameTheKey(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"groups:\n  - name: a\n    topics: [t]\n    ack_wait: -1s\n", "config groups[0] (a): group a: ack_wait: "},
		{"groups:\n  - name: a\n", "config groups[0] (a): group a: topics: "},
		{"groups:\n  - name: a\n    topics: [t]\n  - name: a\n    topics: [u]\n", "config groups[1] (a).name: \"a\" names two groups"},
	} {
		_, err := config.Load(writeFile(t, tt.yaml), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
