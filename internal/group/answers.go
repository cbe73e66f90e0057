package group

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// MaxTermReason is the longest reason a Term takes, in bytes.
const MaxTermReason = 1024

// lookupLocked returns the lease delivery id names, if member may answer
// for it: an error wraps ErrUnknownDelivery, ErrLeaseLost or
// ErrOtherMember. member "" answers for any member.
func (g *group) lookupLocked(id, member string) (*lease, error) {
	l := g.st.ids[id]
	switch {
	case g.deleted:
		return nil, fmt.Errorf("%w: %q was deleted", ErrNoGroup, g.cfg.Name)
	case l == nil:
		return nil, fmt.Errorf("delivery %q: %w", id, ErrUnknownDelivery)
	case l.id != id:
		return nil, fmt.Errorf("delivery %q: %w (delivery %d is the current one)", id, ErrLeaseLost, l.n)
	case l.state == stateDying:
		return nil, fmt.Errorf("delivery %q: %w: it is being dead-lettered", id, ErrUnknownDelivery)
	case member != "" && l.state == stateLeased && l.member != member:
		return nil, fmt.Errorf("delivery %q: %w", id, ErrOtherMember)
	}
	return l, nil
}

// answer runs the preliminaries of every answer: checks, the group, the
// caller's right to consume its topics.
func (m *Manager) answer(ctx context.Context, name, member string) (*group, error) {
	if member != "" {
		if err := ValidateMember(member); err != nil {
			return nil, err
		}
	}
	g, err := m.group(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := m.allow(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// Ack marks deliveries done. results[i] is nil when ids[i] was acked, or
// an error wrapping ErrUnknownDelivery or ErrLeaseLost; err is for the
// whole call (no such group, engine unavailable) when none of ids was
// acked. An ack returns once it is stored: an acked event is never
// delivered again, even after a crash. member "" acks for any member;
// otherwise a delivery leased to another member is refused
// (ErrOtherMember). A delivery whose lease ran out and that was not
// delivered again may still be acked.
//
// Many ids are stored in chunks, each of which is whole in one ApplyState
// (ackChunks): in shared mode, when another node's write lands between
// two chunks, the chunks stored stay acked and only the others' ids run
// again on the reloaded state. When the attempts run out (ErrContended)
// after some chunks were stored, the ack answers per id: those ids acked,
// the others with the error (retrying them is safe).
func (m *Manager) Ack(ctx context.Context, name, member string, ids []string) (results []error, err error) {
	if len(ids) == 0 || len(ids) > MaxAckIDs {
		return nil, fmt.Errorf("%w: %d delivery ids, give 1 to %d", hub.ErrBadInput, len(ids), MaxAckIDs)
	}
	g, err := m.answer(ctx, name, member)
	if err != nil {
		return nil, err
	}
	results = make([]error, len(ids))
	pending := make([]int, len(ids)) // the indices of ids not stored as acked yet
	for i := range pending {
		pending[i] = i
	}
	checked := false
	var acked int
	err = g.retry(ctx, func() (err error) {
		var n int
		pending, n, err = g.ack(ctx, member, ids, pending, results, &checked)
		acked += n
		return err
	})
	if o := m.opts.Observer; o.Acked != nil && acked > 0 {
		o.Acked(name, acked)
	}
	if err != nil {
		if acked == 0 {
			return nil, err
		}
		for _, i := range pending {
			if results[i] == nil {
				results[i] = err
			}
		}
	}
	return results, nil
}

// ackChunkOps and ackChunkBytes bound the writes of one chunk of an ack,
// so that the chunk fits whole in one ApplyState with the version check
// (flushSharedLocked never splits it).
const (
	ackChunkOps   = hub.MaxStateOps - 1
	ackChunkBytes = hub.MaxStateApplyBytes - verBytes
)

// ack is one run of Ack over the ids at the indices pending; checked is
// recheck's. It sets results[i] of each, and returns the indices still
// pending (refused, or in a chunk whose write failed, with the first such
// error as err) and how many acks it stored.
func (g *group) ack(ctx context.Context, member string, ids []string, pending []int, results []error, checked *bool) (left []int, acked int, err error) {
	for _, i := range pending {
		results[i] = nil
	}
	type chunk struct {
		idx []int // the indices of the ids acked in the chunk
		r   *result
	}
	var chunks []chunk
	var cur chunk
	var ops []hub.StateOp
	bytes := 0
	g.mu.Lock()
	if g.deleted {
		g.mu.Unlock()
		return pending, 0, fmt.Errorf("%w: %q was deleted", ErrNoGroup, g.cfg.Name)
	}
	if g.m.shared && !*checked {
		// Decide on a fresh state if this one refuses any.
		for _, i := range pending {
			if _, err := g.lookupLocked(ids[i], member); stale(err) {
				g.mu.Unlock()
				return pending, 0, g.recheck(ctx, err, checked)
			}
		}
	}
	for _, i := range pending {
		l, err := g.lookupLocked(ids[i], member)
		if err != nil {
			results[i] = err
			left = append(left, i)
			continue
		}
		if l.state == stateReady {
			g.st.removeReady(l)
		}
		lops := g.st.finish(l)
		b := opsBytes(lops)
		if len(cur.idx) > 0 && (len(ops)+len(lops) > ackChunkOps || bytes+b > ackChunkBytes) {
			cur.r = g.enqueueLocked(ops)
			chunks = append(chunks, cur)
			cur, ops, bytes = chunk{}, nil, 0
		}
		ops = append(ops, lops...)
		bytes += b
		cur.idx = append(cur.idx, i)
	}
	cur.r = g.enqueueLocked(ops) // with no ops, the last change queued: see enqueueLocked
	chunks = append(chunks, cur)
	if len(pending) > len(left) {
		g.wakeLocked() // room for fetches held back by max_in_flight
	}
	g.mu.Unlock()
	for _, c := range chunks {
		if werr := g.wait(c.r); werr != nil {
			if err == nil {
				err = werr
			}
			left = append(left, c.idx...)
			continue
		}
		acked += len(c.idx)
	}
	if err != nil {
		slices.Sort(left)
	}
	return left, acked, err
}

// Nak hands a delivery back for redelivery after delay (0: the group's
// backoff), counting as a delivery attempt: a delivery that was the
// group's MaxDeliveries-th goes to the dead-letter topic instead. delay is
// at most MaxBackoff. A delivery whose lease ran out and that waits for
// redelivery gets the new delay.
func (m *Manager) Nak(ctx context.Context, name, member, id string, delay time.Duration) error {
	if delay < 0 || delay > MaxBackoff {
		return fmt.Errorf("%w: delay %v is out of range: 0 to %v", hub.ErrBadInput, delay, MaxBackoff)
	}
	g, err := m.answer(ctx, name, member)
	if err != nil {
		return err
	}
	checked := false
	return g.retry(ctx, func() error { return g.nak(ctx, member, id, delay, &checked) })
}

// nak is one run of Nak; checked is recheck's.
func (g *group) nak(ctx context.Context, member, id string, delay time.Duration, checked *bool) error {
	m := g.m
	g.mu.Lock()
	l, err := g.lookupLocked(id, member)
	if err != nil {
		r := g.last
		g.mu.Unlock()
		if rerr := g.recheck(ctx, err, checked); rerr != nil {
			return rerr
		}
		return joinWait(err, g.wait(r))
	}
	s := g.st
	s.release(l)
	s.unschedule(l)
	if l.state == stateReady {
		s.removeReady(l)
	}
	if l.n >= g.cfg.MaxDeliveries {
		l.state = stateDying
		g.mu.Unlock()
		return m.deadLetter(g, l, ReasonMaxDeliveries, "")
	}
	if delay == 0 {
		delay = g.cfg.backoff(l.n)
	}
	now := m.clock.Now()
	if delay > 0 {
		l.state = stateWaiting
		s.schedule(l, now.Add(delay))
		m.scheduled(l.at)
	} else {
		l.state, l.at = stateReady, now
		s.ready = append(s.ready, l)
	}
	r := g.enqueueLocked([]hub.StateOp{leaseOp(l)})
	g.wakeLocked()
	g.mu.Unlock()
	return g.wait(r)
}

// InProgress extends a delivery's lease by the group's AckWait and returns
// the new deadline. A delivery whose lease ran out and that was not
// delivered again is leased again, to member (which must then be given).
func (m *Manager) InProgress(ctx context.Context, name, member, id string) (time.Time, error) {
	g, err := m.answer(ctx, name, member)
	if err != nil {
		return time.Time{}, err
	}
	checked := false
	var deadline time.Time
	err = g.retry(ctx, func() (err error) {
		deadline, err = g.inProgress(ctx, member, id, &checked)
		return err
	})
	return deadline, err
}

// inProgress is one run of InProgress; checked is recheck's.
func (g *group) inProgress(ctx context.Context, member, id string, checked *bool) (time.Time, error) {
	g.mu.Lock()
	l, err := g.lookupLocked(id, member)
	if err == nil && l.state != stateLeased && member == "" {
		err = fmt.Errorf("delivery %q: %w: its lease ran out; name the member to lease it again", id, ErrLeaseLost)
	}
	if err != nil {
		r := g.last
		g.mu.Unlock()
		if rerr := g.recheck(ctx, err, checked); rerr != nil {
			return time.Time{}, rerr
		}
		return time.Time{}, joinWait(err, g.wait(r))
	}
	s := g.st
	switch l.state {
	case stateReady:
		s.removeReady(l)
		fallthrough
	case stateWaiting:
		l.state, l.member = stateLeased, member
		s.inflight++
		s.members[member]++
	}
	deadline := g.m.clock.Now().Add(g.cfg.AckWait)
	s.schedule(l, deadline)
	r := g.enqueueLocked([]hub.StateOp{leaseOp(l)})
	g.mu.Unlock()
	if err := g.wait(r); err != nil {
		return time.Time{}, err
	}
	return deadline, nil
}

// Term sends a delivery's event to the dead-letter topic now, with why in
// its headers (at most MaxTermReason bytes).
func (m *Manager) Term(ctx context.Context, name, member, id, why string) error {
	if len(why) > MaxTermReason {
		return fmt.Errorf("%w: reason is %d bytes, the limit is %d", hub.ErrBadInput, len(why), MaxTermReason)
	}
	g, err := m.answer(ctx, name, member)
	if err != nil {
		return err
	}
	checked := false
	return g.retry(ctx, func() error { return g.term(ctx, member, id, why, &checked) })
}

// term is one run of Term; checked is recheck's.
func (g *group) term(ctx context.Context, member, id, why string, checked *bool) error {
	g.mu.Lock()
	l, err := g.lookupLocked(id, member)
	if err != nil {
		r := g.last
		g.mu.Unlock()
		if rerr := g.recheck(ctx, err, checked); rerr != nil {
			return rerr
		}
		return joinWait(err, g.wait(r))
	}
	s := g.st
	s.release(l)
	s.unschedule(l)
	if l.state == stateReady {
		s.removeReady(l)
	}
	l.state = stateDying
	g.mu.Unlock()
	return g.m.deadLetter(g, l, ReasonTerm, why)
}

// joinWait returns err, or the store's error when the changes err's
// answer saw failed to be stored.
func joinWait(err, werr error) error {
	if werr != nil {
		return werr
	}
	return err
}

// deadLetter publishes l's event (in stateDying) to the dead-letter topic,
// then marks it done. The publish carries an idempotency key made of the
// group (and its creation), the topic, the epoch and the offset, so that a
// crash between the two, or a retry, stores it once (within the engine's
// dedupe window). When the publish fails the event waits retryDeadLetter
// and is tried again.
func (m *Manager) deadLetter(g *group, l *lease, why, detail string) error {
	ev := l.ev
	headers := make(map[string]string, len(ev.Headers)+7)
	extra := map[string]string{
		HeaderGroup: g.cfg.Name, HeaderTopic: ev.Topic, HeaderOffset: strconv.FormatUint(ev.Offset, 10),
		HeaderEpoch: ev.Epoch.String(), HeaderDeliveries: strconv.Itoa(l.n), HeaderReason: why,
	}
	if detail != "" {
		extra[HeaderDetail] = detail
	}
	// The event's own headers, as many as fit beside ours.
	for _, k := range slices.Sorted(mapKeys(ev.Headers)) {
		if len(headers)+len(extra) >= hub.MaxHeaders {
			break
		}
		if _, ours := extra[k]; !ours {
			headers[k] = ev.Headers[k]
		}
	}
	for k, v := range extra {
		headers[k] = v
	}
	sum := sha256.Sum256([]byte(g.cfg.Name + "\x00" + strconv.FormatInt(g.created.UnixMilli(), 10) + "\x00" +
		ev.Topic + "\x00" + ev.Epoch.String() + "\x00" + strconv.FormatUint(ev.Offset, 10)))
	rec := event.Record{Type: ev.Type, Data: ev.Data, Encoding: ev.Encoding, Headers: headers, Key: "herald-dead-letter:" + hex.EncodeToString(sum[:20])}
	_, err := m.hub.Publish(hub.Internal(context.Background()), g.cfg.DeadLetter, []event.Record{rec})
	g.mu.Lock()
	s := g.st
	if !s.belongs(l) || l.state != stateDying {
		reloaded := s.topics[l.t.name] != l.t
		g.mu.Unlock()
		if g.m.shared && reloaded {
			// Maybe another node's change: decide again on the new state
			// (the publish is deduped).
			return errReloaded
		}
		return nil // ended meanwhile (a new epoch, a reload)
	}
	if err != nil {
		l.state = stateWaiting
		s.schedule(l, m.clock.Now().Add(retryDeadLetter))
		m.scheduled(l.at)
		g.mu.Unlock()
		return fmt.Errorf("group %s: dead-letter to %s: %w", g.cfg.Name, g.cfg.DeadLetter, err)
	}
	ops := s.finish(l)
	s.deadLettered++
	ops = append(ops, s.countersOp())
	r := g.enqueueLocked(ops)
	g.wakeLocked()
	g.mu.Unlock()
	if m.shared {
		// Counted once stored: another node may have dead-lettered it
		// (the publish was deduped), and this write then conflicts.
		if err := g.wait(r); err != nil {
			return err
		}
	}
	if o := m.opts.Observer; o.DeadLettered != nil {
		o.DeadLettered(g.cfg.Name, why)
	}
	return g.wait(r)
}
