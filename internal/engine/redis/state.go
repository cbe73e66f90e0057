package redis

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/heraldhq/herald/internal/hub"
)

// This file is the engine's hub.StateStore: each space is a hash of its
// keys and values beside a sorted set of its keys (all scored 0, so in
// bytewise order) for ScanState, both tagged {space} so that one script
// sees both in a Cluster:
//
//	<prefix>:{<space>}:sh   hash: key -> value
//	<prefix>:{<space>}:sz   sorted set: keys

// A ScanState page holds at most scanPageEntries entries, and stops at the
// first entry that brings it to scanPageBytes.
const (
	scanPageEntries = 256
	scanPageBytes   = 1 << 20
)

var _ hub.StateStore = (*Engine)(nil)

// SharedState reports that other processes (the other nodes on this
// Redis) share the store: consumers that keep state in memory, consumer
// groups, then check their writes against each other's (package group's
// shared mode).
func (e *Engine) SharedState() bool { return true }

// LoadState returns the value of key in space; see hub.StateStore.
func (e *Engine) LoadState(ctx context.Context, space, key string) ([]byte, bool, error) {
	if err := hub.CheckLoadState(ctx, space, key); err != nil {
		return nil, false, err
	}
	v, err := e.client.Do(ctx, e.client.B().Hget().Key(e.key(space, "sh")).Field(key).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis load state %s: %w", space, classify(err))
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// ScanState calls fn for the keys of space that start with prefix; see
// hub.StateStore. Each page is read by one script, and fn runs between
// pages.
func (e *Engine) ScanState(ctx context.Context, space, prefix string, fn func(key string, value []byte) bool) error {
	if err := hub.CheckScanState(ctx, space, prefix); err != nil {
		return err
	}
	keys := []string{e.key(space, "sh"), e.key(space, "sz")}
	return hub.ScanStatePages(ctx, func(after string) ([]hub.StateEntry, bool, error) {
		out, err := scanStateScript.Exec(ctx, e.client, keys, []string{prefix, after, strconv.Itoa(scanPageEntries), strconv.Itoa(scanPageBytes)}).ToArray()
		if err != nil {
			return nil, false, fmt.Errorf("redis scan state %s: %w", space, classify(err))
		}
		if len(out) == 0 {
			return nil, false, fmt.Errorf("redis scan state %s: empty answer", space)
		}
		more, _ := out[0].AsInt64()
		entries := make([]hub.StateEntry, 0, (len(out)-1)/2)
		for i := 1; i+1 < len(out); i += 2 {
			k, err := out[i].ToString()
			if err != nil {
				return nil, false, err
			}
			v, err := out[i+1].AsBytes()
			if err != nil {
				return nil, false, err
			}
			if v == nil {
				v = []byte{}
			}
			entries = append(entries, hub.StateEntry{Key: k, Value: v})
		}
		return entries, more == 1, nil
	}, fn)
}

// ApplyState applies ops to space atomically, as one script: every check,
// then every write; see hub.StateStore.
func (e *Engine) ApplyState(ctx context.Context, space string, ops []hub.StateOp) error {
	if err := hub.CheckApplyState(ctx, space, ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	args := make([]string, 0, 4*len(ops))
	for i := range ops {
		op := &ops[i]
		flags := make([]byte, 0, 3)
		if op.Check {
			flags = append(flags, 'c')
			if op.Expect == nil {
				flags = append(flags, 'n')
			}
		}
		switch {
		case op.Set:
			flags = append(flags, 's')
		case op.Delete:
			flags = append(flags, 'd')
		}
		args = append(args, string(flags), op.Key, string(op.Expect), string(op.Value))
	}
	// Once sent, the script runs to the end whatever happens to ctx.
	out, err := applyStateScript.Exec(context.WithoutCancel(ctx), e.client, []string{e.key(space, "sh"), e.key(space, "sz")}, args).ToArray()
	if err != nil {
		return fmt.Errorf("redis apply state to %s: %w", space, classify(err))
	}
	if len(out) > 0 {
		k, _ := out[0].ToString()
		return fmt.Errorf("redis apply state to %s: %w: key %q", space, hub.ErrStateConflict, k)
	}
	return nil
}
