package hub

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald/internal/event"
)

// Origin says what kind of caller a call comes from, so that the hub can
// hold end-user clients to policies that trusted services are not held to.
// It travels in the context, next to the caller's identity.
type Origin uint8

// The origins of calls.
const (
	// OriginService is the default: the HTTP API and gRPC unary calls,
	// used by backends.
	OriginService Origin = iota
	// OriginClient marks calls from end-user clients: WebSocket
	// connections and gRPC Connect streams. Their publishes are subject to
	// Options.ClientPublish (the client_publish setting).
	OriginClient
)

type originKey struct{}

// WithOrigin returns ctx marked with o.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginOf returns the origin ctx carries; OriginService when none.
func OriginOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// checkOrigin refuses a client's publish to a topic whose namespace does
// not let clients publish. It is the one place client_publish is enforced.
func (h *Hub) checkOrigin(ctx context.Context, topic string) error {
	if h.opts.ClientPublish == nil || OriginOf(ctx) != OriginClient || h.opts.ClientPublish(topic) {
		return nil
	}
	return fmt.Errorf("%w: clients may not publish to %s (client_publish is off for namespace %s); publish through the HTTP API",
		ErrForbidden, topic, event.Namespace(topic))
}
