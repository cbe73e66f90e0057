package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/event"
)

// StateStore keeps consumers' state in the engine's own store, beside the
// topics, so that it survives exactly what the topics survive: lost when a
// memory engine's process ends, kept on disk by the durable engine, shared
// by the nodes of a networked engine. A consumer's position then never
// outlives, or is outlived by, the history it points into.
//
// What goes there is the bookkeeping of herald's own consumers: consumer
// groups (committed positions, leases, delivery attempts), outbound
// webhooks (each endpoint's position), bridges (their positions in the
// systems they mirror) and source pollers (ETags, hashes of the items seen,
// for change detection). Events go to topics, never here.
//
// State is kept in spaces, one per consumer (a group, an endpoint, a
// poller), named like topics (event.ValidateTopic). A space maps keys to
// values; keys are strings of any bytes and sort bytewise. Each call
// concerns one space: there is no transaction across spaces, nor with
// Append.
//
// None is needed. A consumer that must both publish (to a dead-letter
// topic, say) and change its state publishes first, with an idempotency key
// derived from the change (group, position, attempt), then calls
// ApplyState. A crash between the two repeats the publish on retry, which
// the engine dedupes (the retry must come within the dedupe window), and
// the ApplyState's checks refuse to apply the change twice.
//
// Limits, refused with an error wrapping ErrBadInput before anything is
// written: a key is 1 to MaxStateKey bytes (a ScanState prefix at most
// MaxStateKey), a value at most MaxStateValue bytes, and one ApplyState at
// most MaxStateOps ops totalling MaxStateApplyBytes bytes of keys, values
// and expected values.
//
// The memory and durable engines implement it; a Redis engine can run each
// ApplyState as one Lua script (checks, then writes) over a hash per space
// and a sorted set of its keys for ScanState.
type StateStore interface {
	// LoadState returns the value of key in space, and false if there is
	// none. The value is the caller's to keep and change.
	LoadState(ctx context.Context, space, key string) ([]byte, bool, error)
	// ScanState calls fn for every key of space that starts with prefix
	// (every key when prefix is empty), in bytewise order of keys, until
	// fn returns false. fn runs with no engine lock held and may call the
	// store's other methods, and value is fn's to keep. Every key present
	// throughout the scan is visited once, with a value it held during the
	// scan; a key created or deleted meanwhile may or may not be visited;
	// none is visited twice.
	ScanState(ctx context.Context, space, prefix string, fn func(key string, value []byte) bool) error
	// ApplyState applies ops to space atomically: either every check holds
	// and every write is made, or nothing is written and the error wraps
	// ErrStateConflict (naming the first key whose check failed). Checks
	// see space as it was before the call; writes are made in order, so of
	// two writes to one key the last wins. An empty ops writes nothing.
	// A durable engine returns only once the writes are on disk;
	// concurrent calls may share one fsync. Once an engine has started
	// writing, the call completes even if ctx ends.
	ApplyState(ctx context.Context, space string, ops []StateOp) error
}

// StateOp is one step of an ApplyState call on Key: an optional check of
// its value, then at most one write. At least one of Check, Set and Delete
// is set; Set and Delete exclude each other.
type StateOp struct {
	Key string
	// Check makes the whole call conditional on Key's value, before the
	// call, equalling Expect. A nil Expect means Key must be absent; an
	// empty non-nil one matches an empty value.
	Check  bool
	Expect []byte
	// Set stores Value at Key (nil stores an empty value). The store keeps
	// a copy: the caller may reuse Value once the call returns.
	Set   bool
	Value []byte
	// Delete removes Key. Deleting an absent key is not an error.
	Delete bool
}

// Holds reports whether op's check holds for a key whose value is v, or
// which is absent when present is false. An op without Check always holds.
func (op *StateOp) Holds(v []byte, present bool) bool {
	switch {
	case !op.Check:
		return true
	case op.Expect == nil:
		return !present
	default:
		return present && bytes.Equal(v, op.Expect)
	}
}

// The limits of a StateStore, the same on every engine. They keep one call
// within what a networked engine takes in one request.
const (
	MaxStateKey        = 1 << 10 // bytes of a key
	MaxStateValue      = 1 << 20 // bytes of a value
	MaxStateOps        = 1024    // ops of one ApplyState
	MaxStateApplyBytes = 8 << 20 // keys, values and expected values of one ApplyState
)

// ErrStateConflict is wrapped by ApplyState's error when a check failed:
// the state changed since the caller read it. Nothing was written; the
// caller reads the state again and retries, or gives up.
var ErrStateConflict = errors.New("state changed meanwhile")

// CheckLoadState returns why a LoadState call must fail before it reads:
// ctx is done, or an error wrapping ErrBadInput for a space that is not a
// valid space name (space names follow the rules of topic names) or a key
// beyond the limits. Engines call it first.
func CheckLoadState(ctx context.Context, space, key string) error {
	if err := checkStateSpace(ctx, space); err != nil {
		return err
	}
	return checkStateKey(key)
}

// CheckScanState is CheckLoadState for ScanState: a prefix may be empty.
func CheckScanState(ctx context.Context, space, prefix string) error {
	if err := checkStateSpace(ctx, space); err != nil {
		return err
	}
	return checkStatePrefix(prefix)
}

// CheckApplyState is CheckLoadState for ApplyState: it also checks every
// op against the limits and for a malformed op, so that an engine refuses
// the call before it writes anything.
func CheckApplyState(ctx context.Context, space string, ops []StateOp) error {
	if err := checkStateSpace(ctx, space); err != nil {
		return err
	}
	if len(ops) > MaxStateOps {
		return fmt.Errorf("%w: %d state ops, the limit is %d per call", ErrBadInput, len(ops), MaxStateOps)
	}
	total := 0
	for i := range ops {
		op := &ops[i]
		if err := validateStateOp(op); err != nil {
			return fmt.Errorf("state op %d: %w", i, err)
		}
		total += len(op.Key) + len(op.Value) + len(op.Expect)
	}
	if total > MaxStateApplyBytes {
		return fmt.Errorf("%w: state ops of %d bytes, the limit is %d per call", ErrBadInput, total, MaxStateApplyBytes)
	}
	return nil
}

func checkStateSpace(ctx context.Context, space string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := event.ValidateTopic(space); err != nil {
		return fmt.Errorf("%w: state space: %w", ErrBadInput, err)
	}
	return nil
}

func checkStateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty state key", ErrBadInput)
	}
	return checkStatePrefix(key)
}

func checkStatePrefix(prefix string) error {
	if len(prefix) > MaxStateKey {
		return fmt.Errorf("%w: state key of %d bytes, the limit is %d", ErrBadInput, len(prefix), MaxStateKey)
	}
	return nil
}

func validateStateOp(op *StateOp) error {
	if err := checkStateKey(op.Key); err != nil {
		return err
	}
	switch {
	case !op.Check && !op.Set && !op.Delete:
		return fmt.Errorf("%w: key %q: set one of Check, Set, Delete", ErrBadInput, op.Key)
	case op.Set && op.Delete:
		return fmt.Errorf("%w: key %q: Set and Delete together", ErrBadInput, op.Key)
	case op.Value != nil && !op.Set:
		return fmt.Errorf("%w: key %q: Value without Set", ErrBadInput, op.Key)
	case op.Expect != nil && !op.Check:
		return fmt.Errorf("%w: key %q: Expect without Check", ErrBadInput, op.Key)
	case len(op.Value) > MaxStateValue || len(op.Expect) > MaxStateValue:
		return fmt.Errorf("%w: key %q: value of %d bytes, the limit is %d", ErrBadInput, op.Key, max(len(op.Value), len(op.Expect)), MaxStateValue)
	}
	return nil
}

// StateEntry is a key of a state space and its value.
type StateEntry struct {
	Key   string
	Value []byte
}

// ScanStatePages implements ScanState for an engine that reads a space a
// page at a time: page returns, in key order, entries whose keys start
// with the scan's prefix and are greater than after (all of them when after
// is empty, as keys are never empty), and whether more may follow. An
// engine holds its locks only within page, so fn may call the store.
func ScanStatePages(ctx context.Context, page func(after string) ([]StateEntry, bool, error), fn func(key string, value []byte) bool) error {
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, more, err := page(after)
		if err != nil {
			return err
		}
		for _, en := range entries {
			if !fn(en.Key, en.Value) {
				return nil
			}
		}
		if !more || len(entries) == 0 {
			return nil
		}
		after = entries[len(entries)-1].Key
	}
}

// ClearState deletes every key of space, MaxStateOps keys per ApplyState.
// Consumers (groups, sources, webhooks) call it when the thing whose
// state the space holds is deleted.
func ClearState(ctx context.Context, store StateStore, space string) error {
	for {
		var ops []StateOp
		err := store.ScanState(ctx, space, "", func(key string, _ []byte) bool {
			ops = append(ops, StateOp{Key: key, Delete: true})
			return len(ops) < MaxStateOps
		})
		if err != nil {
			return fmt.Errorf("clear %s: %w", space, err)
		}
		if len(ops) == 0 {
			return nil
		}
		if err := store.ApplyState(ctx, space, ops); err != nil {
			return fmt.Errorf("clear %s: %w", space, err)
		}
	}
}

// SharedState reports whether other processes share store: the nodes of
// a networked engine (Redis), whose engine says so with a SharedState
// method. A consumer that keeps state in memory (a cache of its store)
// then checks its writes against the others' and reads their changes
// again; group, webhook and source do.
func SharedState(store StateStore) bool {
	s, ok := store.(interface{ SharedState() bool })
	return ok && s.SharedState()
}

// State returns the engine's StateStore, and false if the engine keeps no
// consumer state (features that need it are then unavailable).
func (h *Hub) State() (StateStore, bool) {
	s, ok := h.eng.(StateStore)
	return s, ok
}

// ReadRegistry reads a registry kept in a space of a store (the
// webhooks', the sources'): its version, at versionKey (nil when there is
// none), and every other entry.
func ReadRegistry(ctx context.Context, store StateStore, space, versionKey string) ([]byte, map[string][]byte, error) {
	return readRegistry(ctx, store, space, versionKey, nil, true)
}

// ReadIfChanged is ReadRegistry for a caller that has seen version seen:
// it reads the entries only when the version moved, and returns a nil map
// when it did not.
func ReadIfChanged(ctx context.Context, store StateStore, space, versionKey string, seen []byte) ([]byte, map[string][]byte, error) {
	return readRegistry(ctx, store, space, versionKey, seen, false)
}

// readRegistry reads the version, then the entries unless the version is
// seen and not always.
func readRegistry(ctx context.Context, store StateStore, space, versionKey string, seen []byte, always bool) ([]byte, map[string][]byte, error) {
	ver, _, err := store.LoadState(ctx, space, versionKey)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s's version: %w", space, err)
	}
	if !always && bytes.Equal(ver, seen) {
		return ver, nil, nil
	}
	entries := make(map[string][]byte)
	err = store.ScanState(ctx, space, "", func(key string, v []byte) bool {
		if key != versionKey {
			entries[key] = v
		}
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", space, err)
	}
	return ver, entries, nil
}

// PollLocked calls sync every period until ctx ends, each time holding
// mu, and skips a tick when mu is held elsewhere (a change in progress
// syncs by itself). A sync's error goes to failed unless ctx has ended.
// It is the body of a goroutine its caller owns and stops with ctx.
func PollLocked(ctx context.Context, period time.Duration, mu *sync.Mutex, sync func(context.Context) error, failed func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !mu.TryLock() {
			continue
		}
		err := sync(ctx)
		mu.Unlock()
		if err != nil && ctx.Err() == nil {
			failed(err)
		}
	}
}
