package bench

import (
	"testing"
)

func TestTracker(t *testing.T) {
	tests := []struct {
		name                          string
		size                          uint64
		acked                         []uint64
		arrivals                      []uint64
		received, lost, dup, ooo, bad uint64
	}{
		{name: "in order", size: 5, acked: []uint64{1, 2, 3, 4, 5}, arrivals: []uint64{1, 2, 3, 4, 5}, received: 5},
		{name: "nothing", size: 3, acked: []uint64{1, 2, 3}, lost: 3},
		{name: "lost middle and tail", size: 6, acked: []uint64{1, 2, 3, 4, 5, 6}, arrivals: []uint64{1, 2, 4, 5}, received: 4, lost: 2},
		{name: "duplicates", size: 3, acked: []uint64{1, 2, 3}, arrivals: []uint64{1, 1, 2, 3, 3, 3}, received: 3, dup: 3},
		{name: "late arrival is out of order, not lost", size: 4, acked: []uint64{1, 2, 3, 4}, arrivals: []uint64{1, 3, 4, 2}, received: 4, ooo: 1},
		{name: "reversed", size: 4, acked: []uint64{1, 2, 3, 4}, arrivals: []uint64{4, 3, 2, 1}, received: 4, ooo: 3},
		{name: "unacked not lost", size: 4, acked: []uint64{1, 2, 4}, arrivals: []uint64{1, 2, 4}, received: 3},
		{name: "unacked but delivered", size: 3, acked: []uint64{1, 3}, arrivals: []uint64{1, 2, 3}, received: 3},
		{name: "out of range", size: 2, acked: []uint64{1, 2}, arrivals: []uint64{0, 1, 2, 3, 1000}, received: 2, bad: 3},
		{name: "across words", size: 200, acked: []uint64{63, 64, 65, 128, 200}, arrivals: []uint64{63, 65, 200, 64}, received: 4, lost: 1, ooo: 1},
		{name: "publishers interleave freely", size: 6, acked: []uint64{1, 2, 3, 4, 5, 6},
			arrivals: []uint64{2, 1001, 4, 1003, 6, 1005}, received: 6},
		{name: "order kept per publisher", size: 6, acked: []uint64{1, 2, 3, 4, 5, 6},
			arrivals: []uint64{1001, 2, 1005, 4, 1003, 6}, received: 6, ooo: 1},
		{name: "publisher out of range", size: 6, acked: []uint64{1}, arrivals: []uint64{1, 5001}, received: 1, bad: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acked := newSeqSet(tt.size)
			for _, s := range tt.acked {
				acked.Add(s)
			}
			if got, want := acked.Len(), uint64(len(tt.acked)); got != want {
				t.Fatalf("acked.Len() = %d, want %d", got, want)
			}
			tr := NewTracker(tt.size, 2)
			for _, a := range tt.arrivals {
				tr.Observe(int(a/1000), a%1000)
			}
			if got := tr.Received(); got != tt.received {
				t.Errorf("Received() = %d, want %d", got, tt.received)
			}
			if got := tr.Lost(acked); got != tt.lost {
				t.Errorf("Lost() = %d, want %d", got, tt.lost)
			}
			if got := tr.Duplicates(); got != tt.dup {
				t.Errorf("Duplicates() = %d, want %d", got, tt.dup)
			}
			if got := tr.OutOfOrder(); got != tt.ooo {
				t.Errorf("OutOfOrder() = %d, want %d", got, tt.ooo)
			}
			if got := tr.Invalid(); got != tt.bad {
				t.Errorf("Invalid() = %d, want %d", got, tt.bad)
			}
		})
	}
}

func TestTrackerObserveReportsNew(t *testing.T) {
	tr := NewTracker(10, 1)
	for _, c := range []struct {
		seq  uint64
		want bool
	}{{1, true}, {1, false}, {3, true}, {2, true}, {11, false}} {
		if got := tr.Observe(0, c.seq); got != c.want {
			t.Errorf("Observe(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
}
