// Package source turns pull into push: a source is an HTTP resource herald
// polls, publishing what changed to a topic — the whole body when it
// changed, each new or changed item of a JSON array, or the samples of a
// Prometheus endpoint whose values changed — so that browsers and
// services follow it over SSE, WebSocket or gRPC instead of polling it
// themselves.
//
// Polling is polite: conditional requests (If-None-Match,
// If-Modified-Since), a timeout and a cap on the body, backoff on errors
// and on 429/503 with Retry-After, jitter, and every connection through
// the SSRF guard (package netguard). Change detection lives in the
// engine's StateStore (state.go), with deterministic idempotency keys, so
// a restart on the durable engine publishes nothing twice.
//
// A Manager owns the sources: one poller goroutine per source, started
// when the source is declared or loaded and stopped (and waited for) when
// it is changed, deleted, or the Manager closes.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/clock"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// Errors callers branch on.
var (
	// ErrUnsupported means the engine keeps no consumer state, which
	// sources need for change detection.
	ErrUnsupported = errors.New("sources need an engine that keeps consumer state (hub.StateStore)")
	// ErrNotFound is wrapped by calls naming a source that does not exist.
	ErrNotFound = errors.New("no such source")
)

// Observer receives the pollers' counters; nil fields are not called.
type Observer struct {
	// Polled is called after every poll, with the error kind (ErrKinds)
	// of a failed one.
	Polled func(source string, r Result, errKind string)
	// Published counts the events a poll published.
	Published func(source string, n int)
	// Removed is called when a source is deleted, so that its series can
	// go.
	Removed func(source string)
}

// Options configure a Manager. Zero fields take the defaults noted.
type Options struct {
	// Guard checks every connection; default: one with no allowlist.
	Guard *netguard.Guard
	// MaxSources caps the sources; default 1000.
	MaxSources int
	// UserAgent of the requests; default "herald-source".
	UserAgent string
	// Poll is how often a Manager on a store shared between nodes reads
	// whether another node changed a source (shared.go); default 1s.
	Poll     time.Duration
	Clock    clock.Clock // default: the real one
	Observer Observer
	Log      *slog.Logger
}

// Manager owns the sources of one server.
type Manager struct {
	hub    *hub.Hub
	store  hub.StateStore
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	client *http.Client
	tr     *http.Transport
	ctx    context.Context // parent of the pollers' contexts; ends with Close
	cancel context.CancelFunc
	shared bool          // the store is shared between nodes (shared.go)
	node   string        // this Manager's id in the sources' leases
	watch  chan struct{} // shared mode: closed when the watch goroutine returns

	opMu sync.Mutex // serializes Put, Delete, sync and Close, which do I/O; taken before mu
	ver  []byte     // guarded by opMu: the registry's version this Manager is in step with (shared mode)

	mu      sync.Mutex // guards sources and closed
	sources map[string]*poller
	closed  bool
}

// New returns a Manager over h's engine state, with the sources stored
// there started. A stored source that cannot be read is logged and
// skipped. It fails with ErrUnsupported when the engine keeps no state.
func New(ctx context.Context, h *hub.Hub, opts Options) (*Manager, error) {
	store, ok := h.State()
	if !ok {
		return nil, ErrUnsupported
	}
	if opts.Guard == nil {
		opts.Guard = netguard.New(netguard.Options{})
	}
	if opts.MaxSources <= 0 {
		opts.MaxSources = 1000
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "herald-source"
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	m := &Manager{hub: h, store: store, opts: opts, clock: opts.Clock, log: opts.Log, sources: make(map[string]*poller), shared: hub.SharedState(store), node: newToken()}
	m.tr = opts.Guard.Transport()
	m.client = &http.Client{Transport: m.tr, CheckRedirect: checkRedirect}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	ver, entries, err := hub.ReadRegistry(ctx, store, registrySpace, keyVersion)
	if err != nil {
		m.cancel()
		return nil, fmt.Errorf("load sources: %w", err)
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
			m.log.Warn("stored source skipped", "source", name, "error", err)
			continue
		}
		stored = append(stored, entry{cfg, entries[name]})
	}
	for _, en := range stored {
		p := newPoller(m, en.cfg, en.raw)
		m.sources[en.cfg.Name] = p
		p.start(m.ctx)
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

// checkRedirect follows up to maxRedirects redirects within the source's
// host: its headers carry credentials that must not reach another host.
// (Every connection, redirected or not, is checked by the guard.)
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	first := via[0].URL
	if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
		return fmt.Errorf("a redirect to %s refused: a source follows redirects within its own host only", (&url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host}).String())
	}
	return nil
}

// Info is a source as the API shows it: its settings, redacted, and its
// poller's status.
type Info struct {
	Config Config
	Status Status
}

// MarshalJSON encodes the settings' fields with a "status" object beside
// them.
func (in Info) MarshalJSON() ([]byte, error) {
	type status struct {
		State       string     `json:"state"`
		LastPoll    *time.Time `json:"last_poll,omitempty"`
		LastSuccess *time.Time `json:"last_success,omitempty"`
		LastResult  Result     `json:"last_result,omitempty"`
		LastError   string     `json:"last_error,omitempty"`
		Failures    int        `json:"consecutive_failures"`
		NextPoll    *time.Time `json:"next_poll,omitempty"`
		Polls       uint64     `json:"polls"`
		Published   uint64     `json:"published"`
		Errors      uint64     `json:"errors"`
	}
	when := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC().Truncate(time.Millisecond)
		return &t
	}
	s := &in.Status
	cfg, err := in.Config.MarshalJSON()
	if err != nil {
		return nil, err
	}
	st, err := marshal(status{
		State: s.State(), LastPoll: when(s.LastPoll), LastSuccess: when(s.LastSuccess), LastResult: s.LastResult,
		LastError: s.LastError, Failures: s.Failures, NextPoll: when(s.NextPoll), Polls: s.Polls, Published: s.Published, Errors: s.Errors,
	})
	if err != nil {
		return nil, err
	}
	out := append(cfg[:len(cfg)-1:len(cfg)-1], `,"status":`...)
	out = append(out, st...)
	return append(out, '}'), nil
}

func (p *poller) info() Info { return Info{Config: p.cfg.Redact(), Status: p.snapshot()} }

// Put creates the source cfg names, or changes it to cfg. Zero fields take
// their defaults, and a header given as Redacted keeps its stored value.
// It returns the source and whether it was created. A change restarts the
// source's poller; one that changes where or how it fetches, or where it
// publishes, also discards its change detection (everything is published
// afresh). Putting the settings a source already has changes nothing.
// Errors wrap hub.ErrBadInput (or event.ErrBadTopic) for bad settings,
// naming the field, and hub.ErrClosed after Close.
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
	old, closed, n := m.sources[cfg.Name], m.closed, len(m.sources)
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
	} else if n >= m.opts.MaxSources {
		return Info{}, false, fmt.Errorf("%w: there are %d sources already, the most this server keeps", hub.ErrBadInput, n)
	}
	cfg, err := cfg.WithDefaults().KeepSecrets(oldCfg)
	if err != nil {
		return Info{}, false, err
	}
	if err := cfg.Validate(); err != nil {
		return Info{}, false, err
	}
	u, _ := url.Parse(cfg.URL)
	if err := m.opts.Guard.CheckHost(u.Hostname()); err != nil {
		return Info{}, false, fmt.Errorf("%w: source %s: url: %w", hub.ErrBadInput, cfg.Name, err)
	}
	if old != nil && reflect.DeepEqual(normalized(old.cfg), normalized(cfg)) {
		return old.info(), false, nil
	}
	b, err := cfg.MarshalJSON()
	if err != nil {
		return Info{}, false, err
	}
	if err := m.store.ApplyState(ctx, registrySpace, m.registryOps(cfg.Name, raw, b)); err != nil {
		return Info{}, false, fmt.Errorf("store source %s: %w", cfg.Name, conflict(cfg.Name, err))
	}
	if old != nil {
		old.stop()
	}
	p := newPoller(m, cfg, b)
	m.mu.Lock()
	m.sources[cfg.Name] = p
	m.mu.Unlock()
	in := p.info() // before the first poll, which may come at once
	p.start(m.ctx)
	return in, old == nil, nil
}

// normalized is cfg with empty and nil collections made equal.
func normalized(cfg Config) Config {
	if len(cfg.Headers) == 0 {
		cfg.Headers = nil
	}
	if len(cfg.Metrics) == 0 {
		cfg.Metrics = nil
	}
	return cfg
}

// Get returns the source named name, or an error wrapping ErrNotFound.
func (m *Manager) Get(name string) (Info, error) {
	m.mu.Lock()
	p := m.sources[name]
	m.mu.Unlock()
	if p == nil {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return p.info(), nil
}

// List returns every source, by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	ps := make([]*poller, 0, len(m.sources))
	for _, name := range slices.Sorted(maps.Keys(m.sources)) {
		ps = append(ps, m.sources[name])
	}
	m.mu.Unlock()
	out := make([]Info, len(ps))
	for i, p := range ps {
		out[i] = p.info()
	}
	return out
}

// Delete stops the source named name and forgets it and its state; what
// it published stays. It returns an error wrapping ErrNotFound when there
// is no such source.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.syncLocked(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	p, closed := m.sources[name], m.closed
	m.mu.Unlock()
	if closed {
		return hub.ErrClosed
	}
	if p == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := m.store.ApplyState(ctx, registrySpace, m.registryOps(name, p.raw, nil)); err != nil {
		return fmt.Errorf("delete source %s: %w", name, conflict(name, err))
	}
	p.stop()
	m.forget(name, p)
	if m.shared {
		// Another node's poller stops at its next sync, giving its lease up.
		if err := m.store.ApplyState(ctx, leaseSpace, []hub.StateOp{{Key: name, Delete: true}}); err != nil {
			return fmt.Errorf("delete source %s's lease: %w", name, err)
		}
	}
	return hub.ClearState(ctx, m.store, spaceOf(name))
}

// Close stops every poller, cancelling polls in flight, and waits for
// them. Calls after the first do nothing.
func (m *Manager) Close() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	ps := slices.Collect(maps.Values(m.sources))
	m.mu.Unlock()
	m.cancel()
	if m.watch != nil {
		<-m.watch // it gives way to opMu, held here
	}
	for _, p := range ps {
		<-p.done
	}
	m.tr.CloseIdleConnections()
}
