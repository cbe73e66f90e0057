package histogram

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// exactQuantile is the value of rank ceil(q*n) in sorted vs.
func exactQuantile(sorted []uint64, q float64) uint64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestIndexBounds(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 1<<20 + 12345, 1 << 40, math.MaxUint64}
	for _, v := range values {
		i := index(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("index(%d) = %d, out of [0,%d)", v, i, numBuckets)
		}
		lo, hi := bounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d with bounds [%d,%d]", v, i, lo, hi)
		}
		if lo > 0 && float64(hi-lo)/float64(lo) > 1.0/128 {
			t.Errorf("bucket %d [%d,%d] wider than 1/128", i, lo, hi)
		}
	}
	// Buckets tile the number line: each starts right after the previous.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bounds(i - 1)
		lo, _ := bounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestQuantileAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		gen  func() uint64
	}{
		{"uniform 0..10ms", func() uint64 { return r.Uint64N(10_000_000) }},
		{"exponential mean 2ms", func() uint64 { return uint64(r.ExpFloat64() * 2e6) }},
		{"lognormal", func() uint64 { return uint64(math.Exp(r.NormFloat64()*1.5 + 13)) }},
		{"small integers", func() uint64 { return r.Uint64N(200) }},
		{"bimodal", func() uint64 {
			if r.IntN(100) < 3 {
				return 500_000_000 + r.Uint64N(100_000_000)
			}
			return 100_000 + r.Uint64N(50_000)
		}},
	}
	quantiles := []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			h := New()
			vs := make([]uint64, 200_000)
			for i := range vs {
				vs[i] = d.gen()
				h.Record(vs[i])
			}
			slices.Sort(vs)
			if got, want := h.Count(), uint64(len(vs)); got != want {
				t.Fatalf("Count() = %d, want %d", got, want)
			}
			if got, want := h.Max(), vs[len(vs)-1]; got != want {
				t.Errorf("Max() = %d, want %d", got, want)
			}
			if got, want := h.Min(), vs[0]; got != want {
				t.Errorf("Min() = %d, want %d", got, want)
			}
			for _, q := range quantiles {
				got, want := h.Quantile(q), exactQuantile(vs, q)
				if diff := math.Abs(float64(got) - float64(want)); diff > 0.01*float64(want) {
					t.Errorf("Quantile(%v) = %d, want %d (±1%%)", q, got, want)
				}
			}
			var sum float64
			for _, v := range vs {
				sum += float64(v)
			}
			if got, want := h.Mean(), sum/float64(len(vs)); math.Abs(got-want) > 1e-6*want {
				t.Errorf("Mean() = %v, want %v", got, want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	h := New()
	if h.Count() != 0 || h.Quantile(0.5) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 {
		t.Fatalf("empty histogram reports values: count %d p50 %d max %d min %d", h.Count(), h.Quantile(0.5), h.Max(), h.Min())
	}
	h.RecordInt(-5)
	if h.Count() != 1 || h.Max() != 0 {
		t.Fatalf("RecordInt(-5): count %d max %d, want 1, 0", h.Count(), h.Max())
	}
}

func TestMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b, all := New(), New(), New()
	var vs []uint64
	for i := range 100_000 {
		v := uint64(r.ExpFloat64() * 1e6)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
		vs = append(vs, v)
	}
	merged := New()
	merged.Merge(a)
	merged.Merge(b)
	viaSnapshot := New()
	viaSnapshot.MergeSnapshot(a.Snapshot())
	viaSnapshot.MergeSnapshot(b.Snapshot())
	slices.Sort(vs)
	for _, h := range []*Histogram{merged, viaSnapshot} {
		if got, want := h.Count(), all.Count(); got != want {
			t.Fatalf("merged Count() = %d, want %d", got, want)
		}
		if got, want := h.Min(), vs[0]; got != want {
			t.Errorf("merged Min() = %d, want %d", got, want)
		}
		if got, want := h.Max(), vs[len(vs)-1]; got != want {
			t.Errorf("merged Max() = %d, want %d", got, want)
		}
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			if got, want := h.Quantile(q), all.Quantile(q); got != want {
				t.Errorf("merged Quantile(%v) = %d, want %d", q, got, want)
			}
		}
		if got, want := h.Mean(), all.Mean(); math.Abs(got-want) > 1e-9*want {
			t.Errorf("merged Mean() = %v, want %v", got, want)
		}
	}
	// Merging an empty histogram changes nothing, min included.
	merged.Merge(New())
	if got, want := merged.Min(), vs[0]; got != want {
		t.Errorf("Min() after merging empty = %d, want %d", got, want)
	}
}

func TestConcurrentRecord(t *testing.T) {
	h := New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10_000 {
				h.Record(uint64(g*10_000 + i))
			}
		})
	}
	wg.Wait()
	if got, want := h.Count(), uint64(80_000); got != want {
		t.Fatalf("Count() = %d, want %d", got, want)
	}
	if got, want := h.Max(), uint64(79_999); got != want {
		t.Errorf("Max() = %d, want %d", got, want)
	}
	if got := h.Min(); got != 0 {
		t.Errorf("Min() = %d, want 0", got)
	}
}

func BenchmarkRecord(b *testing.B) {
	h := New()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(uint64(i) * 977)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	h := New()
	b.RunParallel(func(pb *testing.PB) {
		v := uint64(1)
		for pb.Next() {
			v = v*6364136223846793005 + 1442695040888963407
			h.Record(v >> 40)
		}
	})
}
