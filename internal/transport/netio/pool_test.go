package netio

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds or a few seconds passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// idle reports whether p has no worker and an empty queue.
func (p *Pool[T]) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active == 0 && p.head == len(p.queue)
}

func TestPoolRunsEveryItemOnce(t *testing.T) {
	tests := []struct {
		name       string
		workers    int
		submitters int
		items      int
		wantMax    int // concurrency bound
	}{
		{"one item", 1, 1, 1, 1},
		{"one worker", 1, 4, 1000, 1},
		{"zero workers means one", 0, 2, 200, 1},
		{"four workers", 4, 8, 5000, 4},
		{"more workers than items", 64, 1, 10, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := make([]atomic.Int32, tt.items)
			var running, peak atomic.Int32
			var done sync.WaitGroup
			done.Add(tt.items)
			p := NewPool(tt.workers, func(i int) {
				n := running.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				runs[i].Add(1)
				running.Add(-1)
				done.Done()
			})
			var submit sync.WaitGroup
			for s := range tt.submitters {
				submit.Go(func() {
					for i := s; i < tt.items; i += tt.submitters {
						p.Submit(i)
					}
				})
			}
			submit.Wait()
			done.Wait()
			for i := range runs {
				if got := runs[i].Load(); got != 1 {
					t.Errorf("item %d ran %d times, want 1", i, got)
				}
			}
			if got := int(peak.Load()); got > tt.wantMax {
				t.Errorf("peak concurrency %d, want at most %d", got, tt.wantMax)
			}
			waitFor(t, "the workers to exit", p.idle)
			goleak.VerifyNone(t)
		})
	}
}

func TestPoolBoundsWorkers(t *testing.T) {
	const workers, items = 3, 50
	gate := make(chan struct{})
	var running atomic.Int32
	var done sync.WaitGroup
	done.Add(items)
	p := NewPool(workers, func(int) {
		running.Add(1)
		<-gate
		running.Add(-1)
		done.Done()
	})
	for i := range items {
		p.Submit(i)
	}
	// Submit decides whether to start a worker before it returns: once
	// the submits are done, no further worker can start.
	p.mu.Lock()
	started := p.active
	p.mu.Unlock()
	if started != workers {
		t.Errorf("%d workers started, want %d", started, workers)
	}
	waitFor(t, "the workers to start", func() bool { return running.Load() == workers })
	close(gate)
	done.Wait()
	waitFor(t, "the workers to exit", p.idle)
	goleak.VerifyNone(t)
}

func TestPoolRunsInOrder(t *testing.T) {
	const items = 1000
	var got []int
	var done sync.WaitGroup
	done.Add(items)
	p := NewPool(1, func(i int) { got = append(got, i); done.Done() })
	for i := range items {
		p.Submit(i)
	}
	done.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d ran as number %d, want FIFO order", v, i)
		}
	}
}

func TestPoolQueueAfterBurst(t *testing.T) {
	tests := []struct {
		name     string
		items    int
		wantKept bool // the emptied queue keeps its slice
	}{
		{"small burst keeps the queue", 100, true},
		{"big burst releases it", maxIdleQueue + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			var done sync.WaitGroup
			done.Add(tt.items + 1)
			p := NewPool(1, func(i int) {
				if i < 0 {
					<-gate // hold the only worker while the queue fills
				}
				done.Done()
			})
			p.Submit(-1)
			for i := range tt.items {
				p.Submit(i)
			}
			close(gate)
			done.Wait()
			waitFor(t, "the worker to exit", p.idle)
			p.mu.Lock()
			kept := p.queue != nil
			p.mu.Unlock()
			if kept != tt.wantKept {
				t.Errorf("queue kept = %v, want %v", kept, tt.wantKept)
			}
		})
	}
}

func TestWriters(t *testing.T) {
	def := max(1, runtime.GOMAXPROCS(0)-1)
	for _, tc := range []struct{ n, want int }{
		{n: 0, want: def},
		{n: -3, want: def},
		{n: 1, want: 1},
		{n: 7, want: 7},
	} {
		if got := Writers(tc.n); got != tc.want {
			t.Errorf("Writers(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
