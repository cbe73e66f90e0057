package limit

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// The configuration keys of the publish rate limits, as refusals name
// them. Each rate key has a burst key beside it (limits.publish_burst_per_…).
const (
	KeyPublishRatePerKey        = "limits.publish_rate_per_key"
	KeyPublishRatePerUser       = "limits.publish_rate_per_user"
	KeyPublishRatePerIP         = "limits.publish_rate_per_ip"
	KeyPublishRatePerConnection = "limits.publish_rate_per_connection"
)

// PublishOptions configure NewPublish: one rate per kind of caller. A zero
// Rate leaves that kind unlimited.
type PublishOptions struct {
	PerKey  RatesOptions // each API key, by its name
	PerUser RatesOptions // each user (a JWT's subject)
	PerIP   RatesOptions // anonymous callers, by client address (not the Exempt ones)
	// PerConnection limits each end-user connection (a WebSocket, a gRPC
	// Connect stream: calls marked hub.OriginClient), whoever its caller.
	PerConnection RatesOptions
	Exempt        []netip.Prefix // client addresses PerIP does not apply to
}

// Publish is the hub's PublishLimiter: it holds each caller to the publish
// rate of its kind (API key, user, anonymous address) and each end-user
// connection to the per-connection rate. A publish of n events takes n
// tokens.
type Publish struct {
	perKey  *Rates[string]
	perUser *Rates[string]
	perIP   *Rates[netip.Addr]
	perConn *Rates[connKey]
	exempt  []netip.Prefix
}

// connKey names one connection: its transport and the client's address
// and port.
type connKey struct{ transport, addr string }

// NewPublish returns a limiter with no bucket yet.
func NewPublish(o PublishOptions) *Publish {
	return &Publish{
		perKey:  NewRates[string](o.PerKey),
		perUser: NewRates[string](o.PerUser),
		perIP:   NewRates[netip.Addr](o.PerIP),
		perConn: NewRates[connKey](o.PerConnection),
		exempt:  o.Exempt,
	}
}

// On reports whether any rate is set.
func (p *Publish) On() bool {
	return p.perKey.On() || p.perUser.On() || p.perIP.On() || p.perConn.On()
}

// Allow takes n tokens for the caller in ctx, or returns a
// *hub.LimitError saying which rate it is over and when to retry. It does
// not allocate when it allows.
func (p *Publish) Allow(ctx context.Context, topic string, n int) error {
	id := hub.IdentityOf(ctx)
	if id == nil {
		return nil // the hub refuses calls without an identity anyway
	}
	now := time.Now()
	if p.perConn.On() && hub.OriginOf(ctx) == hub.OriginClient {
		if ok, wait := p.perConn.Allow(connKey{id.Transport, id.RemoteAddr}, now, n); !ok {
			return refusal(KeyPublishRatePerConnection, p.perConn, n, wait, "this connection")
		}
	}
	switch {
	case id.Anonymous():
		if !p.perIP.On() {
			return nil
		}
		ap, err := netip.ParseAddrPort(id.RemoteAddr)
		if err != nil || exempt(p.exempt, ap.Addr().Unmap()) {
			return nil
		}
		key := ClientKey(ap.Addr())
		if ok, wait := p.perIP.Allow(key, now, n); !ok {
			return refusal(KeyPublishRatePerIP, p.perIP, n, wait, "anonymous callers from "+key.String())
		}
	case id.Method == "api_key":
		if ok, wait := p.perKey.Allow(id.Subject, now, n); !ok {
			return refusal(KeyPublishRatePerKey, p.perKey, n, wait, "API key "+strconv.Quote(id.Subject))
		}
	default:
		if ok, wait := p.perUser.Allow(id.Subject, now, n); !ok {
			return refusal(KeyPublishRatePerUser, p.perUser, n, wait, "user "+strconv.Quote(id.Subject))
		}
	}
	return nil
}

// refusal builds the error of a publish of n events over the rate of key
// (whose set is r) for who.
func refusal[K comparable](key string, r *Rates[K], n int, wait time.Duration, who string) error {
	burstKey := burstKeyOf(key)
	if n > r.Burst() {
		return &hub.LimitError{Key: burstKey, Message: fmt.Sprintf(
			"a publish of %d events is more than %s may publish at once (%d, %s); send smaller batches",
			n, who, r.Burst(), burstKey)}
	}
	return &hub.LimitError{Key: key, RetryAfter: wait, Message: fmt.Sprintf(
		"%s may publish at most %g events a second (%s, bursts of %d: %s); retry in %v",
		who, r.Rate(), key, r.Burst(), burstKey, wait.Round(time.Millisecond))}
}

// burstKeyOf returns the burst key beside a publish rate key.
func burstKeyOf(key string) string {
	const rate, burst = "limits.publish_rate_", "limits.publish_burst_"
	if len(key) > len(rate) && key[:len(rate)] == rate {
		return burst + key[len(rate):]
	}
	return key
}
