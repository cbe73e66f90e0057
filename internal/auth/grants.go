package auth

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// Grants are what one credential allows, compiled from an API key's
// config or a token's grants claim: for each action the topic patterns it
// may be taken on, and whether the credential may administer. A Grants is
// immutable and shared by every identity made from the same credential.
//
// The actions are independent. In particular subscribe is receiving live
// events from now on, and history is reading anything from before now:
// pulling, a subscription from a cursor or from earliest (which is how SSE
// and WebSocket clients resume after a reconnect). A client that should
// resume without loss needs both on its topics. Admin (the topics API,
// and later the dashboard and group management) does not imply the other
// actions, nor they it.
type Grants struct {
	patterns [numActions][]Pattern // by hub.Action; admin has none
	admin    bool
}

// numActions bounds hub.Action values: ActionAdmin is the last.
const numActions = int(hub.ActionAdmin) + 1

// CompileGrants parses every pattern of g; an error names the action and
// the pattern.
func CompileGrants(g config.Grants) (*Grants, error) {
	out := &Grants{admin: g.Admin}
	for _, a := range []struct {
		action   hub.Action
		patterns []string
	}{
		{hub.ActionPublish, g.Publish},
		{hub.ActionSubscribe, g.Subscribe},
		{hub.ActionHistory, g.History},
		{hub.ActionPresence, g.Presence},
		{hub.ActionConsume, g.Consume},
	} {
		for i, s := range a.patterns {
			p, err := ParsePattern(s)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", a.action, i, err)
			}
			out.patterns[a.action] = append(out.patterns[a.action], p)
		}
	}
	return out, nil
}

// parseGrantsClaim compiles a token's grants claim: a JSON object of the
// config.Grants shape. Unknown members are refused, so a misspelt action
// ("subscibe") fails loudly instead of granting nothing.
func parseGrantsClaim(raw json.RawMessage) (*Grants, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &Grants{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var g config.Grants
	if err := dec.Decode(&g); err != nil {
		return nil, err
	}
	return CompileGrants(g)
}

// Allows reports whether g lets its holder take action a on topic. topic
// must be a valid topic name (the Gate checks); for ActionAdmin it may be
// "" (an action on no one topic). A nil Grants allows nothing.
func (g *Grants) Allows(a hub.Action, topic string) bool {
	if g == nil {
		return false
	}
	if a == hub.ActionAdmin {
		return g.admin
	}
	if int(a) >= numActions {
		return false
	}
	for _, p := range g.patterns[a] {
		if p.Match(topic) {
			return true
		}
	}
	return false
}
