package server

import (
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/limit"
)

// connLimits returns the connection limits of the config (limits.*),
// counted in the metrics; limits.max_connections 0 takes
// limit.DefaultMaxConns.
func (s *Server) connLimits() limit.ConnsOptions {
	l := &s.cfg.Limits
	max := l.MaxConnections
	if max == 0 {
		max = limit.DefaultMaxConns()
		s.log.Debug("limits.max_connections from the open-file limit", "max_connections", max)
	}
	return limit.ConnsOptions{
		Max:           max,
		MaxPerIP:      l.MaxConnectionsPerIP,
		NewPerIP:      l.NewConnectionsPerIP,
		NewPerIPBurst: l.NewConnectionsPerIPBurst,
		Exempt:        l.Exempt(),
		OnRefuse:      func(r *limit.Refusal) { s.metrics.Refused(r.Key) },
	}
}

// publishLimiter returns the hub's PublishLimiter for the config's publish
// rates, or nil when none is set (a publish then asks nothing).
func (s *Server) publishLimiter() hub.PublishLimiter {
	l := &s.cfg.Limits
	p := limit.NewPublish(limit.PublishOptions{
		PerKey:        limit.RatesOptions{Rate: l.PublishRatePerKey, Burst: l.PublishBurstPerKey},
		PerUser:       limit.RatesOptions{Rate: l.PublishRatePerUser, Burst: l.PublishBurstPerUser},
		PerIP:         limit.RatesOptions{Rate: l.PublishRatePerIP, Burst: l.PublishBurstPerIP},
		PerConnection: limit.RatesOptions{Rate: l.PublishRatePerConnection, Burst: l.PublishBurstPerConnection},
		Exempt:        l.Exempt(),
	})
	if !p.On() {
		return nil
	}
	return p
}
