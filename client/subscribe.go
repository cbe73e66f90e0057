package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// The transports of SubscribeOptions.Transport.
const (
	TransportSSE  = "sse"  // one Server-Sent Events stream (GET /v1/sse)
	TransportPoll = "poll" // repeated long polls (GET /v1/events?wait=…)
	TransportWS   = "ws"   // one WebSocket connection (GET /v1/ws, docs/protocol.md)
)

// SubscribeOptions configure Subscribe. The zero value follows new events
// over SSE.
type SubscribeOptions struct {
	// Transport is TransportSSE (the default), TransportPoll or
	// TransportWS. SSE and WebSocket push events with the least delay;
	// WebSocket and poll answers carry every detail of an event (see
	// Event); poll passes through proxies that buffer streams.
	Transport string
	// Cursor resumes after the positions it holds: a Message.Cursor, an
	// Ack.Cursor or a PullResult.Cursor. Empty starts every topic per From.
	Cursor string
	// From is where topics without a position in Cursor start: "latest"
	// (the default: only events published from now on) or "earliest" (the
	// whole retained history first).
	From string
	// PollWait is how long each long poll of the poll transport waits for
	// an event; default 30s. The server refuses more than its maximum
	// (120s by default).
	PollWait time.Duration
	// PollLimit is the most events one poll answers; 0 takes the server's
	// default (100).
	PollLimit int
	// IdleTimeout ends an SSE or WebSocket connection that has received
	// nothing for this long, so that a connection that died silently is
	// noticed; the server sends an SSE heartbeat after 15s without
	// traffic, and a WebSocket ping after 25s without a frame from the
	// client. Default 45s; negative disables it.
	IdleTimeout time.Duration
	// Backoff spaces reconnection attempts.
	Backoff Backoff
}

// Backoff is a jittered exponential backoff: before the n-th consecutive
// reconnection attempt the subscription waits a random time between 0 and
// min(Max, Initial·2ⁿ) ("full jitter"), plus the reconnection time the
// server last asked for with an SSE retry: field. A connection that
// delivers something resets n.
type Backoff struct {
	Initial time.Duration // default 100ms
	Max     time.Duration // default 10s
}

// delay returns the jittered wait before attempt n (counting from 0).
func (b Backoff) delay(n int) time.Duration {
	ceil := b.Initial
	for i := 0; i < n && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.Max)
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
	// Err signals that the connection ended (a network error, a server
	// restart, a slow-consumer disconnect); the subscription reconnects on
	// its own and resumes from Cursor. It is informational: a consumer may
	// log it or ignore it.
	Err error
	// Cursor is the position of the whole subscription after this message.
	// A new Subscribe (over either transport), or a Pull, given this cursor
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
	c      *Client          // static
	topics []string         // static
	opts   SubscribeOptions // static; defaults applied

	ctx    context.Context    // the subscription's life; ended by cancel
	cancel context.CancelFunc //
	msgs   chan Message       // run → Next, unbuffered: nothing is read ahead
	done   chan struct{}      // closed when run has returned
	err    error              // why run returned; written before done is closed

	// Owned by run (and by Subscribe before run starts).
	cursor string        // the position after the last message delivered
	pos    []cursorEntry // cursor decoded; valid when posOK
	posOK  bool          //
	retry  time.Duration // the server's latest SSE retry: hint
}

// Subscribe follows topics and returns once the server has fixed where the
// subscription starts, so that every event published after Subscribe
// returns is delivered. ctx bounds only this first connection (like
// net.Dialer.DialContext): a bad topic, cursor or address fails here.
// After that the subscription lives until Close, reconnecting as needed
// (see Backoff) and resuming from the cursor of the last message
// delivered, so that nothing is lost or repeated.
//
// Over SSE, an event's Topic, Offset and Epoch are recovered from the
// stream's cursor, and some details are not available; see Event.
func (c *Client) Subscribe(ctx context.Context, topics []string, opts SubscribeOptions) (*Subscription, error) {
	if err := c.grpcTransport(&opts); err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", topics, err)
	}
	if err := opts.normalize(); err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", topics, err)
	}
	if len(topics) == 0 {
		return nil, errors.New("subscribe: give at least one topic")
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Subscription{
		c:      c,
		topics: append([]string(nil), topics...),
		opts:   opts,
		ctx:    life,
		cancel: cancel,
		msgs:   make(chan Message),
		done:   make(chan struct{}),
	}
	s.setCursor(opts.Cursor)

	stop := context.AfterFunc(ctx, cancel)
	var (
		st    *sseStream
		wst   *wsStream
		gst   *grpcStream
		first sseFrame
		res   PullResult
		err   error
	)
	switch opts.Transport {
	case TransportSSE:
		if st, err = s.openSSE(); err == nil {
			if first, err = s.nextFrame(st); err != nil {
				st.close()
			}
		}
	case TransportWS:
		wst, err = s.openWS()
	case TransportGRPC:
		gst, err = s.openGRPC()
	default:
		res, err = s.poll(0)
	}
	if !stop() && err == nil {
		err = ctx.Err() // ctx ended just as the connection succeeded
		if st != nil {
			st.close()
		}
		if wst != nil {
			wst.nc.Close()
		}
		if gst != nil {
			gst.close()
		}
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
		var err error
		switch {
		case st != nil:
			err = s.runSSE(st, first)
		case wst != nil:
			err = s.runWS(wst)
		case gst != nil:
			err = s.runGRPC(gst)
		default:
			err = s.runPoll(res)
		}
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("subscription to %v: %w", s.topics, err)
		}
		s.err = err
	}()
	return s, nil
}

func (o *SubscribeOptions) normalize() error {
	switch o.Transport {
	case "":
		o.Transport = TransportSSE
	case TransportSSE, TransportPoll, TransportWS, TransportGRPC:
	default:
		return fmt.Errorf("transport %q: use %q, %q, %q or %q", o.Transport, TransportSSE, TransportPoll, TransportWS, TransportGRPC)
	}
	switch o.From {
	case "":
		o.From = "latest"
	case "latest", "earliest":
	default:
		return fmt.Errorf("from %q: use latest or earliest", o.From)
	}
	if o.PollWait <= 0 {
		o.PollWait = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 45 * time.Second
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = 100 * time.Millisecond
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 10 * time.Second
	}
	o.Backoff.Max = max(o.Backoff.Max, o.Backoff.Initial)
	return nil
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

// retryAfter decides what follows err. It returns the error that ends the
// subscription (ErrClosed once closed, or a permanent error), or signals
// err to the consumer, waits for the backoff and returns nil.
func (s *Subscription) retryAfter(err error, attempt *int) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	var apiErr *Error
	if errors.Is(err, errBadFrame) || errors.As(err, &apiErr) && !apiErr.Retryable() {
		return err
	}
	if err := s.deliver(Message{Err: err, Cursor: s.cursor}); err != nil {
		return err
	}
	t := time.NewTimer(s.retry + s.opts.Backoff.delay(*attempt))
	defer t.Stop()
	*attempt++
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return ErrClosed
	}
}

// sseStream is one open SSE connection.
type sseStream struct {
	body     io.ReadCloser
	p        *sseParser
	cancel   context.CancelFunc // ends the request
	idle     *time.Timer        // nil without an idle timeout
	timedOut atomic.Bool        // idle fired
}

func (st *sseStream) close() {
	if st.idle != nil {
		st.idle.Stop()
	}
	st.cancel()
	st.body.Close()
}

// activityReader restarts the idle timer whenever bytes arrive.
type activityReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.t.Reset(a.d)
	}
	return n, err
}

// openSSE connects, resuming from s.cursor when there is one.
func (s *Subscription) openSSE() (*sseStream, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	q := url.Values{"topic": s.topics, "from": {s.opts.From}}
	req, err := s.c.newRequest(ctx, http.MethodGet, "/v1/sse", q, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if s.cursor != "" {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	resp, err := s.c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		err := readError(resp)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%w: the answer is %q, not an event stream; is %s a herald server?",
			errBadFrame, resp.Header.Get("Content-Type"), s.c.base)
	}
	st := &sseStream{body: resp.Body, cancel: cancel}
	var r io.Reader = resp.Body
	if d := s.opts.IdleTimeout; d > 0 {
		st.idle = time.AfterFunc(d, func() {
			st.timedOut.Store(true)
			cancel()
		})
		r = &activityReader{r: r, t: st.idle, d: d}
	}
	st.p = newSSEParser(r)
	return st, nil
}

// nextFrame reads one frame, keeping the server's retry hint.
func (s *Subscription) nextFrame(st *sseStream) (sseFrame, error) {
	f, err := st.p.Next()
	if r := st.p.Retry(); r > 0 {
		s.retry = r
	}
	switch {
	case err == nil:
		return f, nil
	case st.timedOut.Load():
		return f, fmt.Errorf("nothing received for %v (IdleTimeout)", s.opts.IdleTimeout)
	case errors.Is(err, io.EOF):
		return f, errors.New("the server ended the event stream")
	default:
		return f, fmt.Errorf("read the event stream: %w", err)
	}
}

// runSSE is the subscription's goroutine over SSE; first is the frame
// Subscribe read from st.
func (s *Subscription) runSSE(st *sseStream, first sseFrame) error {
	pending := &first
	attempt := 0
	for {
		if st == nil {
			var err error
			if st, err = s.openSSE(); err != nil {
				if err := s.retryAfter(err, &attempt); err != nil {
					return err
				}
				continue
			}
		}
		err := s.pumpSSE(st, pending, &attempt)
		pending = nil
		st.close()
		st = nil
		if err := s.retryAfter(err, &attempt); err != nil {
			return err
		}
	}
}

// pumpSSE delivers the frames of one connection until it ends.
func (s *Subscription) pumpSSE(st *sseStream, pending *sseFrame, attempt *int) error {
	for {
		var f sseFrame
		if pending != nil {
			f, pending = *pending, nil
		} else {
			var err error
			if f, err = s.nextFrame(st); err != nil {
				return err
			}
		}
		if err := s.handleFrame(f); err != nil {
			return err
		}
		*attempt = 0
	}
}

// handleFrame delivers one SSE frame and moves the cursor past it.
func (s *Subscription) handleFrame(f sseFrame) error {
	next := f.ID
	if next == "" {
		next = s.cursor // an empty id never erases a known position
	}
	if !f.HasData {
		s.setCursor(next) // the starting cursor, or a bare id
		return nil
	}
	switch f.Event {
	case "join", "leave":
		if f.ID == s.cursor {
			return nil // a presence notice: it has no id of its own
		}
	case "gap":
		g := new(Gap)
		if err := json.Unmarshal([]byte(f.Data), g); err != nil {
			return fmt.Errorf("%w: gap event: %v", errBadFrame, err)
		}
		if err := s.deliver(Message{Gap: g, Cursor: next}); err != nil {
			return err
		}
		s.setCursor(next)
		return nil
	case "error":
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(f.Data), &e); err != nil || e.Code == "" {
			return fmt.Errorf("%w: error event %q", errBadFrame, f.Data)
		}
		return &Error{Code: e.Code, Message: e.Message}
	}
	ev := &Event{Type: f.Event}
	if data := []byte(f.Data); json.Valid(data) {
		ev.Encoding, ev.Data = EncodingJSON, data
	} else {
		ev.Encoding = EncodingText
		ev.Data, _ = json.Marshal(f.Data) // a string cannot fail
	}
	pos, err := decodeCursor(next)
	switch {
	case err == nil && s.posOK:
		if e, ok := advanced(s.pos, pos); ok {
			ev.Topic, ev.Offset, ev.Epoch = e.topic, e.offset, formatEpoch(e.epoch)
		}
	case len(s.topics) == 1:
		ev.Topic = s.topics[0]
	}
	if err := s.deliver(Message{Event: ev, Cursor: next}); err != nil {
		return err
	}
	s.cursor, s.pos, s.posOK = next, pos, err == nil
	return nil
}

// pollGrace is how much longer than its wait a long poll may take before
// the connection is taken for dead.
const pollGrace = 15 * time.Second

// poll sends one pull from s.cursor.
func (s *Subscription) poll(wait time.Duration) (PullResult, error) {
	ctx := s.ctx
	if err := ctx.Err(); err != nil {
		return PullResult{}, err // do not dial for a request that cannot be sent
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+pollGrace)
		defer cancel()
	}
	return s.c.Pull(ctx, PullRequest{
		Topics: s.topics,
		Cursor: s.cursor,
		From:   s.opts.From,
		Limit:  s.opts.PollLimit,
		Wait:   wait,
	})
}

// runPoll is the subscription's goroutine over long polling; first is the
// answer Subscribe got.
func (s *Subscription) runPoll(first PullResult) error {
	res := first
	attempt := 0
	for {
		if err := s.deliverPull(res); err != nil {
			return err
		}
		for {
			var err error
			if res, err = s.poll(s.opts.PollWait); err == nil {
				attempt = 0
				break
			}
			if err := s.retryAfter(err, &attempt); err != nil {
				return err
			}
		}
	}
}

// deliverPull delivers a poll answer's gaps, then its events, each with
// the cursor that resumes right after it, then moves to the answer's
// cursor.
func (s *Subscription) deliverPull(res PullResult) error {
	msgs := make([]Message, 0, len(res.Gaps)+len(res.Events))
	for i := range res.Gaps {
		msgs = append(msgs, Message{Gap: &res.Gaps[i]})
	}
	for i := range res.Events {
		msgs = append(msgs, Message{Event: &res.Events[i]})
	}
	if len(msgs) > 0 {
		if !pullCursors(msgs, res.Cursor) {
			for i := range msgs {
				msgs[i].Cursor = ""
			}
			msgs[len(msgs)-1].Cursor = res.Cursor
		}
	}
	for _, m := range msgs {
		if err := s.deliver(m); err != nil {
			return err
		}
		if m.Cursor != "" {
			s.setCursor(m.Cursor)
		}
	}
	if res.Cursor != "" {
		s.setCursor(res.Cursor)
	}
	return nil
}

// pullCursors sets the Cursor of each message of a poll answer whose final
// cursor is final. Within an answer each topic's events are consecutive,
// after the topic's gap if it has one, so the position of a topic before
// the answer is its gap's Requested, else just before its first event,
// else its final position. It reports false when a position cannot be read.
func pullCursors(msgs []Message, final string) bool {
	cur, err := decodeCursor(final)
	if err != nil || len(cur) == 0 {
		return false
	}
	// Wind the final cursor back to where the answer started, last
	// messages first, so that the earliest position of each topic wins.
	for i := len(msgs) - 1; i >= 0; i-- {
		var e cursorEntry
		var err error
		if g := msgs[i].Gap; g != nil {
			e = cursorEntry{topic: g.Topic, offset: g.Requested.Offset}
			e.epoch, err = parseEpoch(g.Requested.Epoch)
		} else {
			ev := msgs[i].Event
			e = cursorEntry{topic: ev.Topic, offset: ev.Offset - 1}
			e.epoch, err = parseEpoch(ev.Epoch)
			if ev.Offset == 0 {
				err = errBadFrame
			}
		}
		if err != nil {
			return false
		}
		cur = setPosition(cur, e)
	}
	// Replay the answer, recording the cursor after each message.
	for i := range msgs {
		var e cursorEntry
		if g := msgs[i].Gap; g != nil {
			e = cursorEntry{topic: g.Topic, offset: g.Resumed.Offset}
			e.epoch, err = parseEpoch(g.Resumed.Epoch)
		} else {
			ev := msgs[i].Event
			e = cursorEntry{topic: ev.Topic, offset: ev.Offset}
			e.epoch, err = parseEpoch(ev.Epoch)
		}
		if err != nil {
			return false
		}
		cur = setPosition(cur, e)
		msgs[i].Cursor = encodeCursor(cur)
	}
	return msgs[len(msgs)-1].Cursor == final
}
