package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// This file is the consumer-group side of the client (docs/groups.md):
// Consume makes the program one member of a group, running a handler per
// event with a bounded concurrency, extending leases while handlers run and
// answering each event by the handler's result. The backends (HTTP fetch
// and answer requests, or one gRPC Consume stream) implement groupSession.

// GroupMessage is one delivery of an event of a consumer group to this
// member.
type GroupMessage struct {
	// ID names this delivery to the server. Consume answers it; it is
	// opaque, and differs between deliveries of the same event.
	ID string
	// Event is the event delivered.
	Event Event
	// Cursor is a cursor positioned at the event.
	Cursor string
	// Delivery counts the event's deliveries, 1 on the first: more means
	// an earlier delivery was not acked (its member died, naked it or ran
	// out of lease), so the handler may see an event it has already
	// (partly) processed.
	Delivery int
	// Deadline is when the lease ends unless extended; Consume extends it
	// while the handler runs.
	Deadline time.Time
}

// Handler processes one event of a consumer group. Consume acks the event
// when it returns nil and naks it (for redelivery to any member) when it
// returns an error; see NakAfter and Terminal for other answers. ctx ends
// when Consume's context does.
type Handler func(ctx context.Context, m *GroupMessage) error

// answerError is an error a Handler returns to choose its event's answer.
type answerError struct {
	err   error
	delay time.Duration // nak after this long
	term  bool          // dead-letter now
}

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// NakAfter returns err marked so that Consume naks the event with delay d:
// the group redelivers it no sooner than d from now.
func NakAfter(err error, d time.Duration) error {
	if err == nil {
		err = errors.New("nak")
	}
	return &answerError{err: err, delay: max(d, 0)}
}

// Terminal returns err marked so that Consume terms the event: the group
// sends it to its dead-letter topic now, with err's text as the reason, and
// never delivers it again.
func Terminal(err error) error {
	if err == nil {
		err = errors.New("term")
	}
	return &answerError{err: err, term: true}
}

// consumeParams are what ConsumeOptions set.
type consumeParams struct {
	member      string
	concurrency int
	nakDelay    time.Duration
	onError     func(error)
	answered    func(m *GroupMessage, answer string, err error)
}

// ConsumeOption configures Consume.
type ConsumeOption func(*consumeParams)

// WithMember names this member of the group (default: a name the server
// chooses over gRPC, or "go-" and random hex over HTTP). Give each worker a
// stable name so that the group's per-member figures mean something. Two
// processes with the same name are one member to the server.
func WithMember(name string) ConsumeOption {
	return func(p *consumeParams) { p.member = name }
}

// WithConcurrency runs up to n handlers at once (default 1). The member
// holds at most n events: it fetches only as many as it has handlers free.
func WithConcurrency(n int) ConsumeOption {
	return func(p *consumeParams) { p.concurrency = n }
}

// WithNakDelay sets the delay of the nak that follows a handler's error
// (default 0: the group's backoff). NakAfter overrides it per event.
func WithNakDelay(d time.Duration) ConsumeOption {
	return func(p *consumeParams) { p.nakDelay = d }
}

// WithConsumeErrors makes Consume report to fn what it otherwise keeps to
// itself: answers the server refused (an ack after the lease ran out and
// the event went to another member), and the errors it reconnects after.
// fn is called from several goroutines.
func WithConsumeErrors(fn func(error)) ConsumeOption {
	return func(p *consumeParams) { p.onError = fn }
}

// WithAnswered makes Consume call fn after it answered each message: answer
// is "ack", "nak" or "term", err nil when the server took the answer. An
// ack that fails (err not nil) may still have been stored when the
// connection broke before the reply; the event is then not delivered
// again. fn is called from several goroutines; Consume waits for it.
func WithAnswered(fn func(m *GroupMessage, answer string, err error)) ConsumeOption {
	return func(p *consumeParams) { p.answered = fn }
}

// The answers to a delivery.
const (
	opAck        = "ack"
	opNak        = "nak"
	opInProgress = "in_progress"
	opTerm       = "term"
)

// answerResult is the server's result for one delivery id of an answer.
type answerResult struct {
	err      error     // nil: taken
	deadline time.Time // in_progress: the lease's new end
}

// groupSession is one member's connection to a group over one backend.
type groupSession interface {
	// receive returns up to max messages (max ≥ 1), waiting for at least
	// one for a while; it may return none. The session holds no more than
	// max messages for the caller between calls.
	receive(ctx context.Context, max int) ([]GroupMessage, error)
	// answer answers deliveries: op is ack, nak (with delay), in_progress
	// or term (with reason); one result per id.
	answer(ctx context.Context, op string, ids []string, delay time.Duration, reason string) ([]answerResult, error)
	// member is the member's name.
	member() string
	close()
}

// consumeBackoff spaces Consume's reconnections.
var consumeBackoff = backoff{initial: 100 * time.Millisecond, max: 10 * time.Second}

// answerTimeout bounds one answer, which outlives the handler's context.
const answerTimeout = 10 * time.Second

// Consume makes the program a member of the consumer group named group
// (docs/groups.md): it fetches the group's events and runs handler on
// each, up to WithConcurrency at once. A handler's nil result acks the
// event (it is done, and never delivered again); an error naks it (the
// group delivers it again, to any member), NakAfter with a delay, Terminal
// dead-letters it. While a handler runs longer than half its lease,
// Consume extends the lease (in_progress), so a handler may take as long
// as it needs while the process lives; if the process dies, the group
// redelivers the event once the lease ends (over gRPC, at once). Over
// gRPC with WithToken, a stream whose credentials expire is refreshed
// with a token from fn shortly before, so that it keeps its leases.
//
// Delivery is at least once: a handler may see an event again after a
// crash, or when an answer did not reach the server. Make handlers
// idempotent, or record what they did before returning.
//
// Consume returns nil once ctx ends and the running handlers have returned
// and been answered, or an error the server will answer again (the group
// does not exist, the credentials may not consume it). It reconnects after
// other errors, with backoff. Over a client made with NewGRPC it uses one
// Consume stream; over New, POST /v1/groups/{group}/fetch and the answer
// endpoints.
func (c *Client) Consume(ctx context.Context, group string, handler Handler, opts ...ConsumeOption) error {
	p := consumeParams{concurrency: 1}
	for _, o := range opts {
		o(&p)
	}
	if group == "" {
		return errors.New("herald client: Consume needs a group name")
	}
	if handler == nil {
		return errors.New("herald client: Consume needs a handler")
	}
	if p.concurrency < 1 {
		return fmt.Errorf("herald client: concurrency %d: give at least 1", p.concurrency)
	}
	if p.onError == nil {
		p.onError = func(error) {}
	}
	l := &consumeLoop{c: c, group: group, handler: handler, p: p, free: make(chan struct{}, p.concurrency)}
	return l.run(ctx)
}

// consumeLoop is one Consume call. Its goroutine (the caller's) fetches;
// one goroutine per message runs the handler and answers, counted in wg.
type consumeLoop struct {
	c       *Client
	group   string
	handler Handler
	p       consumeParams

	free chan struct{} // a handler ended: room for another message
	wg   sync.WaitGroup
}

// run fetches until ctx ends or a fatal error. A message is answered
// through the session that brought it: over gRPC, a broken stream's
// deliveries were handed back by the server, and answering them elsewhere
// would only be refused.
func (l *consumeLoop) run(ctx context.Context) error {
	busy := 0
	attempt := 0
	var sess groupSession
	defer func() {
		l.wg.Wait()
		if sess != nil {
			sess.close()
		}
	}()
	for ctx.Err() == nil {
		for drained := false; !drained; {
			select {
			case <-l.free:
				busy--
			default:
				drained = true
			}
		}
		if busy == l.p.concurrency {
			select {
			case <-l.free:
				busy--
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if sess == nil {
			s, err := l.c.api.openGroup(ctx, l.group, l.p.member)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if !retryable(err) {
					return fmt.Errorf("consume %s: %w", l.group, err)
				}
				l.p.onError(fmt.Errorf("consume %s: %w", l.group, err))
				if !l.sleep(ctx, &attempt, err) {
					return nil
				}
				continue
			}
			sess = s
		}
		msgs, err := sess.receive(ctx, l.p.concurrency-busy)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Handlers still running answer through the closed session:
			// over gRPC their deliveries were handed back with the stream.
			sess.close()
			sess = nil
			if !retryable(err) {
				return fmt.Errorf("consume %s: %w", l.group, err)
			}
			l.p.onError(fmt.Errorf("consume %s: %w", l.group, err))
			if !l.sleep(ctx, &attempt, err) {
				return nil
			}
			continue
		}
		attempt = 0
		for i := range msgs {
			busy++
			l.wg.Add(1)
			go l.handle(ctx, sess, &msgs[i])
		}
	}
	return nil
}

// sleep waits before reconnecting; it reports false when ctx ended.
func (l *consumeLoop) sleep(ctx context.Context, attempt *int, err error) bool {
	d := consumeBackoff.delay(*attempt)
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > d {
		d = e.RetryAfter
	}
	*attempt++
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// retryable reports whether Consume reconnects after err.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable()
	}
	return true // the network
}

// handle runs the handler on m, extends m's lease while it runs, and
// answers m.
func (l *consumeLoop) handle(ctx context.Context, sess groupSession, m *GroupMessage) {
	defer func() {
		l.free <- struct{}{}
		l.wg.Done()
	}()
	done := make(chan struct{})
	var extender sync.WaitGroup
	extender.Add(1)
	go func() {
		defer extender.Done()
		l.extend(ctx, sess, m, done)
	}()
	err := l.run1(ctx, m)
	close(done)
	extender.Wait()

	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), answerTimeout)
	defer cancel()
	op, delay, why := opAck, time.Duration(0), ""
	var ae *answerError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.term:
		op, why = opTerm, ae.err.Error()
	case errors.As(err, &ae):
		op, delay = opNak, ae.delay
	default:
		op, delay = opNak, l.p.nakDelay
	}
	res, aerr := sess.answer(actx, op, []string{m.ID}, delay, why)
	if aerr == nil && len(res) == 1 {
		aerr = res[0].err
	}
	if aerr != nil {
		l.p.onError(fmt.Errorf("%s %s (%s #%d): %w", op, m.ID, m.Event.Topic, m.Event.Offset, aerr))
	}
	if l.p.answered != nil {
		l.p.answered(m, op, aerr)
	}
}

// run1 runs the handler, turning a panic into an error (a nak).
func (l *consumeLoop) run1(ctx context.Context, m *GroupMessage) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return l.handler(ctx, m)
}

// extend sends in_progress for m whenever half of its lease has passed,
// until done closes.
func (l *consumeLoop) extend(ctx context.Context, sess groupSession, m *GroupMessage, done <-chan struct{}) {
	lease := time.Until(m.Deadline)
	for {
		t := time.NewTimer(max(lease/2, 50*time.Millisecond))
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), answerTimeout)
		res, err := sess.answer(actx, opInProgress, []string{m.ID}, 0, "")
		cancel()
		if err == nil && len(res) == 1 {
			err = res[0].err
		}
		if err != nil {
			l.p.onError(fmt.Errorf("in_progress %s (%s #%d): %w", m.ID, m.Event.Topic, m.Event.Offset, err))
			var e *Error
			if errors.As(err, &e) && !e.Retryable() {
				return // the lease is lost: extending again cannot help
			}
			lease = time.Second * 2 // try again soon
			continue
		}
		if lease = time.Until(res[0].deadline); lease <= 0 {
			lease = 2 * time.Second
		}
	}
}
