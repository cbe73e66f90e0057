package durable

import (
	"sync"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// commitQueue orders the writes of one topic, or of the state spaces of one
// stripe (see state.go), into commit rounds. The first request to find the
// queue idle becomes its leader: it commits every request waiting, in one
// batch, then hands leadership to the oldest request queued meanwhile. So
// concurrent requests share a batch and its fsync, and the leader is the
// only writer of what the queue guards: it may read the store and know
// nothing changes under it.
type commitQueue struct {
	mu      sync.Mutex // guards waiting and leader; never held with another lock
	waiting []*pending // requests waiting for the next round
	leader  bool       // a goroutine is running a round
}

// pending is one request waiting in a commit queue: an Append, a sweep
// request or an ApplyState.
type pending struct {
	recs  []event.Record
	sweep bool // a sweeper request: trim by age and expire keys

	space string        // ApplyState: the space
	ops   []hub.StateOp // ApplyState: the ops, validated

	// Set by the leader that commits it, before wake is signalled.
	acks []event.Ack
	err  error
	lead bool // the receiver becomes the next leader instead of getting a result

	wake chan struct{} // buffered 1
}

// submit queues p and returns once p is committed (or failed). The caller
// that finds no leader becomes one: it passes the waiting requests (p
// among them) to commit, which must signal every request's wake, then
// hands leadership on.
func (q *commitQueue) submit(p *pending, commit func(round []*pending)) {
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	if q.leader {
		q.mu.Unlock()
		<-p.wake
		if !p.lead {
			return
		}
		q.mu.Lock()
	}
	q.leader = true
	round := q.waiting
	q.waiting = nil
	q.mu.Unlock()

	commit(round)

	// Hand leadership to the oldest waiter, which commits everything
	// queued meanwhile.
	q.mu.Lock()
	if len(q.waiting) > 0 {
		next := q.waiting[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		q.leader = false
	}
	q.mu.Unlock()
}
