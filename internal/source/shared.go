package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// Shared mode: when the store is shared by the nodes of a networked
// engine (Redis; hub.SharedState), every node's Manager has a poller for
// every source, but one node at a time polls each source:
//
//   - A lease per source, in leaseSpace: the holding Manager and until
//     when. A poller takes the lease before each poll, with an ApplyState
//     that checks the lease is the one it last saw (its own, a lapsed one,
//     or none), and sets it until Timeout + 3 intervals later (longer
//     when a backoff or a Retry-After makes it wait longer). A poller that
//     does not get it is on standby: it tries again every interval, and
//     takes the lease over once it has lapsed, so the sources of a node
//     that died are polled again by another within about four intervals.
//     A poller that stops (Close, a change, a deletion) gives its lease
//     up, so another node takes over at its next try.
//   - A poller that takes the lease reads the source's state again
//     (another node wrote it meanwhile), and its state writes check the
//     meta it read (state.go): a node that lost its lease while it polled
//     writes nothing over the new holder's state. What it published is
//     published again with the same idempotency keys, which the engine
//     dedupes: a change is published once.
//   - The registry holds a version (keyVersion) that each Put and Delete
//     replaces, in the same ApplyState as the entry (which checks the
//     entry is the one this node knew: a change made meanwhile on another
//     node fails with hub.ErrConflict). The Manager's goroutine reads it
//     every Options.Poll and, when it moved, reads the registry again: it
//     starts the pollers of sources other nodes made, restarts those they
//     changed and stops those they deleted. Put and Delete sync first.
//
// Leases compare the nodes' clocks: they must agree to well within an
// interval. A poller's status and counters are its node's: a node on
// standby shows "standby" and counts no polls.

// leaseSpace holds the sources' leases, by source name. It cannot be a
// source's space ("source.NAME").
const leaseSpace = "sources.leases"

// keyVersion is the key of the version in the registry space. Source
// names never have a '.'.
const keyVersion = ".version"

// leaseTerms is how many intervals a lease outlasts the poll it is taken
// for.
const leaseTerms = 3

// lease is a source's entry in leaseSpace.
type lease struct {
	Node  string `json:"node"`
	Until int64  `json:"until_ms"`
}

// newToken returns a random token: a version, a Manager's id.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// claim takes or renews p's lease until hold from now, and reports
// whether p holds it. Shared mode only; owned by run.
func (p *poller) claim(ctx context.Context, hold time.Duration) (bool, error) {
	now := p.m.clock.Now()
	next, _ := json.Marshal(lease{Node: p.m.node, Until: now.Add(hold).UnixMilli()})
	set := func(expect []byte) (bool, error) {
		err := p.m.store.ApplyState(ctx, leaseSpace, []hub.StateOp{{Key: p.cfg.Name, Check: true, Expect: expect, Set: true, Value: next}})
		switch {
		case err == nil:
			p.lease = next
			return true, nil
		case errors.Is(err, hub.ErrStateConflict):
			return false, nil
		}
		return false, fmt.Errorf("take the lease: %w", err)
	}
	if p.lease != nil {
		if ok, err := set(p.lease); ok || err != nil {
			return ok, err
		}
		p.lease = nil
	}
	cur, ok, err := p.m.store.LoadState(ctx, leaseSpace, p.cfg.Name)
	if err != nil {
		return false, fmt.Errorf("read the lease: %w", err)
	}
	var l lease
	if ok && json.Unmarshal(cur, &l) == nil && l.Node != p.m.node && now.UnixMilli() < l.Until {
		return false, nil // another node's, and running
	}
	if !ok {
		cur = nil
	}
	held, err := set(cur)
	if held {
		p.st = nil // the state another node wrote is read again
	}
	return held, err
}

// release gives p's lease up, when p stops. Owned by run.
func (p *poller) release() {
	if p.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.m.store.ApplyState(ctx, leaseSpace, []hub.StateOp{{Key: p.cfg.Name, Check: true, Expect: p.lease, Delete: true}})
	if err != nil && !errors.Is(err, hub.ErrStateConflict) {
		p.m.log.Warn("source: lease not given up; another node takes it over when it lapses", "source", p.cfg.Name, "error", err)
	}
	p.lease = nil
}

// registryOps returns the ops that write (or delete, when b is nil) the
// entry of name: in shared mode checked against raw, the entry this node
// knows (nil: none), and with the version replaced.
func (m *Manager) registryOps(name string, raw, b []byte) []hub.StateOp {
	op := hub.StateOp{Key: name, Set: true, Value: b}
	if b == nil {
		op = hub.StateOp{Key: name, Delete: true}
	}
	if !m.shared {
		return []hub.StateOp{op}
	}
	op.Check, op.Expect = true, raw
	return []hub.StateOp{op, {Key: keyVersion, Set: true, Value: []byte(newToken())}}
}

// conflict turns a registry write's conflict into the error callers see.
func conflict(name string, err error) error {
	if errors.Is(err, hub.ErrStateConflict) {
		return fmt.Errorf("%w: source %s was changed on another node meanwhile; try again", hub.ErrConflict, name)
	}
	return err
}

// watchRegistry is the Manager's goroutine in shared mode: it syncs every
// Options.Poll until Close, giving way to a Put or Delete in progress.
func (m *Manager) watchRegistry() {
	defer close(m.watch)
	hub.PollLocked(m.ctx, m.opts.Poll, &m.opMu, m.syncLocked, func(err error) {
		m.log.Warn("source: reading the registry failed", "error", err)
	})
}

// syncLocked brings the pollers in step with the registry when its
// version moved; opMu is held. Shared mode only.
func (m *Manager) syncLocked(ctx context.Context) error {
	if !m.shared {
		return nil
	}
	ver, stored, err := hub.ReadIfChanged(ctx, m.store, registrySpace, keyVersion, m.ver)
	if err != nil || stored == nil {
		return err
	}
	m.mu.Lock()
	closed := m.closed
	local := make(map[string]*poller, len(m.sources))
	for name, p := range m.sources {
		local[name] = p
	}
	m.mu.Unlock()
	if closed {
		return hub.ErrClosed
	}
	for name, p := range local {
		if _, ok := stored[name]; !ok {
			p.stop()
			m.forget(name, p)
		}
	}
	for name, raw := range stored {
		old := local[name]
		if old != nil && bytes.Equal(old.raw, raw) {
			continue
		}
		cfg, err := decodeStored(name, raw)
		if err != nil {
			m.log.Warn("stored source skipped", "source", name, "error", err)
			continue
		}
		if old != nil {
			old.stop()
		}
		p := newPoller(m, cfg, raw)
		m.mu.Lock()
		m.sources[name] = p
		m.mu.Unlock()
		p.start(m.ctx)
	}
	m.ver = ver
	return nil
}

// forget drops p, deleted, from the sources.
func (m *Manager) forget(name string, p *poller) {
	m.mu.Lock()
	if m.sources[name] == p {
		delete(m.sources, name)
	}
	m.mu.Unlock()
	if o := m.opts.Observer; o.Removed != nil {
		o.Removed(name)
	}
}
