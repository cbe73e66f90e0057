package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/netguard"
	"github.com/heraldhq/herald/internal/source"
)

// Outbound configures the requests herald makes itself (source pollers;
// webhook deliveries next) and the guard they pass (package netguard):
// loopback, private, link-local, multicast and cloud metadata addresses
// are refused unless allowed here.
type Outbound struct {
	// AllowNetworks are IP addresses and CIDR prefixes connections may
	// reach although in a refused range (127.0.0.1 for a local service).
	AllowNetworks []string `koanf:"allow_networks"`
	// AllowHosts are host names whose connections are not checked at all.
	AllowHosts []string `koanf:"allow_hosts"`
}

// Guard returns the outbound guard this section configures. Validate has
// checked the entries.
func (o *Outbound) Guard() *netguard.Guard {
	nets, _, _ := netguard.ParseAllow(o.AllowNetworks)
	_, hosts, _ := netguard.ParseAllow(o.AllowHosts)
	return netguard.New(netguard.Options{AllowNetworks: nets, AllowHosts: hosts})
}

func (o *Outbound) validate(bad func(key, format string, args ...any)) {
	for i, e := range o.AllowNetworks {
		if nets, _, err := netguard.ParseAllow([]string{e}); err != nil || len(nets) == 0 {
			bad(fmt.Sprintf("outbound.allow_networks[%d]", i), "%q is not an IP address or a CIDR prefix such as 10.0.0.0/8 (host names go in outbound.allow_hosts)", e)
		}
	}
	for i, e := range o.AllowHosts {
		if _, hosts, err := netguard.ParseAllow([]string{e}); err != nil || len(hosts) == 0 {
			bad(fmt.Sprintf("outbound.allow_hosts[%d]", i), "%q is not a host name (addresses go in outbound.allow_networks)", e)
		}
	}
}

// Source declares a source poller (docs/sources.md): created at startup
// when missing, changed to these settings when it exists. Zero fields take
// the source defaults.
type Source struct {
	Name         string            `koanf:"name"`
	URL          string            `koanf:"url"`
	Method       string            `koanf:"method"`
	Headers      map[string]string `koanf:"headers"`
	Body         string            `koanf:"body"`
	Topic        string            `koanf:"topic"`
	Mode         string            `koanf:"mode"` // whole, json-items, prometheus
	Type         string            `koanf:"type"`
	Interval     time.Duration     `koanf:"interval"`
	Jitter       *float64          `koanf:"jitter"` // nil: source.DefaultJitter
	Timeout      time.Duration     `koanf:"timeout"`
	MaxBodyBytes int64             `koanf:"max_body_bytes"`
	MaxBackoff   time.Duration     `koanf:"max_backoff"`
	Items        string            `koanf:"items"`
	ID           string            `koanf:"id"`
	Version      string            `koanf:"version"`
	Removals     bool              `koanf:"removals"`
	Metrics      []string          `koanf:"metrics"`
}

// Config returns the source's settings, defaults filled in.
func (s *Source) Config() source.Config {
	c := source.Config{
		Name: s.Name, URL: s.URL, Method: s.Method, Headers: s.Headers, Body: s.Body, Topic: s.Topic,
		Mode: source.Mode(s.Mode), Type: s.Type, Interval: s.Interval, Jitter: source.DefaultJitter, Timeout: s.Timeout,
		MaxBodyBytes: s.MaxBodyBytes, MaxBackoff: s.MaxBackoff, Items: s.Items, ID: s.ID, Version: s.Version,
		Removals: s.Removals, Metrics: s.Metrics,
	}
	if s.Jitter != nil {
		c.Jitter = *s.Jitter
	}
	return c.WithDefaults()
}

// validateSources checks every declared source, and that no two share a
// name. The guard's refusal of an address literal is checked by the
// server, which has the guard.
func (c *Config) validateSources(bad func(key, format string, args ...any)) {
	c.Outbound.validate(bad)
	seen := make(map[string]bool)
	for i := range c.Sources {
		s := &c.Sources[i]
		key := fmt.Sprintf("sources[%d] (%s)", i, s.Name)
		cfg := s.Config()
		if err := cfg.Validate(); err != nil {
			var fe *source.FieldError
			if errors.As(err, &fe) {
				bad(key+"."+fe.Field, "%s", fe.Msg)
			} else {
				bad(key, "%v", err)
			}
			continue
		}
		if seen[s.Name] {
			bad(key+".name", "%q names two sources", s.Name)
		}
		seen[s.Name] = true
	}
}
