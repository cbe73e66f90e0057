package group

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// A group reads its topics with the hub's Pull, from a cursor holding its
// read position in each (the offset up to which it has read), into buf:
// the events read and not yet delivered. A fetch leases events from ready
// (taken back, or released by per-key ordering) first, then from buf, and
// reads more when buf runs low: one fetch at a time reads (rmu), the
// others find buf filled. A fetch with nothing to lease waits in a long
// Pull, which new events end, and which a redelivery, a freed lease or
// the group's deletion cancel (g.changed).

// DefaultFetch is the limit of a Fetch that gives none.
const DefaultFetch = 100

// MaxHeldBack is how many events per-key ordering holds back (their key
// in flight) before the group stops reading its topics.
const MaxHeldBack = 100_000

// ValidateMember reports whether member is a valid member name: 1 to
// MaxMemberLen bytes of printable UTF-8.
func ValidateMember(member string) error {
	if member == "" {
		return fmt.Errorf("%w: a member name is required", hub.ErrBadInput)
	}
	if len(member) > MaxMemberLen {
		return fmt.Errorf("%w: member name is %d bytes, the limit is %d", hub.ErrBadInput, len(member), MaxMemberLen)
	}
	if !utf8.ValidString(member) {
		return fmt.Errorf("%w: member name is not UTF-8", hub.ErrBadInput)
	}
	for _, r := range member {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: member name has a control character", hub.ErrBadInput)
		}
	}
	return nil
}

// Fetch leases up to limit events of group name to member and returns
// them (limit 0 means DefaultFetch). When none is available it waits up
// to wait for one (long polling), then returns what it has, maybe
// nothing; the group's limits on events in flight count as none
// available. The caller's identity (in ctx) must be allowed
// hub.ActionConsume on the group's topics.
//
// Messages are returned before their leases are stored: the Manager's
// goroutine stores them at once, and any later answer (an ack) waits for
// them. A crash in between forgets those deliveries: their events are
// delivered again as if new, and answers to their ids fail with
// ErrUnknownDelivery. Acks, unlike fetches, return once stored. On a
// store shared between nodes (shared.go) a fetch returns once its leases
// are stored, so that no other node leases the same events meanwhile.
func (m *Manager) Fetch(ctx context.Context, name, member string, limit int, wait time.Duration) ([]Message, error) {
	if err := ValidateMember(member); err != nil {
		return nil, err
	}
	switch {
	case limit == 0:
		limit = DefaultFetch
	case limit < 0 || limit > MaxFetch:
		return nil, fmt.Errorf("%w: limit %d is out of range: 1 to %d", hub.ErrBadInput, limit, MaxFetch)
	case wait < 0:
		return nil, fmt.Errorf("%w: wait %v is negative", hub.ErrBadInput, wait)
	}
	g, err := m.group(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := g.refresh(ctx, false); err != nil {
		return nil, err
	}
	if err := m.allow(ctx, g); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	attempt := 0 // shared mode: the takes that conflicted
	for {
		g.mu.Lock()
		if g.deleted {
			g.mu.Unlock()
			return nil, fmt.Errorf("%w: %q was deleted", ErrNoGroup, name)
		}
		msgs, redelivered, r, full := g.takeLocked(member, limit)
		// Per-key ordering holds events back in memory while their key is
		// in flight; past MaxHeldBack the group reads no further until
		// some are released.
		low := !full && len(g.st.buf) < limit && g.st.heldBack < MaxHeldBack
		changed := g.changed
		g.mu.Unlock()
		if len(msgs) > 0 {
			if m.shared {
				// The leases must be stored before anyone sees them: a
				// conflict means another node changed the group, whose
				// state is reloaded; take again from it.
				if err := g.wait(r); err != nil {
					if g.again(ctx, err, attempt) {
						attempt++
						continue
					}
					return nil, g.contended(err)
				}
			} else if r != nil {
				m.flushSoon()
			}
			if o := m.opts.Observer; o.Delivered != nil {
				o.Delivered(name, len(msgs), redelivered)
			}
			return msgs, nil
		}
		if low {
			got, err := g.read(ctx, 0, nil)
			if err != nil {
				return nil, err
			}
			if got {
				continue
			}
		}
		remaining := time.Until(deadline)
		if wait <= 0 || remaining <= 0 || ctx.Err() != nil || m.isClosed() {
			return nil, nil
		}
		step := min(remaining, m.opts.TopicRefresh)
		if full {
			t := time.NewTimer(step)
			select {
			case <-changed:
			case <-t.C:
			case <-ctx.Done():
			case <-m.done:
			}
			t.Stop()
		} else if _, err := g.read(ctx, step, changed); err != nil {
			return nil, err
		}
		if err := g.refresh(ctx, false); err != nil {
			return nil, err
		}
	}
}

func (m *Manager) isClosed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// takeLocked leases up to limit events to member, within the group's
// limits, and returns them with how many are redeliveries, the result of
// the writes, and whether a limit left no room at all.
func (g *group) takeLocked(member string, limit int) (msgs []Message, redelivered int, r *result, full bool) {
	s := g.st
	room := min(limit, g.cfg.MaxInFlight-s.inflight, g.cfg.MemberMaxInFlight-s.members[member])
	if room <= 0 {
		return nil, 0, g.last, true
	}
	now := g.m.clock.Now()
	deadline := now.Add(g.cfg.AckWait)
	var ops []hub.StateOp
	deliver := func(l *lease) {
		if l.id != "" {
			l.oldIDs = append(l.oldIDs, l.id)
		}
		for {
			l.id = newID()
			if s.ids[l.id] == nil {
				break
			}
		}
		s.ids[l.id] = l
		l.n++
		if l.n > 1 {
			redelivered++
			s.redelivered++
		}
		l.state, l.member = stateLeased, member
		s.inflight++
		s.members[member]++
		s.schedule(l, deadline)
		ops = append(ops, leaseOp(l))
		msgs = append(msgs, Message{ID: l.id, Event: l.ev, Delivery: l.n, Deadline: deadline})
	}
	for len(msgs) < room && len(s.ready) > 0 {
		l := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		if l.state == stateReady {
			deliver(l)
		}
	}
	for len(msgs) < room && len(s.buf) > 0 {
		l := s.buf[0]
		s.buf[0] = nil
		s.buf = s.buf[1:]
		if l.state != stateFresh {
			continue
		}
		if l.key != "" {
			if holder := s.keys[l.key]; holder != nil {
				l.state = stateBlocked
				s.blocked[l.key] = append(s.blocked[l.key], l)
				s.heldBack++
				continue
			}
			s.keys[l.key] = l
		}
		deliver(l)
	}
	if redelivered > 0 {
		ops = append(ops, s.countersOp())
	}
	if len(msgs) > 0 {
		g.m.scheduled(deadline)
	}
	return msgs, redelivered, g.enqueueLocked(ops), false
}

// read reads the group's topics after its read positions into buf, and
// reports whether it got anything new. With wait it is a long poll that
// changed (closed) or the Manager's closing cuts short; without, it reads
// once, unless another fetch has just filled buf.
func (g *group) read(ctx context.Context, wait time.Duration, changed <-chan struct{}) (bool, error) {
	if wait == 0 {
		g.rmu.Lock()
		defer g.rmu.Unlock()
	}
	g.mu.Lock()
	s := g.st
	if wait == 0 && len(s.buf) >= g.m.opts.ReadAhead/2 {
		g.mu.Unlock()
		return true, nil
	}
	names := s.names
	var c cursor.Cursor
	for _, name := range names {
		t := s.topics[name]
		c.Set(name, event.Position{Epoch: t.epoch, Offset: t.read})
	}
	limit := max(1, g.m.opts.ReadAhead-len(s.buf))
	g.mu.Unlock()
	pctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithCancel(ctx)
		defer cancel()
		if len(names) == 0 {
			// Nothing to poll: wait for the next refresh.
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-changed:
			case <-t.C:
			case <-ctx.Done():
			case <-g.m.done:
			}
			return false, nil
		}
		go func() {
			select {
			case <-changed:
			case <-g.m.done:
			case <-pctx.Done():
			}
			cancel()
		}()
	} else if len(names) == 0 {
		return false, nil
	}
	res, err := g.m.hub.Pull(hub.Internal(pctx), hub.PullRequest{Topics: names, Cursor: c, Limit: min(limit, hub.MaxPullLimit), Wait: wait})
	if err != nil {
		if pctx.Err() != nil && errors.Is(err, context.Canceled) {
			return false, nil
		}
		return false, fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	g.mu.Lock()
	got, ops := g.absorbLocked(res)
	g.enqueueLocked(ops) // stored with the next answer's writes
	if got && wait > 0 {
		g.wakeLocked()
	}
	g.mu.Unlock()
	return got, nil
}

// absorbLocked adds the events of a Pull that are new to the group to buf,
// and handles its gaps: a trimmed stretch counts as done (and Trimmed), a
// new epoch starts the topic afresh (EpochResets). A Pull that raced with
// another is stale where it overlaps: what the group has read is skipped.
func (g *group) absorbLocked(res hub.PullResult) (got bool, ops []hub.StateOp) {
	s := g.st
	counters := false
	for _, gap := range res.Gaps {
		t := s.topics[gap.Topic]
		if t == nil {
			continue
		}
		switch {
		case gap.Reason == hub.GapTrimmed:
			if lo, hi := max(t.read, t.floor)+1, gap.Resumed.Offset; t.epoch == gap.Resumed.Epoch && lo <= hi {
				s.trimmed += hi - lo + 1
				t.read = hi
				ops = append(ops, t.markDone(lo, hi)...)
				counters = true
			}
		case gap.Requested == (event.Position{Epoch: t.epoch, Offset: t.read}):
			ops = append(ops, s.resetTopic(t, gap.Resumed)...)
			counters = true
			g.m.log.Warn("group: a topic's history was replaced; consuming the new one from its first event",
				"group", g.cfg.Name, "topic", t.name, "reason", gap.Reason.String())
		}
	}
	for _, ev := range res.Events {
		t := s.topics[ev.Topic]
		if t == nil || ev.Epoch != t.epoch || ev.Offset <= t.read {
			continue
		}
		t.read = ev.Offset
		t.head = max(t.head, ev.Offset)
		if ev.Offset <= t.floor || t.done.contains(ev.Offset) || t.open[ev.Offset] != nil {
			continue
		}
		l := &lease{t: t, off: ev.Offset, ev: ev, key: g.cfg.orderingKey(ev), hi: -1}
		t.open[ev.Offset] = l
		s.buf = append(s.buf, l)
		got = true
	}
	if counters {
		ops = append(ops, s.countersOp())
	}
	return got, ops
}

// resetTopic starts t afresh after pos (a new epoch): its open events
// end (their delivery ids are no longer known), and so does what was
// done.
func (s *state) resetTopic(t *topicState, pos event.Position) []hub.StateOp {
	var ops []hub.StateOp
	for _, l := range t.open {
		s.unschedule(l)
		s.release(l)
		for _, id := range l.oldIDs {
			delete(s.ids, id)
		}
		delete(s.ids, l.id)
		if l.n > 0 {
			ops = append(ops, delOp(offKey(prefixLease, t.name, l.off)))
		}
		l.state = stateDone
	}
	for _, l := range t.open {
		s.passKey(l)
	}
	for _, sp := range t.done {
		ops = append(ops, delOp(offKey(prefixSpan, t.name, sp.lo)))
	}
	s.epochResets++
	t.open = map[uint64]*lease{}
	t.done = nil
	t.epoch, t.floor, t.read, t.head = pos.Epoch, pos.Offset, pos.Offset, pos.Offset
	return append(ops, posOp(t))
}

// refresh looks for new topics matching the group's patterns, at most
// once per Options.TopicRefresh unless now: a new topic is consumed from
// its first event.
func (g *group) refresh(ctx context.Context, now bool) error {
	wild := false
	for _, t := range g.cfg.Topics {
		if event.ValidateTopic(t) != nil {
			wild = true
		}
	}
	if !wild {
		return nil
	}
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if !now && time.Since(g.lastResolve) < g.m.opts.TopicRefresh {
		return nil
	}
	g.lastResolve = time.Now()
	names, leftOut, err := g.resolve(ctx)
	if err != nil {
		return fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	g.mu.Lock()
	known := g.st.topics
	g.mu.Unlock()
	var add []*topicState
	for _, name := range names {
		if known[name] != nil {
			continue
		}
		epoch, off, err := g.startPosition(ctx, start{}, name, true)
		if err != nil {
			return err
		}
		add = append(add, &topicState{name: name, epoch: epoch, floor: off, read: off, head: off})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.st
	s.leftOut = leftOut
	var ops []hub.StateOp
	for _, t := range add {
		if s.topics[t.name] == nil && len(s.names) < MaxTopics {
			s.addTopic(t)
			ops = append(ops, posOp(t))
		}
	}
	g.enqueueLocked(ops)
	return nil
}
