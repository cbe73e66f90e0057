// Package durable is herald's embedded durable engine: topic history in a
// pebble store on local disk, so that offsets, epochs, history and
// idempotency keys survive a restart. A publish is acknowledged only after
// its events are fsync'd; concurrent publishes share fsyncs (group commit).
//
// # Key layout
//
// Every key starts with a one-byte kind. Topic names are length-prefixed
// (uint16, big-endian) so that one topic's keys form a contiguous range that
// no other topic's keys fall into. Integers are big-endian, so keys sort by
// offset.
//
//	"\x00format"                       -> uint32 format version (formatVersion)
//	"\x00epoch"                        -> uint64 store epoch, drawn once per data directory
//	'm' len(topic) topic               -> topic meta: first, last, bytes, lastMs, keyHead, keyTail (6 x uint64)
//	'e' len(topic) topic offset        -> event value (see encodeEvent)
//	'k' len(topic) topic idemKey       -> idempotency key: offset, unix ms when stored (2 x uint64)
//	'x' len(topic) topic seq           -> key log: unix ms, offset (2 x uint64), idemKey
//	's' len(space) space key           -> consumer state: the value (see state.go)
//
// The key log lists a topic's idempotency keys in the order they were
// stored, numbered keyHead (the oldest kept) to keyTail (the next number):
// expiry and the per-topic cap delete from its front, so their cost is the
// number of keys dropped, not the number kept. A log entry deletes its 'k'
// key only if that key still holds the entry's offset (a key stored again
// after it expired has a newer entry).
//
// An event value is: time ms (uint64), size (uint32, event.Record.Size),
// encoding (1 byte), then uvarint-prefixed type, key and headers (a uvarint
// count of uvarint-prefixed name/value pairs), then the payload to the end.
//
// Format history: 1 had no key log; 2 added it; 3 added consumer state.
// Open migrates a format-2 directory to 3 by rewriting the version (it has
// no state to convert) and refuses any other version.
//
// Besides pebble's files the directory holds HERALD.LOCK, locked while an
// Engine has the directory open.
//
// # Epochs
//
// The store epoch is drawn when the directory is first initialised and
// every topic's history carries it, as with the memory engine's one epoch
// per engine: topics are never dropped, so a topic that does not exist yet
// already has the epoch it will be created with. The epoch changes only if
// the directory is new (lost or reset), which tells consumers holding old
// cursors that their history is gone.
//
// # Group commit
//
// Each topic has a commit queue. The first Append to find the queue idle
// becomes its leader: it takes every waiting append of the topic, assigns
// offsets, writes them in one batch committed with pebble.Sync, updates the
// in-memory state, delivers the events in offset order and hands leadership
// to the next waiter. Appends to other topics commit concurrently, and
// pebble's commit pipeline coalesces their synced batches into shared
// fsyncs, so one topic never waits for another topic's fsync.
package durable

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldhq/herald/internal/engine/topics"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// maxTopicLen is the longest topic name the key layout can hold (its
// length is a uint16). The hub's own limit, event.MaxTopicLen, is lower.
const maxTopicLen = 1<<16 - 1

// lockFile is the file in the data directory that herald locks while it
// uses the directory.
const lockFile = "HERALD.LOCK"

// formatVersion is the version of the key layout and value encodings.
// A directory at oldestFormat or later is migrated to it when opened; one
// at another version is refused.
const (
	formatVersion uint32 = 3
	oldestFormat  uint32 = 2
)

const (
	kindMeta  byte = 'm'
	kindEvent byte = 'e'
	kindKey   byte = 'k'
	kindLog   byte = 'x'
	kindState byte = 's'
)

const (
	keyFormat = "\x00format"
	keyEpoch  = "\x00epoch"
)

// Errors callers branch on.
var (
	// ErrIncompatible means the data directory was written by an
	// incompatible version of herald.
	ErrIncompatible = errors.New("data directory has an incompatible format")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("durable engine is closed")
)

// Options configure an Engine. Zero fields take the defaults noted.
type Options struct {
	// Retention returns the history bounds of a topic; it is asked once
	// per topic, when the topic is created or loaded. Default:
	// event.DefaultRetention.
	Retention func(topic string) event.Retention
	// DedupeWindow is how long an idempotency key is remembered.
	// Default: event.DefaultDedupeWindow.
	DedupeWindow time.Duration
	// MaxKeysPerTopic caps the remembered idempotency keys of one topic;
	// past it the oldest are forgotten first. Default:
	// event.DefaultMaxKeysPerTopic.
	MaxKeysPerTopic int
	// SweepInterval is how often topics are trimmed by age and expired
	// idempotency keys are deleted. Default 1s.
	SweepInterval time.Duration
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
	// ReserveBytes is the free space kept on the data directory's file
	// system: a publish that would leave less fails with an error wrapping
	// hub.ErrStorageFull and writes nothing. 0: no check.
	ReserveBytes int64
	// FS is the file system the store lives on. Default vfs.Default; tests
	// wrap it to simulate a small disk.
	FS vfs.FS
}

// pointDeleteMax is the largest trim done with point deletes; larger trims
// (a retention bound lowered, a long idle topic expiring) use one range
// deletion. A range deletion on every append would pile up tombstones in
// the memtable that every new iterator fragments again: measured, that cost
// a fifth of the CPU of batched appends.
const pointDeleteMax = 1024

// Engine stores topics in a pebble store. Create it with Open and stop it
// with Close.
type Engine struct {
	opts    Options            // static after Open
	dir     string             // static after Open
	epoch   event.Epoch        // of every topic's history; static after Open
	db      *pebble.DB         // static after Open; closed by Close under closeMu
	lock    io.Closer          // herald's lock on dir; released by Close
	deliver func(*event.Event) // set once by Attach, before use

	topics *topics.Table[topic]
	space  *spaceGuard

	// closeMu is held shared by every commit round and every Read for as
	// long as they use db, and exclusively by Close to mark the engine
	// closed, so db is never closed under a user.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu

	// stateQueues order ApplyStates; a space's queue is chosen by a hash
	// of its name with stateSeed (static after Open).
	stateQueues [numStateQueues]commitQueue
	stateSeed   maphash.Seed

	stop chan struct{}  // closed by Close: ends the sweeper
	done sync.WaitGroup // the sweeper
	once sync.Once
}

// topic is one topic's commit queue and in-memory state.
//
// Locks: queue's lock is never held with another lock. A commit round holds
// Engine.closeMu shared across the commit and takes mu (briefly) inside it;
// no other lock is held across I/O. Lock order: closeMu, then mu.
type topic struct {
	name      string
	retention event.Retention // static
	metaKey   []byte          // static
	evPrefix  []byte          // static: kindEvent, length-prefixed name
	keyPrefix []byte          // static: kindKey, length-prefixed name
	logPrefix []byte          // static: kindLog, length-prefixed name

	queue commitQueue // appends and sweeps waiting for a commit round

	// The fields below are written only by the current leader, under mu,
	// after its batch is committed; readers take mu shared.
	mu     sync.RWMutex
	first  uint64 // offset of the earliest retained event; last+1 when none
	last   uint64 // offset of the newest event ever appended
	bytes  int64  // event.Record.Size of the retained events
	lastMs int64  // time of the newest event, to keep time monotonic
	// firstMs is the time of the event at offset first, 0 when unknown
	// (after Open); it lets a round skip reading the store for age trims.
	firstMs int64
	// keyHead and keyTail number the topic's key log: the oldest entry
	// kept and the next entry.
	keyHead, keyTail uint64
	// stored is set once the topic's meta is in the store: a topic whose
	// first append failed (a full disk) is not listed.
	stored bool
}

// Open opens or creates the store in dir and returns a running engine.
func Open(dir string, opts Options) (*Engine, error) {
	if opts.Retention == nil {
		opts.Retention = func(string) event.Retention { return event.DefaultRetention() }
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = event.DefaultDedupeWindow
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	if opts.MaxKeysPerTopic <= 0 {
		opts.MaxKeysPerTopic = event.DefaultMaxKeysPerTopic
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("durable: create data directory: %w (check that the path is a writable directory)", err)
	}
	// Our own lock, taken before pebble's: a pebble.Open that fails on its
	// lock leaks a goroutine, and this error can say what to do.
	lock, err := opts.FS.Lock(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("durable: lock data directory %s: %w (is another herald using it? check that it is writable)", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}, MemTableSize: 32 << 20, FS: opts.FS})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("durable: open store in %s: %w (check that the directory is writable)", dir, err)
	}
	e := &Engine{
		opts: opts, dir: dir, topics: topics.NewTable[topic](), db: db, lock: lock,
		space: &spaceGuard{fs: opts.FS, dir: dir, reserve: opts.ReserveBytes},
		stop:  make(chan struct{}), deliver: func(*event.Event) {},
		stateSeed: maphash.MakeSeed(),
	}
	if err := e.load(); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	e.done.Add(1)
	go e.sweep()
	return e, nil
}

// load checks the format version, reads or creates the store epoch and
// rebuilds the topics' state from their meta keys.
func (e *Engine) load() error {
	format, err := e.get([]byte(keyFormat))
	if err != nil {
		return fmt.Errorf("durable: read format version in %s: %w", e.dir, err)
	}
	if format == nil {
		return e.initialise()
	}
	if len(format) != 4 {
		return fmt.Errorf("durable: %s: %w (malformed format key %x): use a new data directory", e.dir, ErrIncompatible, format)
	}
	version := binary.BigEndian.Uint32(format)
	switch {
	case version > formatVersion:
		return fmt.Errorf("durable: %s: %w: format %d, written by a newer herald (this one reads formats %d to %d): run a herald at least as new as the one that wrote it",
			e.dir, ErrIncompatible, version, oldestFormat, formatVersion)
	case version < oldestFormat:
		return fmt.Errorf("durable: %s: %w: format %d, from an older herald that this one cannot migrate (it reads formats %d to %d): use a new data directory",
			e.dir, ErrIncompatible, version, oldestFormat, formatVersion)
	}
	epoch, err := e.get([]byte(keyEpoch))
	if err != nil {
		return fmt.Errorf("durable: read epoch in %s: %w", e.dir, err)
	}
	if len(epoch) != 8 {
		return fmt.Errorf("durable: %s: %w: epoch key missing or malformed", e.dir, ErrIncompatible)
	}
	e.epoch = event.Epoch(binary.BigEndian.Uint64(epoch))

	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindMeta}, UpperBound: []byte{kindMeta + 1}})
	if err != nil {
		return fmt.Errorf("durable: scan topics in %s: %w", e.dir, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		name, ok := topicOf(it.Key())
		v := it.Value()
		st, okMeta := decodeMeta(v)
		if !ok || !okMeta {
			return fmt.Errorf("durable: %s: %w: malformed topic meta %q", e.dir, ErrIncompatible, it.Key())
		}
		t := e.newTopic(name)
		t.first, t.last, t.bytes, t.lastMs = st.first, st.last, st.bytes, st.lastMs
		t.keyHead, t.keyTail = st.keyHead, st.keyTail
		t.stored = true
		e.topics.Put(name, t)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("durable: scan topics in %s: %w", e.dir, err)
	}
	if version != formatVersion {
		return e.migrate(version)
	}
	return nil
}

// migrate brings a directory at an older format to formatVersion, once it
// has loaded. From format 2 there is nothing to convert: format 3 only
// adds the consumer state keys, so the new version is written.
func (e *Engine) migrate(from uint32) error {
	if err := e.db.Set([]byte(keyFormat), binary.BigEndian.AppendUint32(nil, formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("durable: migrate %s from format %d to %d: %w", e.dir, from, formatVersion, err)
	}
	return nil
}

// initialise writes the format version and a new epoch to an empty store.
func (e *Engine) initialise() error {
	e.epoch = topics.NewEpoch()
	b := e.db.NewBatch()
	defer b.Close()
	b.Set([]byte(keyFormat), binary.BigEndian.AppendUint32(nil, formatVersion), nil)
	b.Set([]byte(keyEpoch), binary.BigEndian.AppendUint64(nil, uint64(e.epoch)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("durable: initialise store in %s: %w", e.dir, err)
	}
	return nil
}

// get returns a copy of key's value, or nil if it is absent.
func (e *Engine) get(key []byte) ([]byte, error) {
	v, _, err := e.find(key)
	return v, err
}

// find returns a copy of key's value (not nil, even if empty) and true, or
// nil and false if key is absent.
func (e *Engine) find(key []byte) ([]byte, bool, error) {
	v, c, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	return append([]byte{}, v...), true, nil
}

// Close stops the sweeper, waits for commits and reads in progress and
// closes the store. Appends and reads after Close fail with ErrClosed.
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		close(e.stop)
		e.done.Wait()
		e.closeMu.Lock()
		e.closed = true
		e.closeMu.Unlock()
		if cerr := e.db.Close(); cerr != nil {
			err = fmt.Errorf("durable: close store in %s: %w", e.dir, cerr)
		}
		e.lock.Close()
	})
	return err
}

// Epoch returns the store epoch every topic's history carries.
func (e *Engine) Epoch() event.Epoch { return e.epoch }

// Attach sets the delivery callback; see hub.Engine.
func (e *Engine) Attach(deliver func(*event.Event)) { e.deliver = deliver }

// Watch does nothing: a single node delivers every topic.
func (e *Engine) Watch(context.Context, string) error { return nil }

// Unwatch does nothing.
func (e *Engine) Unwatch(string) {}

var _ hub.Engine = (*Engine)(nil)

func (e *Engine) lookup(name string) *topic { return e.topics.Get(name) }

// getOrCreate returns the in-memory topic, creating it if needed. A new
// topic reaches the store with its first commit.
func (e *Engine) getOrCreate(name string) *topic { return e.topics.GetOrCreate(name, e.newTopic) }

func (e *Engine) newTopic(name string) *topic {
	return &topic{
		name:      name,
		retention: e.opts.Retention(name),
		metaKey:   topicKey(kindMeta, name),
		evPrefix:  topicKey(kindEvent, name),
		keyPrefix: topicKey(kindKey, name),
		logPrefix: topicKey(kindLog, name),
		first:     1,
	}
}

// Append stores recs at the end of topic and returns once they are on
// disk; see hub.Engine. Once queued, it waits for its commit round even if
// ctx ends: events that may be on disk are never reported as failed.
func (e *Engine) Append(ctx context.Context, name string, recs []event.Record) ([]event.Ack, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(name) > maxTopicLen {
		return nil, fmt.Errorf("durable append: topic name is %d bytes, the limit is %d", len(name), maxTopicLen)
	}
	if len(recs) == 0 {
		return []event.Ack{}, nil
	}
	p := &pending{recs: recs, wake: make(chan struct{}, 1)}
	e.submit(e.getOrCreate(name), p)
	if p.err != nil {
		return nil, fmt.Errorf("durable append to %s: %w", name, p.err)
	}
	return p.acks, nil
}

// submit queues p on t's commit queue and returns once it is committed
// (or failed).
func (e *Engine) submit(t *topic, p *pending) {
	t.queue.submit(p, func(round []*pending) { e.commitRound(t, round) })
}

// commitRound writes the appends of round in one synced batch, updates t's
// state, delivers the new events in offset order and wakes the appenders.
// Only the leader of t calls it.
func (e *Engine) commitRound(t *topic, round []*pending) {
	e.closeMu.RLock()
	fresh, state, err := e.writeRound(t, round)
	e.closeMu.RUnlock()
	if err == nil {
		t.mu.Lock()
		t.first, t.last, t.bytes, t.lastMs, t.firstMs = state.first, state.last, state.bytes, state.lastMs, state.firstMs
		t.keyHead, t.keyTail = state.keyHead, state.keyTail
		t.stored = t.stored || state.last > 0
		t.mu.Unlock()
		for _, ev := range fresh {
			e.deliver(ev)
		}
	}
	for _, p := range round {
		if err != nil {
			p.err, p.acks = err, nil
		}
		p.wake <- struct{}{}
	}
}

// topicState is a copy of a topic's mutable state.
type topicState struct {
	first, last uint64
	bytes       int64
	lastMs      int64
	firstMs     int64 // not stored; 0 when unknown
	keyHead     uint64
	keyTail     uint64
}

// writeRound builds and commits the batch for round. It returns the new
// events and t's state after the batch. e.closeMu must be held shared.
func (e *Engine) writeRound(t *topic, round []*pending) ([]*event.Event, topicState, error) {
	t.mu.RLock()
	st := topicState{first: t.first, last: t.last, bytes: t.bytes, lastMs: t.lastMs, firstMs: t.firstMs, keyHead: t.keyHead, keyTail: t.keyTail}
	t.mu.RUnlock()
	if e.closed {
		return nil, st, ErrClosed
	}
	now := e.opts.Now().UnixMilli()
	if now < st.lastMs {
		now = st.lastMs // keep time monotonic within a topic
	}
	cutoff := now - e.opts.DedupeWindow.Milliseconds()

	b := e.db.NewBatch()
	defer b.Close()
	var fresh []*event.Event
	var seen map[string]event.Ack // keys stored by this round
	sweep := false
	for _, p := range round {
		sweep = sweep || p.sweep
		if len(p.recs) == 0 {
			continue
		}
		p.acks = make([]event.Ack, len(p.recs))
		for i := range p.recs {
			r := &p.recs[i]
			if r.Key != "" {
				ack, dup, err := e.seenKey(t, seen, r.Key, cutoff)
				if err != nil {
					return nil, st, err
				}
				if dup {
					ack.Duplicate = true
					p.acks[i] = ack
					continue
				}
			}
			st.last++
			ev := &event.Event{Topic: t.name, Offset: st.last, Epoch: e.epoch, Time: now, Record: *r}
			b.Set(offsetKey(t.evPrefix, st.last), encodeEvent(ev), nil)
			st.bytes += int64(r.Size())
			p.acks[i] = event.Ack{Position: ev.Position()}
			if r.Key != "" {
				if seen == nil {
					seen = make(map[string]event.Ack)
				}
				seen[r.Key] = p.acks[i]
				b.Set(append(slices.Clone(t.keyPrefix), r.Key...), keyValue(st.last, now), nil)
				b.Set(offsetKey(t.logPrefix, st.keyTail), keyLogValue(now, st.last, r.Key), nil)
				st.keyTail++
			}
			fresh = append(fresh, ev)
		}
	}
	if len(fresh) > 0 {
		st.lastMs = now
	}
	if len(fresh) > 0 && st.first == fresh[0].Offset {
		st.firstMs = now // the topic was empty: its front is new
	}
	trimmed, err := e.trim(t, b, &st, fresh, now)
	if err != nil {
		return nil, st, err
	}
	if sweep || st.keyTail-st.keyHead > uint64(e.opts.MaxKeysPerTopic) {
		if err := e.expireKeys(t, b, &st, seen, cutoff); err != nil {
			return nil, st, err
		}
	}
	if len(fresh) == 0 && !trimmed && b.Empty() {
		return nil, st, nil
	}
	b.Set(t.metaKey, encodeMeta(st), nil)
	opt := pebble.Sync
	if len(fresh) == 0 {
		opt = pebble.NoSync // housekeeping only: nothing is acknowledged
	} else if err := e.space.admit(b.Len()); err != nil {
		return nil, st, err // housekeeping is always admitted: it frees space
	}
	if err := b.Commit(opt); err != nil {
		return nil, st, fmt.Errorf("commit: %w: %w", hub.ErrUnavailable, err)
	}
	return fresh, st, nil
}

// seenKey reports whether key was stored within the dedupe window, by this
// round or an earlier one, and the position it was stored at.
func (e *Engine) seenKey(t *topic, seen map[string]event.Ack, key string, cutoff int64) (event.Ack, bool, error) {
	if ack, ok := seen[key]; ok {
		return ack, true, nil
	}
	v, err := e.get(append(slices.Clone(t.keyPrefix), key...))
	if err != nil {
		return event.Ack{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	if len(v) != 16 || int64(binary.BigEndian.Uint64(v[8:])) < cutoff {
		return event.Ack{}, false, nil
	}
	return event.Ack{Position: event.Position{Epoch: e.epoch, Offset: binary.BigEndian.Uint64(v)}}, true, nil
}

// trim adds to b the deletion of the oldest events beyond t's retention.
// The sizes and times of committed events are read from the store (only
// the leader writes, so everything before this batch is committed); those
// of the batch's own events, fresh, come from memory. It reports whether it
// dropped anything.
func (e *Engine) trim(t *topic, b *pebble.Batch, st *topicState, fresh []*event.Event, nowMs int64) (bool, error) {
	r := t.retention
	retained := st.last + 1 - st.first // including fresh
	if retained == 0 {
		return false, nil
	}
	byCount := uint64(0)
	if r.MaxEvents > 0 && retained > uint64(r.MaxEvents) {
		byCount = retained - uint64(r.MaxEvents)
	}
	ageCutoff := int64(-1 << 63)
	if r.MaxAge > 0 {
		ageCutoff = nowMs - r.MaxAge.Milliseconds()
	}
	overBytes := r.MaxBytes > 0 && st.bytes > r.MaxBytes
	ageKnownFine := r.MaxAge <= 0 || (st.firstMs != 0 && st.firstMs > ageCutoff)
	if byCount == 0 && !overBytes && ageKnownFine {
		return false, nil
	}

	from := st.first
	drop := uint64(0)
	var dropBytes int64
	st.firstMs = 0 // unknown until we stop at a retained event
	// over reports whether the event at the front must go, and if not
	// remembers its time.
	over := func(at, size int64) bool {
		if drop < byCount || (r.MaxBytes > 0 && st.bytes-dropBytes > r.MaxBytes) || at <= ageCutoff {
			drop++
			dropBytes += size
			return true
		}
		st.firstMs = at
		return false
	}
	committedLast := st.last - uint64(len(fresh))
	stopped := false
	if from <= committedLast {
		it, err := e.db.NewIter(&pebble.IterOptions{
			LowerBound: offsetKey(t.evPrefix, from),
			UpperBound: offsetKey(t.evPrefix, committedLast+1),
		})
		if err != nil {
			return false, fmt.Errorf("trim: %w", err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			v := it.Value()
			if len(v) < 12 {
				it.Close()
				return false, fmt.Errorf("trim: malformed event %q", it.Key())
			}
			if !over(int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint32(v[8:]))) {
				stopped = true
				break
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return false, fmt.Errorf("trim: %w", err)
		}
	}
	for _, ev := range fresh {
		if stopped || !over(ev.Time, int64(ev.Size())) {
			break
		}
	}
	if drop == 0 {
		return false, nil
	}
	to := from + drop // exclusive
	if drop <= pointDeleteMax {
		for o := from; o < to; o++ {
			b.Delete(offsetKey(t.evPrefix, o), nil)
		}
	} else {
		b.DeleteRange(offsetKey(t.evPrefix, from), offsetKey(t.evPrefix, to), nil)
	}
	st.first = to
	st.bytes -= dropBytes
	return true, nil
}

// expireKeys adds to b the deletion of t's idempotency keys stored before
// cutoff, and of the oldest keys beyond the per-topic cap, from the front
// of the key log. Entries added by b itself are not in the store yet and
// are never expired by the round that adds them; fresh holds the keys b
// stores, whose 'k' entries must stay.
func (e *Engine) expireKeys(t *topic, b *pebble.Batch, st *topicState, fresh map[string]event.Ack, cutoff int64) error {
	t.mu.RLock()
	committedTail := t.keyTail
	t.mu.RUnlock()
	if st.keyHead >= committedTail {
		return nil
	}
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: offsetKey(t.logPrefix, st.keyHead),
		UpperBound: offsetKey(t.logPrefix, committedTail),
	})
	if err != nil {
		return fmt.Errorf("expire keys: %w", err)
	}
	defer it.Close()
	maxKeys := uint64(e.opts.MaxKeysPerTopic)
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(v) < 16 {
			return fmt.Errorf("expire keys: malformed key log entry %q", k)
		}
		if int64(binary.BigEndian.Uint64(v)) >= cutoff && st.keyTail-st.keyHead <= maxKeys {
			break
		}
		offset := binary.BigEndian.Uint64(v[8:])
		if _, again := fresh[string(v[16:])]; !again {
			idem := append(slices.Clone(t.keyPrefix), v[16:]...)
			cur, err := e.get(idem)
			if err != nil {
				return fmt.Errorf("expire keys: %w", err)
			}
			if len(cur) == 16 && binary.BigEndian.Uint64(cur) == offset {
				b.Delete(idem, nil)
			}
		}
		b.Delete(slices.Clone(k), nil)
		st.keyHead = binary.BigEndian.Uint64(k[len(k)-8:]) + 1
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("expire keys: %w", err)
	}
	return nil
}

// Read returns events after `after`; see hub.Engine. The topic's state and
// its events come from one consistent view of the store.
func (e *Engine) Read(ctx context.Context, name string, after uint64, limit int) (event.Batch, error) {
	if err := ctx.Err(); err != nil {
		return event.Batch{}, err
	}
	empty := event.Batch{Info: event.TopicInfo{Name: name, Epoch: e.epoch, First: 1}}
	if e.lookup(name) == nil {
		return empty, nil // not created yet: empty, with the epoch it will have
	}
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return event.Batch{}, ErrClosed
	}
	it, err := e.db.NewIter(nil)
	if err != nil {
		return event.Batch{}, fmt.Errorf("durable read %s: %w", name, err)
	}
	defer it.Close()
	meta := topicKey(kindMeta, name)
	if !it.SeekGE(meta) || !slices.Equal(it.Key(), meta) {
		return empty, it.Error() // created in memory, first commit not done
	}
	st, ok := decodeMeta(it.Value())
	if !ok {
		return event.Batch{}, fmt.Errorf("durable read %s: malformed meta", name)
	}
	b := event.Batch{Info: info(name, e.epoch, st)}
	if limit <= 0 || after >= st.last {
		return b, nil
	}
	from := max(after+1, st.first)
	to := min(st.last, from+uint64(limit)-1)
	prefix := topicKey(kindEvent, name)
	end := offsetKey(prefix, to+1)
	b.Events = make([]*event.Event, 0, to-from+1)
	for ok := it.SeekGE(offsetKey(prefix, from)); ok && bytes.Compare(it.Key(), end) < 0; ok = it.Next() {
		k := it.Key()
		ev, err := decodeEvent(name, e.epoch, binary.BigEndian.Uint64(k[len(k)-8:]), it.Value())
		if err != nil {
			return event.Batch{}, fmt.Errorf("durable read %s: %w", name, err)
		}
		b.Events = append(b.Events, ev)
	}
	if err := it.Error(); err != nil {
		return event.Batch{}, fmt.Errorf("durable read %s: %w", name, err)
	}
	return b, nil
}

func info(name string, epoch event.Epoch, st topicState) event.TopicInfo {
	return event.TopicInfo{
		Name:     name,
		Epoch:    epoch,
		First:    st.first,
		Last:     st.last,
		Retained: int(st.last + 1 - st.first),
		Bytes:    st.bytes,
	}
}

// infoOf returns t's state as last committed, and false if nothing of t
// is stored yet.
func (e *Engine) infoOf(t *topic) (event.TopicInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return info(t.name, e.epoch, topicState{first: t.first, last: t.last, bytes: t.bytes}), t.stored
}

// Info returns a topic's state; see hub.Engine.
func (e *Engine) Info(_ context.Context, name string) (event.TopicInfo, bool, error) {
	t := e.lookup(name)
	if t == nil {
		return event.TopicInfo{}, false, nil
	}
	i, ok := e.infoOf(t)
	return i, ok, nil
}

// Topics lists every topic, sorted by name; see hub.Engine.
func (e *Engine) Topics(context.Context) ([]event.TopicInfo, error) {
	var out []event.TopicInfo
	for _, t := range e.allTopics() {
		if i, ok := e.infoOf(t); ok {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b event.TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (e *Engine) allTopics() []*topic { return e.topics.Snapshot() }

// sweep trims topics by age and deletes expired idempotency keys, so disk
// use falls even when nobody publishes, every SweepInterval until Close.
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
		e.sweepOnce()
	}
}

// sweepOnce queues a housekeeping request on each topic's commit queue, so
// it never races with an append and a publish waits at most one
// housekeeping round (which commits without fsync), and returns once they
// are done or the engine is closing.
func (e *Engine) sweepOnce() {
	for _, t := range e.allTopics() {
		select {
		case <-e.stop:
			return
		default:
		}
		e.submit(t, &pending{sweep: true, wake: make(chan struct{}, 1)})
	}
}

// quietLogger drops pebble's informational messages and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}
