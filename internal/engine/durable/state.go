package durable

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/heraldhq/herald/internal/hub"
)

// This file is the engine's hub.StateStore. A space's keys are stored
// under kindState, the space's name length-prefixed like a topic's, so a
// space is one contiguous key range and ScanState one iterator.
//
// Writes go through commit queues like appends: the spaces are spread over
// numStateQueues queues, and the leader of a queue checks and writes every
// ApplyState waiting on it in one batch committed with pebble.Sync. Being
// the only writer of its spaces, the leader reads the store plus what its
// own batch writes and knows nothing changes under it, so check and write
// are atomic. Concurrent ApplyStates on one space share a batch and an
// fsync; those on spaces of different queues commit concurrently and share
// fsyncs in pebble's commit pipeline.

// numStateQueues spreads state spaces over this many commit queues.
const numStateQueues = 16

// A ScanState page holds at most scanPageEntries entries, and stops at the
// first entry that brings it to scanPageBytes.
const (
	scanPageEntries = 256
	scanPageBytes   = 1 << 20
)

var _ hub.StateStore = (*Engine)(nil)

// stateKey returns the store key of key in space.
func stateKey(space, key string) []byte {
	return append(topicKey(kindState, space), key...)
}

func (e *Engine) stateQueue(space string) *commitQueue {
	return &e.stateQueues[maphash.String(e.stateSeed, space)%numStateQueues]
}

// LoadState returns the value of key in space; see hub.StateStore.
func (e *Engine) LoadState(ctx context.Context, space, key string) ([]byte, bool, error) {
	if err := hub.CheckLoadState(ctx, space, key); err != nil {
		return nil, false, err
	}
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, false, ErrClosed
	}
	v, ok, err := e.find(stateKey(space, key))
	if err != nil {
		return nil, false, fmt.Errorf("durable load state from %s: %w", space, err)
	}
	return v, ok, nil
}

// ScanState calls fn for the keys of space that start with prefix; see
// hub.StateStore. It reads a page at a time and calls fn between pages,
// with no lock held.
func (e *Engine) ScanState(ctx context.Context, space, prefix string, fn func(key string, value []byte) bool) error {
	if err := hub.CheckScanState(ctx, space, prefix); err != nil {
		return err
	}
	base := topicKey(kindState, space)
	lower := append(slices.Clone(base), prefix...)
	upper := prefixEnd(lower)
	err := hub.ScanStatePages(ctx, func(after string) ([]hub.StateEntry, bool, error) {
		from := lower
		if after != "" {
			from = append(stateKey(space, after), 0) // the first key after it
		}
		return e.statePage(len(base), from, upper)
	}, fn)
	if err != nil {
		return fmt.Errorf("durable scan state of %s: %w", space, err)
	}
	return nil
}

// statePage reads a page of state entries with keys in [from, upper);
// a key's first skip bytes are its space's prefix.
func (e *Engine) statePage(skip int, from, upper []byte) ([]hub.StateEntry, bool, error) {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return nil, false, ErrClosed
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	var page []hub.StateEntry
	size := 0
	more := false
	for ok := it.First(); ok; ok = it.Next() {
		if len(page) == scanPageEntries || size >= scanPageBytes {
			more = true
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		page = append(page, hub.StateEntry{Key: string(it.Key()[skip:]), Value: append([]byte{}, v...)})
		size += len(it.Key()) + len(v)
	}
	if err := it.Error(); err != nil {
		it.Close()
		return nil, false, err
	}
	return page, more, it.Close()
}

// ApplyState applies ops to space atomically, once on disk; see
// hub.StateStore. Once queued, it waits for its commit round even if ctx
// ends: writes that may be on disk are never reported as failed.
func (e *Engine) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	if err := hub.CheckApplyState(ctx, space, ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	p := &pending{space: space, ops: ops, wake: make(chan struct{}, 1)}
	e.stateQueue(space).submit(p, e.commitState)
	if p.err != nil {
		return fmt.Errorf("durable apply state to %s: %w", space, p.err)
	}
	return nil
}

// commitState writes the ApplyStates of round in one synced batch and
// wakes them. Only the leader of their queue calls it.
func (e *Engine) commitState(round []*pending) {
	e.closeMu.RLock()
	err := e.writeState(round)
	e.closeMu.RUnlock()
	for _, p := range round {
		if err != nil && p.err == nil {
			p.err = err
		}
		p.wake <- struct{}{}
	}
}

// stateValue is a key's value as a round sees it.
type stateValue struct {
	v       []byte
	present bool
}

// writeState checks each ApplyState of round in order, against the store
// and the writes of the round's earlier ones, and commits the writes of
// those whose checks hold; the others get an error wrapping
// hub.ErrStateConflict. e.closeMu must be held shared.
func (e *Engine) writeState(round []*pending) error {
	if e.closed {
		return ErrClosed
	}
	b := e.db.NewBatch()
	defer b.Close()
	written := map[string]stateValue{} // by this round, by store key
	sets := false
	for _, p := range round {
		if p.err = e.checkState(p, written); p.err != nil {
			continue
		}
		for _, op := range p.ops {
			k := stateKey(p.space, op.Key)
			switch {
			case op.Set:
				b.Set(k, op.Value, nil)
				written[string(k)] = stateValue{v: op.Value, present: true}
				sets = true
			case op.Delete:
				b.Delete(k, nil)
				written[string(k)] = stateValue{}
			}
		}
	}
	if b.Empty() {
		return nil
	}
	if sets {
		if err := e.space.admit(b.Len()); err != nil {
			return err // deletions alone are always admitted: they free space
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit: %w: %w", hub.ErrUnavailable, err)
	}
	return nil
}

// checkState returns an error wrapping hub.ErrStateConflict if one of p's
// checks fails against the store overlaid with written.
func (e *Engine) checkState(p *pending, written map[string]stateValue) error {
	for _, op := range p.ops {
		if !op.Check {
			continue
		}
		k := stateKey(p.space, op.Key)
		cur, ok := written[string(k)]
		if !ok {
			v, present, err := e.find(k)
			if err != nil {
				return fmt.Errorf("check %q: %w", op.Key, err)
			}
			cur = stateValue{v: v, present: present}
		}
		if !op.Holds(cur.v, cur.present) {
			return fmt.Errorf("%w: key %q", hub.ErrStateConflict, op.Key)
		}
	}
	return nil
}
