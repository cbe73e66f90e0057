package hub

import (
	"context"
	"errors"
	"time"
)

// Limits the hub enforces itself: the size of an event (per topic, through
// Options.EventLimit), the topics of one request (cursor.MaxTopics), the
// topics one subscriber follows (SubscriberOptions.MaxTopics, defaulting
// to Options.MaxSubscriptions), and the publish rate of each caller
// (Options.PublishLimiter, asked once per publish in CheckPublish). Each
// refusal names its configuration key and is told to Observer.Refused.

// The configuration keys of the limits the hub enforces, as refusals name
// them.
const (
	KeyMaxEventBytes    = "limits.max_event_bytes"
	KeyMaxSubscriptions = "limits.max_subscriptions_per_connection"
	// KeyMaxConnectionsPerUser is Options.MaxConnectionsPerUser's key.
	KeyMaxConnectionsPerUser = "limits.max_connections_per_user"
	KeyTopicsPerRequest      = "limits.topics_per_request" // fixed: cursor.MaxTopics
)

// PublishLimiter decides whether the caller in ctx may publish n more
// events to topic now. A refusal is a *LimitError (wrapping ErrLimit)
// whose RetryAfter says when to try again. Allow is on every publish's
// path: it must be quick and should not allocate.
type PublishLimiter interface {
	Allow(ctx context.Context, topic string, n int) error
}

// LimitError is the refusal of a request over a limit that may pass later:
// which limit (its configuration key) and when to retry. It wraps
// ErrLimit (limit_reached: HTTP 429, WebSocket 4029, gRPC
// RESOURCE_EXHAUSTED).
type LimitError struct {
	Key        string        // the limit's configuration key, such as limits.publish_rate_per_user
	RetryAfter time.Duration // when to try again; 0 when waiting does not help
	Message    string        // what happened, naming Key
}

func (e *LimitError) Error() string { return ErrLimit.Error() + ": " + e.Message }

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }

// RetryAfter returns the retry hint err carries (a *LimitError's), or 0.
func RetryAfter(err error) time.Duration {
	var le *LimitError
	if errors.As(err, &le) {
		return le.RetryAfter
	}
	return 0
}

type countedKey struct{}

// PublishCounted returns ctx marked as a publish whose events the publish
// rate limit has counted already. A batch spanning topics calls
// CheckPublish for every topic first, so that it is refused whole before
// any part is stored, and then Publish for each with this context, so
// that its events are counted once.
func PublishCounted(ctx context.Context) context.Context {
	return context.WithValue(ctx, countedKey{}, true)
}

// countPublish asks the PublishLimiter whether ctx's caller may publish n
// events to topic. Herald's own components, and publishes counted
// already, pass.
func (h *Hub) countPublish(ctx context.Context, topic string, n int) error {
	if h.opts.PublishLimiter == nil || ctx.Value(countedKey{}) != nil || IdentityOf(ctx) == internalIdentity {
		return nil
	}
	err := h.opts.PublishLimiter.Allow(ctx, topic, n)
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			h.refused(le.Key)
		}
	}
	return err
}

// eventLimit returns the largest payload topic takes, and the key that
// sets it.
func (h *Hub) eventLimit(topic string) (int, string) {
	if h.opts.EventLimit != nil {
		if n, key := h.opts.EventLimit(topic); n > 0 {
			return n, key
		}
	}
	return h.opts.MaxEventBytes, KeyMaxEventBytes
}

// refused tells the Observer of a refusal for the limit of key.
func (h *Hub) refused(key string) {
	if f := h.opts.Observer.Refused; f != nil {
		f(key)
	}
}
