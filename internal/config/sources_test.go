package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/source"
)

func TestLoadSources(t *testing.T) {
	p := writeFile(t, `
outbound:
  allow_networks: [127.0.0.1, 10.1.0.0/16]
  allow_hosts: [metrics.internal]
sources:
  - name: orders
    url: https://shop.example/api/orders
    topic: shop.orders
    mode: json-items
    items: $.data
    version: updated_at
    interval: 15s
    jitter: 0
    headers:
      Authorization: Bearer abc
  - name: self
    url: http://127.0.0.1:8080/metrics
    topic: metrics.herald
    mode: prometheus
    metrics: [herald_*]
`)
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Outbound.AllowNetworks; len(got) != 2 || got[1] != "10.1.0.0/16" {
		t.Errorf("allow_networks %v", got)
	}
	if len(c.Sources) != 2 {
		t.Fatalf("sources %+v", c.Sources)
	}
	orders := c.Sources[0].Config()
	if orders.Interval != 15*time.Second || orders.Jitter != 0 || orders.ID != "id" || orders.Headers["Authorization"] != "Bearer abc" || orders.Mode != source.ModeJSONItems {
		t.Errorf("orders %+v", orders)
	}
	self := c.Sources[1].Config()
	if self.Jitter != source.DefaultJitter || self.Interval != source.DefaultInterval || self.Metrics[0] != "herald_*" {
		t.Errorf("self %+v", self)
	}
	if err := c.Outbound.Guard().CheckHost("127.0.0.1"); err != nil {
		t.Errorf("the configured guard refuses an allowed network: %v", err)
	}
	if err := c.Outbound.Guard().CheckHost("10.2.0.1"); err == nil {
		t.Error("the configured guard allows a network it was not given")
	}
	// The environment sets the allowlists as comma-separated lists.
	c, err = config.Load("", []string{"HERALD_OUTBOUND_ALLOW_NETWORKS=127.0.0.1/32,::1"}, nil)
	if err != nil || len(c.Outbound.AllowNetworks) != 2 {
		t.Errorf("from the environment: %v, %v", c.Outbound.AllowNetworks, err)
	}
}

func TestSourcesErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"sources:\n  - name: a\n    url: http://x\n    topic: t\n    interval: 1ms\n", "config sources[0] (a).interval: must be between"},
		{"sources:\n  - name: a\n    url: ftp://x\n    topic: t\n", "config sources[0] (a).url: must be an http or https URL"},
		{"sources:\n  - name: a\n    url: http://x\n    topic: a..b\n", "config sources[0] (a).topic: "},
		{"sources:\n  - name: a.b\n    url: http://x\n    topic: t\n", "config sources[0] (a.b).name: "},
		{"sources:\n  - name: a\n    url: http://x\n    topic: t\n    mode: rss\n", "config sources[0] (a).mode: unknown mode"},
		{"sources:\n  - name: a\n    url: http://x\n    topic: t\n  - name: a\n    url: http://y\n    topic: t\n", "config sources[1] (a).name: \"a\" names two sources"},
		{"sources:\n  - name: a\n    url: http://x\n    topic: t\n    interval: 30\n", "plain number"},
		{"sources:\n  - name: a\n    url: http://x\n    topic: t\n    every: 1s\n", "every"},
		{"outbound:\n  allow_networks: [example.com]\n", "config outbound.allow_networks[0]: \"example.com\" is not an IP address or a CIDR prefix"},
		{"outbound:\n  allow_hosts: [10.0.0.0/8]\n", "config outbound.allow_hosts[0]: "},
		{"outbound:\n  allow_hosts: [\"a b\"]\n", "config outbound.allow_hosts[0]: "},
	} {
		_, err := config.Load(writeFile(t, c.file), nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%q) = %v, want an error with %q", c.file, err, c.want)
		}
	}
}
