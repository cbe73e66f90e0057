package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/heraldhq/herald/internal/hub"
)

// This file is the engine's hub.StateStore: consumer state in memory,
// lost with the process like the topics.

// A ScanState page holds at most scanPageEntries entries, and stops at the
// first entry that brings it to scanPageBytes.
const (
	scanPageEntries = 256
	scanPageBytes   = 1 << 20
)

var _ hub.StateStore = (*Engine)(nil)

// stateStore holds every state space. Its zero value is empty and ready.
type stateStore struct {
	mu     sync.RWMutex           // guards spaces and the contents of every space
	spaces map[string]*stateSpace // by name; a space with no keys is removed
}

// stateSpace is one space's keys and values. The values are the store's
// own copies: they are copied in and out, never shared with a caller.
type stateSpace struct {
	keys []string          // sorted, for ScanState
	vals map[string][]byte // never nil values: an empty one is []byte{}
}

// LoadState returns the value of key in space; see hub.StateStore.
func (e *Engine) LoadState(ctx context.Context, space, key string) ([]byte, bool, error) {
	if err := hub.CheckLoadState(ctx, space, key); err != nil {
		return nil, false, err
	}
	s := &e.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.lookup(space, key)
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
}

// lookup returns key's value in space. s.mu must be held.
func (s *stateStore) lookup(space, key string) ([]byte, bool) {
	sp := s.spaces[space]
	if sp == nil {
		return nil, false
	}
	v, ok := sp.vals[key]
	return v, ok
}

// ScanState calls fn for the keys of space that start with prefix; see
// hub.StateStore. It copies a page at a time and calls fn between pages,
// with no lock held.
func (e *Engine) ScanState(ctx context.Context, space, prefix string, fn func(key string, value []byte) bool) error {
	if err := hub.CheckScanState(ctx, space, prefix); err != nil {
		return err
	}
	return hub.ScanStatePages(ctx, func(after string) ([]hub.StateEntry, bool, error) {
		entries, more := e.state.page(space, prefix, after)
		return entries, more, nil
	}, fn)
}

// page returns up to a page of space's entries whose keys start with prefix
// and are greater than after, and whether more follow.
func (s *stateStore) page(space, prefix, after string) ([]hub.StateEntry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sp := s.spaces[space]
	if sp == nil {
		return nil, false
	}
	i, _ := slices.BinarySearch(sp.keys, max(prefix, after+"\x00"))
	var out []hub.StateEntry
	size := 0
	for ; i < len(sp.keys) && len(out) < scanPageEntries && size < scanPageBytes; i++ {
		k := sp.keys[i]
		if !strings.HasPrefix(k, prefix) {
			break
		}
		v := sp.vals[k]
		out = append(out, hub.StateEntry{Key: k, Value: append([]byte{}, v...)})
		size += len(k) + len(v)
	}
	return out, i < len(sp.keys) && strings.HasPrefix(sp.keys[i], prefix)
}

// ApplyState applies ops to space atomically; see hub.StateStore.
func (e *Engine) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	if err := hub.CheckApplyState(ctx, space, ops); err != nil {
		return err
	}
	s := &e.state
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		if !op.Check {
			continue
		}
		if !op.Holds(s.lookup(space, op.Key)) {
			return fmt.Errorf("memory apply state to %s: %w: key %q", space, hub.ErrStateConflict, op.Key)
		}
	}
	for _, op := range ops {
		switch {
		case op.Set:
			s.set(space, op.Key, append([]byte{}, op.Value...))
		case op.Delete:
			s.delete(space, op.Key)
		}
	}
	return nil
}

// set stores v as key's value in space. s.mu must be held.
func (s *stateStore) set(space, key string, v []byte) {
	sp := s.spaces[space]
	if sp == nil {
		if s.spaces == nil {
			s.spaces = make(map[string]*stateSpace)
		}
		sp = &stateSpace{vals: make(map[string][]byte)}
		s.spaces[strings.Clone(space)] = sp
	}
	if _, ok := sp.vals[key]; !ok {
		key = strings.Clone(key) // the caller's string may be a slice of a request
		i, _ := slices.BinarySearch(sp.keys, key)
		sp.keys = slices.Insert(sp.keys, i, key)
	}
	sp.vals[key] = v
}

// delete removes key from space. s.mu must be held.
func (s *stateStore) delete(space, key string) {
	sp := s.spaces[space]
	if sp == nil {
		return
	}
	if _, ok := sp.vals[key]; !ok {
		return
	}
	delete(sp.vals, key)
	i, _ := slices.BinarySearch(sp.keys, key)
	sp.keys = slices.Delete(sp.keys, i, i+1)
	if len(sp.keys) == 0 {
		delete(s.spaces, space)
	}
}
