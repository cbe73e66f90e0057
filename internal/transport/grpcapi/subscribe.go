package grpcapi

import (
	"context"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/hub"
)

// Subscribe follows topics: a Delivery with the starting cursor, then
// recovered history, gaps and live events, until the consumer leaves or
// the hub ends the subscriber.
func (v *service) Subscribe(req *heraldv1.SubscribeRequest, ss heraldv1.Herald_SubscribeServer) error {
	ctx := ss.Context()
	sel, err := parseSelection(req.Topics, req.Cursor, req.From, hub.FromLatest)
	if err != nil {
		return statusError(err)
	}
	st, err := v.s.newStream(ss, false)
	if err != nil {
		return statusError(err)
	}
	if err := st.subscribe(ctx, &sel); err != nil {
		st.sub.Close(hub.CloseClient)
		return statusError(err)
	}
	return v.s.serve(ctx, st, nil)
}

// parseSelection reads the topics, cursor and from of a Subscribe,
// Connect subscribe or Pull message into the hub's request, which checks
// them. def is what FROM_UNSPECIFIED means.
func parseSelection(topics []string, token string, from heraldv1.From, def hub.From) (hub.SubscribeRequest, error) {
	req := hub.SubscribeRequest{Topics: topics, From: def}
	c, err := cursor.Parse(token)
	if err != nil {
		return req, err
	}
	req.Cursor = c
	switch from {
	case heraldv1.From_FROM_UNSPECIFIED:
	case heraldv1.From_FROM_LATEST:
		req.From = hub.FromLatest
	case heraldv1.From_FROM_EARLIEST:
		req.From = hub.FromEarliest
	default:
		return req, badRequest("unknown from %d: use FROM_LATEST or FROM_EARLIEST", from)
	}
	return req, nil
}

// subscribe adds req's topics to st's subscriber (all or none) and sets
// their starting positions in st's cursor.
func (st *stream) subscribe(ctx context.Context, req *hub.SubscribeRequest) error {
	starts, err := st.sub.Subscribe(ctx, req, nil)
	if err != nil {
		return err
	}
	for i, t := range req.Topics {
		st.cur.Set(t, starts[i])
	}
	return nil
}
