// Package memory is herald's default engine: topic history in process
// memory, bounded by retention, lost on restart. Each Engine draws one
// random epoch when it is created and every topic's history carries it, so
// consumers holding cursors from a previous process are told their history
// is gone rather than silently skipped. Topics are never dropped while the
// engine lives, so one epoch per engine is enough, and a topic that does
// not exist yet already has the epoch it will be created with: reading or
// subscribing does not have to create it.
package memory

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/engine/topics"
	"github.com/heraldhq/herald/internal/event"
)

// Options configure an Engine. Zero fields take the defaults noted.
type Options struct {
	// Retention returns the history bounds of a topic; it is asked once
	// per topic, when the topic is created. Default: event.DefaultRetention.
	Retention func(topic string) event.Retention
	// DedupeWindow is how long an idempotency key is remembered.
	// Default: event.DefaultDedupeWindow.
	DedupeWindow time.Duration
	// MaxKeysPerTopic caps the remembered idempotency keys of one topic;
	// the oldest are forgotten first. Default: event.DefaultMaxKeysPerTopic.
	MaxKeysPerTopic int
	// SweepInterval is how often idle topics are trimmed by age. Default 1s.
	SweepInterval time.Duration
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
}

// Engine keeps topics in memory. Create it with New and stop it with Close.
type Engine struct {
	opts    Options            // static after New
	epoch   event.Epoch        // of every topic's history; static after New
	deliver func(*event.Event) // set once by Attach, before use

	topics *topics.Table[topic]
	state  stateStore

	stop chan struct{}  // closed by Close: ends the sweeper
	done sync.WaitGroup // the sweeper
	once sync.Once
}

// topic is one topic's history.
//
// Lock order: deliverMu, then mu. An append holds deliverMu from before it
// takes mu until its events are delivered, so deliveries keep offset order;
// it releases mu before delivering, so readers never wait for a fan-out and
// a deliver callback may Read.
type topic struct {
	name      string
	retention event.Retention // static

	mu      sync.RWMutex // guards the fields below
	epoch   event.Epoch
	events  []*event.Event // events[head:] are retained, oldest first
	head    int
	first   uint64 // offset of events[head]
	last    uint64 // offset of the newest event ever appended
	bytes   int64
	lastMs  int64
	keys    map[string]event.Ack
	keyLog  []keyStamp // keys in the order they were added, for expiry
	keyHead int

	deliverMu sync.Mutex // held by Append while storing and delivering, so deliveries keep offset order
}

type keyStamp struct {
	key string
	at  int64 // unix ms
}

// New returns a running memory engine.
func New(opts Options) *Engine {
	if opts.Retention == nil {
		opts.Retention = func(string) event.Retention { return event.DefaultRetention() }
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = event.DefaultDedupeWindow
	}
	if opts.MaxKeysPerTopic <= 0 {
		opts.MaxKeysPerTopic = event.DefaultMaxKeysPerTopic
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{opts: opts, topics: topics.NewTable[topic](), epoch: topics.NewEpoch(), stop: make(chan struct{}), deliver: func(*event.Event) {}}
	e.done.Add(1)
	go e.sweep()
	return e
}

// Close stops the background sweeper. History stays readable.
func (e *Engine) Close() error {
	e.once.Do(func() { close(e.stop) })
	e.done.Wait()
	return nil
}

// Attach sets the delivery callback; see hub.Engine.
func (e *Engine) Attach(deliver func(*event.Event)) { e.deliver = deliver }

// Watch does nothing: a single node delivers every topic.
func (e *Engine) Watch(context.Context, string) error { return nil }

// Unwatch does nothing.
func (e *Engine) Unwatch(string) {}

func (e *Engine) get(name string) *topic { return e.topics.Get(name) }

func (e *Engine) getOrCreate(name string) *topic {
	return e.topics.GetOrCreate(name, func(name string) *topic {
		return &topic{
			name:      name,
			retention: e.opts.Retention(name),
			epoch:     e.epoch,
			first:     1,
			keys:      make(map[string]event.Ack),
		}
	})
}

// Append stores recs at the end of topic; see hub.Engine.
func (e *Engine) Append(ctx context.Context, name string, recs []event.Record) ([]event.Ack, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := e.getOrCreate(name)
	now := e.opts.Now()
	nowMs := now.UnixMilli()
	acks := make([]event.Ack, len(recs))
	var one [1]*event.Event
	fresh := one[:0] // a single-event publish needs no allocation here

	t.deliverMu.Lock()
	defer t.deliverMu.Unlock()
	t.mu.Lock()
	t.expireKeys(nowMs - e.opts.DedupeWindow.Milliseconds())
	if nowMs < t.lastMs {
		nowMs = t.lastMs // keep time monotonic within a topic
	}
	t.lastMs = nowMs
	for i := range recs {
		r := &recs[i]
		if r.Key != "" {
			if ack, ok := t.keys[r.Key]; ok {
				ack.Duplicate = true
				acks[i] = ack
				continue
			}
		}
		t.last++
		ev := &event.Event{Topic: t.name, Offset: t.last, Epoch: t.epoch, Time: nowMs, Record: *r}
		t.events = append(t.events, ev)
		t.bytes += int64(r.Size())
		acks[i] = event.Ack{Position: ev.Position()}
		if r.Key != "" {
			t.rememberKey(r.Key, acks[i], nowMs, e.opts.MaxKeysPerTopic)
		}
		fresh = append(fresh, ev)
	}
	t.trim(nowMs)
	t.mu.Unlock()
	for _, ev := range fresh {
		e.deliver(ev)
	}
	return acks, nil
}

// rememberKey records an idempotency key. t.mu must be held.
func (t *topic) rememberKey(key string, ack event.Ack, nowMs int64, max int) {
	t.keys[key] = ack
	t.keyLog = append(t.keyLog, keyStamp{key: key, at: nowMs})
	for len(t.keys) > max {
		t.forgetOldestKey()
	}
}

// expireKeys forgets keys stamped before cutoff. t.mu must be held.
func (t *topic) expireKeys(cutoffMs int64) {
	for t.keyHead < len(t.keyLog) && t.keyLog[t.keyHead].at < cutoffMs {
		t.forgetOldestKey()
	}
}

func (t *topic) forgetOldestKey() {
	delete(t.keys, t.keyLog[t.keyHead].key)
	t.keyLog[t.keyHead] = keyStamp{}
	t.keyHead++
	if t.keyHead > 1024 && t.keyHead*2 > len(t.keyLog) {
		t.keyLog = slices.Clone(t.keyLog[t.keyHead:])
		t.keyHead = 0
	}
}

// trim drops events beyond the retention bounds. t.mu must be held.
func (t *topic) trim(nowMs int64) {
	r := t.retention
	cutoff := int64(-1 << 63)
	if r.MaxAge > 0 {
		cutoff = nowMs - r.MaxAge.Milliseconds()
	}
	for t.head < len(t.events) {
		ev := t.events[t.head]
		n := len(t.events) - t.head
		over := (r.MaxEvents > 0 && n > r.MaxEvents) ||
			(r.MaxBytes > 0 && t.bytes > r.MaxBytes) ||
			ev.Time <= cutoff
		if !over {
			break
		}
		t.bytes -= int64(ev.Size())
		t.events[t.head] = nil
		t.head++
		t.first++
	}
	if t.head == len(t.events) {
		t.events, t.head = t.events[:0], 0
	} else if t.head > 1024 && t.head*2 > len(t.events) {
		t.events = slices.Clone(t.events[t.head:])
		t.head = 0
	}
}

// Read returns events after `after`; see hub.Engine.
func (e *Engine) Read(ctx context.Context, name string, after uint64, limit int) (event.Batch, error) {
	if err := ctx.Err(); err != nil {
		return event.Batch{}, err
	}
	t := e.get(name)
	if t == nil {
		// Not created yet: empty, with the epoch it will have.
		return event.Batch{Info: event.TopicInfo{Name: name, Epoch: e.epoch, First: 1}}, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	b := event.Batch{Info: t.infoLocked()}
	if limit <= 0 || after >= t.last {
		return b, nil
	}
	from := after + 1
	if from < t.first {
		from = t.first
	}
	i := t.head + int(from-t.first)
	j := min(i+limit, len(t.events))
	b.Events = slices.Clone(t.events[i:j])
	return b, nil
}

// infoLocked returns the topic's state. t.mu must be held.
func (t *topic) infoLocked() event.TopicInfo {
	return event.TopicInfo{
		Name:     t.name,
		Epoch:    t.epoch,
		First:    t.first,
		Last:     t.last,
		Retained: len(t.events) - t.head,
		Bytes:    t.bytes,
	}
}

// Info returns a topic's state; see hub.Engine.
func (e *Engine) Info(_ context.Context, name string) (event.TopicInfo, bool, error) {
	t := e.get(name)
	if t == nil {
		return event.TopicInfo{}, false, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.infoLocked(), true, nil
}

// Topics lists every topic, sorted by name; see hub.Engine.
func (e *Engine) Topics(context.Context) ([]event.TopicInfo, error) {
	var out []event.TopicInfo
	for _, t := range e.topics.Snapshot() {
		t.mu.RLock()
		out = append(out, t.infoLocked())
		t.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b event.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// sweep trims idle topics by age and forgets expired idempotency keys, so
// memory falls even when nobody publishes.
func (e *Engine) sweep() {
	defer e.done.Done()
	tick := time.NewTicker(e.opts.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		nowMs := e.opts.Now().UnixMilli()
		for _, t := range e.topics.Snapshot() {
			t.mu.Lock()
			t.trim(nowMs)
			t.expireKeys(nowMs - e.opts.DedupeWindow.Milliseconds())
			t.mu.Unlock()
		}
	}
}
