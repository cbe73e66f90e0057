package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/examples/internal/demotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTicker runs `ticker 24` as the README says and reads what the Go
// service printed: 24 ticks, in offset order per symbol with no hole.
func TestTicker(t *testing.T) {
	_, out := demotest.Start(t, example, "24")
	ticks := func(lines []string) []string {
		var got []string
		for _, l := range lines {
			if strings.Contains(l, " avg10 ") {
				got = append(got, l)
			}
		}
		return got
	}
	lines := ticks(out.Wait(t, "24 ticks", 20*time.Second, func(lines []string) bool { return len(ticks(lines)) >= 24 }))
	next := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("tick line %q", l)
		}
		off, err := strconv.Atoi(strings.TrimPrefix(f[4], "#"))
		if err != nil {
			t.Fatalf("tick line %q: %v", l, err)
		}
		if next[f[0]] == 0 {
			next[f[0]] = 1
		}
		if off != next[f[0]] {
			t.Fatalf("%s: offset %d, want %d (line %q)", f[0], off, next[f[0]], l)
		}
		next[f[0]]++
	}
	for _, s := range symbols {
		// Each round publishes all three; topics interleave freely.
		if next[s] < 7 {
			t.Errorf("%s: %d ticks of 24, want about a third", s, next[s]-1)
		}
	}
	if len(lines) != 24 {
		t.Errorf("%d tick lines, want 24", len(lines))
	}
}
