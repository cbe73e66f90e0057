package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/reason"
)

// CloseReason says why a subscriber ended. Transports turn it into their
// own wire signal (an SSE error event, a WebSocket close code, a gRPC status).
type CloseReason uint8

// The reasons a subscriber ends.
const (
	CloseNone        CloseReason = iota // still open
	CloseClient                         // the consumer went away or unsubscribed
	CloseSlow                           // its queue overflowed: it was not reading fast enough
	CloseShutdown                       // the server is draining; reconnect elsewhere or later
	CloseError                          // the engine failed while recovering history
	CloseExpired                        // the credentials it was opened with expired (Expire)
	CloseUnavailable                    // the engine stayed unavailable past Options.UnavailableWait while recovering history
)

// Code returns the reason's row in the reason table: its wire code, and
// how each transport says it.
func (r CloseReason) Code() reason.Code {
	switch r {
	case CloseNone:
		return ""
	case CloseClient:
		return reason.ClientClosed
	case CloseSlow:
		return reason.SlowConsumer
	case CloseShutdown:
		return reason.ShuttingDown
	case CloseExpired:
		return reason.TokenExpired
	case CloseUnavailable:
		return reason.Unavailable
	default:
		return reason.Internal
	}
}

// String returns the reason's wire code.
func (r CloseReason) String() string {
	if r == CloseNone {
		return "none"
	}
	return string(r.Code())
}

// GapReason says why a consumer could not get every event it asked for.
type GapReason uint8

// The reasons for a gap.
const (
	GapTrimmed GapReason = iota + 1 // the events asked for are older than retained history
	GapEpoch                        // the topic's history was lost or reset since the position
	GapAhead                        // the position is beyond the newest event of its epoch
)

// String returns the gap reason's wire code.
func (g GapReason) String() string {
	switch g {
	case GapTrimmed:
		return "trimmed"
	case GapEpoch:
		return "epoch_changed"
	default:
		return "ahead"
	}
}

// Gap is the explicit signal that events were skipped: what was asked for,
// and the position delivery continues after.
type Gap struct {
	Topic     string
	Reason    GapReason
	Requested event.Position // the position the consumer presented
	Resumed   event.Position // delivery continues with the event after this
	Earliest  uint64         // offset of the earliest retained event
}

// Item is one entry of a subscriber's queue: an event, a gap notice, a
// presence change, or a note the transport queued itself (Enqueue).
// Exactly one field is set.
type Item struct {
	Event    *event.Event
	Gap      *Gap
	Presence *PresenceChange
	Note     any
}

// Start says where a new subscription begins.
type Start struct {
	// Position, when Set, resumes after that position.
	Position event.Position
	Set      bool
	// Earliest starts from the earliest retained event when no Position is
	// set; otherwise the subscription starts after the newest event.
	Earliest bool
	// Info is what the consumer tells others about itself (a JSON object
	// of at most MaxPresenceInfo bytes) while it is present on a topic
	// with presence on. Nil shows no info.
	Info []byte
}

// SubscriberOptions configure NewSubscriber.
type SubscriberOptions struct {
	// Wake is called, without locks held, when the subscriber has something
	// for its writer: new items, history to recover, or its end. It must not
	// block; calls may be coalesced.
	Wake func()
	// Kick, if set, is called once when the hub ends the subscriber (slow
	// consumer, shutdown), to unblock a writer stuck in a write.
	Kick func(CloseReason)
	// MaxQueueBytes overrides the hub's per-subscriber queue cap.
	MaxQueueBytes int
	// MaxTopics caps the topics the subscriber follows at once; default
	// the hub's Options.MaxSubscriptions.
	MaxTopics int
	// Identity is the caller (IdentityOf the request's context): a user's
	// subscribers count against Options.MaxConnectionsPerUser. A stream
	// opened without credentials that gets them later passes them to
	// SetIdentity.
	Identity *Identity
}

// subscriberOpts is what a Subscriber keeps of its SubscriberOptions (the
// Identity is counted at once and not kept: a Subscriber stays small).
type subscriberOpts struct {
	Wake          func()
	Kick          func(CloseReason)
	MaxQueueBytes int
	MaxTopics     int
}

// Subscriber is one push consumer (an SSE stream, a WebSocket, a gRPC
// stream) with a bounded queue. The hub fills the queue; the transport's
// writer empties it with Next. Live events are queued only when they follow
// the last queued offset of their topic; anything else (a subscription still
// recovering, a live delivery lost by a networked engine) is read from
// history by Next, so the seam between history and live has no gap and no
// duplicate.
type Subscriber struct {
	h      *Hub
	opts   subscriberOpts // static after construction
	client string         // static: the id others see in presence

	mu       sync.Mutex // guards the fields below
	queue    []Item
	bytes    int
	subs     map[string]*subscription
	catchups []*subscription // subscriptions with history to read, in order of need
	reason   CloseReason
	kicked   bool
	hold     int         // Subscribe calls with a reply in progress: Next hands out nothing meanwhile
	expiry   *time.Timer // ends s with CloseExpired (Expire); nil when its credentials never expire

	down *outage // set while the engine is unavailable to s's history reads (readFailed)
}

// outage is a Subscriber's wait for an unavailable engine: history reads
// pause until retryAt, and retry wakes the writer then. It exists only
// during an outage, so that a Subscriber stays small.
type outage struct {
	since   time.Time     // first failed history read of this outage
	backoff time.Duration // the current wait between history reads
	retryAt time.Time
	retry   *time.Timer
}

// stop stops o's timer.
func (o *outage) stop() {
	if o != nil && o.retry != nil {
		o.retry.Stop()
	}
}

// subscription is one topic of one subscriber. Its fields are guarded by
// the owner's mu.
type subscription struct {
	owner  *Subscriber
	waiter chan struct{} // set for long-poll waiters, which only get a signal
	topic  string
	member *event.Member // set while present on the topic; guarded by the topic's pmu

	epoch   event.Epoch
	last    uint64 // offset of the last event queued
	catchup bool   // history must be read before live events are queued
	seen    uint64 // newest live offset noticed while catching up
	gone    bool   // taken out of owner.subs; a fan-out still holding an old list must not queue for it
}

// NewSubscriber registers a push consumer with the hub.
func (h *Hub) NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = h.opts.MaxQueueBytes
	}
	if opts.Wake == nil {
		opts.Wake = func() {}
	}
	if opts.MaxTopics <= 0 {
		opts.MaxTopics = h.opts.MaxSubscriptions
	}
	s := &Subscriber{h: h, opts: subscriberOpts{opts.Wake, opts.Kick, opts.MaxQueueBytes, opts.MaxTopics}, client: newClientID(), subs: make(map[string]*subscription)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if err := h.countUserLocked(s, opts.Identity); err != nil {
		return nil, err
	}
	h.subs[s] = struct{}{}
	return s, nil
}

// SetIdentity counts s against its user's cap (Options.MaxConnectionsPerUser)
// once a stream opened without credentials gets them (a WebSocket's or a
// gRPC Connect's refresh); a subscriber counted already stays counted for
// its user, as a refresh cannot change who the caller is. Over the cap it
// returns a *LimitError and s is not counted: the caller ends it.
func (s *Subscriber) SetIdentity(id *Identity) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if _, counted := s.h.userOf[s]; counted {
		return nil
	}
	if _, live := s.h.subs[s]; !live {
		return nil // ended meanwhile
	}
	return s.h.countUserLocked(s, id)
}

// userKey is the user id's subscribers count for: a JWT's subject; ""
// for callers who are not end users (anonymous ones, API keys, herald's
// own), whom the per-address limits and the API keys' own rates cover.
func userKey(id *Identity) string {
	if id == nil || id.Method != "jwt" {
		return ""
	}
	return id.Subject
}

// countUserLocked counts s for id's user, or refuses it over the cap.
// h.mu must be held.
func (h *Hub) countUserLocked(s *Subscriber, id *Identity) error {
	user, max := userKey(id), h.opts.MaxConnectionsPerUser
	if user == "" || max <= 0 {
		return nil
	}
	if n := h.users[user]; n >= max {
		h.refused(KeyMaxConnectionsPerUser)
		return &LimitError{Key: KeyMaxConnectionsPerUser, RetryAfter: userRetry, Message: fmt.Sprintf(
			"user %q holds %d connections on this node, the limit (%s): close one first", user, n, KeyMaxConnectionsPerUser)}
	}
	h.users[user]++
	h.userOf[s] = user
	return nil
}

// uncountUserLocked drops s from its user's count. h.mu must be held.
func (h *Hub) uncountUserLocked(s *Subscriber) {
	user, ok := h.userOf[s]
	if !ok {
		return
	}
	delete(h.userOf, s)
	if h.users[user]--; h.users[user] <= 0 {
		delete(h.users, user)
	}
}

// userRetry is the wait suggested to a user over the connection cap: one
// of their connections may have closed by then.
const userRetry = 2 * time.Second

// itemSize is what an item counts against the queue cap: its payload plus a
// fixed overhead for the event and its frames.
func itemSize(ev *event.Event) int { return len(ev.Data) + len(ev.Topic) + 128 }

// Reply builds a transport's answer to a Subscribe (a confirmation with
// the starting positions, or the refusal), which Subscribe queues ahead of
// everything the new subscriptions queue: gaps, presence and events of a
// topic never reach the client before the answer that confirms it. size
// counts against the queue cap.
type Reply func(starts []event.Position, err error) (note any, size int)

// Subscribe adds every topic of req to s, or none: when one topic is
// refused, those added before it are removed again and whatever they
// queued is dropped. It checks req (topics, the subscriber's topic cap)
// and, per topic, the Gate; recovery of history then happens in the
// writer's calls to Next. It returns each topic's starting position (see
// SubscribeTopic).
//
// With reply set, the reply's note is queued at the place in the queue
// the request reached it, and Next hands out nothing until it is built.
func (s *Subscriber) Subscribe(ctx context.Context, req *SubscribeRequest, reply Reply) ([]event.Position, error) {
	err := s.h.checkTopics(req.Topics)
	slot := -1
	s.mu.Lock()
	if s.reason != CloseNone {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(s.subs) + len(req.Topics); err == nil && n > s.opts.MaxTopics {
		err = &LimitError{Key: KeyMaxSubscriptions, Message: fmt.Sprintf(
			"a connection follows at most %d topics (%s); this one would follow %d: unsubscribe some first", s.opts.MaxTopics, KeyMaxSubscriptions, n)}
		s.h.refused(KeyMaxSubscriptions)
	}
	if reply != nil {
		s.hold++
		slot = len(s.queue)
		s.push(Item{}, 0) // the reply's place, filled below
	}
	s.mu.Unlock()

	var starts []event.Position
	if err == nil {
		starts = make([]event.Position, 0, len(req.Topics))
		for i, t := range req.Topics {
			got, e := s.SubscribeTopic(ctx, t, req.start(t))
			if e != nil {
				for _, u := range req.Topics[:i] {
					s.Unsubscribe(u)
				}
				starts, err = nil, fmt.Errorf("subscribe to %s: %w", t, e)
				break
			}
			starts = append(starts, got)
		}
	}
	if reply == nil {
		return starts, err
	}
	s.mu.Lock()
	s.hold--
	ok := true
	if s.reason == CloseNone {
		if err != nil {
			s.dropQueued(slot+1, req.Topics)
		}
		note, size := reply(starts, err)
		s.queue[slot].Note = note
		if s.bytes+size > s.opts.MaxQueueBytes {
			s.endLocked(CloseSlow)
			ok = false
		} else {
			s.bytes += size
		}
	}
	s.mu.Unlock()
	if !ok {
		s.afterEnd(CloseSlow)
	} else {
		s.opts.Wake()
	}
	return starts, err
}

// dropQueued removes from the queue, from index from on, the items of
// topics. (Their bytes stay counted until Next empties the queue.) s.mu
// must be held.
func (s *Subscriber) dropQueued(from int, topics []string) {
	kept := s.queue[:from]
	for _, it := range s.queue[from:] {
		if !slices.Contains(topics, it.topic()) {
			kept = append(kept, it)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// topic returns the topic an item is about; "" for a transport's note.
func (it *Item) topic() string {
	switch {
	case it.Event != nil:
		return it.Event.Topic
	case it.Gap != nil:
		return it.Gap.Topic
	case it.Presence != nil:
		return it.Presence.Topic
	}
	return ""
}

// SubscribeTopic adds one topic to s, starting at start. Transports call
// Subscribe, which checks a whole request; this is its step per topic. It
// checks the Gate, and the recovery of history then happens in the
// writer's calls to Next. A topic already subscribed is an error. It returns the position delivery starts
// after: a transport's cursor for the topic until its first event or gap.
// When start asks for a position that cannot be served, a Gap item is
// queued first and the returned position is the gap's Requested one, so
// that a cursor taken before the gap is delivered still shows the gap again.
func (s *Subscriber) SubscribeTopic(ctx context.Context, topic string, start Start) (event.Position, error) {
	if err := event.ValidateTopic(topic); err != nil {
		return event.Position{}, err
	}
	pinfo, err := normalizeInfo(start.Info)
	if err != nil {
		return event.Position{}, err
	}
	if err := s.h.allow(ctx, ActionSubscribe, topic); err != nil {
		return event.Position{}, err
	}
	if start.Set || start.Earliest {
		// Starting before now reads history (a cursor, earliest).
		if err := s.h.allow(ctx, ActionHistory, topic); err != nil {
			return event.Position{}, err
		}
	}
	sub := &subscription{owner: s, topic: topic, catchup: true}
	s.mu.Lock()
	if s.reason != CloseNone {
		s.mu.Unlock()
		return event.Position{}, ErrClosed
	}
	if _, dup := s.subs[topic]; dup {
		s.mu.Unlock()
		return event.Position{}, fmt.Errorf("%w: already subscribed to %s", ErrBadInput, topic)
	}
	s.subs[topic] = sub
	s.mu.Unlock()

	// Listen before reading the head, so that no event falls between.
	if err := s.h.add(ctx, sub); err != nil {
		s.forget(sub)
		return event.Position{}, err
	}
	b, err := s.h.eng.Read(ctx, topic, 0, 0)
	if err != nil {
		s.h.remove(sub)
		s.forget(sub)
		return event.Position{}, fmt.Errorf("read %s: %w", topic, err)
	}
	info := b.Info
	var gap *Gap
	s.mu.Lock()
	if s.reason != CloseNone || s.subs[topic] != sub {
		// Ended or unsubscribed meanwhile. Whoever did it may have looked
		// for sub in the hub before add put it there, so take it out here;
		// remove is a no-op when it is already gone.
		closed := s.reason != CloseNone
		s.mu.Unlock()
		s.h.remove(sub)
		if closed {
			return event.Position{}, ErrClosed
		}
		return event.Position{}, fmt.Errorf("%w: unsubscribed from %s while subscribing", ErrBadInput, topic)
	}
	sub.epoch = info.Epoch
	switch {
	case start.Set && start.Position.Epoch != info.Epoch:
		gap = &Gap{Topic: topic, Reason: GapEpoch, Requested: start.Position, Earliest: info.First}
		sub.last = info.First - 1
	case start.Set && start.Position.Offset > info.Last:
		gap = &Gap{Topic: topic, Reason: GapAhead, Requested: start.Position, Earliest: info.First}
		sub.last = info.Last
	case start.Set && start.Position.Offset+1 < info.First:
		gap = &Gap{Topic: topic, Reason: GapTrimmed, Requested: start.Position, Earliest: info.First}
		sub.last = info.First - 1
	case start.Set:
		sub.last = start.Position.Offset
	case start.Earliest:
		sub.last = info.First - 1
	default:
		sub.last = info.Last
	}
	pos := event.Position{Epoch: sub.epoch, Offset: sub.last}
	if gap != nil {
		gap.Resumed = pos
		s.push(Item{Gap: gap}, 0)
		pos = start.Position
	}
	s.catchups = append(s.catchups, sub)
	s.mu.Unlock()
	if s.h.presenceOn(topic) {
		s.h.join(sub, pinfo)
	}
	s.opts.Wake()
	return pos, nil
}

// forget drops sub from s's map after a failed Subscribe.
func (s *Subscriber) forget(sub *subscription) {
	s.mu.Lock()
	if s.subs[sub.topic] == sub {
		delete(s.subs, sub.topic)
	}
	sub.gone = true
	s.mu.Unlock()
}

// Unsubscribe removes topic from s. Events of topic already queued stay.
func (s *Subscriber) Unsubscribe(topic string) bool {
	s.mu.Lock()
	sub := s.subs[topic]
	if sub != nil {
		delete(s.subs, topic)
		sub.gone = true
		s.dropCatchup(sub)
	}
	s.mu.Unlock()
	if sub == nil {
		return false
	}
	s.h.remove(sub)
	return true
}

// Topics returns the number of topics s follows.
func (s *Subscriber) Topics() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Client returns the id that presence shows for s: random, unique per
// subscriber.
func (s *Subscriber) Client() string { return s.client }

// Enqueue queues a note of the transport's own (a reply to a command, say)
// behind everything queued so far, so that the writer sends it in order
// with events; size counts against the queue cap. It reports false when s
// has ended, or when the note overflowed the queue, which ends s as a slow
// consumer.
func (s *Subscriber) Enqueue(note any, size int) bool {
	s.mu.Lock()
	if s.reason != CloseNone {
		s.mu.Unlock()
		return false
	}
	wasEmpty, ok := s.pushLocked(Item{Note: note}, size)
	s.mu.Unlock()
	if !ok {
		s.afterEnd(CloseSlow)
		return false
	}
	if wasEmpty {
		s.opts.Wake()
	}
	return true
}

// pushLocked queues it, whose size counts against the queue cap, and
// reports whether the queue was empty before. When it would overflow the
// cap it ends s as a slow consumer instead and reports ok false; the
// caller then calls afterEnd(CloseSlow) once it has unlocked. s.mu must be
// held.
func (s *Subscriber) pushLocked(it Item, size int) (wasEmpty, ok bool) {
	if s.bytes+size > s.opts.MaxQueueBytes {
		s.endLocked(CloseSlow)
		return false, false
	}
	wasEmpty = len(s.queue) == 0
	s.push(it, size)
	return wasEmpty, true
}

// push appends it to the queue. s.mu must be held.
func (s *Subscriber) push(it Item, size int) {
	s.queue = append(s.queue, it)
	s.bytes += size
}

// offer is the hub's fan-out step for one subscription. It reports whether
// the event was queued. It takes only the owner's lock and never blocks.
func (sub *subscription) offer(ev *event.Event) bool {
	if sub.waiter != nil {
		select {
		case sub.waiter <- struct{}{}:
		default:
		}
		return false
	}
	s := sub.owner
	s.mu.Lock()
	if s.reason != CloseNone || sub.gone {
		s.mu.Unlock()
		return false
	}
	switch {
	case sub.catchup:
		if ev.Offset > sub.seen {
			sub.seen = ev.Offset
		}
		s.mu.Unlock()
		return false
	case ev.Epoch == sub.epoch && ev.Offset <= sub.last:
		s.mu.Unlock() // a duplicate delivery
		return false
	case ev.Epoch == sub.epoch && ev.Offset == sub.last+1:
		wasEmpty, ok := s.pushLocked(Item{Event: ev}, itemSize(ev))
		if ok {
			sub.last = ev.Offset
		}
		s.mu.Unlock()
		if !ok {
			s.afterEnd(CloseSlow)
			return false
		}
		if wasEmpty {
			s.opts.Wake()
		}
		return true
	default: // a lost live delivery or a new epoch: recover from history
		sub.catchup = true
		sub.seen = ev.Offset
		s.catchups = append(s.catchups, sub)
		s.mu.Unlock()
		s.opts.Wake()
		return false
	}
}

// Next moves the queued items into buf (reusing its storage) and returns
// them, oldest first. When the queue is short it first reads history for
// subscriptions that are recovering, so catch-up is paced by the writer. It
// returns an empty slice when there is nothing to write, and the close
// reason once the subscriber has ended.
func (s *Subscriber) Next(ctx context.Context, buf []Item) ([]Item, CloseReason) {
	for {
		s.mu.Lock()
		if s.reason != CloseNone {
			r := s.reason
			s.mu.Unlock()
			return buf[:0], r
		}
		if s.hold > 0 {
			s.mu.Unlock() // a Subscribe is building its reply; it wakes the writer once done
			return buf[:0], CloseNone
		}
		if len(s.catchups) == 0 || s.bytes >= s.opts.MaxQueueBytes/2 || s.down != nil && time.Now().Before(s.down.retryAt) {
			out := append(buf[:0], s.queue...)
			clear(s.queue)
			s.queue = s.queue[:0]
			s.bytes = 0
			s.mu.Unlock()
			return out, CloseNone
		}
		sub := s.catchups[0]
		after, epoch := sub.last, sub.epoch
		s.mu.Unlock()

		b, err := s.h.eng.Read(ctx, sub.topic, after, s.h.opts.CatchupBatch)
		if err != nil {
			s.readFailed(err)
			continue
		}
		s.mu.Lock()
		s.down.stop()
		s.down = nil
		if s.subs[sub.topic] != sub || !sub.catchup {
			s.dropCatchup(sub) // unsubscribed meanwhile
			s.mu.Unlock()
			continue
		}
		n := s.applyBatch(sub, after, epoch, b)
		s.mu.Unlock()
		if n > 0 && s.h.opts.Observer.Delivered != nil {
			s.h.opts.Observer.Delivered(n)
		}
	}
}

// The waits between history reads while the engine is unavailable.
const (
	minReadBackoff = 50 * time.Millisecond
	maxReadBackoff = time.Second
)

// readFailed handles a failed history read. An unavailable engine (Redis
// restarting, failing over) is waited out: reads pause with a growing
// backoff, Next meanwhile hands out what is queued, and a timer wakes the
// writer to read again. s ends with CloseUnavailable once the engine has
// been unavailable for Options.UnavailableWait, and with CloseError at
// once for any other failure.
func (s *Subscriber) readFailed(err error) {
	if !errors.Is(err, ErrUnavailable) {
		s.Close(CloseError)
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.reason != CloseNone {
		s.mu.Unlock()
		return
	}
	d := s.down
	if d == nil {
		d = &outage{since: now, backoff: minReadBackoff}
		s.down = d
	} else {
		d.backoff = min(2*d.backoff, maxReadBackoff)
	}
	if now.Sub(d.since) >= s.h.opts.UnavailableWait {
		s.mu.Unlock()
		s.Close(CloseUnavailable)
		return
	}
	d.retryAt = now.Add(d.backoff)
	if d.retry == nil {
		d.retry = time.AfterFunc(d.backoff, s.opts.Wake)
	} else {
		d.retry.Reset(d.backoff)
	}
	s.mu.Unlock()
}

// applyBatch queues one history read for sub, signalling any gap, and
// returns how many events it queued. s.mu must be held.
func (s *Subscriber) applyBatch(sub *subscription, after uint64, epoch event.Epoch, b event.Batch) int {
	if sub.last != after || sub.epoch != epoch {
		return 0 // moved on since the read was issued; read again
	}
	info := b.Info
	if info.Epoch != epoch {
		gap := &Gap{Topic: sub.topic, Reason: GapEpoch, Requested: event.Position{Epoch: epoch, Offset: after}, Earliest: info.First}
		sub.epoch, sub.last, sub.seen = info.Epoch, info.First-1, 0
		gap.Resumed = event.Position{Epoch: sub.epoch, Offset: sub.last}
		s.push(Item{Gap: gap}, 0)
		return 0
	}
	if after+1 < info.First {
		gap := &Gap{Topic: sub.topic, Reason: GapTrimmed, Requested: event.Position{Epoch: epoch, Offset: after}, Earliest: info.First}
		sub.last = info.First - 1
		gap.Resumed = event.Position{Epoch: sub.epoch, Offset: sub.last}
		s.push(Item{Gap: gap}, 0)
	}
	n := 0
	for _, ev := range b.Events {
		if ev.Offset == sub.last+1 {
			s.push(Item{Event: ev}, itemSize(ev))
			sub.last = ev.Offset
			n++
		}
	}
	if len(b.Events) < s.h.opts.CatchupBatch && sub.seen <= sub.last {
		sub.catchup = false
		sub.seen = 0
		s.dropCatchup(sub)
	}
	return n
}

// dropCatchup removes sub from the catch-up list. s.mu must be held.
func (s *Subscriber) dropCatchup(sub *subscription) {
	for i, x := range s.catchups {
		if x == sub {
			s.catchups = append(s.catchups[:i], s.catchups[i+1:]...)
			return
		}
	}
}

// QueuedBytes returns the bytes queued and not yet taken by Next.
func (s *Subscriber) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Reason returns why s ended, or CloseNone.
func (s *Subscriber) Reason() CloseReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// Close ends s with reason, releases its queue and removes its
// subscriptions. Closing twice keeps the first reason.
func (s *Subscriber) Close(reason CloseReason) {
	s.mu.Lock()
	first := s.reason == CloseNone
	if first {
		s.endLocked(reason)
	}
	s.mu.Unlock()
	if first {
		s.afterEnd(reason)
	}
}

// endLocked marks s ended and drops its queue. s.mu must be held.
func (s *Subscriber) endLocked(reason CloseReason) {
	s.reason = reason
	clear(s.queue)
	s.queue = nil
	s.bytes = 0
	s.catchups = nil
}

// afterEnd unregisters s and signals its writer. s.mu must not be held.
func (s *Subscriber) afterEnd(reason CloseReason) {
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	clear(s.subs)
	kick := s.opts.Kick != nil && !s.kicked && reason != CloseClient
	s.kicked = true
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.down.stop()
	s.down = nil
	s.mu.Unlock()
	for _, sub := range subs {
		s.h.remove(sub)
	}
	s.h.mu.Lock()
	delete(s.h.subs, s)
	s.h.uncountUserLocked(s)
	s.h.mu.Unlock()
	if o := s.h.opts.Observer; o.Disconnects != nil {
		o.Disconnects(reason)
	}
	if reason == CloseSlow && s.h.opts.Observer.SlowConsumers != nil {
		s.h.opts.Observer.SlowConsumers()
	}
	if kick {
		s.opts.Kick(reason)
	}
	s.opts.Wake()
}
