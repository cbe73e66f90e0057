package server

import (
	"fmt"
	"net"
	"net/http"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/limit"
	"github.com/heraldhq/herald/internal/transport/proxyproto"
	"github.com/heraldhq/herald/internal/wire"
)

// forwarded makes the client address of a request from an
// http.trusted_proxies peer the one its X-Forwarded-For (or Forwarded)
// names, for everything per request: the caller's identity, so the
// publish rate per address. The connection limits have counted the
// connection already, by its peer.
func (s *Server) forwarded(next http.Handler) http.Handler {
	trusted := s.cfg.HTTP.TrustedProxyPrefixes()
	if len(trusted) == 0 {
		return next
	}
	header := wire.HeaderXForwardedFor
	if s.cfg.HTTP.ForwardedHeader == "forwarded" {
		header = wire.HeaderForwarded
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := wire.ForwardedClient(r.RemoteAddr, r.Header, header, trusted); ok {
			r.RemoteAddr = a
		}
		next.ServeHTTP(w, r)
	})
}

// fromTrustedProxy returns the fast path's test of the connections it
// hands to net/http whole: those of http.trusted_proxies, whose requests
// each name their client (forwarded). nil when none is trusted.
func (s *Server) fromTrustedProxy() func(net.Addr) bool {
	trusted := s.cfg.HTTP.TrustedProxyPrefixes()
	if len(trusted) == 0 {
		return nil
	}
	return func(a net.Addr) bool {
		ta, ok := a.(*net.TCPAddr)
		if !ok {
			return false
		}
		ip := ta.AddrPort().Addr().Unmap()
		for _, p := range trusted {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
}

// proxied returns ln reading the PROXY protocol header of connections
// from proxy_protocol.trusted, or ln itself when none is trusted (then
// nothing is added to the accept path). name is the listener's, http or
// grpc, for the metrics and the log.
func (s *Server) proxied(ln net.Listener, name string) (net.Listener, error) {
	p := &s.cfg.ProxyProtocol
	if len(p.Trusted) == 0 {
		return ln, nil
	}
	pln, err := proxyproto.Listen(ln, proxyproto.Options{
		Trusted: p.TrustedPrefixes(),
		Timeout: p.HeaderTimeout,
		OnReject: s.metrics.ProxyRejected(name, proxyproto.RejectTimeout, proxyproto.RejectMalformed,
			proxyproto.RejectClosed, proxyproto.RejectBusy),
		Log: s.log.With("listener", name),
	})
	if err != nil {
		return nil, fmt.Errorf("proxy_protocol on the %s listener: %w", name, err)
	}
	return pln, nil
}

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
