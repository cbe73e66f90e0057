package hub

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
)

// PullRequest is a read of one or more topics from a cursor, at the
// consumer's pace: the REST pull API, long polling and gRPC Pull share it.
type PullRequest struct {
	Topics []string
	Cursor cursor.Cursor // positions to continue after; topics missing from it start at From
	From   From
	Limit  int           // most events returned; 0 means 100
	Wait   time.Duration // long poll: wait up to this long for an event when none is ready
}

// PullResult is the answer to a pull: the events, the cursor to continue
// from, and any gaps met on the way.
type PullResult struct {
	Events []*event.Event
	Cursor cursor.Cursor
	Gaps   []Gap
}

// MaxPullLimit is the largest Limit a pull may ask for.
const MaxPullLimit = 10000

// Pull reads events after req.Cursor. With Wait set and nothing to return
// it waits for the first new event on any of the topics, for the context's
// end, or for the hub to close, then answers with what is there (maybe
// nothing, with the same cursor).
func (h *Hub) Pull(ctx context.Context, req PullRequest) (PullResult, error) {
	if err := h.checkTopics(req.Topics); err != nil {
		return PullResult{}, err
	}
	if req.Limit <= 0 {
		req.Limit = 100
	}
	if req.Limit > MaxPullLimit {
		return PullResult{}, fmt.Errorf("%w: limit %d is over the maximum %d", ErrBadInput, req.Limit, MaxPullLimit)
	}
	for _, t := range req.Topics {
		if err := h.allow(ctx, ActionHistory, t); err != nil {
			return PullResult{}, err
		}
	}
	res, err := h.pullOnce(ctx, req)
	if err != nil || len(res.Events) > 0 || len(res.Gaps) > 0 || req.Wait <= 0 {
		return res, err
	}

	// Long poll: listen, then read again so no event slips between.
	w := h.newWaiter(req.Topics)
	defer w.stop()
	req.Cursor = res.Cursor
	if res, err = h.pullOnce(ctx, req); err != nil || len(res.Events) > 0 || len(res.Gaps) > 0 {
		return res, err
	}
	timer := time.NewTimer(req.Wait)
	defer timer.Stop()
	for {
		select {
		case <-w.ch:
			// The wake may be for an event the cursor already has: fan-out
			// of an event read by the pull before this one can reach this
			// waiter after it listened. Then there is nothing new: wait on.
			r, err := h.pullOnce(ctx, req)
			if err != nil || len(r.Events) > 0 || len(r.Gaps) > 0 {
				return r, err
			}
			res = r
		case <-timer.C:
			return res, nil
		case <-ctx.Done():
			return res, nil
		case <-w.closed:
			return res, nil
		}
	}
}

// pullOnce reads every topic once and merges the events by time, so that
// one busy topic does not starve the others.
func (h *Hub) pullOnce(ctx context.Context, req PullRequest) (PullResult, error) {
	// The answer's cursor keeps the positions of topics not requested this
	// time (a consumer may pull subsets with one cursor), unless that would
	// take it over cursor.MaxTopics: then it holds the requested ones only.
	out := PullResult{Cursor: req.Cursor.Clone()}
	var parts [][]*event.Event
	for _, t := range req.Topics {
		pos, have := req.Cursor.Get(t)
		after := pos.Offset
		if !have {
			after = 0
		}
		b, err := h.eng.Read(ctx, t, after, req.Limit)
		if err != nil {
			return PullResult{}, fmt.Errorf("read %s: %w", t, err)
		}
		info := b.Info
		var gap *Gap
		switch {
		case !have && req.From != FromEarliest:
			out.Cursor.Set(t, event.Position{Epoch: info.Epoch, Offset: info.Last})
			continue
		case !have:
			// from earliest: no gap to report
		case pos.Epoch != info.Epoch:
			gap = &Gap{Topic: t, Reason: GapEpoch, Requested: pos, Earliest: info.First}
		case pos.Offset > info.Last:
			gap = &Gap{Topic: t, Reason: GapAhead, Requested: pos, Earliest: info.First}
		case pos.Offset+1 < info.First:
			gap = &Gap{Topic: t, Reason: GapTrimmed, Requested: pos, Earliest: info.First}
		}
		if gap != nil {
			// Continue after the earliest retained event's predecessor, or
			// at the head for a position from the future.
			resume := info.First - 1
			if gap.Reason == GapAhead {
				resume = info.Last
			}
			gap.Resumed = event.Position{Epoch: info.Epoch, Offset: resume}
			out.Gaps = append(out.Gaps, *gap)
			out.Cursor.Set(t, gap.Resumed)
			if gap.Reason != GapTrimmed {
				// The read used an offset of another epoch or beyond the
				// head; read again from the resume point.
				if b, err = h.eng.Read(ctx, t, resume, req.Limit); err != nil {
					return PullResult{}, fmt.Errorf("read %s: %w", t, err)
				}
			}
		} else if !have {
			out.Cursor.Set(t, event.Position{Epoch: info.Epoch, Offset: info.First - 1})
		} else {
			out.Cursor.Set(t, pos)
		}
		if len(b.Events) > 0 {
			parts = append(parts, b.Events)
		}
	}
	out.Events = mergeByTime(parts, req.Limit)
	for _, ev := range out.Events {
		out.Cursor.Set(ev.Topic, ev.Position())
	}
	if out.Cursor.Len() > cursor.MaxTopics {
		out.Cursor.Retain(func(t string) bool { return slices.Contains(req.Topics, t) })
	}
	return out, nil
}

// mergeByTime merges per-topic event lists into one of at most limit
// events, taking the oldest head each time, so each topic keeps its order
// even if the clock stepped back.
func mergeByTime(parts [][]*event.Event, limit int) []*event.Event {
	if len(parts) == 1 {
		return parts[0][:min(len(parts[0]), limit)]
	}
	var out []*event.Event
	for len(out) < limit {
		best := -1
		for i, p := range parts {
			if len(p) > 0 && (best < 0 || p[0].Time < parts[best][0].Time) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, parts[best][0])
		parts[best] = parts[best][1:]
	}
	return out
}

// waiter wakes a long poll when any of its topics gets an event.
type waiter struct {
	h      *Hub
	ch     chan struct{}
	closed <-chan struct{}
	subs   []*subscription
}

func (h *Hub) newWaiter(topics []string) *waiter {
	w := &waiter{h: h, ch: make(chan struct{}, 1), closed: h.done}
	for _, t := range topics {
		sub := &subscription{waiter: w.ch, topic: t}
		// A waiter needs no engine watch to be correct on one node; on a
		// networked engine a failed watch means waiting the full time.
		_ = h.add(context.Background(), sub)
		w.subs = append(w.subs, sub)
	}
	return w
}

func (w *waiter) stop() {
	for _, sub := range w.subs {
		w.h.remove(sub)
	}
}
