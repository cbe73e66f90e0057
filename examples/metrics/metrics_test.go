package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
	"github.com/heraldhq/herald/internal/browsertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMetrics runs the example as its README says: the page follows the
// samples live over SSE, in order, and draws them.
func TestMetrics(t *testing.T) {
	b := browsertest.Start(t)
	n, _ := demotest.Start(t, example)
	p := b.Open(t, "metrics", n.Page)
	p.Until("four samples over SSE", 10*time.Second, `window.samples && window.samples.length >= 4 && document.getElementById('status').textContent === 'live over sse'`)
	seqs := browsertest.Eval[[]int](p, 5*time.Second, `window.samples.map((s) => s.seq)`)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("samples %v: not consecutive", seqs)
		}
	}
	p.Until("the chart", time.Second, `document.getElementById('line').points.length >= 4`)
	p.Screenshot("metrics")
	if errs := p.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %v", errs)
	}
}
