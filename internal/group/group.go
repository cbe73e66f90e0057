// Package group implements consumer groups: workers that share a topic's
// load. Each event of a group's topics is leased to one member at a time;
// the member acks it (done), naks it (redeliver, maybe later), extends its
// lease (in progress) or terms it (dead-letter now). An event whose lease
// runs out is redelivered to any member, and one delivered MaxDeliveries
// times goes to the group's dead-letter topic.
//
// A group's state (its committed position and in-flight table) lives in
// the engine's StateStore (state.go), so it survives what the topics
// survive: the memory engine keeps it for the process's life, the durable
// engine across restarts, a networked engine on every node. Outbound
// webhooks are server-side members of groups.
//
// Who owns what: a Manager owns its groups and one timer goroutine
// (timers.go) that ends leases and starts redeliveries; Close stops it.
// Fetches, acks and the other answers run on their callers' goroutines:
// each changes the group's in-memory state under the group's lock, queues
// the writes that change implies, and returns once they are stored
// (commit.go, where concurrent callers share ApplyState calls). Fetches
// read events with the hub's Pull, long polls included (fetch.go).
//
// Lock order (outer first): Manager.opMu, Manager.mu; group.rmu, then
// group.wmu, then group.mu. No lock but rmu and wmu is held across I/O:
// rmu orders the group's reads of its topics, wmu its writes to the store.
package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Defaults of a group's settings.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliveries = 5
	DefaultMaxInFlight   = 1000
)

// Errors callers branch on. Each wraps the hub error that transports map to
// a reason (not_found, conflict, bad_request, unavailable).
var (
	// ErrUnsupported is returned by New for an engine that keeps no
	// consumer state.
	ErrUnsupported = errors.New("consumer groups need an engine with a state store")
	// ErrNoGroup is wrapped by calls naming a group that does not exist.
	ErrNoGroup = fmt.Errorf("%w: no such group", hub.ErrNotFound)
	// ErrUnknownDelivery is wrapped by answers to a delivery id that is
	// not in flight: never issued, already acked, or dead-lettered.
	ErrUnknownDelivery = fmt.Errorf("%w: no such delivery in flight", hub.ErrNotFound)
	// ErrLeaseLost is wrapped by answers to a delivery whose lease ran out
	// and which was delivered again (to this member or another) since:
	// the answer is refused and nothing changes.
	ErrLeaseLost = fmt.Errorf("%w: the lease of this delivery ran out and it was delivered again", hub.ErrConflict)
	// ErrExists is wrapped by Create for a group that exists with other
	// settings.
	ErrExists = fmt.Errorf("%w: the group exists with other settings", hub.ErrConflict)
	// ErrOtherMember is wrapped by answers naming a member other than the
	// one the delivery is leased to: the answer is refused and nothing
	// changes.
	ErrOtherMember = fmt.Errorf("%w: the delivery is leased to another member", hub.ErrConflict)
	// ErrNoTopic is wrapped by Put for a group naming a topic (not a
	// pattern) that does not exist.
	ErrNoTopic = fmt.Errorf("%w: no such topic", hub.ErrNotFound)
	// ErrContended is wrapped by the error of an operation whose writes
	// conflicted with other nodes' changes to the group (shared mode) on
	// every one of its attempts. It wraps hub.ErrUnavailable (503, gRPC
	// Unavailable), which clients retry, and neither hub.ErrConflict,
	// which they take as final, nor hub.ErrStateConflict.
	ErrContended = fmt.Errorf("%w: the group kept changing on other nodes; try again", hub.ErrUnavailable)
)

// The dead-letter headers: an event sent to a group's dead-letter topic
// carries its own headers and these.
const (
	HeaderGroup      = "herald-dead-letter-group"
	HeaderTopic      = "herald-dead-letter-topic"
	HeaderOffset     = "herald-dead-letter-offset"
	HeaderEpoch      = "herald-dead-letter-epoch"
	HeaderDeliveries = "herald-dead-letter-deliveries"
	HeaderReason     = "herald-dead-letter-reason" // ReasonMaxDeliveries or ReasonTerm
	HeaderDetail     = "herald-dead-letter-detail" // a term's why, when given
)

// The reasons an event is dead-lettered for.
const (
	ReasonMaxDeliveries = "max_deliveries"
	ReasonTerm          = "term"
)

// Config is one group's settings. Zero fields take the defaults.
type Config struct {
	// Name is the group's name, following the rules of topic names.
	Name string
	// Topics are the topics the group consumes: names, or patterns as
	// auth grants write them ("orders.*", "orders.>").
	Topics []string
	// Start is where a new group starts on each topic: "latest" (the
	// default: events published from now on), "earliest" (all retained
	// history), a cursor, or an RFC 3339 time.
	Start string
	// AckWait is a delivery's lease (default 30 s).
	AckWait time.Duration
	// MaxDeliveries is how many times an event is delivered before it goes
	// to the dead-letter topic (default 5).
	MaxDeliveries int
	// DeadLetter is the dead-letter topic (default "<Name>.dead").
	DeadLetter string
	// MaxInFlight caps the group's leased deliveries (default 1,000), and
	// MemberMaxInFlight one member's (default 1,000): a fetch over either
	// returns fewer events, or waits.
	MaxInFlight       int
	MemberMaxInFlight int
	// Backoff lists the delays before redelivery after an expired lease or
	// a nak without a delay: the n-th redelivery waits Backoff[n-1], the
	// last entry repeating. Empty: redeliver at once.
	Backoff []time.Duration
	// OrderingKey turns per-key ordering on: events with the same key are
	// never in flight to two members at once. "" is off; "idempotency_key"
	// keys on the event's idempotency key; "header:NAME" on a header.
	OrderingKey string
}

// Message is one delivery of an event to a member.
type Message struct {
	// ID names this delivery in ack, nak, in_progress and term. It is
	// opaque, and differs between deliveries of the same event.
	ID string
	// Event is the event delivered (its topic, offset, epoch and cursor).
	Event *event.Event
	// Delivery counts the event's deliveries, 1 on the first.
	Delivery int
	// Deadline is when the lease ends unless extended.
	Deadline time.Time
}

// Info is a group's settings and state.
type Info struct {
	Config Config
	// Created is when the group was created.
	Created time.Time
	// Pending counts events of the group's topics not yet delivered
	// (its lag behind the topics' heads); InFlight those leased now, and
	// Members how many each member holds.
	Pending  uint64
	InFlight int
	Members  map[string]int
	// Redelivered and DeadLettered count events since the group was
	// created.
	Redelivered  uint64
	DeadLettered uint64
	// Waiting counts events taken back (a lease ran out, or a nak) and
	// not yet delivered again.
	Waiting int
	// EpochResets counts the times a topic's history was replaced (its
	// epoch changed): the group then consumes the new history from its
	// first event, and deliveries of the old one end. Trimmed counts
	// events that retention dropped before the group read them.
	EpochResets uint64
	Trimmed     uint64
	// Topics is the group's position in each topic it consumes, and
	// TopicsLeftOut counts topics its patterns match beyond MaxTopics.
	Topics        []TopicState
	TopicsLeftOut int
}

// TopicState is a group's position in one topic.
type TopicState struct {
	Topic string
	Epoch event.Epoch
	// Committed is the offset up to which every event is done (acked or
	// dead-lettered); Head the topic's newest offset; Pending the events
	// between them that are neither done nor leased.
	Committed uint64
	Head      uint64
	Pending   uint64
}

// Observer receives the groups' counters; nil fields are not called.
type Observer struct {
	// Delivered counts events leased to members, redelivered those that
	// were delivered before.
	Delivered func(group string, n, redelivered int)
	// Acked counts acks.
	Acked func(group string, n int)
	// DeadLettered counts events sent to the dead-letter topic, by reason.
	DeadLettered func(group, reason string)
	// Removed is called when a group is deleted, so that its series can go.
	Removed func(group string)
}

// Clock is the time leases are measured in; tests give a fake one to end
// leases without waiting. Long polls wait in real time.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once the clock reaches at.
	NewTimer(at time.Time) Timer
}

// Timer is a Clock's timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(at time.Time) Timer {
	return realTimer{time.NewTimer(time.Until(at))}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// Options configures a Manager. Zero fields take the defaults noted.
type Options struct {
	// MaxGroups caps the groups; default 1,000.
	MaxGroups int
	// ReadAhead is how many events a group reads ahead of its members'
	// fetches; default 1,024.
	ReadAhead int
	// TopicRefresh is how often a group with patterns looks for new
	// matching topics (on a fetch, and during a long poll); default 1 s.
	TopicRefresh time.Duration
	// Poll is how often, at most, a Manager on a store shared between
	// nodes (the Redis engine's) looks for other nodes' changes: each
	// group's version every min(Poll, AckWait/4), at least every Poll/4,
	// and the registry of groups every Poll; default 1 s. See shared.go.
	Poll time.Duration
	// Shared turns shared mode on over a store that does not say it is
	// shared (tests); a store that does (the Redis engine's) needs not.
	Shared bool
	// Clock measures leases; default the real one.
	Clock    Clock
	Observer Observer
	Log      *slog.Logger
}

// Manager owns the groups of one hub: it keeps their state in the engine's
// StateStore, leases deliveries and takes them back when leases end.
type Manager struct {
	hub   *hub.Hub
	eng   hub.Engine
	store hub.StateStore
	opts  Options
	clock Clock
	log   *slog.Logger
	// shared: other nodes serve the groups too (shared.go); static.
	shared bool

	opMu sync.Mutex // serializes Put, Delete and Close, which do I/O; taken before mu

	mu     sync.Mutex // guards groups and closed
	groups map[string]*group
	closed bool

	kick     chan struct{}   // wakes the timer goroutine: a nearer timer (cap 1)
	flushCh  chan struct{}   // wakes it to store the groups' queued writes (cap 1)
	wakeAt   atomic.Int64    // unix ns the timer goroutine sleeps until; MinInt64 while it looks
	done     chan struct{}   // closed by Close
	ctx      context.Context // of the timer goroutine's I/O; Close cancels it
	cancel   context.CancelFunc
	loopDone chan struct{} // closed when the timer goroutine has ended
}

// New returns a Manager for h's groups, or an error wrapping ErrUnsupported
// when h's engine keeps no consumer state. Close stops it. Groups stored
// in the engine are loaded; one that cannot be read is logged and
// skipped.
func New(ctx context.Context, h *hub.Hub, opts Options) (*Manager, error) {
	store, ok := h.State()
	if !ok {
		return nil, ErrUnsupported
	}
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = 1000
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = 1024
	}
	if opts.TopicRefresh <= 0 {
		opts.TopicRefresh = time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		hub: h, eng: h.Engine(), store: store, opts: opts, clock: opts.Clock, log: opts.Log, shared: opts.Shared || hub.SharedState(store),
		groups: make(map[string]*group), kick: make(chan struct{}, 1), flushCh: make(chan struct{}, 1), done: make(chan struct{}), loopDone: make(chan struct{}),
	}
	entries, err := m.scanRegistry(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range entries {
		g := newGroup(m, st)
		s, ver, err := g.loadVersioned(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("load group %s: %w", st.Config.Name, err)
		}
		g.st, g.ver = s, ver
		m.groups[st.Config.Name] = g
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.loop()
	return m, nil
}

// scanRegistry reads the registry of groups; an entry that cannot be read
// is logged and skipped.
func (m *Manager) scanRegistry(ctx context.Context) ([]jsonStored, error) {
	var entries []jsonStored
	err := m.store.ScanState(ctx, registrySpace, "", func(name string, v []byte) bool {
		st, err := parseStored(name, v)
		if err != nil {
			m.log.Warn("stored group skipped", "group", name, "error", err)
			return true
		}
		entries = append(entries, st)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("load groups: %w", err)
	}
	return entries, nil
}

// parseStored parses the registry entry of group name.
func parseStored(name string, v []byte) (jsonStored, error) {
	var st jsonStored
	if err := json.Unmarshal(v, &st); err != nil {
		return jsonStored{}, err
	}
	st.Config.Name = name
	st.Config = st.Config.WithDefaults()
	if err := st.Config.Validate(); err != nil {
		return jsonStored{}, err
	}
	return st, nil
}

// group returns the group named name, or an error wrapping ErrNoGroup.
// In shared mode a group unknown here may have been created on another
// node since the last poll: it is looked up in the store.
func (m *Manager) group(ctx context.Context, name string) (*group, error) {
	m.mu.Lock()
	g, closed := m.groups[name], m.closed
	m.mu.Unlock()
	if m.shared && g == nil && !closed {
		var err error
		if g, err = m.storedGroup(ctx, name); err != nil {
			return nil, err
		}
	}
	switch {
	case closed:
		return nil, hub.ErrClosed
	case g == nil:
		return nil, fmt.Errorf("%w: %q", ErrNoGroup, name)
	}
	return g, nil
}

// Put creates the group cfg.Name, or returns it unchanged when it exists
// with the same settings (created reports which); other settings are
// refused with ErrExists. A topic named outright (not a pattern) must
// exist (ErrNoTopic); Declare takes groups over topics still to come.
// Errors for bad settings wrap hub.ErrBadInput and name the field.
func (m *Manager) Put(ctx context.Context, cfg Config) (info Info, created bool, err error) {
	return m.put(ctx, cfg, false)
}

// Declare is Put for groups declared in the configuration, which may name
// topics that do not exist yet: the group starts on each at its first
// event.
func (m *Manager) Declare(ctx context.Context, cfg Config) (info Info, created bool, err error) {
	return m.put(ctx, cfg, true)
}

func (m *Manager) put(ctx context.Context, cfg Config, missingOK bool) (Info, bool, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Info{}, false, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	old, closed, n := m.groups[cfg.Name], m.closed, len(m.groups)
	m.mu.Unlock()
	if m.shared && !closed {
		// Another node may have deleted it, or created it.
		if old != nil {
			gone, err := old.gone(ctx)
			if err != nil {
				return Info{}, false, err
			}
			if gone {
				m.drop(old)
				old = nil
			}
		}
		if old == nil {
			var err error
			if old, err = m.storedGroup(ctx, cfg.Name); err != nil {
				return Info{}, false, err
			}
		}
	}
	switch {
	case closed:
		return Info{}, false, hub.ErrClosed
	case old != nil && old.cfg.same(&cfg):
		in, err := m.info(ctx, old)
		return in, false, err
	case old != nil:
		return Info{}, false, fmt.Errorf("group %s: %w; delete it first to change them", cfg.Name, ErrExists)
	case n >= m.opts.MaxGroups:
		return Info{}, false, fmt.Errorf("%w: there are %d groups already, the most this server keeps", hub.ErrBadInput, n)
	}
	g := newGroup(m, jsonStored{Config: cfg, Created: m.clock.Now().UTC().Truncate(time.Millisecond)})
	s, ops, err := g.create(ctx, missingOK)
	if err != nil {
		return Info{}, false, err
	}
	// The registry entry holds the settings and the start positions, and
	// one write creates it, in shared mode only if it is absent: of nodes
	// creating the group at once, one wins and the others write nothing to
	// the group. Before it, the leftovers of a group of that name deleted
	// earlier are cleared (clearSpace leaves a group another node created
	// alone); after it, the positions are written to the group's space
	// too, but the entry's serve until then, or if that never happens.
	g.start = make(map[string]jsonPos, len(s.topics))
	for name, t := range s.topics {
		g.start[name] = jsonPos{E: t.epoch.String(), F: t.floor}
	}
	exists, err := m.clearSpace(ctx, g)
	if err != nil {
		return Info{}, false, fmt.Errorf("store group %s: %w", cfg.Name, err)
	}
	if !exists {
		entry := setOp(cfg.Name, mustJSON(jsonStored{Config: cfg, Created: g.created, Start: g.start}))
		entry.Check = m.shared // absent: another node may be creating it too
		err := m.store.ApplyState(ctx, registrySpace, []hub.StateOp{entry})
		exists = m.shared && errors.Is(err, hub.ErrStateConflict)
		if err != nil && !exists {
			return Info{}, false, fmt.Errorf("store group %s: %w", cfg.Name, err)
		}
	}
	if exists {
		// Another node won: take its group, if the settings match.
		old, err := m.storedGroup(ctx, cfg.Name)
		if err != nil {
			return Info{}, false, err
		}
		if old != nil && old.cfg.same(&cfg) {
			in, err := m.info(ctx, old)
			return in, false, err
		}
		return Info{}, false, fmt.Errorf("group %s: %w; delete it first to change them", cfg.Name, ErrExists)
	}
	if err := g.storeStart(ctx, s, ops); err != nil {
		return Info{}, false, err
	}
	m.mu.Lock()
	m.groups[cfg.Name] = g
	m.mu.Unlock()
	in, err := m.info(ctx, g)
	return in, true, err
}

// storeStart writes the start positions (ops) of g, just created with
// state s, to its space, and makes s g's state. In shared mode the write
// is conditional on the space having no version yet: if another node
// serving the group wrote first (from the same start positions, read from
// the registry entry), g's state is loaded from the store instead.
func (g *group) storeStart(ctx context.Context, s *state, ops []hub.StateOp) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if !g.m.shared {
		if err := g.m.store.ApplyState(ctx, g.space, ops); err != nil {
			return fmt.Errorf("store group %s: %w", g.cfg.Name, err)
		}
		g.st = s
		return nil
	}
	next := []byte(newID())
	err := g.m.store.ApplyState(ctx, g.space, append(ops, versionOp(nil, next)))
	switch {
	case err == nil:
		g.st, g.ver = s, next
		return nil
	case errors.Is(err, hub.ErrStateConflict):
		s, ver, err := g.loadVersioned(ctx, nil)
		if err != nil {
			return err
		}
		g.st, g.ver = s, ver
		return nil
	default:
		return fmt.Errorf("store group %s: %w", g.cfg.Name, err)
	}
}

// storedGroup returns group name as another node stored it, loaded and
// served from now on, or nil when there is none. Shared mode only.
func (m *Manager) storedGroup(ctx context.Context, name string) (*group, error) {
	st, ok, err := m.lookupStored(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	if !ok {
		return nil, nil
	}
	return m.adopt(ctx, st)
}

// Get returns a group's settings and state, or ErrNoGroup.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	g, err := m.group(ctx, name)
	if err != nil {
		return Info{}, err
	}
	return m.info(ctx, g)
}

// Allowed returns nil when the caller (ctx's identity) may consume group
// name: an error wrapping ErrNoGroup, or the Gate's refusal (forbidden),
// as a Fetch would answer. Streams check it when they open, so that a
// caller without the grant is refused at once, not at its first fetch.
func (m *Manager) Allowed(ctx context.Context, name string) error {
	g, err := m.group(ctx, name)
	if err != nil {
		return err
	}
	return m.allow(ctx, g)
}

// List returns every group, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	m.mu.Lock()
	gs := make([]*group, 0, len(m.groups))
	for _, name := range slices.Sorted(maps.Keys(m.groups)) {
		gs = append(gs, m.groups[name])
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(gs))
	for _, g := range gs {
		in, err := m.info(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Delete removes a group and its state (its dead-letter topic stays), or
// returns ErrNoGroup. Its waiting fetches return, and answers to its
// deliveries fail with ErrNoGroup.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	g, err := m.group(ctx, name)
	if err != nil {
		return err
	}
	if err := m.store.ApplyState(ctx, registrySpace, []hub.StateOp{delOp(name)}); err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	m.mu.Lock()
	delete(m.groups, name)
	m.mu.Unlock()
	g.mu.Lock()
	g.deleted = true
	g.wakeLocked()
	g.mu.Unlock()
	if o := m.opts.Observer; o.Removed != nil {
		o.Removed(name)
	}
	// Writes still queued would land after the clearing: wait for them.
	g.wmu.Lock()
	g.flushLocked()
	g.wmu.Unlock()
	if _, err := m.clearSpace(ctx, g); err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	return nil
}

// clearSpace deletes what g's space holds: the state of a group of g's
// name that was deleted (Delete), maybe by a node that stopped before it
// cleared it (put). In shared mode it leaves alone a group of that name
// that another node created meanwhile, and reports whether there is one:
// the registry is read after each scan (a group it holds may have written
// before), and each ApplyState of deletes checks that the space's version
// has not moved since the scan (every write of a group moves it). The
// first deletes the version too, so that the writes of nodes still
// serving the deleted group fail from then on: they reload, and find it
// gone.
func (m *Manager) clearSpace(ctx context.Context, g *group) (exists bool, err error) {
	if !m.shared {
		return false, hub.ClearState(ctx, m.store, g.space)
	}
	err = g.retry(ctx, func() error {
		for {
			v, ok, err := m.store.LoadState(ctx, g.space, keyVersion)
			if err != nil {
				return fmt.Errorf("clear %s: %w", g.space, err)
			}
			check := hub.StateOp{Key: keyVersion, Check: true, Delete: true}
			if ok {
				check.Expect = append([]byte{}, v...) // non-nil: present
			}
			var ops []hub.StateOp
			err = m.store.ScanState(ctx, g.space, "", func(key string, _ []byte) bool {
				if key != keyVersion {
					ops = append(ops, delOp(key))
				}
				return len(ops) < hub.MaxStateOps-1
			})
			if err != nil {
				return fmt.Errorf("clear %s: %w", g.space, err)
			}
			if _, exists, err = m.lookupStored(ctx, g.cfg.Name); err != nil || exists {
				return err
			}
			if len(ops) == 0 && !ok {
				return nil
			}
			if err := m.store.ApplyState(ctx, g.space, append(ops, check)); err != nil {
				return fmt.Errorf("clear %s: %w", g.space, err)
			}
		}
	})
	return exists, err
}

// Close stops the Manager's timers and wakes its waiting fetches, which
// return what they have. Calls after the first do nothing.
func (m *Manager) Close() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	gs := slices.Collect(maps.Values(m.groups))
	m.mu.Unlock()
	close(m.done)
	m.cancel()
	<-m.loopDone
	m.flushAll() // the leases of the last fetches
	for _, g := range gs {
		g.mu.Lock()
		g.wakeLocked()
		g.mu.Unlock()
	}
}

// allow checks that ctx's caller may consume every topic of g.
func (m *Manager) allow(ctx context.Context, g *group) error {
	g.mu.Lock()
	names := g.st.names
	g.mu.Unlock()
	for _, t := range names {
		if err := m.hub.Allow(ctx, hub.ActionConsume, t); err != nil {
			return fmt.Errorf("group %s: %w", g.cfg.Name, err)
		}
	}
	if len(names) == 0 {
		// A group whose patterns match nothing yet: the caller must be
		// allowed some topic; its named topics, when any.
		for _, t := range g.cfg.Topics {
			if event.ValidateTopic(t) == nil {
				if err := m.hub.Allow(ctx, hub.ActionConsume, t); err != nil {
					return fmt.Errorf("group %s: %w", g.cfg.Name, err)
				}
			}
		}
	}
	return nil
}

// info returns g's settings and state, with the topics' heads read from
// the engine.
func (m *Manager) info(ctx context.Context, g *group) (Info, error) {
	if m.shared {
		if _, err := g.sync(ctx); err != nil {
			return Info{}, err
		}
	}
	g.mu.Lock()
	s := g.st
	in := Info{
		Config: g.cfg, Created: g.created, InFlight: s.inflight, Members: maps.Clone(s.members),
		Redelivered: s.redelivered, DeadLettered: s.deadLettered, EpochResets: s.epochResets, Trimmed: s.trimmed,
		TopicsLeftOut: s.leftOut,
	}
	if in.Members == nil {
		in.Members = map[string]int{}
	}
	type pos struct {
		name        string
		epoch       event.Epoch
		floor, done uint64
		leased      int
		head        uint64
	}
	ps := make([]pos, 0, len(s.names))
	for _, name := range s.names {
		t := s.topics[name]
		p := pos{name: name, epoch: t.epoch, floor: t.floor, head: t.head}
		for _, sp := range t.done {
			p.done += sp.hi - sp.lo + 1
		}
		for _, l := range t.open {
			switch l.state {
			case stateLeased, stateDying:
				p.leased++
			case stateWaiting, stateReady:
				in.Waiting++
			}
		}
		ps = append(ps, p)
	}
	g.mu.Unlock()
	for _, p := range ps {
		ti, ok, err := m.eng.Info(ctx, p.name)
		if err != nil {
			return Info{}, fmt.Errorf("group %s: topic %s: %w", g.cfg.Name, p.name, err)
		}
		if ok && ti.Epoch == p.epoch {
			p.head = max(p.head, ti.Last)
		}
		ts := TopicState{Topic: p.name, Epoch: p.epoch, Committed: p.floor, Head: p.head}
		if p.head > p.floor {
			ts.Pending = (p.head - p.floor) - min(p.head-p.floor, p.done+uint64(p.leased))
		}
		in.Pending += ts.Pending
		in.Topics = append(in.Topics, ts)
	}
	return in, nil
}

// newID returns a fresh delivery id.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// patterns returns the parsed patterns of cfg's topics.
func patterns(cfg *Config) []pattern {
	out := make([]pattern, 0, len(cfg.Topics))
	for _, t := range cfg.Topics {
		p, _ := parsePattern(t) // Validate checked them
		out = append(out, p)
	}
	return out
}
