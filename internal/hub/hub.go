// Package hub is herald's core: it validates and authorizes publishes, hands
// them to the engine, fans live events out to subscribers, and reads history
// for pull consumers and for recovery. It knows no transport and no engine
// implementation.
//
// Lock order (outer first): shard.mu, then Subscriber.mu; and a topic's
// presence lock (topicSubs.pmu, presence.go), then Subscriber.mu or the
// PresenceStore's queue lock. A topic's subscriber list is copy-on-write,
// so fan-out takes no hub lock at all; it takes each Subscriber.mu briefly
// to queue the event.
package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
)

// Observer receives the hub's counters. The metrics package implements it;
// nil fields are not called.
type Observer struct {
	Published     func(n int)              // events stored
	Delivered     func(n int)              // events queued to push subscribers, live or recovered from history
	PublishTime   func(d time.Duration)    // time spent in Engine.Append
	SlowConsumers func()                   // subscribers ended for overflow
	Subscriptions func(delta int)          // active topic subscriptions
	Disconnects   func(reason CloseReason) // subscribers ended, by reason
	Refused       func(key string)         // requests refused by a limit, by its configuration key (limits.go)
}

// Options configure a Hub. Zero fields take the defaults noted.
type Options struct {
	Gate          Gate          // default AllowAll
	Authenticator Authenticator // default AnonymousAuth
	MaxEventBytes int           // largest payload accepted; default 1 MiB
	MaxQueueBytes int           // per-subscriber queue cap; default 1 MiB
	CatchupBatch  int           // events read per history step; default 256
	Observer      Observer
	// Presence reports whether a topic has presence (join and leave
	// notices, the presence list); nil means no topic has.
	Presence func(topic string) bool
	// ClientPublish reports whether end-user clients (calls whose context
	// carries OriginClient) may publish to a topic; nil allows them.
	ClientPublish func(topic string) bool
	// EventLimit returns the largest payload a topic takes and the
	// configuration key that sets it; nil (or 0) means MaxEventBytes.
	EventLimit func(topic string) (bytes int, key string)
	// MaxSubscriptions is the default of SubscriberOptions.MaxTopics;
	// default cursor.MaxTopics.
	MaxSubscriptions int
	// MaxConnectionsPerUser caps the push subscribers (SSE streams,
	// WebSockets, gRPC streams) one user, a JWT's subject, holds at once
	// (SubscriberOptions.Identity, Subscriber.SetIdentity); 0: no cap.
	MaxConnectionsPerUser int
	// PublishLimiter, when set, is asked once per publish whether the
	// caller may publish that many events now (limits.go).
	PublishLimiter PublishLimiter
	// UnavailableWait is how long a push subscriber recovering history
	// waits out an unavailable engine (ErrUnavailable: Redis restarting or
	// failing over), retrying its read with backoff, before it ends with
	// CloseUnavailable. Default DefaultUnavailableWait.
	UnavailableWait time.Duration
}

// Errors the hub returns that transports map to status codes.
var (
	ErrTooLarge = errors.New("event too large")
	ErrClosed   = errors.New("hub is shutting down")
	ErrBadInput = errors.New("bad input")
	// ErrForbidden is wrapped by a Gate's refusals.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is wrapped by calls naming a thing that does not exist
	// (a consumer group, a delivery, a webhook); transports answer it
	// not_found.
	ErrNotFound = errors.New("not found")
	// ErrConflict is wrapped by calls that contradict the current state (a
	// group created again with other settings, an ack of a delivery whose
	// lease another member holds now); transports answer it conflict.
	ErrConflict = errors.New("conflict")
)

// DefaultUnavailableWait is the default of Options.UnavailableWait: long
// enough for a Redis restart or a Sentinel failover, short enough that a
// consumer stuck on a dead backend is told.
const DefaultUnavailableWait = 30 * time.Second

const numShards = 64

// Hub routes events between producers, the engine and consumers. Create one
// with New; it is safe for concurrent use.
type Hub struct {
	eng    Engine
	pstore PresenceStore // eng, when it shares presence among nodes; else nil
	opts   Options
	seed   maphash.Seed

	shards [numShards]shard

	mu     sync.Mutex // guards subs, users, userOf and closed
	subs   map[*Subscriber]struct{}
	users  map[string]int         // a user's push subscribers, with MaxConnectionsPerUser
	userOf map[*Subscriber]string // the user each counted subscriber counts for
	closed bool
	done   chan struct{} // closed by Close

	// dmu orders starting fan-out goroutines with Close: deliver takes it
	// shared (publishes to many topics do not contend), Close exclusively.
	dmu         sync.RWMutex
	dclosed     bool           // guarded by dmu
	dispatchers sync.WaitGroup // fan-out goroutines; Add only under dmu.RLock while !dclosed

	subCount atomic.Int64 // active topic subscriptions, for Stats
}

type shard struct {
	mu     sync.RWMutex // guards topics
	topics map[string]*topicSubs
}

// topicSubs is one topic's live subscriber list and its fan-out queue. The
// list is replaced, never changed in place, so fan-out reads it without a
// lock.
type topicSubs struct {
	list atomic.Pointer[[]*subscription]

	// pmu orders the topic's presence changes: a subscription's member
	// is set and cleared, and its join and leave fanned out, under it.
	pmu sync.Mutex

	mu      sync.Mutex     // guards pending and running
	pending []*event.Event // delivered by the engine, not yet fanned out
	running bool           // a dispatch goroutine is draining pending
}

// New returns a hub over eng and attaches to its deliveries.
func New(eng Engine, opts Options) *Hub {
	if opts.Gate == nil {
		opts.Gate = AllowAll{}
	}
	if opts.Authenticator == nil {
		opts.Authenticator = AnonymousAuth{}
	}
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = 1 << 20
	}
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = 1 << 20
	}
	if opts.CatchupBatch <= 0 {
		opts.CatchupBatch = 256
	}
	if opts.UnavailableWait <= 0 {
		opts.UnavailableWait = DefaultUnavailableWait
	}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = cursor.MaxTopics
	}
	h := &Hub{eng: eng, opts: opts, seed: maphash.MakeSeed(), subs: make(map[*Subscriber]struct{}), done: make(chan struct{}),
		users: make(map[string]int), userOf: make(map[*Subscriber]string)}
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topicSubs)
	}
	eng.Attach(h.deliver)
	if ps, ok := eng.(PresenceStore); ok {
		h.pstore = ps
		ps.AttachPresence(h.tellRemote)
	}
	return h
}

// Engine returns the engine behind the hub.
func (h *Hub) Engine() Engine { return h.eng }

func (h *Hub) shard(topic string) *shard {
	return &h.shards[maphash.String(h.seed, topic)%numShards]
}

// Publish checks recs (checkRecords: every transport's events pass the
// same rules here) and the Gate, and appends them to topic. The answer
// comes after the engine has stored the events.
func (h *Hub) Publish(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	if err := h.CheckPublish(ctx, topic, recs); err != nil {
		return nil, err
	}
	return h.store(ctx, topic, recs)
}

// PublishEach publishes several publishes to one topic (each a slice of
// records, as given to Publish) in one go: each is checked on its own, as
// Publish checks it (a refused one stores nothing and gets its error in
// errs), and the records of the accepted ones are stored in one
// Engine.Append, in order, each publish getting its own acks. They succeed
// or fail together: an engine error is each accepted one's error. A
// transport that receives many publishes at once (a PublishStream's
// queued requests, a WebSocket's read) uses it so that a burst costs one
// engine call, with the answers of storing them one by one.
func (h *Hub) PublishEach(ctx context.Context, topic string, pubs [][]event.Record) (acks [][]event.Ack, errs []error) {
	acks, errs = make([][]event.Ack, len(pubs)), make([]error, len(pubs))
	if len(pubs) == 1 {
		acks[0], errs[0] = h.Publish(ctx, topic, pubs[0])
		return acks, errs
	}
	n := 0
	for i, recs := range pubs {
		if errs[i] = h.CheckPublish(ctx, topic, recs); errs[i] == nil {
			n += len(recs)
		}
	}
	if n == 0 {
		return acks, errs
	}
	all := make([]event.Record, 0, n)
	for i, recs := range pubs {
		if errs[i] == nil {
			all = append(all, recs...)
		}
	}
	stored, err := h.store(ctx, topic, all)
	for i, recs := range pubs {
		switch {
		case errs[i] != nil:
		case err != nil:
			errs[i] = err
		default:
			acks[i], stored = stored[:len(recs):len(recs)], stored[len(recs):]
		}
	}
	return acks, errs
}

// store appends checked records to topic and tells the Observer.
func (h *Hub) store(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	start := time.Now()
	acks, err := h.eng.Append(ctx, topic, recs)
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", topic, err)
	}
	if o := h.opts.Observer; o.Published != nil {
		o.Published(len(recs))
		if o.PublishTime != nil {
			o.PublishTime(time.Since(start))
		}
	}
	return acks, nil
}

// CheckPublish runs every check Publish runs, without storing anything, so
// that a batch spanning topics can be refused whole before any part of it
// is stored.
func (h *Hub) CheckPublish(ctx context.Context, topic string, recs []event.Record) error {
	if err := event.ValidateTopic(topic); err != nil {
		return err
	}
	if err := h.checkRecords(topic, recs); err != nil {
		return err
	}
	if err := h.checkOrigin(ctx, topic); err != nil {
		return err
	}
	if err := h.allow(ctx, ActionPublish, topic); err != nil {
		return err
	}
	return h.countPublish(ctx, topic, len(recs))
}

// deliver is the engine's callback. It queues ev for its topic's fan-out
// and returns at once, so that a publish is acknowledged without waiting
// for thousands of subscribers to be offered the event. One dispatch
// goroutine per busy topic does the fan-out, in offset order; it exists
// only while the topic has events to fan out.
func (h *Hub) deliver(ev *event.Event) {
	sh := h.shard(ev.Topic)
	sh.mu.RLock()
	ts := sh.topics[ev.Topic]
	sh.mu.RUnlock()
	if ts == nil {
		return
	}
	ts.mu.Lock()
	ts.pending = append(ts.pending, ev)
	start := !ts.running
	ts.running = true
	ts.mu.Unlock()
	if !start {
		return
	}
	h.dmu.RLock()
	if h.dclosed {
		h.dmu.RUnlock()
		return // nobody is left to deliver to
	}
	h.dispatchers.Add(1)
	h.dmu.RUnlock()
	go h.dispatch(ts)
}

// dispatch fans ts's pending events out until none is left.
func (h *Hub) dispatch(ts *topicSubs) {
	defer h.dispatchers.Done()
	var batch []*event.Event
	for {
		ts.mu.Lock()
		if len(ts.pending) == 0 {
			ts.running = false
			ts.mu.Unlock()
			return
		}
		batch, ts.pending = ts.pending, batch[:0]
		ts.mu.Unlock()
		for _, ev := range batch {
			h.fanout(ts, ev)
		}
		clear(batch)
	}
}

// fanout offers ev to every subscriber on ts's list. It takes no hub lock
// and does not allocate.
func (h *Hub) fanout(ts *topicSubs, ev *event.Event) {
	n := 0
	for _, s := range *ts.list.Load() {
		if s.offer(ev) {
			n++
		}
	}
	if n > 0 && h.opts.Observer.Delivered != nil {
		h.opts.Observer.Delivered(n)
	}
}

// add puts s on its topic's live list, creating the list and asking the
// engine to watch the topic when s is the first.
func (h *Hub) add(ctx context.Context, s *subscription) error {
	sh := h.shard(s.topic)
	sh.mu.Lock()
	ts := sh.topics[s.topic]
	first := ts == nil
	if first {
		ts = &topicSubs{}
		empty := []*subscription{}
		ts.list.Store(&empty)
		sh.topics[s.topic] = ts
	}
	// Appending in place is safe for readers of the old list: they never
	// look past its length, and slots within it are never written again.
	// It keeps adding n subscribers O(n) instead of O(n²).
	next := append(*ts.list.Load(), s)
	ts.list.Store(&next)
	sh.mu.Unlock()
	h.subCount.Add(1)
	if o := h.opts.Observer.Subscriptions; o != nil {
		o(1)
	}
	if first {
		if err := h.eng.Watch(ctx, s.topic); err != nil {
			h.remove(s)
			return fmt.Errorf("watch %s: %w", s.topic, err)
		}
	}
	return nil
}

// remove takes s off its topic's live list; the last one out unwatches.
func (h *Hub) remove(s *subscription) {
	sh := h.shard(s.topic)
	sh.mu.Lock()
	ts := sh.topics[s.topic]
	if ts == nil {
		sh.mu.Unlock()
		return
	}
	old := *ts.list.Load()
	idx := -1
	for i, x := range old {
		if x == s {
			idx = i
			break
		}
	}
	if idx < 0 {
		sh.mu.Unlock()
		return
	}
	last := len(old) == 1
	if last {
		delete(sh.topics, s.topic)
	} else {
		next := make([]*subscription, 0, len(old)-1)
		next = append(next, old[:idx]...)
		next = append(next, old[idx+1:]...)
		ts.list.Store(&next)
	}
	sh.mu.Unlock()
	h.subCount.Add(-1)
	if o := h.opts.Observer.Subscriptions; o != nil {
		o(-1)
	}
	if s.waiter == nil && h.presenceOn(s.topic) {
		h.leave(ts, s)
	}
	if last {
		h.eng.Unwatch(s.topic)
	}
}

// Subscribers returns the number of live subscriptions to topic on this
// node (push subscribers and waiting long polls).
func (h *Hub) Subscribers(topic string) int {
	sh := h.shard(topic)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if ts := sh.topics[topic]; ts != nil {
		return len(*ts.list.Load())
	}
	return 0
}

// Close ends every subscriber with CloseShutdown and refuses new ones.
// Transports send their clients a reconnect hint when they see that reason.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		close(h.done)
	}
	h.closed = true
	subs := make([]*Subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.Close(CloseShutdown)
	}
	h.dmu.Lock()
	h.dclosed = true
	h.dmu.Unlock()
	h.dispatchers.Wait()
}

// Done returns a channel closed when Close is called.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Info returns a topic's state; false if the topic has no history, no
// subscribers on this node and no one present (on any node, when presence
// is shared).
func (h *Hub) Info(ctx context.Context, topic string) (event.TopicInfo, bool, error) {
	if err := event.ValidateTopic(topic); err != nil {
		return event.TopicInfo{}, false, err
	}
	if err := h.allow(ctx, ActionAdmin, topic); err != nil {
		return event.TopicInfo{}, false, err
	}
	info, ok, err := h.eng.Info(ctx, topic)
	if err != nil {
		return event.TopicInfo{}, false, err
	}
	var p *event.Presence
	if h.presenceOn(topic) {
		list, err := h.listPresence(ctx, topic)
		if err != nil {
			return event.TopicInfo{}, false, err
		}
		p = &list
	}
	if !ok && (h.Subscribers(topic) > 0 || p != nil && p.Count > 0) {
		b, err := h.eng.Read(ctx, topic, 0, 0)
		if err != nil {
			return event.TopicInfo{}, false, err
		}
		info, ok = b.Info, true
	}
	if ok {
		info.Presence = p
	}
	return info, ok, nil
}

// Topics lists the topics with history, and those with subscribers on
// this node, sorted by name.
func (h *Hub) Topics(ctx context.Context) ([]event.TopicInfo, error) {
	if err := h.allow(ctx, ActionAdmin, ""); err != nil {
		return nil, err
	}
	infos, err := h.eng.Topics(ctx)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(infos))
	for _, in := range infos {
		have[in.Name] = true
	}
	added := false
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name := range sh.topics {
			if !have[name] {
				infos = append(infos, event.TopicInfo{Name: name})
				added = true
			}
		}
		sh.mu.RUnlock()
	}
	if !added {
		return infos, nil
	}
	for i := range infos {
		if !have[infos[i].Name] {
			b, err := h.eng.Read(ctx, infos[i].Name, 0, 0)
			if err != nil {
				return nil, err
			}
			infos[i] = b.Info
		}
	}
	slices.SortFunc(infos, func(a, b event.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}
