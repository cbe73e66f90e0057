// Package webhook sends herald's events to HTTP endpoints: outbound
// webhooks, signed per Standard Webhooks (standardwebhooks.com), retried on
// a schedule, in order by default, and never lost across restarts on a
// durable engine.
//
// A subscription is a server-side member of a consumer group (package
// group) named "webhook.NAME": the group keeps its position, leases each
// event to the subscription's dispatcher, takes it back when a crash ends
// the lease, and holds the dead-letter topic where an event goes when its
// retries are exhausted. The dispatcher (dispatch.go) fetches, signs
// (sign.go), sends through the outbound guard (package netguard), and acks,
// naks or terms.
//
// A Manager owns the subscriptions: one dispatcher goroutine each, started
// when the subscription is declared or loaded and stopped (and waited for)
// when it is changed, deleted, disabled, or the Manager closes.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/clock"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// Errors callers branch on.
var (
	// ErrUnsupported means the engine keeps no consumer state, which
	// webhooks need for their groups and registry.
	ErrUnsupported = errors.New("webhooks need an engine that keeps consumer state (hub.StateStore) and consumer groups")
	// ErrNotFound is wrapped by calls naming a subscription that does not
	// exist.
	ErrNotFound = fmt.Errorf("%w: no such webhook", hub.ErrNotFound)
	// ErrReplaying is wrapped by a replay asked while one runs.
	ErrReplaying = fmt.Errorf("%w: a replay of this webhook is running", hub.ErrConflict)
)

// Groups is what webhooks need of the consumer groups; *group.Manager
// has it.
type Groups interface {
	Put(ctx context.Context, cfg group.Config) (group.Info, bool, error)
	Delete(ctx context.Context, name string) error
	Fetch(ctx context.Context, name, member string, limit int, wait time.Duration) ([]group.Message, error)
	Ack(ctx context.Context, name, member string, ids []string) ([]error, error)
	Nak(ctx context.Context, name, member, id string, delay time.Duration) error
	InProgress(ctx context.Context, name, member, id string) (time.Time, error)
	Term(ctx context.Context, name, member, id, why string) error
}

// Observer receives the dispatchers' counters; nil fields are not called.
type Observer struct {
	// Attempted is called after every request, with its result
	// (ResultSuccess, …) and how long it took.
	Attempted func(webhook, result string, latency time.Duration)
	// Delivered counts events delivered, and Failed events that failed
	// for good (their retries exhausted: dead-lettered).
	Delivered func(webhook string)
	Failed    func(webhook string)
	// RetriesPending is the count of events waiting for a retry.
	RetriesPending func(webhook string, n int)
	// Disabled reports whether a subscription is disabled (by its
	// settings or automatically).
	Disabled func(webhook string, disabled bool)
	// Removed is called when a subscription is deleted, so that its
	// series can go.
	Removed func(webhook string)
}

// Options configure a Manager. Zero fields take the defaults noted.
type Options struct {
	// Guard checks every connection; default: one with no allowlist.
	Guard *netguard.Guard
	// MaxWebhooks caps the subscriptions; default 1000.
	MaxWebhooks int
	// UserAgent of the requests; default "herald-webhook".
	UserAgent string
	// LogSize is how many attempts each subscription's delivery log
	// keeps; default 100.
	LogSize int
	// FetchWait is how long a dispatcher's fetch waits for an event;
	// default 10s.
	FetchWait time.Duration
	// Poll is how often a Manager on a store shared between nodes reads
	// whether another node changed a subscription (shared.go); default 1s.
	Poll     time.Duration
	Clock    clock.Clock    // default: the real one
	Rand     func() float64 // the jitter's randomness, uniform in [0, 1); default math/rand/v2
	Observer Observer
	Log      *slog.Logger
}

// Manager owns the webhook subscriptions of one server.
type Manager struct {
	hub    *hub.Hub
	store  hub.StateStore
	groups Groups
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	ctx    context.Context // parent of the dispatchers' contexts; ends with Close
	cancel context.CancelFunc
	shared bool          // the store is shared between nodes (shared.go)
	watch  chan struct{} // shared mode: closed when the watch goroutine returns

	opMu sync.Mutex // serializes Put, Delete, Replay's start, sync and Close, which do I/O; taken before mu
	ver  []byte     // guarded by opMu: the registry's version this Manager is in step with (shared mode)

	mu     sync.Mutex // guards subs and closed
	subs   map[string]*sub
	closed bool
}

// New returns a Manager over h's engine state and groups, with the
// subscriptions stored there started. A stored subscription that cannot be
// read is logged and skipped. It fails with ErrUnsupported when the engine
// keeps no state.
func New(ctx context.Context, h *hub.Hub, groups Groups, opts Options) (*Manager, error) {
	store, ok := h.State()
	if !ok || groups == nil {
		return nil, ErrUnsupported
	}
	if opts.Guard == nil {
		opts.Guard = netguard.New(netguard.Options{})
	}
	if opts.MaxWebhooks <= 0 {
		opts.MaxWebhooks = 1000
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "herald-webhook"
	}
	if opts.LogSize <= 0 {
		opts.LogSize = 100
	}
	if opts.FetchWait <= 0 {
		opts.FetchWait = 10 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{hub: h, store: store, groups: groups, opts: opts, clock: opts.Clock, log: opts.Log, subs: make(map[string]*sub), shared: hub.SharedState(store)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	ver, entries, err := hub.ReadRegistry(ctx, store, registrySpace, keyVersion)
	if err != nil {
		m.cancel()
		return nil, fmt.Errorf("load webhooks: %w", err)
	}
	if m.shared {
		m.ver = ver
	}
	type entry struct {
		cfg Config
		raw []byte
	}
	var stored []entry
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		cfg, err := decodeStored(name, entries[name])
		if err != nil {
			m.log.Warn("stored webhook skipped", "webhook", name, "error", err)
			continue
		}
		stored = append(stored, entry{cfg, entries[name]})
	}
	for _, en := range stored {
		cfg := en.cfg
		s, err := m.newSub(ctx, cfg, en.raw)
		if err != nil {
			m.cancel()
			m.stopAll()
			return nil, err
		}
		m.subs[cfg.Name] = s
		s.start(m.ctx, false)
	}
	if m.shared {
		m.watch = make(chan struct{})
		go m.watchRegistry()
	}
	return m, nil
}

// decodeStored reads a registry entry.
func decodeStored(name string, v []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(v, &cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	cfg.Name = name
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return cfg, nil
}

// groupName is the consumer group of subscription name.
func groupName(name string) string { return "webhook." + name }

// groupConfig is the consumer group a subscription is a member of. Its
// lease outlasts a request; retries of an unordered subscription are naks
// with the schedule's delay, of an ordered one waits that extend the lease
// (dispatch.go), so MaxDeliveries only catches crash loops.
func groupConfig(c *Config) group.Config {
	return group.Config{
		Name:          groupName(c.Name),
		Topics:        slices.Clone(c.Topics),
		Start:         c.Start,
		DeadLetter:    groupName(c.Name) + ".dead",
		AckWait:       c.Timeout + leaseMargin,
		MaxDeliveries: MaxRetries + 2 + crashAllowance,
		MaxInFlight:   c.Concurrency,
	}
}

// putGroup makes the subscription's group, or checks it has its
// settings. A group made while a named topic did not exist yet starts at
// the earliest event instead of the latest (dispatch.go): that one is
// taken as the same.
func (m *Manager) putGroup(ctx context.Context, cfg *Config) error {
	gc := groupConfig(cfg)
	_, _, err := m.groups.Put(hub.Internal(ctx), gc)
	if errors.Is(err, group.ErrExists) && gc.Start == "latest" {
		gc.Start = "earliest"
		_, _, err = m.groups.Put(hub.Internal(ctx), gc)
	}
	return err
}

const (
	// leaseMargin is how much longer a lease is than a request.
	leaseMargin = 5 * time.Second
	// crashAllowance is how many lease expiries (crashes, stops) an event
	// may see beyond its attempts before the group dead-letters it.
	crashAllowance = 10
)

// Info is a subscription as the API shows it: its settings, redacted,
// and its dispatcher's status.
type Info struct {
	Config Config
	Status Status
	// GeneratedSecret is the secret herald made for a subscription created
	// without one, shown once, in the answer to its creation.
	GeneratedSecret string
}

// MarshalJSON encodes the settings' fields with a "status" object beside
// them.
func (in Info) MarshalJSON() ([]byte, error) {
	cfg, err := in.Config.MarshalJSON()
	if err != nil {
		return nil, err
	}
	st, err := marshal(in.Status)
	if err != nil {
		return nil, err
	}
	out := append(cfg[:len(cfg)-1:len(cfg)-1], `,"status":`...)
	out = append(out, st...)
	if in.GeneratedSecret != "" {
		g, _ := marshal(in.GeneratedSecret)
		out = append(out, `,"generated_secret":`...)
		out = append(out, g...)
	}
	return append(out, '}'), nil
}

// Put creates the subscription cfg names, or changes it to cfg. Zero
// fields take their defaults; secrets left out keep the stored ones (a new
// subscription without one gets a generated secret, in the answer's
// GeneratedSecret), and a secret given as Redacted keeps the stored one
// at its place. It returns the subscription and whether it was created.
// A change restarts the dispatcher; one that changes the topics, the start,
// the ordering, the concurrency or the timeout makes the subscription's
// group afresh, from its start. Putting the settings a subscription
// already has changes nothing, except that it re-enables one disabled
// automatically. Errors wrap hub.ErrBadInput for bad settings, naming the
// field, and hub.ErrClosed after Close.
func (m *Manager) Put(ctx context.Context, cfg Config) (Info, bool, error) {
	if err := ValidateName(cfg.Name); err != nil {
		return Info{}, false, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.syncLocked(ctx); err != nil {
		return Info{}, false, err
	}
	m.mu.Lock()
	old, closed, n := m.subs[cfg.Name], m.closed, len(m.subs)
	m.mu.Unlock()
	if closed {
		return Info{}, false, hub.ErrClosed
	}
	var raw []byte
	if old != nil {
		raw = old.raw
	}
	var oldCfg *Config
	if old != nil {
		oldCfg = &old.cfg
	} else if n >= m.opts.MaxWebhooks {
		return Info{}, false, fmt.Errorf("%w: there are %d webhooks already, the most this server keeps", hub.ErrBadInput, n)
	}
	cfg, generated, err := cfg.WithDefaults().keepSecrets(oldCfg)
	if err != nil {
		return Info{}, false, err
	}
	if err := cfg.Validate(); err != nil {
		return Info{}, false, err
	}
	u, _ := url.Parse(cfg.URL)
	if err := m.opts.Guard.CheckHost(u.Hostname()); err != nil {
		return Info{}, false, &FieldError{Webhook: cfg.Name, Field: "url", Msg: err.Error()}
	}
	if old != nil && reflect.DeepEqual(old.cfg, cfg) && !old.autoDisabled() {
		return old.info(), false, nil
	}
	regroup := old != nil && old.cfg.groupKey() != cfg.groupKey()
	if regroup {
		if err := m.groups.Delete(hub.Internal(ctx), groupName(cfg.Name)); err != nil && !errors.Is(err, group.ErrNoGroup) {
			return Info{}, false, fmt.Errorf("webhook %s: remake its group: %w", cfg.Name, err)
		}
	}
	groupReady := false
	if cfg.Enabled {
		err := m.putGroup(ctx, &cfg)
		switch {
		case errors.Is(err, group.ErrNoTopic):
			// The dispatcher makes the group once the topic exists.
		case err != nil:
			return Info{}, false, fmt.Errorf("webhook %s: make its group: %w", cfg.Name, err)
		default:
			groupReady = true
		}
	}
	b, err := cfg.MarshalJSON()
	if err != nil {
		return Info{}, false, err
	}
	if err := m.store.ApplyState(ctx, registrySpace, m.registryOps(cfg.Name, raw, b)); err != nil {
		return Info{}, false, fmt.Errorf("store webhook %s: %w", cfg.Name, conflict(cfg.Name, err))
	}
	if old != nil {
		old.stop()
	}
	if old == nil || regroup {
		if err := hub.ClearState(ctx, m.store, spaceOf(cfg.Name)); err != nil {
			return Info{}, false, err
		}
	} else if err := old.saveStatus(ctx, status{}); err != nil { // a change re-enables
		return Info{}, false, err
	}
	s, err := m.newSub(ctx, cfg, b)
	if err != nil {
		return Info{}, false, err
	}
	if old != nil {
		s.inheritLog(old)
	}
	m.mu.Lock()
	m.subs[cfg.Name] = s
	m.mu.Unlock()
	in := s.info()
	if generated {
		in.GeneratedSecret = cfg.Secrets[0]
	}
	s.start(m.ctx, groupReady)
	return in, old == nil, nil
}

// Get returns the subscription named name, or an error wrapping
// ErrNotFound.
func (m *Manager) Get(name string) (Info, error) {
	s, err := m.sub(name)
	if err != nil {
		return Info{}, err
	}
	return s.info(), nil
}

func (m *Manager) sub(name string) (*sub, error) {
	m.mu.Lock()
	s := m.subs[name]
	m.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return s, nil
}

// List returns every subscription, by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	ss := make([]*sub, 0, len(m.subs))
	for _, name := range slices.Sorted(maps.Keys(m.subs)) {
		ss = append(ss, m.subs[name])
	}
	m.mu.Unlock()
	out := make([]Info, len(ss))
	for i, s := range ss {
		out[i] = s.info()
	}
	return out
}

// Log returns the last attempts of the subscription named name, the
// newest first.
func (m *Manager) Log(name string) ([]Attempt, error) {
	s, err := m.sub(name)
	if err != nil {
		return nil, err
	}
	return s.attempts(), nil
}

// Delete stops the subscription named name and forgets it, its group and
// its state; its dead-letter topic stays. It returns an error wrapping
// ErrNotFound when there is no such subscription.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.syncLocked(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	s, closed := m.subs[name], m.closed
	m.mu.Unlock()
	if closed {
		return hub.ErrClosed
	}
	if s == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := m.store.ApplyState(ctx, registrySpace, m.registryOps(name, s.raw, nil)); err != nil {
		return fmt.Errorf("delete webhook %s: %w", name, conflict(name, err))
	}
	s.stop()
	m.forget(name, s)
	if err := m.groups.Delete(hub.Internal(ctx), groupName(name)); err != nil && !errors.Is(err, group.ErrNoGroup) {
		return fmt.Errorf("delete webhook %s's group: %w", name, err)
	}
	return hub.ClearState(ctx, m.store, spaceOf(name))
}

// Close stops every dispatcher, cancelling requests in flight (their
// events' leases run out and they are sent again after a restart), and
// waits for them. Calls after the first do nothing.
func (m *Manager) Close() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	if m.watch != nil {
		<-m.watch // it gives way to opMu, held here
	}
	m.stopAll()
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	ss := slices.Collect(maps.Values(m.subs))
	m.mu.Unlock()
	for _, s := range ss {
		s.stop()
	}
}
