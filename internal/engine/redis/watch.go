package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldhq/herald/internal/event"
)

// watch is this node's subscription to one topic's channel. Its goroutine
// (run) owns the subscription; deliveries, from it and from catch-ups, are
// serialised by mu.
type watch struct {
	topic   string
	channel string
	refs    int // Watch calls not yet matched by Unwatch; guarded by Engine.mu

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	ready     chan struct{} // closed at the first subscription confirmed
	readyOnce sync.Once
	mu        sync.Mutex // serialises deliveries; guards the fields below
	confirms  int        // subscription confirmations seen (more than one: resubscribed)
	err       error      // why the first subscription failed, if it did
	epoch     event.Epoch
	last      uint64 // the newest offset delivered
}

// resubscribeBackoff bounds the wait between attempts to subscribe again.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// Watch subscribes this node to topic's channel and returns once Redis has
// confirmed the subscription; see hub.Engine.
func (e *Engine) Watch(ctx context.Context, topic string) error {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return fmt.Errorf("redis watch %s: engine closed", topic)
		}
		old := e.stopping[topic]
		if old == nil {
			break
		}
		e.mu.Unlock()
		select { // the last Unwatch is still unsubscribing: let it finish
		case <-old.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w := e.watches[topic]
	if w == nil {
		w = &watch{topic: topic, channel: e.key(topic, "c"), done: make(chan struct{}), ready: make(chan struct{})}
		w.ctx, w.cancel = context.WithCancel(context.Background())
		e.watches[topic] = w
		e.wg.Add(1)
		go e.run(w)
	}
	w.refs++ // counted even if the subscription fails: the hub then calls Unwatch
	e.mu.Unlock()
	select {
	case <-w.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return fmt.Errorf("redis watch %s: %w", topic, w.err)
	}
	return nil
}

// Unwatch withdraws a Watch; the last one unsubscribes; see hub.Engine.
func (e *Engine) Unwatch(topic string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.watches[topic]
	if w == nil {
		return
	}
	if w.refs--; w.refs > 0 {
		return
	}
	delete(e.watches, topic)
	e.stopping[topic] = w
	w.cancel()
}

// subscribe builds the subscription command of w's channel.
func (e *Engine) subscribe(w *watch) rueidis.Completed {
	if e.sharded {
		return e.sub.B().Ssubscribe().Channel(w.channel).Build()
	}
	return e.sub.B().Subscribe().Channel(w.channel).Build()
}

// run keeps w subscribed until it is unwatched. When a subscription is
// confirmed again after a lost connection, the events published meanwhile
// never reached this node: a catch-up hands the hub the newest one, and
// the hub reads the rest from history.
func (e *Engine) run(w *watch) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		if e.stopping[w.topic] == w {
			delete(e.stopping, w.topic)
		}
		e.mu.Unlock()
		close(w.done)
	}()
	ctx := rueidis.WithOnSubscriptionHook(w.ctx, func(s rueidis.PubSubSubscription) {
		if s.Kind != "subscribe" && s.Kind != "ssubscribe" {
			return
		}
		w.mu.Lock()
		w.confirms++
		again := w.confirms > 1
		w.mu.Unlock()
		w.readyOnce.Do(func() { close(w.ready) })
		if again {
			e.catchupLater(w)
		}
	})
	ctx = rueidis.WithOnReceiveReturnHook(ctx, func(err error, c rueidis.CommandClient) error {
		if w.ctx.Err() == nil {
			return err
		}
		// Unwatched: leave the channel on the connection that joined it.
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e.sharded {
			_ = c.Do(uctx, c.B().Sunsubscribe().Channel(w.channel).Build()).Error()
		} else {
			_ = c.Do(uctx, c.B().Unsubscribe().Channel(w.channel).Build()).Error()
		}
		return err
	})
	backoff := minBackoff
	for {
		began := time.Now()
		err := e.sub.Receive(ctx, e.subscribe(w), func(m rueidis.PubSubMessage) { e.onMessage(w, m) })
		held := time.Since(began)
		if w.ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		first := w.confirms == 0
		if first && w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
		if first && err != nil {
			w.readyOnce.Do(func() { close(w.ready) }) // Watch reports the failure; the hub unwatches
		}
		if err != nil {
			e.opts.Log.Warn("redis subscription lost; resubscribing", "topic", w.topic, "err", err)
		}
		if held >= maxBackoff {
			// The subscription held a while before this loss: a new
			// outage starts from the shortest wait again.
			backoff = minBackoff
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		// A subscription that ended without a new confirmation later
		// (Receive returning, say after a slot moved) is caught up too.
		w.mu.Lock()
		w.confirms = max(w.confirms, 1)
		w.mu.Unlock()
	}
}

// onMessage delivers a channel message, dropping those already delivered,
// or hands the hub a presence change.
func (e *Engine) onMessage(w *watch, m rueidis.PubSubMessage) {
	if strings.HasPrefix(m.Message, presencePrefix) {
		e.onPresence(w.topic, m.Message)
		return
	}
	ev, err := decodeMessage(w.topic, m.Message)
	if err != nil {
		e.opts.Log.Warn("redis: undecodable message", "topic", w.topic, "err", err)
		return
	}
	e.offer(w, ev)
}

// offer delivers ev unless an event at least as new of its epoch was.
func (e *Engine) offer(w *watch, ev *event.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ev.Epoch == w.epoch && ev.Offset <= w.last {
		return
	}
	w.epoch, w.last = ev.Epoch, ev.Offset
	e.deliver(ev)
}

// catchupLater reads w's newest event and offers it, in a goroutine of its
// own: the subscription hook that calls it must not block.
func (e *Engine) catchupLater(w *watch) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		defer cancel()
		info, ok, err := e.Info(ctx, w.topic)
		if err != nil || !ok || info.Last == 0 {
			return // nothing stored (or Redis gone again: the next confirmation retries)
		}
		b, err := e.Read(ctx, w.topic, info.Last-1, 1)
		if err != nil || len(b.Events) == 0 {
			return
		}
		e.offer(w, b.Events[len(b.Events)-1])
	}()
}
