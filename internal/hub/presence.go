package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heraldhq/herald/internal/event"
)

// Presence is who is on a topic right now: the push subscribers of the
// topic, for topics where Options.Presence says so. Each
// present client has an id (Subscriber.Client) and the info it gave when
// subscribing (Start.Info). When one joins or leaves, every subscriber of
// the topic gets a PresenceChange item in its queue, itself included.
// Presence is never stored in history and consumes no offsets.
//
// On a single node (the memory and durable engines) presence is the
// hub's own: the members are the topic's subscriptions here. An engine
// shared by several nodes (Redis) implements PresenceStore: the hub then
// also hands it every join and leave made here, and the store keeps every
// node's members and tells the other nodes, whose hubs tell their own
// subscribers of the topic (tellRemote); Presence lists from the store.
//
// A topic's changes are ordered by its topicSubs.pmu: a subscription's
// member is set (join) and cleared (leave), and the change fanned out,
// under it, so that no subscriber sees a client leave before it joined.
// The change is handed to the PresenceStore under pmu too, so that the
// store sees a topic's changes in the order its subscribers here did.
// Lock order: topicSubs.pmu, then Subscriber.mu; and topicSubs.pmu, then
// the store's own lock (SharePresence only queues). Ending a subscriber calls
// remove, which takes pmu, so subscribers a fan-out overflows are ended only
// after pmu is released.
//
// Telling every subscriber of every join is O(subscribers) per change, so
// presence suits topics of people (chat rooms, documents), not ten-thousand
// subscriber fan-outs: it is off unless configured.

// Bounds of presence data.
const (
	MaxPresenceInfo = 1024 // bytes of one client's info
	MaxPresenceList = 1000 // members listed by Presence; Count counts them all
)

// PresenceStore is what an engine shared by several nodes implements to
// share presence among them; the hub finds it on its Engine with a type
// assertion. Engines that serve one node do not implement it.
type PresenceStore interface {
	// AttachPresence sets the function that receives the presence changes
	// made on other nodes, for the topics this node watches (Engine.Watch),
	// never those given to SharePresence here. The function takes hub
	// locks briefly and does no I/O. It is called once, before use.
	AttachPresence(tell func(*PresenceChange))
	// SharePresence records a join or leave made on this node and tells
	// the other nodes. It must not block: the store queues the change and
	// writes a topic's changes later in the order of the calls. The hub
	// calls it under the topic's presence lock; pc must not be changed.
	SharePresence(pc *PresenceChange)
	// ListPresence returns who is present on topic on every node, longest
	// present first, at most max members (Count counts them all). The
	// list includes every change this node shared before the call.
	ListPresence(ctx context.Context, topic string, max int) (event.Presence, error)
}

// ErrPresenceOff is returned by Presence for a topic without presence.
var ErrPresenceOff = fmt.Errorf("%w: presence is off for this topic", ErrBadInput)

// PresenceChange is one client joining or leaving a topic. One value is
// shared by every subscriber told of it and must not be changed.
type PresenceChange struct {
	Topic  string
	Leave  bool // false: a join
	Member event.Member
}

// presenceOn reports whether topic has presence.
func (h *Hub) presenceOn(topic string) bool {
	return h.opts.Presence != nil && h.opts.Presence(topic)
}

// PresenceOn reports whether topic has presence (Options.Presence).
func (h *Hub) PresenceOn(topic string) bool { return h.presenceOn(topic) }

// Presence returns who is present on topic: on this node, or on every
// node when the engine is a PresenceStore. The caller must be allowed
// presence on it.
func (h *Hub) Presence(ctx context.Context, topic string) (event.Presence, error) {
	if err := event.ValidateTopic(topic); err != nil {
		return event.Presence{}, err
	}
	if !h.presenceOn(topic) {
		return event.Presence{}, fmt.Errorf("%w: %s (presence, namespaces.%s.presence)", ErrPresenceOff, topic, event.Namespace(topic))
	}
	if err := h.allow(ctx, ActionPresence, topic); err != nil {
		return event.Presence{}, err
	}
	return h.listPresence(ctx, topic)
}

// listPresence lists topic's present clients, from the PresenceStore if
// the engine is one.
func (h *Hub) listPresence(ctx context.Context, topic string) (event.Presence, error) {
	if h.pstore == nil {
		return h.presence(topic), nil
	}
	p, err := h.pstore.ListPresence(ctx, topic, MaxPresenceList)
	if err != nil {
		return event.Presence{}, fmt.Errorf("presence of %s: %w", topic, err)
	}
	return p, nil
}

// presence lists topic's clients present on this node, longest present
// first.
func (h *Hub) presence(topic string) event.Presence {
	var p event.Presence
	ts := h.topicSubs(topic)
	if ts == nil {
		return p
	}
	ts.pmu.Lock()
	defer ts.pmu.Unlock()
	for _, sub := range *ts.list.Load() {
		if m := sub.member; m != nil {
			p.Count++
			if len(p.Members) < MaxPresenceList {
				p.Members = append(p.Members, *m)
			}
		}
	}
	return p
}

// topicSubs returns topic's live list, or nil.
func (h *Hub) topicSubs(topic string) *topicSubs {
	sh := h.shard(topic)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.topics[topic]
}

// join makes sub present on its topic and tells the topic's subscribers.
// It does nothing when sub was unsubscribed or ended meanwhile.
func (h *Hub) join(sub *subscription, info []byte) {
	ts := h.topicSubs(sub.topic)
	if ts == nil {
		return
	}
	s := sub.owner
	ts.pmu.Lock()
	s.mu.Lock()
	live := s.reason == CloseNone && s.subs[sub.topic] == sub
	s.mu.Unlock()
	if !live {
		ts.pmu.Unlock()
		return
	}
	m := &event.Member{Client: s.client, Info: info, Since: time.Now().UnixMilli()}
	sub.member = m
	pc := &PresenceChange{Topic: sub.topic, Member: *m}
	ended := h.tell(ts, pc)
	if h.pstore != nil {
		h.pstore.SharePresence(pc)
	}
	ts.pmu.Unlock()
	for _, x := range ended {
		x.afterEnd(CloseSlow)
	}
}

// leave ends sub's presence, if it joined, and tells the topic's remaining
// subscribers. sub is already off ts's list.
func (h *Hub) leave(ts *topicSubs, sub *subscription) {
	ts.pmu.Lock()
	m := sub.member
	sub.member = nil
	var ended []*Subscriber
	if m != nil {
		pc := &PresenceChange{Topic: sub.topic, Leave: true, Member: *m}
		ended = h.tell(ts, pc)
		if h.pstore != nil {
			h.pstore.SharePresence(pc)
		}
	}
	ts.pmu.Unlock()
	for _, x := range ended {
		x.afterEnd(CloseSlow)
	}
}

// tellRemote is the PresenceStore's callback: it tells this node's
// subscribers of pc's topic of a join or leave made on another node.
func (h *Hub) tellRemote(pc *PresenceChange) {
	if !h.presenceOn(pc.Topic) {
		return
	}
	ts := h.topicSubs(pc.Topic)
	if ts == nil {
		return
	}
	ts.pmu.Lock()
	ended := h.tell(ts, pc)
	ts.pmu.Unlock()
	for _, x := range ended {
		x.afterEnd(CloseSlow)
	}
}

// tell queues pc for every push subscriber on ts's list. It returns the
// subscribers whose queue overflowed: they are marked ended, and the
// caller must call afterEnd on each once ts.pmu is released. ts.pmu must
// be held.
func (h *Hub) tell(ts *topicSubs, pc *PresenceChange) []*Subscriber {
	size := len(pc.Topic) + len(pc.Member.Client) + len(pc.Member.Info) + 96
	var ended []*Subscriber
	for _, sub := range *ts.list.Load() {
		if sub.waiter != nil {
			continue
		}
		s := sub.owner
		s.mu.Lock()
		if s.reason != CloseNone || sub.gone {
			s.mu.Unlock()
			continue
		}
		wasEmpty, ok := s.pushLocked(Item{Presence: pc}, size)
		s.mu.Unlock()
		if !ok {
			ended = append(ended, s)
			continue
		}
		if wasEmpty {
			s.opts.Wake()
		}
	}
	return ended
}

// normalizeInfo checks a client's presence info and returns it compacted
// (no line breaks, so any transport can frame it), or nil for none.
func normalizeInfo(info []byte) ([]byte, error) {
	if info == nil {
		return nil, nil
	}
	if len(info) > MaxPresenceInfo {
		return nil, fmt.Errorf("%w: presence info is %d bytes, the limit is %d", ErrBadInput, len(info), MaxPresenceInfo)
	}
	t := bytes.TrimSpace(info)
	if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return nil, fmt.Errorf("%w: presence info must be a JSON object", ErrBadInput)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, t); err != nil {
		return nil, fmt.Errorf("%w: presence info: %v", ErrBadInput, err)
	}
	return b.Bytes(), nil
}

// newClientID returns a random id of 16 hex digits.
func newClientID() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := range b {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
