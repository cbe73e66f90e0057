package config

import (
	"fmt"
	"time"
)

// Webhook declares an outbound webhook subscription (docs/webhooks.md):
// created at startup when missing, changed to these settings when it
// exists. Zero fields take the webhook defaults.
type Webhook struct {
	Name           string          `koanf:"name"`
	URL            string          `koanf:"url"`
	Topics         []string        `koanf:"topics"`
	Types          []string        `koanf:"types"`
	Secrets        []string        `koanf:"secrets"` // none: the stored ones, or one generated (see docs/webhooks.md)
	Start          string          `koanf:"start"`
	Ordered        *bool           `koanf:"ordered"` // nil: true
	Concurrency    int             `koanf:"concurrency"`
	RateLimit      float64         `koanf:"rate_limit"`
	Enabled        *bool           `koanf:"enabled"` // nil: true
	Timeout        time.Duration   `koanf:"timeout"`
	ConnectTimeout time.Duration   `koanf:"connect_timeout"`
	Retry          []time.Duration `koanf:"retry"`        // nil: the default schedule
	Jitter         *float64        `koanf:"retry_jitter"` // nil: 0.2
	DisableAfter   time.Duration   `koanf:"disable_after"`
}

// validateWebhooks checks that every declared subscription has a name of
// its own. The settings themselves are checked by the server, with the
// webhook package's rules (which this package cannot import: the webhook
// package depends on the groups, which depend on auth, which depends on
// this package), naming the key all the same.
func (c *Config) validateWebhooks(bad func(key, format string, args ...any)) {
	seen := make(map[string]bool)
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		key := fmt.Sprintf("webhooks[%d] (%s)", i, w.Name)
		if w.Name == "" {
			bad(key+".name", "every webhook needs a name")
			continue
		}
		if seen[w.Name] {
			bad(key+".name", "%q names two webhooks", w.Name)
		}
		seen[w.Name] = true
	}
}
