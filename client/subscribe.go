package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Transport is how a subscription receives events. The zero value is the
// client's default: TransportSSE for a client made with New,
// TransportGRPC (its only one) for a client made with NewGRPC.
//
// SSE and WebSocket push events with the least delay; WebSocket, poll and
// gRPC carry every detail of an event (see Event); poll passes through
// proxies that buffer streams. A Transport reads and writes itself as text
// (its constant's value), so it can be a flag or a configuration field;
// other values are refused.
type Transport string

// The transports of WithTransport.
const (
	TransportSSE  Transport = "sse"  // one Server-Sent Events stream (GET /v1/sse); the HTTP API's default
	TransportPoll Transport = "poll" // repeated long polls (GET /v1/events?wait=…)
	TransportWS   Transport = "ws"   // one WebSocket connection (GET /v1/ws, docs/protocol.md)
	TransportGRPC Transport = "grpc" // the gRPC API's Subscribe stream (docs/grpc.md); needs NewGRPC
)

// check refuses a value that is none of the Transport constants.
func (t Transport) check() error {
	switch t {
	case "", TransportSSE, TransportPoll, TransportWS, TransportGRPC:
		return nil
	}
	return fmt.Errorf("transport %q: use %q, %q, %q or %q", string(t), TransportSSE, TransportPoll, TransportWS, TransportGRPC)
}

// MarshalText returns the transport's name.
func (t Transport) MarshalText() ([]byte, error) { return []byte(t), nil }

// UnmarshalText sets t to the transport named text ("" for the default),
// refusing unknown names.
func (t *Transport) UnmarshalText(text []byte) error {
	v := Transport(text)
	if err := v.check(); err != nil {
		return err
	}
	*t = v
	return nil
}

// subscribeParams are a subscription's options, defaults applied.
type subscribeParams struct {
	readParams
	transport   Transport
	pollWait    time.Duration
	pollLimit   int
	idleTimeout time.Duration
	backoff     backoff
}

func newSubscribeParams(opts []SubscribeOption) (subscribeParams, error) {
	p := subscribeParams{
		pollWait:    30 * time.Second,
		idleTimeout: 45 * time.Second,
		backoff:     backoff{initial: 100 * time.Millisecond, max: 10 * time.Second},
	}
	for _, o := range opts {
		o.applySubscribe(&p)
	}
	if err := p.transport.check(); err != nil {
		return p, err
	}
	if err := p.readParams.check(); err != nil {
		return p, err
	}
	if p.pollLimit < 0 {
		return p, fmt.Errorf("poll limit %d: use 0 (the server's default) to 10000", p.pollLimit)
	}
	return p, nil
}

// SubscribeOption is an option of Subscribe: WithTransport, WithPollWait,
// WithPollLimit, WithIdleTimeout, WithBackoff, and the options of
// Subscribe and Pull (ReadOption): WithCursor and WithFrom.
type SubscribeOption interface {
	applySubscribe(*subscribeParams)
}

// subscribeOption is a SubscribeOption of Subscribe only.
type subscribeOption func(*subscribeParams)

func (o subscribeOption) applySubscribe(p *subscribeParams) { o(p) }

// WithTransport makes a subscription receive events over t; the default is
// the client's (see Transport). Subscribe refuses a transport the client
// does not speak.
func WithTransport(t Transport) SubscribeOption {
	return subscribeOption(func(p *subscribeParams) { p.transport = t })
}

// WithPollWait sets how long each long poll of TransportPoll waits for an
// event; default 30s. The server refuses more than its maximum (120s by
// default). Zero or less keeps the default.
func WithPollWait(d time.Duration) SubscribeOption {
	return subscribeOption(func(p *subscribeParams) {
		if d > 0 {
			p.pollWait = d
		}
	})
}

// WithPollLimit sets the most events one poll of TransportPoll answers,
// 1 to 10000; 0 takes the server's default (100).
func WithPollLimit(n int) SubscribeOption {
	return subscribeOption(func(p *subscribeParams) { p.pollLimit = n })
}

// WithIdleTimeout ends an SSE or WebSocket connection that has received
// nothing for d, so that a connection that died silently is noticed and
// replaced; the server sends an SSE heartbeat after 15s without traffic,
// and a WebSocket ping after 25s without a frame from the client. Default
// 45s; a negative d disables it, zero keeps the default. (gRPC connections
// have keepalives of their own.)
func WithIdleTimeout(d time.Duration) SubscribeOption {
	return subscribeOption(func(p *subscribeParams) {
		if d != 0 {
			p.idleTimeout = d
		}
	})
}

// WithBackoff spaces reconnection attempts with a jittered exponential
// backoff: before the n-th consecutive attempt the subscription waits a
// random time between 0 and min(maxDelay, initial·2ⁿ) ("full jitter"), plus the
// reconnection time the server last asked for (an SSE retry: field, or a
// gRPC drain's retry delay). A connection that delivers something resets n.
// The defaults are 100ms and 10s; zero or less keeps a default.
func WithBackoff(initial, maxDelay time.Duration) SubscribeOption {
	return subscribeOption(func(p *subscribeParams) {
		if initial > 0 {
			p.backoff.initial = initial
		}
		if maxDelay > 0 {
			p.backoff.max = maxDelay
		}
	})
}

// backoff is the policy of WithBackoff.
type backoff struct {
	initial time.Duration
	max     time.Duration
}

// delay returns the jittered wait before attempt n (counting from 0).
func (b backoff) delay(n int) time.Duration {
	limit := max(b.max, b.initial)
	ceil := b.initial
	for i := 0; i < n && ceil < limit; i++ {
		ceil *= 2
	}
	ceil = min(ceil, limit)
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}

// Message is one thing a Subscription delivers. Exactly one of Event, Gap
// and Err is set.
type Message struct {
	// Event is a received event.
	Event *Event
	// Gap signals events that cannot be delivered (trimmed from history,
	// history lost, or a position from the future); delivery continues
	// after Gap.Resumed.
	Gap *Gap
	// Err signals that the connection ended or could not be made (a
	// network error, a server restart, a slow-consumer disconnect, an error
	// of the WithToken callback); the subscription reconnects on
	// its own and resumes from Cursor. It is informational: a consumer may
	// log it or ignore it.
	Err error
	// Cursor is the position of the whole subscription after this message.
	// A new Subscribe (over any transport), or a Pull, given this cursor
	// continues with the message after this one. For the events of a poll
	// answer it is computed by the client; it is empty in the rare case
	// that the server's cursor cannot be read (a newer format), except on
	// the answer's last message.
	Cursor string
}

// Subscription follows topics live. Get its messages with Next; stop it
// with Close.
//
// One goroutine, started by Subscribe and ended by Close, reads the
// connection and hands each message to Next. It holds at most one message
// that Next has not taken and does not read on meanwhile, so a consumer
// that stops calling Next makes the server end the stream as a slow
// consumer, and the subscription resumes from the last message Next
// returned once the consumer reads again.
type Subscription struct {
	topics []string        // static
	p      subscribeParams // static
	dial   dialFunc        // static: opens a connection over the transport
	renew  bool            // static: a new connection gets a new token

	ctx    context.Context    // the subscription's life; ended by cancel
	cancel context.CancelFunc //
	msgs   chan Message       // run → Next, unbuffered: nothing is read ahead
	done   chan struct{}      // closed when run has returned
	err    error              // why run returned; written before done is closed

	// Owned by run (and by Subscribe and the first dial before run starts).
	cursor string        // the position after the last message delivered
	pos    []cursorEntry // cursor decoded; valid when posOK
	posOK  bool          //
	retry  time.Duration // the server's latest reconnection hint
}

// dialFunc opens one connection of s over its transport, from s.cursor. It
// returns once the server has fixed where the connection starts.
type dialFunc func(s *Subscription) (stream, error)

// stream is one open connection of a subscription (for long polling, a
// run of polls). Only the subscription's goroutine uses it.
type stream interface {
	// pump delivers the connection's messages until it ends, moving
	// s.cursor past each, and resets *attempt when the connection has
	// proved to work. It returns why the connection ended.
	pump(s *Subscription, attempt *int) error
	// close releases the connection.
	close()
}

// Subscribe follows topics and returns once the server has fixed where the
// subscription starts, so that every event published after Subscribe
// returns is delivered. Without WithCursor, or for topics the cursor does
// not name, it starts per WithFrom: by default FromLatest, only events
// published from now on (see From).
//
// ctx bounds only this first connection (like net.Dialer.DialContext): a
// bad topic, cursor or address fails here. After that the subscription
// lives until Close, reconnecting as needed (see WithBackoff) and resuming
// from the cursor of the last message delivered, so that nothing is lost
// or repeated.
//
// Over SSE, an event's Topic, Offset and Epoch are recovered from the
// stream's cursor, and some details are not available; see Event.
func (c *Client) Subscribe(ctx context.Context, topics []string, opts ...SubscribeOption) (*Subscription, error) {
	if len(topics) == 0 {
		return nil, errors.New("subscribe: give at least one topic")
	}
	p, err := newSubscribeParams(opts)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", topics, err)
	}
	dial, err := c.api.dialer(p.transport)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", topics, err)
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Subscription{
		topics: append([]string(nil), topics...),
		p:      p,
		dial:   dial,
		renew:  c.renew,
		ctx:    life,
		cancel: cancel,
		msgs:   make(chan Message),
		done:   make(chan struct{}),
	}
	s.setCursor(p.cursor)

	stop := context.AfterFunc(ctx, cancel)
	st, err := dial(s)
	if !stop() && err == nil {
		err = ctx.Err() // ctx ended just as the connection succeeded
		st.close()
	}
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("subscribe to %v: %w", topics, err)
	}
	go func() {
		defer close(s.done)
		err := s.run(st)
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("subscription to %v: %w", s.topics, err)
		}
		s.err = err
	}()
	return s, nil
}

// run is the subscription's goroutine: it pumps st, the connection
// Subscribe opened, then reconnects after each end until the subscription
// is closed or meets an error reconnecting cannot fix.
func (s *Subscription) run(st stream) error {
	attempt := 0
	for {
		if st == nil {
			var err error
			if st, err = s.dial(s); err != nil {
				if err := s.retryAfter(err, &attempt); err != nil {
					return err
				}
				continue
			}
		}
		err := st.pump(s, &attempt)
		st.close()
		st = nil
		if err := s.retryAfter(err, &attempt); err != nil {
			return err
		}
	}
}

// Next returns the next message. It blocks until there is one, ctx ends
// (ctx.Err() is returned; the subscription carries on), or the
// subscription ends: ErrClosed after Close, or the error that stopped it,
// such as an *Error with Code CodeForbidden. Next must not be called
// concurrently.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	select {
	case m := <-s.msgs:
		return m, nil
	case <-s.done:
		return Message{}, s.err
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close stops the subscription and waits for its goroutine to end. It may
// be called more than once and from any goroutine. It always returns nil.
func (s *Subscription) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// deliver hands m to Next.
func (s *Subscription) deliver(m Message) error {
	select {
	case s.msgs <- m:
		return nil
	case <-s.ctx.Done():
		return ErrClosed
	}
}

// setCursor records the position after the last message delivered.
func (s *Subscription) setCursor(token string) {
	s.cursor = token
	pos, err := decodeCursor(token)
	s.pos, s.posOK = pos, err == nil
}

// errBadFrame marks an answer that breaks the protocol. Reconnecting would
// meet it again, so it ends a subscription.
var errBadFrame = errors.New("protocol violation")

// renews reports whether reconnecting cures e: credentials that expired,
// when a WithToken callback gives the new connection a fresh token.
func (s *Subscription) renews(e *Error) bool {
	return s.renew && e.Code == CodeTokenExpired
}

// retryAfter decides what follows err. It returns the error that ends the
// subscription (ErrClosed once closed, or a permanent error), or signals
// err to the consumer, waits for the backoff and returns nil.
func (s *Subscription) retryAfter(err error, attempt *int) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	var apiErr *Error
	if errors.Is(err, errBadFrame) || errors.As(err, &apiErr) && !apiErr.Retryable() && !s.renews(apiErr) {
		return err
	}
	if err := s.deliver(Message{Err: err, Cursor: s.cursor}); err != nil {
		return err
	}
	t := time.NewTimer(s.retry + s.p.backoff.delay(*attempt))
	defer t.Stop()
	*attempt++
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return ErrClosed
	}
}
