package hub

import "context"

// Allow is the check every hub entry point makes (the context must carry
// an identity, and the Gate must allow a on topic), for components that
// act on a caller's behalf without going through Publish, Pull or
// Subscribe: the APIs that manage sources (and groups and webhooks). topic
// is "" for actions on no one topic. Calls of herald's own components
// pass.
func (h *Hub) Allow(ctx context.Context, a Action, topic string) error {
	return h.allow(ctx, a, topic)
}
