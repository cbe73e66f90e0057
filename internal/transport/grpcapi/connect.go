package grpcapi

import (
	"context"
	"errors"
	"io"
	"slices"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/hub"
)

// command is what a Connect stream's reader hands its writer, in the order
// the client sent them. Exactly one of the pointer fields is set.
type command struct {
	id          uint64
	subscribe   *heraldv1.SubscribeCommand
	unsubscribe *heraldv1.UnsubscribeCommand
	refresh     context.Context // the stream's context with the refreshed identity
	grant       uint32
	reply       *heraldv1.ConnectResponse // a reply ready to send (publish acks, errors)
	done        chan struct{}             // closed once handled, when the reader waits
}

// Connect is one stream for subscribing, unsubscribing and publishing,
// with credit-based flow control. The reader (the call's second goroutine)
// decodes commands and runs publishes; the writer runs subscribe,
// unsubscribe and grant commands between deliveries, so that a reply and
// the deliveries around it are in a clear order: no event of a topic comes
// before its subscribed reply or after its unsubscribed reply.
func (v *service) Connect(ss heraldv1.Herald_ConnectServer) error {
	ctx := ss.Context()
	st, err := v.s.newStream(ss, true)
	if err != nil {
		return statusError(err)
	}
	return v.s.serve(ctx, st, func() error { return st.read(ctx) })
}

// read is a Connect stream's reader. It returns nil when the client has
// half-closed the stream (deliveries go on) or the writer has ended, and
// the error that broke the stream otherwise.
func (st *stream) read(ctx context.Context) error {
	pctx := hub.WithOrigin(ctx, hub.OriginClient)
	for {
		req := new(heraldv1.ConnectRequest)
		if err := st.ss.RecvMsg(req); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		c := command{id: req.Id}
		switch x := req.Command.(type) {
		case *heraldv1.ConnectRequest_Subscribe:
			c.subscribe, c.done = x.Subscribe, make(chan struct{})
		case *heraldv1.ConnectRequest_Unsubscribe:
			c.unsubscribe, c.done = x.Unsubscribe, make(chan struct{})
		case *heraldv1.ConnectRequest_Grant:
			c.grant = x.Grant.GetEvents()
		case *heraldv1.ConnectRequest_Refresh:
			nctx, err := st.srv.reauthenticate(ctx, x.Refresh.GetToken())
			if err == nil {
				err = st.sub.SetIdentity(hub.IdentityOf(nctx)) // a stream opened without credentials counts for its user now
			}
			if err != nil {
				c.reply = errorReply(req.Id, err)
				break
			}
			// Publishes from now on, and the writer's subscribes, are the
			// new identity's.
			ctx, pctx = nctx, hub.WithOrigin(nctx, hub.OriginClient)
			c.refresh, c.done = nctx, make(chan struct{})
		case *heraldv1.ConnectRequest_Publish:
			out, err := st.srv.publish(pctx, fromProto(x.Publish))
			if err != nil {
				c.reply = errorReply(req.Id, err)
			} else {
				c.reply = &heraldv1.ConnectResponse{Id: req.Id, Kind: &heraldv1.ConnectResponse_Published{Published: out.toProto(x.Publish.Id)}}
			}
		default:
			c.reply = errorReply(req.Id, badRequest("the request has no command: set subscribe, unsubscribe, publish or grant"))
		}
		select {
		case st.ctl <- c:
			st.onWake()
		case <-st.done:
			return nil
		}
		if c.done != nil {
			// Commands after a subscribe must see it done: a publish to a
			// topic just subscribed from latest must be delivered.
			select {
			case <-c.done:
			case <-st.done:
				return nil
			}
		}
	}
}

// errorReply is the reply to a refused command.
func errorReply(id uint64, err error) *heraldv1.ConnectResponse {
	_, code, msg := describe(err)
	return &heraldv1.ConnectResponse{Id: id, Kind: &heraldv1.ConnectResponse_Error{Error: &heraldv1.Error{Code: string(code), Message: msg}}}
}

// handle runs one command on the writer. It returns an error only when
// sending failed.
func (st *stream) handle(c command) error {
	if c.done != nil {
		defer close(c.done)
	}
	var reply *heraldv1.ConnectResponse
	switch {
	case c.reply != nil:
		reply = c.reply
	case c.subscribe != nil:
		reply = st.connectSubscribe(st.ctx, c.id, c.subscribe)
	case c.refresh != nil:
		reply = st.connectRefresh(c.id, c.refresh)
	case c.unsubscribe != nil:
		reply = st.connectUnsubscribe(c.id, c.unsubscribe)
	default:
		if st.credit > ^uint64(0)-uint64(c.grant) {
			st.credit = ^uint64(0)
		} else {
			st.credit += uint64(c.grant)
		}
		return st.flush()
	}
	return st.send(reply)
}

// connectSubscribe runs a subscribe command and returns its reply.
func (st *stream) connectSubscribe(ctx context.Context, id uint64, cmd *heraldv1.SubscribeCommand) *heraldv1.ConnectResponse {
	sel, err := parseSelection(cmd.Topics, cmd.Cursor, cmd.From, hub.FromLatest)
	if err != nil {
		return errorReply(id, err)
	}
	if err := st.subscribe(ctx, &sel); err != nil {
		// The hub took the topics it added out again; drop anything of
		// theirs already queued (a gap signal).
		st.forget(sel.Topics)
		return errorReply(id, err)
	}
	return &heraldv1.ConnectResponse{Id: id, Kind: &heraldv1.ConnectResponse_Subscribed{
		Subscribed: &heraldv1.Subscribed{Topics: sel.Topics, Cursor: st.cur.String()},
	}}
}

// connectRefresh moves the stream to a refreshed identity: subscriptions it
// no longer allows end, and nothing more of them is sent.
func (st *stream) connectRefresh(id uint64, ctx context.Context) *heraldv1.ConnectResponse {
	dropped, err := st.sub.Reauthorize(ctx)
	if err != nil {
		return errorReply(id, err)
	}
	st.ctx = ctx
	st.forget(dropped)
	who := hub.IdentityOf(ctx)
	var expires int64
	if !who.Expires.IsZero() {
		expires = who.Expires.UnixMilli()
	}
	return &heraldv1.ConnectResponse{Id: id, Kind: &heraldv1.ConnectResponse_Refreshed{
		Refreshed: &heraldv1.Refreshed{Subject: who.Subject, Expires: expires, Unsubscribed: dropped, Cursor: st.cur.String()},
	}}
}

// connectUnsubscribe runs an unsubscribe command and returns its reply.
func (st *stream) connectUnsubscribe(id uint64, cmd *heraldv1.UnsubscribeCommand) *heraldv1.ConnectResponse {
	if len(cmd.Topics) == 0 {
		return errorReply(id, badRequest("give at least one topic in topics"))
	}
	for _, t := range cmd.Topics {
		st.sub.Unsubscribe(t) // a topic not followed is ignored
	}
	st.forget(cmd.Topics)
	return &heraldv1.ConnectResponse{Id: id, Kind: &heraldv1.ConnectResponse_Unsubscribed{
		Unsubscribed: &heraldv1.Unsubscribed{Topics: cmd.Topics, Cursor: st.cur.String()},
	}}
}

// forget drops everything of topics that the stream has not sent: what
// the hub still has queued (taken now) and what waits for credit. The
// topics must already be unsubscribed, so nothing of theirs comes later.
func (st *stream) forget(topics []string) {
	items, _ := st.sub.Next(context.Background(), st.items)
	st.take(items)
	clear(items)
	st.items = items[:0]
	gone := func(t string) bool { return slices.Contains(topics, t) }
	st.held = slices.DeleteFunc(st.held, func(it hub.Item) bool {
		var t string
		if it.Event != nil {
			t = it.Event.Topic
		} else {
			t = it.Gap.Topic
		}
		if gone(t) {
			st.heldBytes -= itemSize(it)
			return true
		}
		return false
	})
	st.cur.Retain(func(t string) bool { return !gone(t) })
}
