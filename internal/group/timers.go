package group

import (
	"container/heap"
	"errors"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// The Manager's goroutine (loop) owns no state: each group keeps its
// leases' deadlines and redelivery times in a heap (state.timers), and the
// loop sleeps until the earliest of all groups, then takes back the leases
// that ran out, readies the redeliveries that are due, and dead-letters
// the events that ran out of deliveries. A change that sets a time earlier
// than the one the loop sleeps to kicks it (scheduled); so does a fetch,
// whose leases the loop then stores (flushSoon) unless an answer that
// waits for them has already. In shared mode it also polls the groups'
// versions and the registry for other nodes' changes (shared.go).

// retryDeadLetter is the wait before trying again to dead-letter an event
// whose publish to the dead-letter topic failed.
const retryDeadLetter = time.Second

// flushSoon asks the loop to store the groups' queued writes (a fetch's
// leases) now.
func (m *Manager) flushSoon() {
	select {
	case m.flushCh <- struct{}{}:
	default:
	}
}

// flushAll stores every group's queued writes.
func (m *Manager) flushAll() {
	for _, g := range m.groupList() {
		if g.pending() {
			g.flush()
		}
	}
}

// scheduled tells the loop of a new timer at at.
func (m *Manager) scheduled(at time.Time) {
	if at.UnixNano() < m.wakeAt.Load() {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

// loop is the Manager's goroutine; Close stops it.
func (m *Manager) loop() {
	defer close(m.loopDone)
	var tm Timer
	stop := func() {
		if tm != nil {
			tm.Stop()
			tm = nil
		}
	}
	defer stop()
	var tick <-chan time.Time
	var p poller
	if m.shared {
		t := time.NewTicker(m.opts.Poll / 4)
		defer t.Stop()
		tick = t.C
	}
	for {
		m.wakeAt.Store(math.MinInt64) // kick me while I look
		next, ok := m.nextTimer()
		var c <-chan time.Time
		if ok {
			tm = m.clock.NewTimer(next)
			c = tm.C()
			m.wakeAt.Store(next.UnixNano())
		} else {
			m.wakeAt.Store(math.MaxInt64)
		}
	wait:
		for {
			select {
			case <-c:
				m.flushAll()
				m.expire()
				break wait
			case <-m.kick:
				m.expire()
				break wait
			case <-m.flushCh:
				m.flushAll()
			case <-tick:
				m.poll(m.ctx, &p)
				break wait // a reload may have brought nearer timers
			case <-m.done:
				return
			}
		}
		stop()
	}
}

// groupList returns the groups, sorted by name.
func (m *Manager) groupList() []*group {
	m.mu.Lock()
	defer m.mu.Unlock()
	gs := make([]*group, 0, len(m.groups))
	for _, name := range slices.Sorted(maps.Keys(m.groups)) {
		gs = append(gs, m.groups[name])
	}
	return gs
}

// nextTimer returns the earliest timer of every group.
func (m *Manager) nextTimer() (time.Time, bool) {
	var next time.Time
	ok := false
	for _, g := range m.groupList() {
		g.mu.Lock()
		if len(g.st.timers) > 0 {
			if at := g.st.timers[0].at; !ok || at.Before(next) {
				next, ok = at, true
			}
		}
		g.mu.Unlock()
	}
	return next, ok
}

// expire handles every group's timers that are due.
func (m *Manager) expire() {
	now := m.clock.Now()
	for _, g := range m.groupList() {
		for _, l := range g.expire(now) {
			err := m.deadLetter(g, l, ReasonMaxDeliveries, "")
			if m.shared && errors.Is(err, hub.ErrStateConflict) {
				continue // reloaded: the state's own timers decide again
			}
			if err != nil {
				m.log.Warn("group: dead-lettering failed; trying again", "group", g.cfg.Name, "topic", l.t.name, "offset", l.off, "error", err)
			}
		}
	}
}

// expire takes back g's leases that ran out by now and readies its
// redeliveries that are due. It returns the events out of deliveries,
// marked stateDying, for the caller to dead-letter.
func (g *group) expire(now time.Time) (dying []*lease) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.st
	woke := false
	for len(s.timers) > 0 && !s.timers[0].at.After(now) {
		l := heap.Pop(&s.timers).(*lease)
		switch l.state {
		case stateLeased:
			s.release(l)
			if l.n >= g.cfg.MaxDeliveries {
				l.state = stateDying
				dying = append(dying, l)
				continue
			}
			// The backoff counts from the deadline, not from when this
			// goroutine got to it.
			if at := l.at.Add(g.cfg.backoff(l.n)); at.After(now) {
				l.state = stateWaiting
				s.schedule(l, at)
				continue
			}
		case stateWaiting:
			if l.n >= g.cfg.MaxDeliveries {
				// A dead-lettering that failed, to try again.
				l.state = stateDying
				dying = append(dying, l)
				continue
			}
		default:
			continue
		}
		l.state = stateReady
		s.ready = append(s.ready, l)
		woke = true
	}
	if woke {
		g.wakeLocked()
	}
	return dying
}
