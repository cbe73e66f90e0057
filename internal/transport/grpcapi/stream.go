package grpcapi

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/push"
)

// Limits of the delivery path.
const (
	// maxDeliveryBytes bounds one Delivery (an event larger than it goes
	// alone), well under the 4 MiB a gRPC client accepts by default.
	maxDeliveryBytes = 512 << 10
	// kickGrace is how long a call whose subscriber the hub ended waits for
	// its writer to send the end before it ends the stream itself: the
	// writer may be stuck sending to a consumer that stopped reading.
	kickGrace = time.Second
)

// stream is one Subscribe or Connect call: a hub subscriber, and the
// writer role that sends what the subscriber queues. The role is held by
// one goroutine at a time: the handler while it sets the stream up, then a
// worker of the Server's writerPool whenever the stream has something to
// send (running says the role is taken). Only the role's holder sends on
// the call.
type stream struct {
	srv  *Server
	ss   grpc.ServerStream // static
	sub  *hub.Subscriber   // static after newStream
	conn bool              // a Connect stream: ConnectResponses, events need credit
	qctx context.Context   // for history reads: the call's values, never cancelled (a leaving consumer shows as the subscriber's end)
	ctx  context.Context   // owned by the writer role: Connect's subscribes run in it (a refresh replaces it)

	running  atomic.Bool   // the writer role is held
	woken    atomic.Bool   // woken since the holder last looked
	kicked   chan struct{} // closed once the hub ended the subscriber
	kickOnce sync.Once
	ctl      chan command  // Connect: the reader's commands, in order; nil for Subscribe
	end      chan error    // cap 1: the call's status, sent once by the role's holder
	done     chan struct{} // closed with end

	// Owned by the writer role.
	w         *poolWorker   // the pool worker holding the role; nil for the handler
	cur       cursor.Cursor // the stream's position after what was sent
	items     []hub.Item    // Next's buffer
	held      []hub.Item    // events and gaps taken from the hub, not yet sent (Connect: waiting for credit)
	heldBytes int           // their encoded size (Connect: bounded like the hub's queue)
	credit    uint64        // events the consumer still accepts (Subscribe: unbounded)
	d         delivery      // the Delivery being assembled
	token     []byte        // the cursor's encoding, scratch
	msg       rawMessage    // the message being sent
}

// newStream registers a subscriber for a call on ss. The caller holds the
// writer role until serve.
func (s *Server) newStream(ss grpc.ServerStream, conn bool) (*stream, error) {
	st := &stream{
		srv:    s,
		ss:     ss,
		conn:   conn,
		qctx:   context.WithoutCancel(ss.Context()),
		ctx:    ss.Context(),
		kicked: make(chan struct{}),
		end:    make(chan error, 1),
		done:   make(chan struct{}),
		credit: math.MaxUint64,
	}
	st.running.Store(true)
	if conn {
		st.ctl = make(chan command, 16)
		st.credit = 0
	}
	sub, err := s.hub.NewSubscriber(hub.SubscriberOptions{
		Wake:          st.onWake,
		Kick:          st.onKick,
		MaxQueueBytes: s.opts.MaxQueueBytes,
		Identity:      hub.IdentityOf(ss.Context()),
	})
	if err != nil {
		return nil, err
	}
	st.sub = sub
	if id := hub.IdentityOf(ss.Context()); id != nil {
		sub.Expire(id.Expires) // the stream ends UNAUTHENTICATED token_expired then, unless refreshed
	}
	return st, nil
}

// onWake is the subscriber's Wake (and the reader's, for commands): it
// makes sure the writer role runs.
func (st *stream) onWake() {
	st.woken.Store(true)
	if st.running.CompareAndSwap(false, true) {
		st.srv.pool.submit(st)
	}
}

func (st *stream) onKick(hub.CloseReason) { st.kickOnce.Do(func() { close(st.kicked) }) }

// serve finishes a call's setup (the Subscribe start), hands the writer role
// to the pool, runs Connect's reader, and returns the call's end status.
// See the package comment for who owns what.
func (s *Server) serve(ctx context.Context, st *stream, reader func() error) error {
	s.opts.OnConn(1)
	defer s.opts.OnConn(-1)
	// A consumer that leaves ends its subscriber; the writer sees that.
	stop := context.AfterFunc(ctx, func() { st.sub.Close(hub.CloseClient) })
	defer stop()
	if !st.conn {
		if err := st.sendDelivery(); err != nil {
			st.sub.Close(hub.CloseClient)
			return err
		}
	}
	st.release()
	readErr := make(chan error, 1)
	if reader != nil {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			if err := reader(); err != nil {
				readErr <- err
			}
		}()
	}
	var end error
	select {
	case err := <-st.end:
		return err
	case <-st.kicked:
	case err := <-readErr:
		st.sub.Close(hub.CloseClient) // the stream is broken: stop writing
		end = err
	}
	t := time.NewTimer(kickGrace)
	defer t.Stop()
	select {
	case err := <-st.end:
		if end != nil {
			return end
		}
		return err
	case <-t.C:
		// The writer is stuck in a send; returning ends the stream, which
		// unblocks it. Its cursor is its own: the status goes without.
		if end != nil {
			return end
		}
		return endStatus(st.sub.Reason(), "", st.srv.opts.Retry)
	}
}

// release gives up the writer role, and takes it back to the pool when the
// stream was woken meanwhile.
func (st *stream) release() {
	st.w = nil
	st.running.Store(false)
	if st.woken.Load() && st.running.CompareAndSwap(false, true) {
		st.srv.pool.submit(st)
	}
}

// runPooled holds the writer role on pool worker w: it sends until the
// stream has nothing left, or ends.
func (st *stream) runPooled(w *poolWorker) {
	st.w = w
	for {
		st.woken.Store(false)
		if st.drain() {
			return // ended: the role stays taken, so nothing runs again
		}
		st.w = nil
		st.running.Store(false)
		if !st.woken.Load() || !st.running.CompareAndSwap(false, true) {
			return
		}
		st.w = w
	}
}

// drain handles the reader's commands and sends what the hub queued, until
// nothing is left. It reports whether the stream ended; then it has sent
// the call's status to st.end.
func (st *stream) drain() bool {
	for {
		// Commands first, so that a busy stream still sees its grants.
		for polled := st.ctl == nil; !polled; {
			select {
			case c := <-st.ctl:
				if err := st.handle(c); err != nil {
					st.sub.Close(hub.CloseClient)
					st.finish(err)
					return true
				}
			default:
				polled = true
			}
		}
		items, reason := st.sub.Next(st.qctx, st.items)
		st.items = items
		if reason != hub.CloseNone {
			st.finish(st.endOf(reason))
			return true
		}
		st.take(items)
		clear(items)
		if err := st.flush(); err != nil {
			st.sub.Close(hub.CloseClient)
			st.finish(err)
			return true
		}
		if len(items) == 0 {
			return false
		}
		// More may have come meanwhile, or history is left to read.
	}
}

// finish hands the call its end status.
func (st *stream) finish(err error) {
	st.end <- err
	close(st.done)
}

// send sends a message, telling the pool's watchdog while it may block.
func (st *stream) send(m any) error {
	if w := st.w; w != nil {
		w.sendSince.Store(time.Now().UnixNano())
		defer w.sendSince.Store(0)
	}
	return st.ss.SendMsg(m)
}

// take moves a batch from the hub into held.
func (st *stream) take(items []hub.Item) {
	for _, it := range items {
		switch {
		case it.Event != nil, it.Gap != nil:
			st.held = append(st.held, it)
			st.heldBytes += itemSize(it)
		}
		// Presence changes are not part of the gRPC API.
	}
	if st.conn && st.heldBytes > st.srv.queueCap() {
		// Events the consumer has not granted credit for are held here,
		// bounded as the hub's queue is: past that, it is a slow consumer.
		st.sub.Close(hub.CloseSlow)
	}
}

// queueCap is the per-stream queue cap.
func (s *Server) queueCap() int {
	if s.opts.MaxQueueBytes > 0 {
		return s.opts.MaxQueueBytes
	}
	return 1 << 20
}

// flush sends held items as Deliveries, events as far as credit goes.
func (st *stream) flush() error {
	for len(st.held) > 0 {
		st.d.reset()
		i := 0
		for ; i < len(st.held); i++ {
			it := st.held[i]
			if it.Event != nil && st.credit == 0 {
				break
			}
			if !st.d.fits(it, maxDeliveryBytes) {
				break
			}
			st.d.add(it)
			st.heldBytes -= itemSize(it)
			if it.Event != nil && st.conn {
				st.credit--
			}
		}
		if i == 0 {
			return nil // no credit
		}
		n := copy(st.held, st.held[i:])
		clear(st.held[n:])
		st.held = st.held[:n]
		advance(&st.cur, &st.d)
		if err := st.sendDelivery(); err != nil {
			return err
		}
	}
	return nil
}

// sendDelivery sends st.d (which may be empty: the start of a Subscribe)
// with the stream's cursor.
func (st *stream) sendDelivery() error {
	if !st.conn && st.d.evs == 1 && len(st.d.items) == 1 && st.cur.Len() == 1 {
		// One event on a one-topic stream: its Delivery is the same for
		// every such stream, encoded once. gRPC only reads it.
		st.msg = rawMessage{b: soloFrame(st.d.items[0].Event)}
		st.d.reset()
		return st.send(&st.msg)
	}
	st.token = st.cur.AppendEncoded(st.token[:0])
	st.msg = st.srv.codec.newRaw(deliverySize(&st.d, st.token, st.conn))
	st.msg.b = appendDelivery(st.msg.b, &st.d, st.token, st.conn)
	st.d.reset()
	return st.send(&st.msg)
}

// endOf returns the call's status for a subscriber that ended with reason.
func (st *stream) endOf(reason hub.CloseReason) error {
	if reason == hub.CloseClient {
		if err := st.ss.Context().Err(); err != nil {
			return statusError(err)
		}
		return nil
	}
	return endStatus(reason, st.cur.String(), st.srv.opts.Retry)
}

// endStatus is the status of a stream the hub ended, with its cursor (when
// known) in the ErrorInfo metadata and, when it may be resumed, a resume
// hint: after a drain, spread over a few retry periods so that the herd of
// reconnects does not come back at once.
func endStatus(why hub.CloseReason, token string, retry time.Duration) error {
	var meta map[string]string
	if token != "" {
		meta = map[string]string{"cursor": token}
	}
	r := reason.MustOf(why.Code())
	var hint time.Duration
	switch why {
	case hub.CloseShutdown:
		hint = push.Jitter(retry)
	case hub.CloseError, hub.CloseUnavailable:
		hint = retry
	}
	return newStatus(r.GRPC, r.Code, r.Message, meta, hint)
}
