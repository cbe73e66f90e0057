package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
)

// grpcGroup is a member's Consume stream (docs/grpc.md, "Consume"). Its
// receiver goroutine reads the stream: messages go to msgs, replies to the
// answer waiting for their id. Credit is kept so that the messages the
// stream holds for the caller (received, not yet taken, plus granted, not
// yet received) never exceed what receive was last asked for.
type grpcGroup struct {
	call   heraldv1.Herald_ConsumeClient // static
	cancel context.CancelFunc            // ends the call
	name   string                        // the member; static after open
	done   chan struct{}                 // closed when the receiver ends
	wg     sync.WaitGroup                // the receiver and the refresher

	sendMu sync.Mutex // serializes sends on call

	mu      sync.Mutex // guards the fields below
	msgs    []GroupMessage
	granted int                                       // credit given and not yet used by a message
	waiters map[uint64]chan *heraldv1.ConsumeResponse // answers waiting for their reply
	nextID  uint64
	err     error         // why the stream ended, once done is closed
	arrived chan struct{} // cap 1: msgs grew
}

// openGroup opens a Consume stream and waits for its opened reply.
func (b *grpcBackend) openGroup(ctx context.Context, group, member string) (groupSession, error) {
	cctx, err := b.callCtx(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(cctx)
	call, err := b.api.Consume(cctx)
	if err != nil {
		cancel()
		return nil, grpcError(err)
	}
	fail := func(err error) (groupSession, error) {
		cancel()
		return nil, grpcError(err)
	}
	if err := call.Send(&heraldv1.ConsumeRequest{Id: 1, Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: group, Member: member}}}); err != nil {
		if _, rerr := call.Recv(); rerr != nil {
			return fail(rerr) // the status says more than the send's EOF
		}
		return fail(err)
	}
	// The opened reply, bounded by ctx.
	stop := context.AfterFunc(ctx, cancel)
	resp, err := call.Recv()
	stop()
	if err != nil {
		return fail(err)
	}
	if e := resp.GetError(); e != nil {
		cancel()
		return nil, &Error{Code: e.Code, Message: e.Message}
	}
	o := resp.GetOpened()
	if o == nil {
		cancel()
		return nil, fmt.Errorf("consume %s: the server answered open with %T", group, resp.Kind)
	}
	g := &grpcGroup{
		call: call, cancel: cancel, name: o.Member, done: make(chan struct{}),
		waiters: make(map[uint64]chan *heraldv1.ConsumeResponse), nextID: 1, arrived: make(chan struct{}, 1),
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.receive1()
	}()
	if b.s.renew && o.Expires > 0 {
		// Credentials that expire, from a source that renews them: the
		// stream is refreshed before they do, so that it keeps its
		// leases rather than ending and handing them back.
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.refresher(b, time.UnixMilli(o.Expires))
		}()
	}
	return g, nil
}

// refresher sends the stream a refresh with a token from the client's
// token source shortly before exp, and again before each new expiry, until
// the stream ends. A token no newer than the last (a source that renews
// late) is asked for again, closer to exp; a refused refresh stops it, and
// the stream ends at exp, as without one (Consume then reconnects).
func (g *grpcGroup) refresher(b *grpcBackend, exp time.Time) {
	for {
		left := time.Until(exp)
		lead := min(30*time.Second, max(time.Second, left/5))
		if !g.sleep(left - lead) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		tok, err := b.s.token(ctx)
		var resp *heraldv1.ConsumeResponse
		if err == nil && tok != "" {
			resp, err = g.command(ctx, &heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Refresh{Refresh: &heraldv1.RefreshCommand{Token: tok}}})
		}
		cancel()
		r := resp.GetRefreshed()
		switch {
		case err == nil && r != nil && r.Expires == 0:
			return // the new credentials never expire
		case err == nil && r != nil && time.UnixMilli(r.Expires).After(exp):
			exp = time.UnixMilli(r.Expires)
		case err == nil && resp.GetError() != nil:
			return // refused: the stream ends at exp
		default:
			// No newer token yet (or the source failed): ask again
			// halfway to exp, while there is time.
			if time.Until(exp) < 200*time.Millisecond || !g.sleep(time.Until(exp)/2) {
				return
			}
		}
	}
}

// sleep waits d, or until the stream ends (false).
func (g *grpcGroup) sleep(d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.done:
		return false
	}
}

func (g *grpcGroup) member() string { return g.name }

// close ends the stream; the server hands back what it delivered and was
// not answered.
func (g *grpcGroup) close() {
	g.cancel()
	g.wg.Wait()
}

// receive1 is the receiver goroutine: it reads the stream until it ends.
func (g *grpcGroup) receive1() {
	var err error
	for {
		var resp *heraldv1.ConsumeResponse
		resp, err = g.call.Recv()
		if err != nil {
			break
		}
		if ms := resp.GetMessages(); ms != nil {
			g.mu.Lock()
			for _, m := range ms.Messages {
				g.msgs = append(g.msgs, groupMessageOf(m))
			}
			g.granted = max(0, g.granted-len(ms.Messages))
			g.mu.Unlock()
			select {
			case g.arrived <- struct{}{}:
			default:
			}
			continue
		}
		g.mu.Lock()
		w := g.waiters[resp.Id]
		delete(g.waiters, resp.Id)
		g.mu.Unlock()
		if w != nil {
			w <- resp
		}
	}
	g.mu.Lock()
	g.err = grpcError(err)
	if errors.Is(err, context.Canceled) {
		g.err = errors.New("the Consume stream was closed")
	}
	g.mu.Unlock()
	close(g.done)
}

// groupMessageOf converts a GroupMessage of the gRPC API.
func groupMessageOf(m *heraldv1.GroupMessage) GroupMessage {
	out := GroupMessage{ID: m.Id, Cursor: m.Cursor, Delivery: int(m.Delivery)}
	if m.Event != nil {
		out.Event = eventOf(m.Event)
	}
	if m.Deadline != nil {
		out.Deadline = m.Deadline.AsTime()
	}
	return out
}

// send sends one request.
func (g *grpcGroup) send(req *heraldv1.ConsumeRequest) error {
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	if err := g.call.Send(req); err != nil {
		return g.ended()
	}
	return nil
}

// ended returns why the stream ended, waiting for the receiver to know.
func (g *grpcGroup) ended() error {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// receive grants the credit that makes what the stream holds for the
// caller max, and returns the messages received, waiting for one up to
// ctx's end.
func (g *grpcGroup) receive(ctx context.Context, limit int) ([]GroupMessage, error) {
	g.mu.Lock()
	more := limit - len(g.msgs) - g.granted
	if more > 0 {
		g.granted += more
	}
	g.mu.Unlock()
	if more > 0 {
		if err := g.send(&heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Grant{Grant: &heraldv1.Grant{Events: uint32(more)}}}); err != nil {
			return nil, err
		}
	}
	for {
		g.mu.Lock()
		if len(g.msgs) > 0 {
			out := g.msgs
			g.msgs = nil
			g.mu.Unlock()
			return out, nil
		}
		g.mu.Unlock()
		select {
		case <-g.arrived:
		case <-g.done:
			g.mu.Lock()
			n := len(g.msgs)
			g.mu.Unlock()
			if n == 0 {
				return nil, g.ended()
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// answer sends an answer command and waits for its reply.
func (g *grpcGroup) answer(ctx context.Context, op string, ids []string, delay time.Duration, reason string) ([]answerResult, error) {
	a := &heraldv1.Answer{Ids: ids, Reason: reason}
	if delay > 0 {
		a.Delay = durationpb.New(delay)
	}
	req := &heraldv1.ConsumeRequest{}
	switch op {
	case opAck:
		req.Command = &heraldv1.ConsumeRequest_Ack{Ack: a}
	case opNak:
		req.Command = &heraldv1.ConsumeRequest_Nak{Nak: a}
	case opInProgress:
		req.Command = &heraldv1.ConsumeRequest_InProgress{InProgress: a}
	case opTerm:
		req.Command = &heraldv1.ConsumeRequest_Term{Term: a}
	default:
		return nil, fmt.Errorf("unknown answer %q", op)
	}
	resp, err := g.command(ctx, req)
	if err != nil {
		return nil, err
	}
	if e := resp.GetError(); e != nil {
		return nil, &Error{Code: e.Code, Message: e.Message}
	}
	rs := resp.GetAnswered().GetResults()
	if len(rs) != len(ids) {
		return nil, fmt.Errorf("%s: %d results for %d ids", op, len(rs), len(ids))
	}
	out := make([]answerResult, len(rs))
	for i, r := range rs {
		if e := r.Error; e != nil {
			out[i].err = &Error{Code: e.Code, Message: e.Message}
		}
		if r.Deadline != nil {
			out[i].deadline = r.Deadline.AsTime()
		}
	}
	return out, nil
}

// command sends req with the next id and returns the reply to it.
func (g *grpcGroup) command(ctx context.Context, req *heraldv1.ConsumeRequest) (*heraldv1.ConsumeResponse, error) {
	w := make(chan *heraldv1.ConsumeResponse, 1)
	g.mu.Lock()
	g.nextID++
	req.Id = g.nextID
	g.waiters[req.Id] = w
	g.mu.Unlock()
	forget := func() {
		g.mu.Lock()
		delete(g.waiters, req.Id)
		g.mu.Unlock()
	}
	if err := g.send(req); err != nil {
		forget()
		return nil, err
	}
	select {
	case resp := <-w:
		return resp, nil
	case <-g.done:
		forget()
		return nil, g.ended()
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}
