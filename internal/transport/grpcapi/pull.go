package grpcapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// deadlineMargin is how long before the call's deadline a long poll
// answers, so that its answer (and cursor) reaches the client in time.
const deadlineMargin = 50 * time.Millisecond

// Pull reads events after a cursor, like GET /v1/events.
func (v *service) Pull(ctx context.Context, req *heraldv1.PullRequest) (*heraldv1.PullResponse, error) {
	res, err := v.s.pull(ctx, req)
	if err != nil {
		return nil, statusError(err)
	}
	return res, nil
}

func (s *Server) pull(ctx context.Context, req *heraldv1.PullRequest) (*heraldv1.PullResponse, error) {
	sel, err := parseSelection(req.Topics, req.Cursor, req.From, hub.FromEarliest)
	if err != nil {
		return nil, err
	}
	if req.Limit > hub.MaxPullLimit {
		return nil, badRequest("limit %d is over the maximum %d", req.Limit, hub.MaxPullLimit)
	}
	var wait time.Duration
	if w := req.Wait; w != nil {
		if err := w.CheckValid(); err != nil {
			return nil, badRequest("wait: %v", err)
		}
		wait = w.AsDuration()
		if wait < 0 {
			return nil, badRequest("wait must not be negative")
		}
		if wait > s.opts.MaxWait {
			return nil, badRequest("wait %v is over the maximum %v (pull.max_wait)", wait, s.opts.MaxWait)
		}
	}
	if dl, ok := ctx.Deadline(); ok && wait > 0 {
		wait = min(wait, time.Until(dl)-deadlineMargin)
		wait = max(wait, 0)
	}
	res, err := s.hub.Pull(ctx, hub.PullRequest{
		Topics: sel.Topics,
		Cursor: sel.Cursor,
		From:   sel.From,
		Limit:  int(req.Limit),
		Wait:   wait,
	})
	if err != nil {
		return nil, err
	}
	out := &heraldv1.PullResponse{Cursor: res.Cursor.String(), Events: make([]*heraldv1.Event, len(res.Events))}
	for i, ev := range res.Events {
		out.Events[i] = eventMessage(ev)
	}
	for i := range res.Gaps {
		out.Gaps = append(out.Gaps, gapMessage(&res.Gaps[i]))
	}
	return out, nil
}

// eventMessage returns ev as a generated Event, decoded from its cached
// encoding so that the two can never disagree.
func eventMessage(ev *event.Event) *heraldv1.Event {
	m := new(heraldv1.Event)
	if err := proto.Unmarshal(eventFrame(ev), m); err != nil {
		// The frame is ours; failing to read it is a bug.
		panic(fmt.Sprintf("grpcapi: decode own event frame: %v", err))
	}
	return m
}

// gapMessage returns g as a generated Gap.
func gapMessage(g *hub.Gap) *heraldv1.Gap {
	return &heraldv1.Gap{
		Topic:     g.Topic,
		Reason:    heraldv1.GapReason(gapReason(g.Reason)),
		Requested: &heraldv1.Position{Epoch: g.Requested.Epoch.String(), Offset: g.Requested.Offset},
		Resumed:   &heraldv1.Position{Epoch: g.Resumed.Epoch.String(), Offset: g.Resumed.Offset},
		Earliest:  g.Earliest,
	}
}

// ListTopics lists topics sorted by name.
func (v *service) ListTopics(ctx context.Context, _ *heraldv1.ListTopicsRequest) (*heraldv1.ListTopicsResponse, error) {
	infos, err := v.s.hub.Topics(ctx)
	if err != nil {
		return nil, statusError(err)
	}
	out := &heraldv1.ListTopicsResponse{Topics: make([]*heraldv1.Topic, len(infos))}
	for i := range infos {
		out.Topics[i] = v.s.topicMessage(&infos[i])
	}
	return out, nil
}

// GetTopic describes one topic.
func (v *service) GetTopic(ctx context.Context, req *heraldv1.GetTopicRequest) (*heraldv1.Topic, error) {
	info, ok, err := v.s.hub.Info(ctx, req.Topic)
	if err != nil {
		return nil, statusError(err)
	}
	if !ok {
		return nil, statusError(fmt.Errorf("%w: topic %s does not exist; it is created by its first publish", errNotFound, req.Topic))
	}
	return v.s.topicMessage(&info), nil
}

func (s *Server) topicMessage(t *event.TopicInfo) *heraldv1.Topic {
	return &heraldv1.Topic{
		Name:        t.Name,
		Epoch:       t.Epoch.String(),
		First:       t.First,
		Last:        t.Last,
		Retained:    int64(t.Retained),
		Bytes:       t.Bytes,
		Subscribers: int64(s.hub.Subscribers(t.Name)),
	}
}
