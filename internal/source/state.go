package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/hub"
)

// A source's state lives in the engine's hub.StateStore, beside the
// topics it publishes to, so that it survives what they survive: a
// durable engine's restart publishes nothing twice. Two kinds of space:
//
//	registrySpace ("sources"): one key per source, its name; the value is
//	    its settings as JSON (jsonConfig). A source exists when its key
//	    does.
//	"source.NAME": the source's change detection:
//	    "m"          meta (JSON): the fingerprint of the settings it
//	                 belongs to, the generation, the validators of the last
//	                 response (ETag, Last-Modified), the count of polls
//	                 that published, the whole body's hash (whole)
//	    "i/ID"       json-items: an item's mark, its version ("v…") or its
//	                 content's hash ("h…"); "i#HASH" for an id too long
//	    "s/SERIES"   prometheus: a series' value (8 bytes); "s#HASH" for
//	                 a series too long
//
// A poll that found changes publishes them first, each with an
// idempotency key made of the source, the generation, the count of polls
// that published (plus one) and what changed (an item's id and mark), and
// then writes its marks, the meta last. A crash between the two repeats
// the same publish on the next poll, which the engine dedupes (within
// history.dedupe_window); a crash midway through the writes leaves the
// old validators, so the next poll fetches the body again instead of
// being told it did not change.
//
// The generation is drawn when the state is made, and again when the
// settings' fingerprint changes (another URL, topic or mode): the state is
// then discarded and everything is published afresh, under keys the old
// ones cannot collide with.

const (
	registrySpace = "sources"
	spacePrefix   = "source."
	keyMeta       = "m"
	prefixItem    = "i"
	prefixSeries  = "s"
	stateVersion  = 1
)

func spaceOf(name string) string { return spacePrefix + name }

// markKey is the state key of a thing kind ("i", "s") named id: kind/id,
// or kind#hash when that is over the store's key limit.
func markKey(kind, id string) string {
	if len(kind)+1+len(id) > hub.MaxStateKey {
		return kind + "#" + hashOf([]byte(id))
	}
	return kind + "/" + id
}

// meta is a source's "m" key.
type meta struct {
	V            int    `json:"v"`
	FP           string `json:"fp"`
	Gen          string `json:"gen"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	N            uint64 `json:"n"`
	Hash         string `json:"hash,omitempty"`
}

// state is a source's state as its poller holds it between polls.
type state struct {
	meta  meta
	raw   []byte            // meta as stored
	marks map[string]string // state key ("i/…", "s/…") → mark
}

// loadState reads a source's state, or makes a fresh one (a new
// generation, written at once) when there is none or it belongs to other
// settings.
func loadState(ctx context.Context, store hub.StateStore, space, fp string) (*state, error) {
	st := &state{marks: make(map[string]string)}
	v, ok, err := store.LoadState(ctx, space, keyMeta)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	if ok && json.Unmarshal(v, &st.meta) == nil && st.meta.V == stateVersion && st.meta.FP == fp {
		st.raw = v
		err := store.ScanState(ctx, space, "", func(k string, v []byte) bool {
			if k != keyMeta {
				st.marks[k] = string(v)
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
		return st, nil
	}
	if err := hub.ClearState(ctx, store, space); err != nil {
		return nil, err
	}
	var g [4]byte
	rand.Read(g[:])
	st.meta = meta{V: stateVersion, FP: fp, Gen: hex.EncodeToString(g[:])}
	op := st.metaOp()
	if err := store.ApplyState(ctx, space, []hub.StateOp{op}); err != nil {
		return nil, fmt.Errorf("write state: %w", err)
	}
	st.raw = op.Value
	return st, nil
}

// metaOp is the op that writes st's meta.
func (st *state) metaOp() hub.StateOp {
	b, _ := json.Marshal(&st.meta)
	return hub.StateOp{Key: keyMeta, Set: true, Value: b}
}

// applyChunked applies ops in as many calls as the store's limits need,
// in order, each call checking that the meta is still raw, the one the
// ops were computed against: a state written meanwhile by another node
// (shared.go) fails the call with hub.ErrStateConflict. The meta is
// written last, so the calls before a failed one are harmless.
func applyChunked(ctx context.Context, store hub.StateStore, space string, raw []byte, ops []hub.StateOp) error {
	check := hub.StateOp{Key: keyMeta, Check: true, Expect: raw}
	for len(ops) > 0 {
		n, size := 0, len(raw)
		for n < len(ops) && n < hub.MaxStateOps-1 {
			s := len(ops[n].Key) + len(ops[n].Value)
			if n > 0 && size+s > hub.MaxStateApplyBytes {
				break
			}
			size += s
			n++
		}
		if err := store.ApplyState(ctx, space, append([]hub.StateOp{check}, ops[:n]...)); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// errCorrupt is wrapped by stored settings that cannot be read.
var errCorrupt = errors.New("stored source is not readable")
