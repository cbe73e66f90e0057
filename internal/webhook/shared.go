package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/hub"
)

// Shared mode: when the store is shared by the nodes of a networked
// engine (Redis; hub.SharedState), every node's Manager runs a dispatcher
// for every subscription. Deliveries need nothing more: each dispatcher
// fetches from the subscription's group, which leases each event to one
// fetch at a time across the nodes (package group's shared mode), and
// caps the leases in flight across them (an ordered subscription's one).
// What the Manager itself caches is kept in step so:
//
//   - The registry space holds a version (keyVersion), a random token
//     that every change of a subscription replaces: Put and Delete in the
//     same ApplyState as the entry (which checks the entry is the one
//     this node knew: a change made meanwhile on another node fails with
//     hub.ErrConflict), and a status write (failing since, disabled, re-
//     enabled) right after it.
//   - The Manager's goroutine reads the version every Options.Poll and,
//     when it moved, reads the registry and the statuses again (sync):
//     it starts the subscriptions other nodes made, restarts those they
//     changed, disabled or re-enabled, and stops those they deleted.
//     Put, Delete and Replay sync first, so that they act on the store's
//     subscription, not on a cached one.
//   - An ordered subscription's event that comes a second time (its lease
//     ran out on another node) reads the retry state ("h") again.
//
// The delivery log, the counters and a replay's progress stay in each
// node's memory: each node reports the attempts it made.

// keyVersion is the key of the version in the registry space. Webhook
// names never have a '.'.
const keyVersion = ".version"

// newToken returns a random version token.
func newToken() []byte {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return []byte(hex.EncodeToString(b[:]))
}

// versionOp is the op that replaces the registry's version.
func versionOp() hub.StateOp {
	return hub.StateOp{Key: keyVersion, Set: true, Value: newToken()}
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
	return []hub.StateOp{op, versionOp()}
}

// conflict turns a registry write's conflict into the error callers see.
func conflict(name string, err error) error {
	if errors.Is(err, hub.ErrStateConflict) {
		return fmt.Errorf("%w: webhook %s was changed on another node meanwhile; try again", hub.ErrConflict, name)
	}
	return err
}

// bumpVersion tells the other nodes that a status changed. Shared mode
// only.
func (m *Manager) bumpVersion(ctx context.Context) {
	if !m.shared {
		return
	}
	if err := m.store.ApplyState(ctx, registrySpace, []hub.StateOp{versionOp()}); err != nil {
		m.log.Warn("webhook: registry version not written; other nodes see the status change later", "error", err)
	}
}

// watch is the Manager's goroutine in shared mode: it syncs every
// Options.Poll until Close. It gives way to a Put, Delete or Replay in
// progress.
func (m *Manager) watchRegistry() {
	defer close(m.watch)
	hub.PollLocked(m.ctx, m.opts.Poll, &m.opMu, m.syncLocked, func(err error) {
		m.log.Warn("webhook: reading the registry failed", "error", err)
	})
}

// syncLocked brings the subscriptions in step with the store when its
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
	local := make(map[string]*sub, len(m.subs))
	for name, s := range m.subs {
		local[name] = s
	}
	m.mu.Unlock()
	if closed {
		return hub.ErrClosed
	}
	for name, s := range local {
		if _, ok := stored[name]; !ok {
			s.stop()
			m.forget(name, s)
		}
	}
	for name, raw := range stored {
		old := local[name]
		if old != nil && bytes.Equal(old.raw, raw) {
			if err := old.reloadStatus(ctx); err != nil {
				return err
			}
			continue
		}
		cfg, err := decodeStored(name, raw)
		if err != nil {
			m.log.Warn("stored webhook skipped", "webhook", name, "error", err)
			continue
		}
		if old != nil {
			old.stop()
		}
		s, err := m.newSub(ctx, cfg, raw)
		if err != nil {
			return err
		}
		if old != nil {
			s.inheritLog(old)
		}
		m.mu.Lock()
		m.subs[name] = s
		m.mu.Unlock()
		s.start(m.ctx, false)
	}
	m.ver = ver
	return nil
}

// forget drops s, deleted, from the subscriptions.
func (m *Manager) forget(name string, s *sub) {
	m.mu.Lock()
	if m.subs[name] == s {
		delete(m.subs, name)
	}
	m.mu.Unlock()
	if o := m.opts.Observer; o.Removed != nil {
		o.Removed(name)
	}
}

// reloadStatus reads s's status again; when another node disabled or
// re-enabled the subscription meanwhile, it stops or starts the
// dispatcher. Called by sync.
func (s *sub) reloadStatus(ctx context.Context) error {
	var st status
	if _, err := loadJSON(ctx, s.m.store, spaceOf(s.cfg.Name), keyStatus, &st); err != nil {
		return err
	}
	s.saveMu.Lock()
	s.mu.Lock()
	was := !s.st.DisabledAt.IsZero()
	s.st = st
	s.mu.Unlock()
	s.saveMu.Unlock()
	if was == !st.DisabledAt.IsZero() {
		return nil
	}
	s.stop()
	s.start(s.m.ctx, false)
	return nil
}

// reloadHead reads an ordered subscription's retry state again, for an
// event that another node may have tried. Shared mode only.
func (s *sub) reloadHead(ctx context.Context) {
	var h head
	if _, err := loadJSON(ctx, s.m.store, spaceOf(s.cfg.Name), keyHead, &h); err != nil {
		s.m.log.Warn("webhook: retry state not read", "webhook", s.cfg.Name, "error", err)
		return
	}
	s.mu.Lock()
	s.hd = h
	s.mu.Unlock()
}
