// Package histogram is a small log-linear latency histogram in the spirit of
// HdrHistogram: values below 128 are counted exactly, larger values fall into
// one of 128 equal buckets per power of two, so any recorded value is known
// to within 1/128 (< 0.8%) and the midpoint reported for a bucket is within
// 0.4% of every value in it.
//
// Record is lock-free (atomic adds), so many goroutines can share one
// Histogram; per-worker histograms can also be combined with Merge. The zero
// value is not usable: call New.
package histogram

import (
	"math"
	"math/bits"
	"sync/atomic"
)

const (
	subBits    = 7                // mantissa bits kept below the leading one
	subBuckets = 1 << subBits     // buckets per power of two (and exact values below it)
	maxExp     = 64 - subBits - 1 // largest shift, for values with bit 63 set
	numBuckets = (maxExp + 2) * subBuckets
)

// Histogram counts uint64 values (typically nanoseconds) in log-linear
// buckets. All methods are safe for concurrent use; a snapshot taken while
// Record runs may miss the values being recorded.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64 // wraps after ~584 years of summed nanoseconds
	min    atomic.Uint64 // stored as ^min so that the zero value means "none"
	max    atomic.Uint64
}

// New returns an empty histogram.
func New() *Histogram { return new(Histogram) }

// index maps a value to its bucket.
func index(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // shift that leaves subBits+1 significant bits
	return (e+1)*subBuckets + int(v>>uint(e)) - subBuckets
}

// bounds returns the lowest and highest value of bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i)
	}
	e := uint(i/subBuckets - 1)
	m := uint64(i%subBuckets + subBuckets)
	lo = m << e
	return lo, lo + (uint64(1) << e) - 1
}

// Record counts one value.
func (h *Histogram) Record(v uint64) {
	h.counts[index(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.min.Load() // ^min
		if ^v <= cur || h.min.CompareAndSwap(cur, ^v) {
			break
		}
	}
}

// RecordInt counts one value, clamping negative values to zero (a clock
// step can make a measured latency negative).
func (h *Histogram) RecordInt(v int64) {
	if v < 0 {
		v = 0
	}
	h.Record(uint64(v))
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max is the largest value recorded (exact), or 0 when empty.
func (h *Histogram) Max() uint64 { return h.max.Load() }

// Min is the smallest value recorded (exact), or 0 when empty.
func (h *Histogram) Min() uint64 {
	if h.total.Load() == 0 {
		return 0
	}
	return ^h.min.Load()
}

// Mean is the exact mean of the values recorded, or 0 when empty.
func (h *Histogram) Mean() float64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values lie: the midpoint of the bucket holding the value of rank
// ceil(q*count), clamped to the exact min and max. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) uint64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	rank = min(rank, n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bounds(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Merge adds every value counted in o to h. o may be read concurrently
// with its Record calls; h may be in use by Record.
func (h *Histogram) Merge(o *Histogram) {
	if o.total.Load() == 0 {
		return
	}
	var n uint64
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
			n += c
		}
	}
	h.total.Add(n)
	h.sum.Add(o.sum.Load())
	h.mergeMinMax(o.Min(), o.Max())
}

func (h *Histogram) mergeMinMax(lo, hi uint64) {
	for {
		cur := h.max.Load()
		if hi <= cur || h.max.CompareAndSwap(cur, hi) {
			break
		}
	}
	for {
		cur := h.min.Load()
		if ^lo <= cur || h.min.CompareAndSwap(cur, ^lo) {
			break
		}
	}
}

// Snapshot is a compact, serializable form of a histogram: only the
// non-empty buckets. It lets separate processes merge their histograms.
type Snapshot struct {
	Buckets [][2]uint64 `json:"buckets"` // (bucket index, count) pairs
	Sum     uint64      `json:"sum"`
	Min     uint64      `json:"min"`
	Max     uint64      `json:"max"`
}

// Snapshot returns the compact form of h.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Sum: h.sum.Load(), Min: h.Min(), Max: h.Max()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// MergeSnapshot adds the values of a snapshot to h. Bucket indexes out of
// range are ignored.
func (h *Histogram) MergeSnapshot(s Snapshot) {
	var n uint64
	for _, b := range s.Buckets {
		if b[0] >= numBuckets {
			continue
		}
		h.counts[b[0]].Add(b[1])
		n += b[1]
	}
	if n == 0 {
		return
	}
	h.total.Add(n)
	h.sum.Add(s.Sum)
	h.mergeMinMax(s.Min, s.Max)
}
