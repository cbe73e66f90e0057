package group

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Shared mode: when the store is shared by the nodes of a networked
// engine (Redis), every node's Manager serves every group, with the
// group's state in memory on each. Optimistic concurrency keeps them
// from stepping on each other:
//
//   - Each group's space holds a version (keyVersion), a random token
//     that every write replaces. Each ApplyState of a group checks the
//     version this node last saw and sets a new one, so a write made on
//     a state that another node has changed since fails with
//     hub.ErrStateConflict and writes nothing. The committer then
//     reloads the state from the store (commit.go), and the operation
//     (fetch, ack, nak, in_progress, term) runs again on it, up to
//     maxAttempts times: callers see only real failures. Every change
//     that a conflicting flush held fails, so the operations that shared
//     the flush (commit.go) run again too, each in its own loop. One that
//     still conflicts after maxAttempts fails with ErrContended
//     (unavailable: retry later), never with the raw conflict, which
//     transports would answer as an internal error.
//   - A fetch returns only once its leases are stored (a write that
//     checks the version), so an event is never leased to two members
//     at once.
//   - An answer this node judges stale (a delivery id it does not know,
//     made on another node; a lease it thinks lost or held by someone
//     else) reads the version once and, if it moved, reloads and decides
//     again. Info does the same before it counts.
//   - The Manager's goroutine polls each group's version (every
//     min(Options.Poll, AckWait/4)) and reloads the groups that moved,
//     so that the leases of a node that stopped are taken back at their
//     deadlines by the others, and waiting fetches wake for events other
//     nodes took back. It reads the registry as often, to serve groups
//     created on other nodes and drop those deleted there.
//
// A reload costs a scan of the group's space; the events it has in
// memory are kept (events never change), so it reads none of them
// again. Nodes that write the same group at once conflict often, so a
// group's throughput is highest when its members sit on one node.

// keyVersion is the key of a group's version in its space.
const keyVersion = "v"

// maxAttempts bounds the runs of an operation that conflicts with other
// nodes' writes.
const maxAttempts = 24

// verBytes is what the version check adds to an ApplyState's bytes (its
// key, the expected and the new token).
const verBytes = 1 + 2*24

// errReloaded is the error of changes that a reload discarded: another
// node changed the group, and the operation runs again.
var errReloaded = fmt.Errorf("group state changed on another node: %w", hub.ErrStateConflict)

// stale reports whether err is an answer's refusal that a state older
// than the store's may have caused.
func stale(err error) bool {
	return errors.Is(err, ErrUnknownDelivery) || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrOtherMember)
}

// again reports whether an operation that failed with err runs again
// (attempt counts the runs so far, from 0): in shared mode, after a
// conflict with another node, which reloaded the state. It waits a
// little, randomly, before a run that follows a lost race.
func (g *group) again(ctx context.Context, err error, attempt int) bool {
	if err == nil || !g.m.shared || !errors.Is(err, hub.ErrStateConflict) || attempt+1 >= maxAttempts {
		return false
	}
	if attempt == 0 || errors.Is(err, errReloaded) {
		return ctx.Err() == nil
	}
	d := time.Duration(rand.Int64N(int64(min(1<<attempt, 32))*int64(time.Millisecond))) + time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-g.m.done:
		return false
	}
}

// retry runs op until it succeeds, fails for another reason than a
// conflict with other nodes' writes, or runs out of attempts (again), and
// returns its error as contended makes it.
func (g *group) retry(ctx context.Context, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if !g.again(ctx, err, attempt) {
			return g.contended(err)
		}
	}
}

// contended returns the error of an operation that again let go after
// err: err itself, unless err is a conflict with other nodes' writes (the
// attempts ran out, ctx ended or the Manager closed), which becomes an
// error wrapping ErrContended and no longer hub.ErrStateConflict.
func (g *group) contended(err error) error {
	if err == nil || !errors.Is(err, hub.ErrStateConflict) {
		return err
	}
	return fmt.Errorf("group %s: %w (the last conflict: %v)", g.cfg.Name, ErrContended, err)
}

// recheck is called by an answer that got err from lookupLocked, in
// shared mode: once per answer (checked), when err may come from a stale
// state, it reads the version and reloads the group when it moved. It
// returns errReloaded (run the answer again), or the read's error, or nil
// (err stands).
func (g *group) recheck(ctx context.Context, err error, checked *bool) error {
	if !g.m.shared || *checked || !stale(err) {
		return nil
	}
	*checked = true
	if _, serr := g.sync(ctx); serr != nil {
		return serr
	}
	return errReloaded
}

// sync reloads g's state when its stored version is not the one this
// node last saw, and reports whether it did. Shared mode only.
func (g *group) sync(ctx context.Context) (bool, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	v, _, err := g.m.store.LoadState(ctx, g.space, keyVersion)
	if err != nil {
		return false, fmt.Errorf("group %s: read version: %w", g.cfg.Name, err)
	}
	if bytes.Equal(v, g.ver) {
		return false, nil
	}
	g.reloadLocked(ctx, nil, errReloaded)
	return true, nil
}

// loadVersioned is load, with the version read just before the space in
// shared mode (nil otherwise). A write checking that version fails if
// anything changed since, including during the scan.
func (g *group) loadVersioned(ctx context.Context, cache eventCache) (*state, []byte, error) {
	var ver []byte
	if g.m.shared {
		v, _, err := g.m.store.LoadState(ctx, g.space, keyVersion)
		if err != nil {
			return nil, nil, fmt.Errorf("group %s: read version: %w", g.cfg.Name, err)
		}
		ver = v
	}
	s, err := g.load(ctx, cache)
	return s, ver, err
}

// versionOp returns the op that makes an ApplyState conditional on g's
// version being ver, and replaces it with next.
func versionOp(ver, next []byte) hub.StateOp {
	return hub.StateOp{Key: keyVersion, Check: true, Expect: ver, Set: true, Value: next}
}

// flushSharedLocked writes q in shared mode; g.wmu is held. Each
// ApplyState checks the version and sets the next, so the calls of one
// flush chain. A call holds whole changes while they fit, so that the
// changes of the calls stored before a conflict are done; the rest fail
// with the conflict, and the state is reloaded.
func (g *group) flushSharedLocked(q []change) {
	ctx := context.Background() // a write, once started, completes
	type call struct {
		ops   []hub.StateOp
		upto  int // the changes before upto are whole in this call or earlier ones
		bytes int
	}
	var calls []call
	cur := call{}
	cut := func() {
		if len(cur.ops) > 0 {
			calls = append(calls, cur)
		}
		cur = call{upto: cur.upto}
	}
	fits := func(n, b int) bool {
		return len(cur.ops)+n <= hub.MaxStateOps-1 && cur.bytes+b <= hub.MaxStateApplyBytes-verBytes
	}
	for i, c := range q {
		if !fits(len(c.ops), opsBytes(c.ops)) {
			cut()
		}
		for _, op := range c.ops {
			ob := opBytes(op)
			if !fits(1, ob) {
				cut() // a change too large for one call
			}
			cur.ops = append(cur.ops, op)
			cur.bytes += ob
		}
		cur.upto = i + 1
	}
	cut()
	done := 0
	var err error
	for _, c := range calls {
		next := []byte(newID())
		ops := append(lastPerKey([]change{{ops: c.ops}}), versionOp(g.ver, next))
		if err = g.m.store.ApplyState(ctx, g.space, ops); err != nil {
			break
		}
		g.ver = next
		for ; done < c.upto; done++ {
			q[done].res.done = true
		}
	}
	if err == nil {
		return
	}
	err = fmt.Errorf("group %s: store: %w", g.cfg.Name, err)
	if !errors.Is(err, hub.ErrStateConflict) {
		g.m.log.Error("group state write failed; reloading the group from the store", "group", g.cfg.Name, "error", err)
	}
	g.reloadLocked(ctx, q[done:], err)
}

// opBytes is what op counts for in an ApplyState's bytes.
func opBytes(op hub.StateOp) int { return len(op.Key) + len(op.Value) + len(op.Expect) }

// opsBytes is the sum of opBytes over ops.
func opsBytes(ops []hub.StateOp) int {
	n := 0
	for _, op := range ops {
		n += opBytes(op)
	}
	return n
}

// reloadLocked replaces g's state with the store's and fails the changes
// not stored (failed, and those queued since) with err; g.wmu is held.
// When the store cannot be read the state stays; in shared mode its
// writes then conflict until a reload succeeds.
func (g *group) reloadLocked(ctx context.Context, failed []change, err error) {
	var cache eventCache
	if g.m.shared {
		g.mu.Lock()
		cache = g.st.events()
		g.mu.Unlock()
	}
	s, ver, lerr := g.loadVersioned(ctx, cache)
	gone := false
	if lerr == nil && g.m.shared {
		gone, lerr = g.gone(ctx)
	}
	g.mu.Lock()
	failed = append(failed, g.queue...)
	g.queue = nil
	if g.m.shared {
		g.last = nil // those changes are undone: an answer that saw them retries
	}
	if lerr == nil {
		g.st = s
		g.ver = ver
		if len(s.timers) > 0 {
			g.m.scheduled(s.timers[0].at)
		}
	} else {
		g.m.log.Warn("group: reloading the state from the store failed", "group", g.cfg.Name, "error", lerr)
	}
	if gone {
		g.deleted = true
	}
	g.wakeLocked()
	g.mu.Unlock()
	for _, c := range failed {
		c.res.done, c.res.err = true, err
	}
}

// gone reports whether g was deleted on another node: its registry entry
// is gone, or belongs to a group created since.
func (g *group) gone(ctx context.Context) (bool, error) {
	v, ok, err := g.m.store.LoadState(ctx, registrySpace, g.cfg.Name)
	if err != nil {
		return false, fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	if !ok {
		return true, nil
	}
	var st jsonStored
	if err := json.Unmarshal(v, &st); err != nil {
		return false, fmt.Errorf("group %s: registry entry: %w", g.cfg.Name, err)
	}
	return !st.Created.Equal(g.created), nil
}

// eventCache holds the events a state had read, by topic and offset, so
// that a reload need not read them again.
type eventCache map[string]map[uint64]*event.Event

// events returns s's open events (read and not done).
func (s *state) events() eventCache {
	out := make(eventCache, len(s.topics))
	for name, t := range s.topics {
		m := make(map[uint64]*event.Event, len(t.open))
		for off, l := range t.open {
			m[off] = l.ev
		}
		out[name] = m
	}
	return out
}

// refill puts back into buf the events of t that the state before a
// reload had read and the store holds neither done nor leased, from the
// floor up to the first offset missing, and moves t's read position
// there: the group reads on from there, not from the floor again.
func (g *group) refill(s *state, t *topicState, evs map[uint64]*event.Event) {
	off := t.floor + 1
	for {
		if i := t.done.search(off); i < len(t.done) && t.done[i].lo <= off {
			off = t.done[i].hi + 1
			continue
		}
		if t.open[off] != nil {
			off++
			continue
		}
		ev := evs[off]
		if ev == nil || ev.Epoch != t.epoch {
			break
		}
		l := &lease{t: t, off: off, ev: ev, key: g.cfg.orderingKey(ev), hi: -1}
		t.open[off] = l
		s.buf = append(s.buf, l)
		off++
	}
	if off-1 > t.read {
		t.read = off - 1
		t.head = max(t.head, t.read)
	}
}

// poller is the state of the Manager goroutine's polls in shared mode;
// the goroutine owns it.
type poller struct {
	next     map[*group]time.Time // when each group's version is read next
	registry time.Time            // when the registry is read next
}

// poll reads the versions of the groups that are due, and the registry
// when due.
func (m *Manager) poll(ctx context.Context, p *poller) {
	now := time.Now()
	if !now.Before(p.registry) {
		p.registry = now.Add(m.opts.Poll)
		if err := m.discover(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("group: reading the registry failed", "error", err)
		}
	}
	seen := make(map[*group]time.Time, len(p.next))
	for _, g := range m.groupList() {
		at, ok := p.next[g]
		if ok && now.Before(at) {
			seen[g] = at
			continue
		}
		seen[g] = now.Add(min(m.opts.Poll, max(g.cfg.AckWait/4, m.opts.Poll/4)))
		if !ok {
			continue // just loaded
		}
		if _, err := g.sync(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("group: reading the version failed", "group", g.cfg.Name, "error", err)
		}
	}
	p.next = seen
}

// discover serves the groups other nodes created and drops those they
// deleted. It gives way to a Put or Delete in progress.
func (m *Manager) discover(ctx context.Context) error {
	if !m.opMu.TryLock() {
		return nil
	}
	defer m.opMu.Unlock()
	entries, err := m.scanRegistry(ctx)
	if err != nil {
		return err
	}
	byName := make(map[string]jsonStored, len(entries))
	for _, st := range entries {
		byName[st.Config.Name] = st
	}
	for _, g := range m.groupList() {
		if st, ok := byName[g.cfg.Name]; !ok || !st.Created.Equal(g.created) {
			m.drop(g)
		}
	}
	for _, st := range entries {
		m.mu.Lock()
		known := m.groups[st.Config.Name] != nil
		m.mu.Unlock()
		if known {
			continue
		}
		if _, err := m.adopt(ctx, st); err != nil {
			m.log.Warn("group: a group of another node could not be loaded", "group", st.Config.Name, "error", err)
		}
	}
	return nil
}

// adopt loads a group that another node created and serves it.
func (m *Manager) adopt(ctx context.Context, st jsonStored) (*group, error) {
	g := newGroup(m, st)
	s, ver, err := g.loadVersioned(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("load group %s: %w", st.Config.Name, err)
	}
	g.st, g.ver = s, ver
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, hub.ErrClosed
	}
	if old := m.groups[st.Config.Name]; old != nil {
		return old, nil
	}
	m.groups[st.Config.Name] = g
	return g, nil
}

// lookupStored returns the registry entry of group name, in shared mode,
// and whether there is one.
func (m *Manager) lookupStored(ctx context.Context, name string) (jsonStored, bool, error) {
	v, ok, err := m.store.LoadState(ctx, registrySpace, name)
	if err != nil || !ok {
		return jsonStored{}, false, err
	}
	st, err := parseStored(name, v)
	if err != nil {
		return jsonStored{}, false, err
	}
	return st, true, nil
}

// drop stops serving g, deleted on another node: its waiting fetches
// return, and answers fail with ErrNoGroup.
func (m *Manager) drop(g *group) {
	m.mu.Lock()
	if m.groups[g.cfg.Name] == g {
		delete(m.groups, g.cfg.Name)
	}
	m.mu.Unlock()
	g.mu.Lock()
	g.deleted = true
	g.wakeLocked()
	g.mu.Unlock()
	if o := m.opts.Observer; o.Removed != nil {
		o.Removed(g.cfg.Name)
	}
}
