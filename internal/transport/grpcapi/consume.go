package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
)

// A Consume stream is a member of a consumer group (docs/grpc.md,
// "Consume"):
//
//	client: open{group, member}       server: opened{group, member}
//	client: grant{events: n}          server: messages{...} (≤ credit)
//	client: ack|nak|in_progress|term  server: answered{results} (same id)
//
// Two goroutines serve it. The handler is the fetcher: while the stream
// has credit it long-polls the group (Manager.Fetch with consumeWait) and
// sends what it gets. The reader (counted in Server.workers, like
// Connect's) decodes commands: a grant adds credit and wakes the fetcher;
// an answer is run against the Manager at once and its reply sent. Sends
// from both are serialized by consumer.sendMu. The group's Manager checks
// the caller's consume action on each fetch, with the identity the
// interceptor put in the context.
//
// Deliveries sent and not answered when the stream ends are naked, so the
// group hands them to another member without waiting for their leases to
// run out: a member that disconnects or dies gives its work back.

// consumeWait is how long one fetch of a Consume stream waits for events;
// the stream fetches again after an empty answer.
const consumeWait = 30 * time.Second

// maxConsumeBatch bounds the messages one fetch asks for, whatever the
// credit.
const maxConsumeBatch = 256

// handBackTimeout bounds the naks that hand an ended stream's deliveries
// back.
const handBackTimeout = 5 * time.Second

// consumer is one Consume stream.
type consumer struct {
	srv    *Server
	ss     grpc.ServerStream // static
	groups *group.Manager    // static
	group  string            // static after open
	member string            // static after open

	sendMu sync.Mutex // serializes sends: the fetcher's messages and the reader's replies
	ended  bool       // guarded by sendMu: the handler is returning, nothing more is sent

	mu      sync.Mutex          // guards credit, pending and expiry
	credit  uint64              // messages the client still accepts
	pending map[string]struct{} // deliveries sent and not answered
	wake    chan struct{}       // cap 1: credit was added
	expiry  *time.Timer         // ends the stream when its credentials expire; nil if they never do

	// ident is the stream's identity since its last refresh (nil: the
	// one of the stream's context); the fetcher fetches as it.
	ident atomic.Pointer[hub.Identity]
}

// Consume serves a consumer group member (see consumer).
func (v *service) Consume(ss heraldv1.Herald_ConsumeServer) error {
	s := v.s
	if s.opts.Groups == nil {
		return newStatus(codes.Unavailable, reason.Unavailable, "consumer groups are not available: "+group.ErrUnsupported.Error(), nil, 0)
	}
	ctx := ss.Context()
	c := &consumer{srv: s, ss: ss, groups: s.opts.Groups, pending: make(map[string]struct{}), wake: make(chan struct{}, 1)}
	if err := c.open(ctx); err != nil {
		return statusError(err)
	}
	s.opts.OnConn(1)
	defer s.opts.OnConn(-1)

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopDrain := context.AfterFunc(s.draining, cancel)
	defer stopDrain()
	// The stream lasts as long as the caller's credentials, as Connect
	// does, unless refreshed: then it ends UNAUTHENTICATED token_expired,
	// and its unanswered deliveries are handed back; the client opens a
	// new one with fresh credentials.
	var expired atomic.Bool
	c.mu.Lock()
	c.expiry = time.AfterFunc(time.Hour, func() { expired.Store(true); cancel() })
	c.setExpiryLocked(hub.IdentityOf(ctx))
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.expiry.Stop()
		c.mu.Unlock()
	}()
	readErr := make(chan error, 1)
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		err := c.read(ctx)
		readErr <- err
		cancel()
	}()
	err := c.fetchLoop(fctx)
	c.end()
	c.handBack(ctx)
	if expired.Load() {
		return endStatus(hub.CloseExpired, "", 0)
	}
	select {
	case rerr := <-readErr:
		if rerr != nil {
			return statusError(rerr)
		}
		if err == nil || errors.Is(err, context.Canceled) {
			return nil // the client half-closed: nothing more can be answered
		}
	default:
	}
	switch {
	case s.draining.Err() != nil:
		return endStatus(hub.CloseShutdown, "", s.opts.Retry)
	case err != nil:
		return statusError(err)
	}
	return nil
}

// open reads the stream's first command, which must be open, checks that
// the group exists and answers opened.
func (c *consumer) open(ctx context.Context) error {
	req := new(heraldv1.ConsumeRequest)
	if err := c.ss.RecvMsg(req); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("the stream ended before its open command")
		}
		return err
	}
	o := req.GetOpen()
	if o == nil {
		return badRequest("the first command of a Consume stream must be open (group and member)")
	}
	if o.Group == "" {
		return badRequest("open needs the group")
	}
	if err := c.groups.Allowed(ctx, o.Group); err != nil {
		return err
	}
	c.group, c.member = o.Group, o.Member
	if c.member == "" {
		c.member = newMemberName()
	}
	var exp int64
	if id := hub.IdentityOf(ctx); id != nil && !id.Expires.IsZero() {
		exp = id.Expires.UnixMilli()
	}
	return c.send(&heraldv1.ConsumeResponse{Id: req.Id, Kind: &heraldv1.ConsumeResponse_Opened{
		Opened: &heraldv1.ConsumeOpened{Group: c.group, Member: c.member, Expires: exp},
	}})
}

// newMemberName names a member whose client gave no name.
func newMemberName() string {
	var b [6]byte
	rand.Read(b[:])
	return "grpc-" + hex.EncodeToString(b[:])
}

// send sends one response; the reader and the fetcher both send.
func (c *consumer) send(m *heraldv1.ConsumeResponse) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.ended {
		return errStreamEnded
	}
	return c.ss.SendMsg(m)
}

// errStreamEnded is a send after the handler returned.
var errStreamEnded = errors.New("the stream has ended")

// end stops sends: the handler is about to return.
func (c *consumer) end() {
	c.sendMu.Lock()
	c.ended = true
	c.sendMu.Unlock()
}

// fetchLoop fetches and sends messages while the stream has credit, until
// ctx ends (nil) or a fetch or send fails.
func (c *consumer) fetchLoop(ctx context.Context) error {
	for {
		c.mu.Lock()
		credit := c.credit
		c.mu.Unlock()
		if credit == 0 {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		fctx := ctx
		if id := c.ident.Load(); id != nil {
			fctx = hub.WithIdentity(ctx, id) // refreshed: fetch as the new credentials
		}
		msgs, err := c.groups.Fetch(fctx, c.group, c.member, int(min(credit, maxConsumeBatch)), consumeWait)
		if len(msgs) > 0 {
			c.mu.Lock()
			c.credit -= min(c.credit, uint64(len(msgs)))
			for i := range msgs {
				c.pending[msgs[i].ID] = struct{}{}
			}
			c.mu.Unlock()
			if serr := c.sendMessages(msgs); serr != nil {
				return serr
			}
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err() // a fetch cut short answers no error
		}
	}
}

// sendMessages sends msgs in responses of at most maxDeliveryBytes of
// payload (an event larger than that goes alone).
func (c *consumer) sendMessages(msgs []group.Message) error {
	out := &heraldv1.GroupMessages{}
	size := 0
	flush := func() error {
		if len(out.Messages) == 0 {
			return nil
		}
		err := c.send(&heraldv1.ConsumeResponse{Kind: &heraldv1.ConsumeResponse_Messages{Messages: out}})
		out, size = &heraldv1.GroupMessages{}, 0
		return err
	}
	for i := range msgs {
		m := groupMessage(&msgs[i])
		n := len(m.Event.Data) + 256
		if size+n > maxDeliveryBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		out.Messages = append(out.Messages, m)
		size += n
	}
	return flush()
}

// groupMessage returns m as a generated GroupMessage.
func groupMessage(m *group.Message) *heraldv1.GroupMessage {
	ev := m.Event
	return &heraldv1.GroupMessage{
		Id:       m.ID,
		Event:    eventMessage(ev),
		Delivery: uint32(min(m.Delivery, math.MaxUint32)),
		Deadline: timestamppb.New(m.Deadline),
		Cursor:   eventCursor(ev),
	}
}

// eventCursor is a cursor positioned at ev.
func eventCursor(ev *event.Event) string {
	return string(cursor.AppendSingle(nil, ev.Topic, event.Position{Epoch: ev.Epoch, Offset: ev.Offset}))
}

// read handles the client's commands until it half-closes (nil) or the
// stream breaks.
func (c *consumer) read(ctx context.Context) error {
	for {
		req := new(heraldv1.ConsumeRequest)
		if err := c.ss.RecvMsg(req); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		var reply *heraldv1.ConsumeResponse
		switch x := req.Command.(type) {
		case *heraldv1.ConsumeRequest_Grant:
			c.grant(x.Grant.GetEvents())
			continue
		case *heraldv1.ConsumeRequest_Ack:
			reply = c.answer(ctx, req.Id, "ack", x.Ack)
		case *heraldv1.ConsumeRequest_Nak:
			reply = c.answer(ctx, req.Id, "nak", x.Nak)
		case *heraldv1.ConsumeRequest_InProgress:
			reply = c.answer(ctx, req.Id, "in_progress", x.InProgress)
		case *heraldv1.ConsumeRequest_Term:
			reply = c.answer(ctx, req.Id, "term", x.Term)
		case *heraldv1.ConsumeRequest_Refresh:
			var nctx context.Context
			nctx, reply = c.refresh(ctx, req.Id, x.Refresh.GetToken())
			if nctx != nil {
				ctx = nctx // answers from now on are the new identity's
			}
		case *heraldv1.ConsumeRequest_Open:
			reply = consumeError(req.Id, badRequest("the stream is open already (as %s of %s); open another stream for another group", c.member, c.group))
		default:
			reply = consumeError(req.Id, badRequest("the request has no command: set grant, ack, nak, in_progress, term or refresh"))
		}
		if err := c.send(reply); err != nil {
			return err
		}
	}
}

// refresh swaps the stream's credentials for token's, which must be for
// the same subject and allowed to consume the group. It returns the
// context of the new identity and the reply, or nil and the refusal.
func (c *consumer) refresh(ctx context.Context, id uint64, token string) (context.Context, *heraldv1.ConsumeResponse) {
	nctx, err := c.srv.reauthenticate(ctx, token)
	if err == nil {
		err = c.groups.Allowed(nctx, c.group)
	}
	if err != nil {
		return nil, consumeError(id, err)
	}
	ident := hub.IdentityOf(nctx)
	c.ident.Store(ident)
	c.mu.Lock()
	c.setExpiryLocked(ident)
	c.mu.Unlock()
	var exp int64
	if !ident.Expires.IsZero() {
		exp = ident.Expires.UnixMilli()
	}
	return nctx, &heraldv1.ConsumeResponse{Id: id, Kind: &heraldv1.ConsumeResponse_Refreshed{
		Refreshed: &heraldv1.Refreshed{Subject: ident.Subject, Expires: exp},
	}}
}

// setExpiryLocked sets the stream to end when id's credentials expire, or
// never. c.mu must be held.
func (c *consumer) setExpiryLocked(id *hub.Identity) {
	if id == nil || id.Expires.IsZero() {
		c.expiry.Stop()
		return
	}
	c.expiry.Reset(time.Until(id.Expires))
}

// grant adds n credit and wakes the fetcher.
func (c *consumer) grant(n uint32) {
	c.mu.Lock()
	if c.credit > math.MaxUint64-uint64(n) {
		c.credit = math.MaxUint64
	} else {
		c.credit += uint64(n)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// maxAnswerIDs bounds the ids of one answer command.
const maxAnswerIDs = 10000

// answer runs an ack, nak, in_progress or term command and returns its
// reply.
func (c *consumer) answer(ctx context.Context, id uint64, op string, a *heraldv1.Answer) *heraldv1.ConsumeResponse {
	if len(a.GetIds()) == 0 {
		return consumeError(id, badRequest("%s needs at least one delivery id in ids", op))
	}
	if len(a.Ids) > maxAnswerIDs {
		return consumeError(id, badRequest("%d ids in one %s; the limit is %d", len(a.Ids), op, maxAnswerIDs))
	}
	var delay time.Duration
	if a.Delay != nil {
		if op != "nak" {
			return consumeError(id, badRequest("delay is for nak only"))
		}
		if err := a.Delay.CheckValid(); err != nil {
			return consumeError(id, badRequest("delay: %v", err))
		}
		if delay = a.Delay.AsDuration(); delay < 0 {
			return consumeError(id, badRequest("delay must not be negative"))
		}
	}
	if a.Reason != "" && op != "term" {
		return consumeError(id, badRequest("reason is for term only"))
	}
	if op != "in_progress" {
		// Taken out first: a stream ending meanwhile must not hand back
		// what this command answers.
		c.mu.Lock()
		for _, d := range a.Ids {
			delete(c.pending, d)
		}
		c.mu.Unlock()
	}
	results := make([]*heraldv1.AnswerResult, len(a.Ids))
	for i, d := range a.Ids {
		results[i] = &heraldv1.AnswerResult{Id: d}
	}
	setErr := func(i int, err error) {
		if err != nil {
			_, code, msg := describe(err)
			results[i].Error = &heraldv1.Error{Code: string(code), Message: msg}
		}
	}
	switch op {
	case "ack":
		errs, err := c.groups.Ack(ctx, c.group, c.member, a.Ids)
		if err != nil {
			return consumeError(id, err)
		}
		for i := range results {
			if i < len(errs) {
				setErr(i, errs[i])
			}
		}
	case "nak":
		for i, d := range a.Ids {
			setErr(i, c.groups.Nak(ctx, c.group, c.member, d, delay))
		}
	case "in_progress":
		for i, d := range a.Ids {
			dl, err := c.groups.InProgress(ctx, c.group, c.member, d)
			setErr(i, err)
			if err == nil {
				results[i].Deadline = timestamppb.New(dl)
			}
		}
	case "term":
		for i, d := range a.Ids {
			setErr(i, c.groups.Term(ctx, c.group, c.member, d, a.Reason))
		}
	}
	return &heraldv1.ConsumeResponse{Id: id, Kind: &heraldv1.ConsumeResponse_Answered{Answered: &heraldv1.Answered{Results: results}}}
}

// consumeError is the reply to a refused command.
func consumeError(id uint64, err error) *heraldv1.ConsumeResponse {
	_, code, msg := describe(err)
	return &heraldv1.ConsumeResponse{Id: id, Kind: &heraldv1.ConsumeResponse_Error{Error: &heraldv1.Error{Code: string(code), Message: msg}}}
}

// handBack naks the deliveries sent and not answered, so that the group
// redelivers them now rather than when their leases end.
func (c *consumer) handBack(ctx context.Context) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.pending))
	for d := range c.pending {
		ids = append(ids, d)
	}
	clear(c.pending)
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handBackTimeout)
	defer cancel()
	for _, d := range ids {
		if err := c.groups.Nak(nctx, c.group, c.member, d, 0); err != nil && !errors.Is(err, hub.ErrNotFound) && !errors.Is(err, hub.ErrConflict) {
			c.srv.opts.Log.Debug("consume: hand back a delivery", "group", c.group, "member", c.member, "err", fmt.Sprint(err))
		}
	}
}
