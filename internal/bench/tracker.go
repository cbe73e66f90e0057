package bench

import (
	"math/bits"
	"sync/atomic"
)

// seqSet is a set of sequence numbers 1..n as a bitset. Add is safe for
// concurrent use (the publisher's workers share one); the readers run after
// the writers have stopped.
type seqSet struct {
	words []atomic.Uint64
}

// newSeqSet returns an empty set able to hold 1..n.
func newSeqSet(n uint64) *seqSet {
	return &seqSet{words: make([]atomic.Uint64, n/64+1)}
}

// Add puts seq into the set; a seq out of range is ignored.
func (s *seqSet) Add(seq uint64) {
	if w := seq / 64; w < uint64(len(s.words)) {
		s.words[w].Or(1 << (seq % 64))
	}
}

// Len is the number of elements.
func (s *seqSet) Len() uint64 {
	var n int
	for i := range s.words {
		n += bits.OnesCount64(s.words[i].Load())
	}
	return uint64(n)
}

// Tracker follows the sequence numbers one subscriber receives and counts
// duplicates and events that arrive after a higher sequence number from
// the same publisher (out of order). Sequence numbers are unique across
// publishers, but only one publisher's events have an order the server
// must keep: two publishers' requests in flight at once may be stored
// either way. Lost events are counted at the end against the set of
// sequence numbers the publisher had acknowledged. A Tracker is owned by
// one goroutine; read it only after that goroutine has stopped.
type Tracker struct {
	seen       []uint64 // bitset of sequence numbers received, 1..size
	size       uint64
	maxSeq     []uint64 // per publisher, highest sequence number received
	received   uint64   // distinct sequence numbers received
	duplicates uint64
	outOfOrder uint64
	invalid    uint64 // sequence numbers outside 1..size
}

// NewTracker returns a tracker for sequence numbers 1..size from
// publishers 0..publishers-1.
func NewTracker(size uint64, publishers int) *Tracker {
	return &Tracker{seen: make([]uint64, size/64+1), size: size, maxSeq: make([]uint64, publishers)}
}

// Observe records the arrival of seq from publisher pub and reports whether
// it is new (not a duplicate and in range).
func (t *Tracker) Observe(pub int, seq uint64) bool {
	if seq == 0 || seq > t.size || pub < 0 || pub >= len(t.maxSeq) {
		t.invalid++
		return false
	}
	w := seq / 64
	bit := uint64(1) << (seq % 64)
	if t.seen[w]&bit != 0 {
		t.duplicates++
		return false
	}
	t.seen[w] |= bit
	t.received++
	if seq < t.maxSeq[pub] {
		t.outOfOrder++
	} else {
		t.maxSeq[pub] = seq
	}
	return true
}

// Received is the number of distinct sequence numbers received.
func (t *Tracker) Received() uint64 { return t.received }

// Duplicates is the number of arrivals of a sequence number already seen.
func (t *Tracker) Duplicates() uint64 { return t.duplicates }

// OutOfOrder is the number of arrivals below the highest sequence number
// seen before from the same publisher (each late event counts once, however
// late it is).
func (t *Tracker) OutOfOrder() uint64 { return t.outOfOrder }

// Invalid is the number of arrivals with a sequence number or publisher
// out of range.
func (t *Tracker) Invalid() uint64 { return t.invalid }

// Lost is the number of sequence numbers in want that were not received.
func (t *Tracker) Lost(want *seqSet) uint64 {
	var lost int
	for i := range want.words {
		w := want.words[i].Load()
		var s uint64
		if i < len(t.seen) {
			s = t.seen[i]
		}
		lost += bits.OnesCount64(w &^ s)
	}
	return uint64(lost)
}
