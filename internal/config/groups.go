package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

// Group declares a consumer group (docs/groups.md): created at startup
// when missing. A group that exists with other settings stops the start:
// settings of a group are fixed once it exists (delete it with
// DELETE /v1/groups/NAME to change them). Zero fields take the group
// defaults.
type Group struct {
	Name              string          `koanf:"name"`
	Topics            []string        `koanf:"topics"`
	Start             string          `koanf:"start"`
	AckWait           time.Duration   `koanf:"ack_wait"`
	MaxDeliveries     int             `koanf:"max_deliveries"`
	DeadLetter        string          `koanf:"dead_letter"`
	MaxInFlight       int             `koanf:"max_in_flight"`
	MemberMaxInFlight int             `koanf:"member_max_in_flight"`
	Backoff           []time.Duration `koanf:"backoff"`
	OrderingKey       string          `koanf:"ordering_key"`
}

// Config returns the group's settings, defaults filled in.
func (g *Group) Config() group.Config {
	return group.Config{
		Name: g.Name, Topics: g.Topics, Start: g.Start, AckWait: g.AckWait, MaxDeliveries: g.MaxDeliveries,
		DeadLetter: g.DeadLetter, MaxInFlight: g.MaxInFlight, MemberMaxInFlight: g.MemberMaxInFlight,
		Backoff: g.Backoff, OrderingKey: g.OrderingKey,
	}.WithDefaults()
}

// validateGroups checks every declared group, and that no two share a
// name.
func (c *Config) validateGroups(bad func(key, format string, args ...any)) {
	seen := make(map[string]bool)
	for i := range c.Groups {
		g := &c.Groups[i]
		key := fmt.Sprintf("groups[%d] (%s)", i, g.Name)
		cfg := g.Config()
		if err := cfg.Validate(); err != nil {
			bad(key, "%s", strings.TrimPrefix(err.Error(), hub.ErrBadInput.Error()+": "))
			continue
		}
		if seen[g.Name] {
			bad(key+".name", "%q names two groups", g.Name)
		}
		seen[g.Name] = true
	}
}
