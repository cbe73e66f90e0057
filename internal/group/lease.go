package group

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// group is one consumer group.
type group struct {
	m        *Manager
	cfg      Config // static after creation
	created  time.Time
	start    map[string]jsonPos // static: the start positions of the registry entry (creation)
	space    string
	patterns []pattern

	rmu         sync.Mutex // orders reads of the topics (fetch.go); taken before wmu and mu
	lastResolve time.Time  // guarded by rmu: when the patterns were last resolved

	wmu sync.Mutex // orders writes to the store (commit.go); taken before mu
	ver []byte     // guarded by wmu: in shared mode, the version of the space last seen (nil: none)

	mu      sync.Mutex // guards the fields below
	st      *state
	queue   []change      // writes not yet handed to the store, in order
	last    *result       // the result of the last change queued
	changed chan struct{} // closed and replaced when a waiting fetch may find more
	deleted bool
}

// state is a group's in-memory state; group.mu guards it. A failed write
// replaces it whole with what the store holds (commit.go).
type state struct {
	topics  map[string]*topicState
	names   []string // of topics, sorted; replaced, never changed in place
	leftOut int      // topics matched beyond MaxTopics

	ids      map[string]*lease   // every delivery id of an open lease, current and earlier
	buf      []*lease            // read, never delivered, in read order
	ready    []*lease            // to deliver now: taken back, or released by per-key ordering
	timers   leaseHeap           // leased (until their deadline) and waiting (until their redelivery)
	keys     map[string]*lease   // per-key ordering: the lease holding each key
	blocked  map[string][]*lease // per-key ordering: leases waiting for their key, in order
	heldBack int                 // leases in blocked (some may have ended since)

	inflight int            // leases in stateLeased
	members  map[string]int // of inflight, by member

	redelivered, deadLettered, epochResets, trimmed uint64
}

// topicState is a group's position in one topic.
type topicState struct {
	name  string
	epoch event.Epoch
	floor uint64 // every offset up to floor is done
	read  uint64 // the group has read every offset up to read
	head  uint64 // the newest offset seen
	done  spans  // done offsets above floor
	open  map[uint64]*lease
}

type leaseState uint8

const (
	stateFresh   leaseState = iota // read, never delivered (in buf)
	stateBlocked                   // waits for its key (in blocked)
	stateReady                     // to deliver now (in ready)
	stateLeased                    // leased to member until at (in timers)
	stateWaiting                   // taken back, to redeliver at at (in timers)
	stateDying                     // being sent to the dead-letter topic
	stateDone                      // acked or dead-lettered
)

// lease is one event of a group that is not done: its deliveries so far.
type lease struct {
	t      *topicState
	off    uint64
	ev     *event.Event
	key    string   // per-key ordering's key, "" for none
	id     string   // the current delivery's id; "" before the first
	oldIDs []string // earlier deliveries' ids
	member string   // the holder, in stateLeased
	n      int      // deliveries so far
	state  leaseState
	at     time.Time // stateLeased: the deadline; stateWaiting: when to redeliver
	hi     int       // index in timers, -1 when not there
}

// newGroup returns the group that registry entry st describes, without
// its state.
func newGroup(m *Manager, st jsonStored) *group {
	cfg := st.Config
	return &group{m: m, cfg: cfg, created: st.Created, start: st.Start, space: spaceOf(cfg.Name), patterns: patterns(&cfg), changed: make(chan struct{})}
}

func newState() *state {
	return &state{
		topics: map[string]*topicState{}, ids: map[string]*lease{}, keys: map[string]*lease{},
		blocked: map[string][]*lease{}, members: map[string]int{},
	}
}

// wakeLocked wakes the group's waiting fetches.
func (g *group) wakeLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// addTopic adds t to s, keeping names sorted.
func (s *state) addTopic(t *topicState) {
	if t.open == nil {
		t.open = map[uint64]*lease{}
	}
	s.topics[t.name] = t
	// A new slice: callers read names outside the lock.
	i := sort.SearchStrings(s.names, t.name)
	s.names = slices.Insert(slices.Clip(slices.Clone(s.names)), i, t.name)
}

// startPosition is where a group starting at st begins reading topic,
// given the topic's state (ok: it exists). It returns the epoch and the
// offset read from.
func (g *group) startPosition(ctx context.Context, st start, name string, discovered bool) (event.Epoch, uint64, error) {
	b, err := g.m.eng.Read(ctx, name, 0, 1)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", name, err)
	}
	info := b.Info
	first := info.First - 1
	switch {
	case discovered, st.earliest:
		return info.Epoch, first, nil
	case st.cursor != nil:
		pos, ok := st.cursor.Get(name)
		switch {
		case !ok || pos.Epoch != info.Epoch || pos.Offset > info.Last:
			return info.Epoch, info.Last, nil
		case pos.Offset < first:
			return info.Epoch, first, nil
		default:
			return info.Epoch, pos.Offset, nil
		}
	case !st.time.IsZero():
		off, err := g.offsetAt(ctx, name, info, st.time.UnixMilli())
		return info.Epoch, off, err
	default:
		return info.Epoch, info.Last, nil
	}
}

// offsetAt returns the offset after which the events stored at or after
// ms begin, by binary search over the retained events' times (which grow
// with offsets, unless the clock stepped back).
func (g *group) offsetAt(ctx context.Context, name string, info event.TopicInfo, ms int64) (uint64, error) {
	lo, hi := info.First, info.Last+1 // the answer is in [lo, hi]: the first offset stored at or after ms
	for lo < hi {
		mid := lo + (hi-lo)/2
		b, err := g.m.eng.Read(ctx, name, mid-1, 1)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", name, err)
		}
		if len(b.Events) == 0 || b.Info.Epoch != info.Epoch {
			return b.Info.Last, nil
		}
		if ev := b.Events[0]; ev.Time < ms {
			lo = ev.Offset + 1
		} else {
			hi = min(mid, ev.Offset)
		}
	}
	return lo - 1, nil
}

// resolve returns the topics g's settings name and match now, sorted, at
// most MaxTopics, and how many matches were left out. The dead-letter
// topic never matches.
func (g *group) resolve(ctx context.Context) ([]string, int, error) {
	var out []string
	wild := false
	for i, p := range g.patterns {
		if event.ValidateTopic(g.cfg.Topics[i]) == nil {
			out = append(out, g.cfg.Topics[i])
			continue
		}
		_ = p
		wild = true
	}
	if wild {
		all, err := g.m.eng.Topics(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("list topics: %w", err)
		}
		for _, ti := range all {
			if ti.Name == g.cfg.DeadLetter || slices.Contains(out, ti.Name) {
				continue
			}
			for _, p := range g.patterns {
				if p.match(ti.Name) {
					out = append(out, ti.Name)
					break
				}
			}
		}
	}
	slices.Sort(out)
	if len(out) > MaxTopics {
		return out[:MaxTopics], len(out) - MaxTopics, nil
	}
	return out, 0, nil
}

// create builds a new group's state from its start, and the writes that
// store it.
func (g *group) create(ctx context.Context, missingOK bool) (*state, []hub.StateOp, error) {
	st, _ := parseStart(g.cfg.Start)
	names, leftOut, err := g.resolve(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !missingOK {
		for _, name := range g.cfg.Topics {
			if event.ValidateTopic(name) != nil {
				continue // a pattern
			}
			if _, ok, err := g.m.eng.Info(ctx, name); err != nil {
				return nil, nil, fmt.Errorf("group %s: topic %s: %w", g.cfg.Name, name, err)
			} else if !ok {
				return nil, nil, fmt.Errorf("group %s: topic %s: %w; publish to it first, or name it with a pattern", g.cfg.Name, name, ErrNoTopic)
			}
		}
	}
	s := newState()
	s.leftOut = leftOut
	var ops []hub.StateOp
	for _, name := range names {
		epoch, off, err := g.startPosition(ctx, st, name, false)
		if err != nil {
			return nil, nil, err
		}
		t := &topicState{name: name, epoch: epoch, floor: off, read: off, head: off}
		s.addTopic(t)
		ops = append(ops, posOp(t))
	}
	return s, ops, nil
}

// load builds g's state from the store: positions, done spans and leases
// (whose events it reads again, unless cache has them), then topics its
// patterns match that are new. With a cache (a reload in shared mode) the
// events read and not leased go back to buf (refill).
func (g *group) load(ctx context.Context, cache eventCache) (*state, error) {
	stored, err := loadSpace(ctx, g.m.store, g.space)
	if err != nil {
		return nil, err
	}
	s := newState()
	s.redelivered, s.deadLettered = stored.counters.Redelivered, stored.counters.DeadLettered
	s.epochResets, s.trimmed = stored.counters.EpochResets, stored.counters.Trimmed
	now := g.m.clock.Now()
	// A topic the group started on and whose position was never written
	// (a creator that stopped before, or other nodes that got there first)
	// is at its start position.
	for name, p := range g.start {
		if _, ok := stored.pos[name]; !ok {
			stored.pos[name] = p
		}
	}
	for _, name := range slices.Sorted(mapKeys(stored.pos)) {
		p := stored.pos[name]
		t := &topicState{name: name, epoch: epochOf(p.E), floor: p.F, read: p.F, head: p.F}
		for _, sp := range stored.spans[name] {
			if sp.hi > t.floor {
				t.done.add(max(sp.lo, t.floor+1), sp.hi)
			}
		}
		for len(t.done) > 0 && t.done[0].lo == t.floor+1 {
			t.floor = t.done[0].hi
			t.done = t.done[1:]
		}
		s.addTopic(t)
		leases := stored.leases[name]
		for _, off := range slices.Sorted(mapKeys(leases)) {
			jl := leases[off]
			if off <= t.floor || t.done.contains(off) || epochOf(jl.E) != t.epoch {
				continue
			}
			ev := cache[name][off]
			if ev == nil || ev.Epoch != t.epoch {
				b, err := g.m.eng.Read(ctx, name, off-1, 1)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", name, err)
				}
				if len(b.Events) == 0 || b.Events[0].Offset != off || b.Info.Epoch != t.epoch {
					// Gone from history (retention, or a new epoch, which the
					// first read notices): nothing to deliver again.
					continue
				}
				ev = b.Events[0]
			}
			l := &lease{t: t, off: off, ev: ev, id: jl.ID, n: jl.N, hi: -1}
			l.key = g.cfg.orderingKey(l.ev)
			t.open[off] = l
			s.ids[l.id] = l
			if l.key != "" {
				s.keys[l.key] = l
			}
			until := time.UnixMilli(jl.Until)
			switch {
			case jl.Member != "" && until.After(now):
				l.state, l.member, l.at = stateLeased, jl.Member, until
				s.inflight++
				s.members[l.member]++
				heap.Push(&s.timers, l)
			case until.After(now), l.n >= g.cfg.MaxDeliveries:
				// Out of deliveries: the timer dead-letters it.
				l.state, l.at = stateWaiting, until
				heap.Push(&s.timers, l)
			default:
				l.state = stateReady
				s.ready = append(s.ready, l)
			}
		}
		if cache != nil {
			g.refill(s, t, cache[name])
		}
	}
	names, leftOut, err := g.resolve(ctx)
	if err != nil {
		return nil, err
	}
	s.leftOut = leftOut
	st, _ := parseStart(g.cfg.Start)
	for _, name := range names {
		if s.topics[name] != nil {
			continue
		}
		epoch, off, err := g.startPosition(ctx, st, name, true)
		if err != nil {
			return nil, err
		}
		s.addTopic(&topicState{name: name, epoch: epoch, floor: off, read: off, head: off})
	}
	return s, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// leaseHeap orders leases by at.
type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}

func (h *leaseHeap) Push(x any) {
	l := x.(*lease)
	l.hi = len(*h)
	*h = append(*h, l)
}

func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.hi = -1
	return l
}

// unschedule takes l out of the timers, if there.
func (s *state) unschedule(l *lease) {
	if l.hi >= 0 {
		heap.Remove(&s.timers, l.hi)
	}
}

// schedule puts l in the timers at at, or moves it there.
func (s *state) schedule(l *lease, at time.Time) {
	l.at = at
	if l.hi >= 0 {
		heap.Fix(&s.timers, l.hi)
	} else {
		heap.Push(&s.timers, l)
	}
}

// release ends l's lease, if it has one: its member holds one less.
func (s *state) release(l *lease) {
	if l.state != stateLeased {
		return
	}
	s.inflight--
	if s.members[l.member]--; s.members[l.member] <= 0 {
		delete(s.members, l.member)
	}
	l.member = ""
}

// finish marks l done (acked or dead-lettered) and returns the writes:
// the new floor or span, then the lease's deletion. Its key passes to the
// next event waiting for it.
func (s *state) finish(l *lease) []hub.StateOp {
	s.unschedule(l)
	s.release(l)
	t := l.t
	for _, id := range l.oldIDs {
		delete(s.ids, id)
	}
	if l.id != "" {
		delete(s.ids, l.id)
	}
	delete(t.open, l.off)
	l.state = stateDone
	s.passKey(l)
	ops := t.markDone(l.off, l.off)
	if l.n > 0 {
		ops = append(ops, delOp(offKey(prefixLease, t.name, l.off)))
	}
	return ops
}

// passKey hands l's ordering key to the first lease waiting for it.
func (s *state) passKey(l *lease) {
	if l.key == "" || s.keys[l.key] != l {
		return
	}
	delete(s.keys, l.key)
	q := s.blocked[l.key]
	for len(q) > 0 && q[0].state != stateBlocked {
		q = q[1:] // ended meanwhile (a new epoch)
		s.heldBack--
	}
	if len(q) == 0 {
		delete(s.blocked, l.key)
		return
	}
	next := q[0]
	s.heldBack--
	if len(q) == 1 {
		delete(s.blocked, l.key)
	} else {
		s.blocked[l.key] = q[1:]
	}
	s.keys[l.key] = next
	next.state = stateReady
	s.ready = append(s.ready, next)
}

// removeReady takes l out of ready, where it is when its state is
// stateReady, before it changes to another state that may come back to
// stateReady (a nak, an in-progress): ready holds each lease once.
func (s *state) removeReady(l *lease) {
	if i := slices.Index(s.ready, l); i >= 0 {
		s.ready = slices.Delete(s.ready, i, i+1)
	}
}

// belongs reports whether l is part of s (not dropped by a reload or a
// new epoch).
func (s *state) belongs(l *lease) bool {
	return s.topics[l.t.name] == l.t && l.t.open[l.off] == l
}
