package topics

import (
	"fmt"
	"sync"
	"testing"
)

func TestGetOrCreateOncePerName(t *testing.T) {
	tbl := NewTable[int]()
	var mu sync.Mutex
	created := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				name := fmt.Sprintf("t%d", i)
				tbl.GetOrCreate(name, func(n string) *int {
					mu.Lock()
					created[n]++
					mu.Unlock()
					v := i
					return &v
				})
			}
		}()
	}
	wg.Wait()
	for name, n := range created {
		if n != 1 {
			t.Errorf("%s created %d times", name, n)
		}
	}
	if got := len(tbl.Snapshot()); got != 100 {
		t.Errorf("Snapshot has %d entries, want 100", got)
	}
	if v := tbl.Get("t7"); v == nil || *v != 7 {
		t.Errorf("Get(t7) = %v", v)
	}
	if tbl.Get("none") != nil {
		t.Error("Get of an unknown name is not nil")
	}
	tbl.Put("t7", new(int))
	if *tbl.Get("t7") != 0 {
		t.Error("Put did not replace")
	}
}

func TestNewEpoch(t *testing.T) {
	seen := map[uint64]bool{}
	for i := 0; i < 1000; i++ {
		e := NewEpoch()
		if e == 0 || seen[uint64(e)] {
			t.Fatalf("epoch %v is zero or repeated", e)
		}
		seen[uint64(e)] = true
	}
}
