package hub

import (
	"context"
	"slices"
	"time"
)

// A push consumer's credentials may expire (a JWT's exp). The hub ends the
// subscriber then, with CloseExpired (token_expired on every transport),
// unless the transport refreshed them first: WebSocket and gRPC Connect
// clients send a new token, the transport authenticates it and calls
// Reauthorize, which keeps the subscriptions the new identity still may
// hold and moves the expiry. SSE and long-poll clients reconnect with a new
// token and their cursor instead.

// Expire arms s to end with CloseExpired at t, replacing any earlier
// expiry; the zero time disarms it. It is a no-op on an ended subscriber.
func (s *Subscriber) Expire(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	if t.IsZero() || s.reason != CloseNone {
		return
	}
	s.expiry = time.AfterFunc(time.Until(t), func() { s.Close(CloseExpired) })
}

// Reauthorize checks every subscription of s again under ctx's identity
// (refreshed credentials): the subscriptions the Gate now refuses end, and
// their topics are returned, sorted; s then expires when the new identity
// does. Items of the ended topics already queued stay queued: the
// transport tells its client which topics ended, in order with them.
func (s *Subscriber) Reauthorize(ctx context.Context) ([]string, error) {
	id := IdentityOf(ctx)
	if id == nil {
		return nil, errNoIdentity
	}
	s.mu.Lock()
	if s.reason != CloseNone {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	topics := make([]string, 0, len(s.subs))
	for t := range s.subs {
		topics = append(topics, t)
	}
	s.mu.Unlock()
	var dropped []string
	for _, t := range topics {
		if err := s.h.allow(ctx, ActionSubscribe, t); err != nil && s.Unsubscribe(t) {
			dropped = append(dropped, t)
		}
	}
	s.Expire(id.Expires)
	slices.Sort(dropped)
	return dropped, nil
}
