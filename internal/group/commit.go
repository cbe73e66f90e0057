package group

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald/internal/hub"
)

// Writes to the store are group-committed: each change to a group's state
// queues its writes (enqueueLocked, under g.mu, so the queue follows the
// order of the changes), and its caller then waits for them (wait) — all
// but fetches, whose leases the Manager's goroutine stores in the
// background (flushSoon), or the next answer with its own writes. The
// first waiter to take g.wmu writes everything queued so far, in as few
// ApplyState calls as the store's limits allow; those that queued
// meanwhile find their writes done when they get the lock. So eight
// members acking at once share one ApplyState, and one fsync on the
// durable engine.
//
// A failed write leaves the memory ahead of the store: the committer then
// reloads the group's state from the store, and every change not stored
// fails with the error. In shared mode (shared.go) every ApplyState also
// checks and moves the group's version, and a conflict is such a failure,
// which the operations that see it run again.

// change is the writes of one change to a group's state.
type change struct {
	ops []hub.StateOp
	res *result
}

// result is a change's outcome; g.wmu guards its fields.
type result struct {
	done bool
	err  error
}

// enqueueLocked queues ops and returns the result to wait for: that of the
// last change queued when ops is empty (so an answer that changed nothing
// still returns after the changes it saw are stored), nil when there is
// none.
func (g *group) enqueueLocked(ops []hub.StateOp) *result {
	if len(ops) == 0 {
		return g.last
	}
	r := &result{}
	g.queue = append(g.queue, change{ops: ops, res: r})
	g.last = r
	return r
}

// pending reports whether writes are queued.
func (g *group) pending() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue) > 0
}

// flush stores every queued write.
func (g *group) flush() {
	g.wmu.Lock()
	g.flushLocked()
	g.wmu.Unlock()
}

// wait returns once r's writes are stored, with their error.
func (g *group) wait(r *result) error {
	if r == nil {
		return nil
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if !r.done {
		g.flushLocked()
	}
	return r.err
}

// flushLocked writes every queued change; g.wmu is held.
func (g *group) flushLocked() {
	g.mu.Lock()
	q := g.queue
	g.queue = nil
	g.mu.Unlock()
	if len(q) == 0 {
		return
	}
	if g.m.shared {
		g.flushSharedLocked(q)
		return
	}
	ctx := context.Background() // a write, once started, completes
	var batch []hub.StateOp
	bytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := g.m.store.ApplyState(ctx, g.space, batch)
		batch, bytes = batch[:0], 0
		return err
	}
	var err error
	for _, op := range lastPerKey(q) {
		{
			n := len(op.Key) + len(op.Value)
			if len(batch) == hub.MaxStateOps || bytes+n > hub.MaxStateApplyBytes {
				if err = flush(); err != nil {
					break
				}
			}
			batch = append(batch, op)
			bytes += n
		}
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		for _, c := range q {
			c.res.done = true
		}
		return
	}
	err = fmt.Errorf("group %s: store: %w", g.cfg.Name, err)
	g.m.log.Error("group state write failed; reloading the group from the store", "group", g.cfg.Name, "error", err)
	g.reloadLocked(ctx, q, err)
}

// lastPerKey returns the writes of q in order, each key's last only: the
// writes are unconditional, so an earlier write of a key the same flush
// writes again changes nothing (an ack of a hundred events moves the
// floor a hundred times; one write of it is enough). No caller of the
// flush returns before all of it is stored, so the order of what remains
// matters only to what a crash midway leaves, which load reads safely.
func lastPerKey(q []change) []hub.StateOp {
	n := 0
	for _, c := range q {
		n += len(c.ops)
	}
	last := make(map[string]int, n)
	i := 0
	for _, c := range q {
		for _, op := range c.ops {
			last[op.Key] = i
			i++
		}
	}
	out := make([]hub.StateOp, 0, len(last))
	i = 0
	for _, c := range q {
		for _, op := range c.ops {
			if last[op.Key] == i {
				out = append(out, op)
			}
			i++
		}
	}
	return out
}
