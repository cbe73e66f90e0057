package group

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// A group's state lives in the engine's hub.StateStore, so that it
// survives what the topics survive. Two kinds of space:
//
//	registrySpace ("groups"): one key per group, its name; the value is
//	    jsonStored: its settings, when it was created and its start
//	    position in each topic it began with. A group exists when its key
//	    does. One write creates the entry whole (in shared mode on the
//	    condition that it is absent), so that of nodes creating a group at
//	    once one wins, with its settings and its start, and the others
//	    write nothing (Manager.put).
//	"group.NAME": the group's position and leases:
//	    "p/TOPIC"        the committed position in TOPIC: {"e": epoch,
//	                     "f": floor}; every offset up to the floor is done
//	                     (acked or dead-lettered)
//	    "a/TOPIC/LO"     a span of done offsets above the floor, LO to the
//	                     value (16 hex digits each)
//	    "f/TOPIC/OFF"    an event in flight (jsonLease): its epoch, delivery
//	                     count, current delivery id, member, and until when
//	                     it is leased (member set) or waits for redelivery
//	    "c"              counters (jsonCounters)
//
// The in-memory state changes first, under the group's lock, and each
// change queues its writes; the writes are applied in order, many changes
// to one ApplyState (commit.go), and a call returns once its writes are
// stored. So the store always holds a state the group went through. An
// ack writes the new floor or span before deleting the lease, so a crash
// between two ApplyStates of one long change never makes an acked event
// look undelivered. Spans and leases at or below the floor, or of another
// epoch than the position's, are leftovers and ignored when loading.
//
// Events read but not yet delivered, and events held back by per-key
// ordering, are not stored: after a restart they are read again from the
// floor, skipping done spans and leases.

const (
	registrySpace = "groups"
	keyCounters   = "c"
	prefixPos     = "p/"
	prefixSpan    = "a/"
	prefixLease   = "f/"
)

func spaceOf(name string) string { return spacePrefix + name }

func offKey(prefix, topic string, off uint64) string {
	return prefix + topic + "/" + hex16(off)
}

func hex16(v uint64) string {
	s := strconv.FormatUint(v, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// parseOffKey splits "TOPIC/OFF" (a key without its prefix).
func parseOffKey(rest string) (string, uint64, bool) {
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", 0, false
	}
	off, err := strconv.ParseUint(rest[i+1:], 16, 64)
	return rest[:i], off, err == nil
}

// jsonStored is a registry entry. Start holds the positions a group
// created them began at, by topic; a topic whose "p/" key is absent is at
// its start position (entries written before Start existed have none:
// their creators wrote every "p/" key first).
type jsonStored struct {
	Config  Config             `json:"config"`
	Created time.Time          `json:"created"`
	Start   map[string]jsonPos `json:"start,omitempty"`
}

type jsonPos struct {
	E string `json:"e"`
	F uint64 `json:"f"`
}

type jsonLease struct {
	E      string `json:"e"`
	N      int    `json:"n"`
	ID     string `json:"id"`
	Member string `json:"m,omitempty"`
	Until  int64  `json:"u"` // unix ms
}

type jsonCounters struct {
	Redelivered  uint64 `json:"r,omitempty"`
	DeadLettered uint64 `json:"d,omitempty"`
	EpochResets  uint64 `json:"x,omitempty"`
	Trimmed      uint64 `json:"t,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the types above always encode
	}
	return b
}

func setOp(key string, v []byte) hub.StateOp { return hub.StateOp{Key: key, Set: true, Value: v} }
func delOp(key string) hub.StateOp           { return hub.StateOp{Key: key, Delete: true} }

func posOp(t *topicState) hub.StateOp {
	return setOp(prefixPos+t.name, mustJSON(jsonPos{E: t.epoch.String(), F: t.floor}))
}

func leaseOp(l *lease) hub.StateOp {
	j := jsonLease{E: l.t.epoch.String(), N: l.n, ID: l.id, Until: l.at.UnixMilli()}
	if l.state == stateLeased {
		j.Member = l.member
	}
	return setOp(offKey(prefixLease, l.t.name, l.off), mustJSON(j))
}

func (s *state) countersOp() hub.StateOp {
	return setOp(keyCounters, mustJSON(jsonCounters{
		Redelivered: s.redelivered, DeadLettered: s.deadLettered, EpochResets: s.epochResets, Trimmed: s.trimmed,
	}))
}

// stored is what load read of a group's space.
type stored struct {
	pos      map[string]jsonPos
	spans    map[string][]span
	leases   map[string]map[uint64]jsonLease
	counters jsonCounters
}

// loadSpace reads a group's space.
func loadSpace(ctx context.Context, store hub.StateStore, space string) (*stored, error) {
	st := &stored{pos: map[string]jsonPos{}, spans: map[string][]span{}, leases: map[string]map[uint64]jsonLease{}}
	var bad error
	err := store.ScanState(ctx, space, "", func(key string, v []byte) bool {
		switch {
		case key == keyCounters:
			if err := json.Unmarshal(v, &st.counters); err != nil {
				bad = fmt.Errorf("key %q: %w", key, err)
			}
		case strings.HasPrefix(key, prefixPos):
			var p jsonPos
			if err := json.Unmarshal(v, &p); err != nil {
				bad = fmt.Errorf("key %q: %w", key, err)
				return false
			}
			st.pos[key[len(prefixPos):]] = p
		case strings.HasPrefix(key, prefixSpan):
			topic, lo, ok := parseOffKey(key[len(prefixSpan):])
			hi, err := strconv.ParseUint(string(v), 16, 64)
			if !ok || err != nil || hi < lo {
				bad = fmt.Errorf("key %q: a malformed span", key)
				return false
			}
			st.spans[topic] = append(st.spans[topic], span{lo, hi})
		case strings.HasPrefix(key, prefixLease):
			topic, off, ok := parseOffKey(key[len(prefixLease):])
			var l jsonLease
			if err := json.Unmarshal(v, &l); !ok || err != nil {
				bad = fmt.Errorf("key %q: a malformed lease", key)
				return false
			}
			if st.leases[topic] == nil {
				st.leases[topic] = map[uint64]jsonLease{}
			}
			st.leases[topic][off] = l
		}
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", space, err)
	}
	return st, nil
}

// span is a run of done offsets, lo to hi inclusive.
type span struct{ lo, hi uint64 }

// spans is a sorted set of disjoint, non-adjacent spans.
type spans []span

// contains reports whether off is in a span.
func (s spans) contains(off uint64) bool {
	i := s.search(off)
	return i < len(s) && s[i].lo <= off
}

// search returns the index of the first span whose hi is ≥ off.
func (s spans) search(off uint64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := (lo + hi) / 2
		if s[m].hi < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// add inserts lo..hi, which may overlap or touch spans of the set, and
// returns the spans it merged with (removed) and the span that now holds
// it.
func (s *spans) add(lo, hi uint64) (removed []span, merged span) {
	set := *s
	i := set.search(lo - 1) // the first span ending at lo-1 or later
	merged = span{lo, hi}
	j := i
	for j < len(set) && set[j].lo <= hi+1 {
		j++
	}
	for k := i; k < j; k++ {
		removed = append(removed, set[k])
		merged.lo = min(merged.lo, set[k].lo)
		merged.hi = max(merged.hi, set[k].hi)
	}
	out := make(spans, 0, len(set)-(j-i)+1)
	out = append(append(append(out, set[:i]...), merged), set[j:]...)
	*s = out
	return removed, merged
}

// markDone records off of t as done and returns the writes: the floor
// moves up over a contiguous run, or a span grows.
func (t *topicState) markDone(lo, hi uint64) []hub.StateOp {
	removed, merged := t.done.add(lo, hi)
	ops := make([]hub.StateOp, 0, 1+len(removed))
	keep := ""
	// The new floor or span first, the spans it swallowed after: a crash
	// between two ApplyStates then leaves more done, never less.
	if merged.lo == t.floor+1 {
		t.floor = merged.hi
		t.done = t.done[1:]
		ops = append(ops, posOp(t))
	} else {
		keep = offKey(prefixSpan, t.name, merged.lo)
		ops = append(ops, setOp(keep, []byte(hex16(merged.hi))))
	}
	for _, r := range removed {
		if k := offKey(prefixSpan, t.name, r.lo); k != keep {
			ops = append(ops, delOp(k))
		}
	}
	return ops
}

// epochOf parses a stored epoch.
func epochOf(s string) event.Epoch {
	e, _ := event.ParseEpoch(s)
	return e
}
