// Package topics holds what herald's single-node engines share: a sharded
// table of per-topic state, and the drawing of epochs.
package topics

import (
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/heraldhq/herald/internal/event"
)

const numShards = 32

// Table maps topic names to per-topic state, sharded so that work on
// different topics does not contend on one lock. Create it with NewTable.
type Table[T any] struct {
	seed   maphash.Seed
	shards [numShards]shard[T]
}

type shard[T any] struct {
	mu sync.RWMutex // guards m
	m  map[string]*T
}

// NewTable returns an empty table.
func NewTable[T any]() *Table[T] {
	t := &Table[T]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*T)
	}
	return t
}

func (t *Table[T]) shard(name string) *shard[T] {
	return &t.shards[maphash.String(t.seed, name)%numShards]
}

// Get returns name's state, or nil.
func (t *Table[T]) Get(name string) *T {
	sh := t.shard(name)
	sh.mu.RLock()
	v := sh.m[name]
	sh.mu.RUnlock()
	return v
}

// GetOrCreate returns name's state, creating it with create when absent.
// create runs under the shard's lock and gets a copy of name that the
// table keeps, so the caller's string (often a slice of a request) is not
// retained.
func (t *Table[T]) GetOrCreate(name string, create func(name string) *T) *T {
	if v := t.Get(name); v != nil {
		return v
	}
	sh := t.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v := sh.m[name]; v != nil {
		return v
	}
	name = strings.Clone(name)
	v := create(name)
	sh.m[name] = v
	return v
}

// Put stores v as name's state, replacing any.
func (t *Table[T]) Put(name string, v *T) {
	sh := t.shard(name)
	sh.mu.Lock()
	sh.m[name] = v
	sh.mu.Unlock()
}

// Snapshot returns every state in the table, in no particular order. The
// table's locks are not held when it returns.
func (t *Table[T]) Snapshot() []*T {
	var out []*T
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, v := range sh.m {
			out = append(out, v)
		}
		sh.mu.RUnlock()
	}
	return out
}

// NewEpoch draws a random non-zero epoch.
func NewEpoch() event.Epoch {
	for {
		if v := rand.Uint64(); v != 0 {
			return event.Epoch(v)
		}
	}
}
