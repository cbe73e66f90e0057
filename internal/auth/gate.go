package auth

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// policy is what namespaces open to anonymous callers, by namespace: a
// bit per action (1 << hub.Action).
type policy map[string]uint8

func newPolicy(namespaces map[string]config.Namespace) policy {
	p := policy{}
	for name, ns := range namespaces {
		var bits uint8
		for _, a := range ns.Anonymous {
			switch a {
			case "subscribe":
				bits |= 1 << hub.ActionSubscribe
			case "history":
				bits |= 1 << hub.ActionHistory
			case "presence":
				bits |= 1 << hub.ActionPresence
			case "publish":
				bits |= 1 << hub.ActionPublish
			}
		}
		if bits != 0 {
			p[name] = bits
		}
	}
	return p
}

// anonymous reports whether anyone may take a on topic.
func (p policy) anonymous(a hub.Action, topic string) bool {
	if topic == "" || a >= 8 {
		return false
	}
	return p[event.Namespace(topic)]&(1<<a) != 0
}

// Allow decides whether the identity ctx carries may take action a on
// topic (hub.Gate). It allows what the identity's grants allow, and what
// the topic's namespace opens to anyone (namespaces.NAME.anonymous);
// everything else is refused: with hub.ErrUnauthenticated for a caller
// without credentials (present some), with hub.ErrForbidden for one whose
// credentials do not reach (no point in presenting them again). A topic
// that is not a valid name is refused whatever the grants, so that no
// pattern is ever matched against a name a topic cannot have. herald's own
// components (hub.Internal) never reach a Gate.
func (au *Auth) Allow(ctx context.Context, a hub.Action, topic string) error {
	id := hub.IdentityOf(ctx)
	if id == nil {
		return fmt.Errorf("%w: the call carries no identity", hub.ErrUnauthenticated)
	}
	if topic != "" || a != hub.ActionAdmin {
		if err := event.ValidateTopic(topic); err != nil {
			return fmt.Errorf("%w: %s refused: %w", hub.ErrForbidden, a, err)
		}
	}
	if au.policy.anonymous(a, topic) {
		return nil
	}
	if id.Anonymous() {
		if topic == "" || a == hub.ActionAdmin {
			return fmt.Errorf("%w: %s needs credentials (an API key or a token with %s)", hub.ErrUnauthenticated, a, a)
		}
		return fmt.Errorf("%w: to %s %s, present credentials: namespace %s does not allow anonymous %s (namespaces.%s.anonymous)",
			hub.ErrUnauthenticated, verb(a), topic, event.Namespace(topic), a, event.Namespace(topic))
	}
	g, _ := id.Grants.(*Grants)
	if g.Allows(a, topic) {
		return nil
	}
	if topic == "" {
		return fmt.Errorf("%w: %s %q may not %s (no admin grant)", hub.ErrForbidden, id.Method, id.Subject, a)
	}
	return fmt.Errorf("%w: %s %q may not %s %s (no %s grant matches it)", hub.ErrForbidden, id.Method, id.Subject, verb(a), topic, a)
}

// verb is how refusals say a with a topic after it.
func verb(a hub.Action) string {
	switch a {
	case hub.ActionPublish:
		return "publish to"
	case hub.ActionSubscribe:
		return "subscribe to"
	case hub.ActionHistory:
		return "read the history of"
	case hub.ActionPresence:
		return "see or join the presence of"
	case hub.ActionConsume:
		return "consume"
	case hub.ActionAdmin:
		return "administer"
	}
	return a.String()
}
