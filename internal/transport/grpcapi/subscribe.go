package grpcapi

import (
	"context"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Subscribe follows topics: a Delivery with the starting cursor, then
// recovered history, gaps and live events, until the consumer leaves or
// the hub ends the subscriber.
func (v *service) Subscribe(req *heraldv1.SubscribeRequest, ss heraldv1.Herald_SubscribeServer) error {
	ctx := ss.Context()
	sel, err := parseSelection(req.Topics, req.Cursor, req.From, false)
	if err != nil {
		return statusError(err)
	}
	st, err := v.s.newStream(ss, false)
	if err != nil {
		return statusError(err)
	}
	if err := st.subscribe(ctx, sel); err != nil {
		st.sub.Close(hub.CloseClient)
		return statusError(err)
	}
	return v.s.serve(ctx, st, nil)
}

// selection is a validated set of topics and where each starts.
type selection struct {
	topics   []string
	cur      cursor.Cursor
	earliest bool
}

// parseSelection checks topics (1 to 64, valid, no repeats), the cursor
// and from. defaultEarliest is what FROM_UNSPECIFIED means.
func parseSelection(topics []string, token string, from heraldv1.From, defaultEarliest bool) (selection, error) {
	sel := selection{topics: topics, earliest: defaultEarliest}
	if len(topics) == 0 {
		return sel, badRequest("give at least one topic in topics")
	}
	if len(topics) > cursor.MaxTopics {
		return sel, badRequest("%d topics, the limit is %d", len(topics), cursor.MaxTopics)
	}
	for i, t := range topics {
		if err := event.ValidateTopic(t); err != nil {
			return sel, err
		}
		for _, u := range topics[:i] {
			if u == t {
				return sel, badRequest("topic %s is listed twice", t)
			}
		}
	}
	c, err := cursor.Parse(token)
	if err != nil {
		return sel, err
	}
	sel.cur = c
	switch from {
	case heraldv1.From_FROM_UNSPECIFIED:
	case heraldv1.From_FROM_LATEST:
		sel.earliest = false
	case heraldv1.From_FROM_EARLIEST:
		sel.earliest = true
	default:
		return sel, badRequest("unknown from %d: use FROM_LATEST or FROM_EARLIEST", from)
	}
	return sel, nil
}

// subscribe adds sel's topics to st's subscriber and sets their starting
// positions in st's cursor. On an error, the topics it added are removed.
func (st *stream) subscribe(ctx context.Context, sel selection) error {
	for i, t := range sel.topics {
		pos, have := sel.cur.Get(t)
		got, err := st.sub.Subscribe(ctx, t, hub.Start{Position: pos, Set: have, Earliest: sel.earliest})
		if err != nil {
			for _, u := range sel.topics[:i] {
				st.sub.Unsubscribe(u)
				st.cur.Retain(func(x string) bool { return x != u })
			}
			return err
		}
		st.cur.Set(t, got)
	}
	return nil
}
