package redis

import (
	"context"
	"slices"

	"github.com/heraldhq/herald/internal/event"
)

// Concurrent appends to one topic are coalesced (group commit, as the
// durable engine shares one fsync between concurrent writers): while one
// calls of the publish script for a topic are in flight (up to
// maxInFlight, so that a few concurrent publishers still pipeline), the
// appends that arrive queue up, and when a call returns the first of them
// runs one script call for all of those queued, up to maxCoalesce records. Redis spends
// about 23 µs of CPU on a single-event run of the script and about 7 µs
// per event in batches of 100, and the node saves a round trip per event,
// so under many concurrent single-event publishers a node does several
// times the events per second; a lone publisher sees no difference (its
// call runs at once).
//
// Each append stays atomic (all of its records or none, in its order);
// appends coalesced into one call succeed or fail together, in the order
// they arrived, and the idempotency keys of later ones are checked against
// the earlier ones' (the script checks each record in turn).
//
// The leader hands the next batch to its first waiter instead of running
// it itself, so no caller waits for more than the call in flight and its
// own.
//
// maxInFlight trades the two: with one call in flight a handful of
// publishers wait on each other's round trips; with many, batches shrink.
// Two keeps both (docs/benchmarks.md, "Redis engine": 1, 2 and 4 measured).

// Bounds of one coalesced call: the records and bytes of the appends it
// takes (an append over either bound runs alone, whole).
const (
	maxInFlight      = 2
	maxCoalesce      = 1000
	maxCoalesceBytes = 4 << 20
)

// appendQueue is a topic's appends waiting for its call in flight.
// Engine.qmu guards it.
type appendQueue struct {
	inflight int // script calls in flight
	waiting  []*appendReq
}

// appendReq is one Append call.
type appendReq struct {
	recs []event.Record
	done chan struct{} // closed when acks/err are set, or when lead is
	acks []event.Ack
	err  error
	lead []*appendReq // set when this caller is to run the next batch
}

// coalesce runs recs' append to topic, alone or with concurrent appends to
// the same topic.
func (e *Engine) coalesce(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	req := &appendReq{recs: recs}
	e.qmu.Lock()
	q := e.queues[topic]
	if q == nil {
		q = &appendQueue{}
		e.queues[topic] = q
	}
	if q.inflight < maxInFlight && len(q.waiting) == 0 {
		q.inflight++
		e.qmu.Unlock()
		e.runBatch(ctx, topic, []*appendReq{req})
		return req.acks, req.err
	}
	req.done = make(chan struct{})
	q.waiting = append(q.waiting, req)
	e.qmu.Unlock()
	select {
	case <-req.done:
	case <-ctx.Done():
		e.qmu.Lock()
		if i := slices.Index(q.waiting, req); i >= 0 {
			q.waiting = slices.Delete(q.waiting, i, i+1)
			e.qmu.Unlock()
			return nil, ctx.Err()
		}
		e.qmu.Unlock()
		<-req.done // taken into a batch: it completes (and may fall to us to run)
	}
	if req.lead != nil {
		e.runBatch(ctx, topic, req.lead)
	}
	return req.acks, req.err
}

// runBatch appends the records of batch in one script call, gives each
// request its acks, then hands the topic's next batch to the first request
// of it (the call's slot passes to it), or frees its slot. The call is not cancelled by the
// leader's ctx: other callers' records ride on it.
func (e *Engine) runBatch(ctx context.Context, topic string, batch []*appendReq) {
	recs := batch[0].recs
	if len(batch) > 1 {
		n := 0
		for _, r := range batch {
			n += len(r.recs)
		}
		recs = make([]event.Record, 0, n)
		for _, r := range batch {
			recs = append(recs, r.recs...)
		}
	}
	acks, err := e.append(context.WithoutCancel(ctx), topic, recs)
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.acks, acks = acks[:len(r.recs):len(r.recs)], acks[len(r.recs):]
		}
	}

	e.qmu.Lock()
	q := e.queues[topic]
	var next []*appendReq
	if len(q.waiting) == 0 {
		if q.inflight--; q.inflight == 0 {
			delete(e.queues, topic)
		}
	} else {
		n, size := 0, 0
		for _, r := range q.waiting {
			rn, rs := len(r.recs), recordsSize(r.recs)
			if len(next) > 0 && (n+rn > maxCoalesce || size+rs > maxCoalesceBytes) {
				break
			}
			next = append(next, r)
			n, size = n+rn, size+rs
		}
		q.waiting = slices.Delete(q.waiting, 0, len(next))
		if len(q.waiting) == 0 {
			q.waiting = nil // do not keep a large backing array per topic
		}
	}
	e.qmu.Unlock()
	for _, r := range batch[1:] {
		close(r.done)
	}
	if len(next) > 0 {
		next[0].lead = next
		close(next[0].done)
	}
}

// recordsSize is the size recs count against the coalescing bound.
func recordsSize(recs []event.Record) int {
	n := 0
	for i := range recs {
		n += recs[i].Size()
	}
	return n
}
