package enginetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
)

// stateTests are the cases of hub.StateStore, run by Run.
var stateTests = []struct {
	name string
	fn   func(*testing.T, hub.StateStore)
}{
	{"LoadMissing", testStateLoadMissing},
	{"SetOverwriteDelete", testStateSetOverwriteDelete},
	{"ScanInKeyOrder", testStateScan},
	{"ScanCallsBack", testStateScanCallsBack},
	{"SpacesIndependent", testStateSpaces},
	{"Atomic", testStateAtomic},
	{"Checks", testStateChecks},
	{"ConcurrentIncrements", testStateIncrements},
	{"Copies", testStateCopies},
	{"Limits", testStateLimits},
	{"CancelledContext", testStateCancelled},
}

// runState runs the StateStore cases on the engines newEngine makes; an
// engine that keeps no state skips them.
func runState(t *testing.T, newEngine Factory) {
	for _, tt := range stateTests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			s, ok := e.(hub.StateStore)
			if !ok {
				t.Skipf("%T keeps no consumer state (does not implement hub.StateStore)", e)
			}
			tt.fn(t, s)
		})
	}
}

func set(key, value string) hub.StateOp {
	return hub.StateOp{Key: key, Set: true, Value: []byte(value)}
}

func del(key string) hub.StateOp { return hub.StateOp{Key: key, Delete: true} }

// expect checks that key holds value; nil expect means key is absent.
func expect(key string, value []byte) hub.StateOp {
	return hub.StateOp{Key: key, Check: true, Expect: value}
}

func mustApply(t *testing.T, s hub.StateStore, space string, ops ...hub.StateOp) {
	t.Helper()
	if err := s.ApplyState(context.Background(), space, ops); err != nil {
		t.Fatalf("ApplyState(%s, %d ops): %v", space, len(ops), err)
	}
}

// load returns key's value in space, or "<absent>".
func load(t *testing.T, s hub.StateStore, space, key string) string {
	t.Helper()
	v, ok, err := s.LoadState(context.Background(), space, key)
	if err != nil {
		t.Fatalf("LoadState(%s, %q): %v", space, key, err)
	}
	if !ok {
		if v != nil {
			t.Errorf("LoadState(%s, %q) of an absent key returned %q", space, key, v)
		}
		return "<absent>"
	}
	if v == nil {
		t.Errorf("LoadState(%s, %q) found the key but returned a nil value", space, key)
	}
	return string(v)
}

// scan returns the keys of space with prefix, in the order visited, and
// their values.
func scan(t *testing.T, s hub.StateStore, space, prefix string) ([]string, map[string]string) {
	t.Helper()
	keys := []string{}
	vals := map[string]string{}
	err := s.ScanState(context.Background(), space, prefix, func(k string, v []byte) bool {
		keys = append(keys, k)
		vals[k] = string(v)
		return true
	})
	if err != nil {
		t.Fatalf("ScanState(%s, %q): %v", space, prefix, err)
	}
	return keys, vals
}

func testStateLoadMissing(t *testing.T, s hub.StateStore) {
	if got := load(t, s, "never", "k"); got != "<absent>" {
		t.Errorf("key of a space never written: %q", got)
	}
	mustApply(t, s, "g", set("a", "1"))
	if got := load(t, s, "g", "b"); got != "<absent>" {
		t.Errorf("key never written: %q", got)
	}
	if keys, _ := scan(t, s, "never", ""); len(keys) != 0 {
		t.Errorf("scan of a space never written: %q", keys)
	}
}

func testStateSetOverwriteDelete(t *testing.T, s hub.StateStore) {
	steps := []struct {
		op   hub.StateOp
		want string
	}{
		{set("k", "one"), "one"},
		{set("k", "two"), "two"},
		{set("k", ""), ""},
		{hub.StateOp{Key: "k", Set: true}, ""}, // nil Value stores an empty value
		{del("k"), "<absent>"},
		{del("k"), "<absent>"}, // deleting an absent key is no error
		{set("k", "three"), "three"},
	}
	for i, st := range steps {
		mustApply(t, s, "g", st.op)
		if got := load(t, s, "g", "k"); got != st.want {
			t.Errorf("step %d: %q, want %q", i, got, st.want)
		}
	}
	if err := s.ApplyState(context.Background(), "g", nil); err != nil {
		t.Errorf("ApplyState with no ops: %v", err)
	}
}

func testStateScan(t *testing.T, s hub.StateStore) {
	keys := []string{"b", "a", "ab", "a\x00", "a\xff", "abc", "c", "\xff", "\xff\xff", "B"}
	ops := []hub.StateOp{}
	for _, k := range keys {
		ops = append(ops, set(k, "v"+k))
	}
	mustApply(t, s, "g", ops...)
	// Enough keys under one prefix to take several pages.
	var paged []string
	for i := 0; i < 600; i += 200 {
		ops = ops[:0]
		for j := i; j < i+200; j++ {
			k := fmt.Sprintf("p/%04d", j)
			paged = append(paged, k)
			ops = append(ops, hub.StateOp{Key: k, Set: true, Value: []byte(strings.Repeat("x", j%7))})
		}
		mustApply(t, s, "g", ops...)
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(keys), paged...)))
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", []string{"a", "a\x00", "ab", "abc", "a\xff"}},
		{"ab", []string{"ab", "abc"}},
		{"abc", []string{"abc"}},
		{"abcd", []string{}},
		{"\xff", []string{"\xff", "\xff\xff"}},
		{"p/", paged},
		{"p/01", paged[100:200]},
		{"zz", []string{}},
	} {
		got, vals := scan(t, s, "g", tt.prefix)
		if !slices.Equal(got, tt.want) {
			t.Errorf("scan %q: %d keys %q..., want %d keys %q...", tt.prefix, len(got), head(got), len(tt.want), head(tt.want))
		}
		for _, k := range got {
			if want := load(t, s, "g", k); vals[k] != want {
				t.Errorf("scan %q: %q = %q, LoadState says %q", tt.prefix, k, vals[k], want)
			}
		}
	}
	for _, stop := range []int{1, 3, 256, 257} {
		n := 0
		err := s.ScanState(context.Background(), "g", "", func(string, []byte) bool {
			n++
			return n < stop
		})
		if err != nil || n != stop {
			t.Errorf("scan stopped after %d: %d calls, %v", stop, n, err)
		}
	}
}

func head(keys []string) []string { return keys[:min(len(keys), 5)] }

// testStateScanCallsBack changes the space from inside the scan's
// callback: no engine lock may be held while it runs.
func testStateScanCallsBack(t *testing.T, s hub.StateStore) {
	var want []string
	for i := 0; i < 600; i += 100 {
		var ops []hub.StateOp
		for j := i; j < i+100; j++ {
			k := fmt.Sprintf("k%04d", j)
			want = append(want, k)
			ops = append(ops, set(k, "v"))
		}
		mustApply(t, s, "g", ops...)
	}
	var got []string
	ctx := context.Background()
	err := s.ScanState(ctx, "g", "", func(k string, _ []byte) bool {
		got = append(got, k)
		if _, _, err := s.LoadState(ctx, "g", k); err != nil {
			t.Errorf("LoadState(%q) in the scan: %v", k, err)
		}
		if err := s.ApplyState(ctx, "g", []hub.StateOp{del(k)}); err != nil {
			t.Errorf("ApplyState deleting %q in the scan: %v", k, err)
		}
		return true
	})
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("scan deleting each key: visited %d keys (%v), want %d", len(got), err, len(want))
	}
	if keys, _ := scan(t, s, "g", ""); len(keys) != 0 {
		t.Errorf("%d keys left", len(keys))
	}
}

func testStateSpaces(t *testing.T, s hub.StateStore) {
	mustApply(t, s, "a", set("bc", "in a"), set("k", "a's"))
	mustApply(t, s, "ab", set("c", "in ab"), set("k", "ab's"))
	mustApply(t, s, "a.b", set("k", "a.b's"))
	mustApply(t, s, "ab", del("k"))
	for _, tt := range []struct{ space, key, want string }{
		{"a", "k", "a's"},
		{"ab", "k", "<absent>"},
		{"a.b", "k", "a.b's"},
		{"a", "c", "<absent>"},
		{"ab", "bc", "<absent>"},
	} {
		if got := load(t, s, tt.space, tt.key); got != tt.want {
			t.Errorf("%s/%s = %q, want %q", tt.space, tt.key, got, tt.want)
		}
	}
	if keys, _ := scan(t, s, "a", ""); !slices.Equal(keys, []string{"bc", "k"}) {
		t.Errorf("scan of a: %q, want [bc k]", keys)
	}
	if keys, _ := scan(t, s, "ab", ""); !slices.Equal(keys, []string{"c"}) {
		t.Errorf("scan of ab: %q, want [c]", keys)
	}
	// A check in one space does not see another.
	err := s.ApplyState(context.Background(), "ab", []hub.StateOp{expect("bc", []byte("in a"))})
	if !errors.Is(err, hub.ErrStateConflict) {
		t.Errorf("check of ab/bc against a's value: %v, want ErrStateConflict", err)
	}
}

func testStateAtomic(t *testing.T, s hub.StateStore) {
	ctx := context.Background()
	mustApply(t, s, "g", set("x", "1"), set("gone", "g"))
	// The failing check comes after writes: none of them is made.
	err := s.ApplyState(ctx, "g", []hub.StateOp{set("y", "1"), del("gone"), expect("x", []byte("2")), set("z", "1")})
	if !errors.Is(err, hub.ErrStateConflict) {
		t.Fatalf("batch with a failing check: %v, want ErrStateConflict", err)
	}
	if !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("conflict error %q does not name the key whose check failed", err)
	}
	for k, want := range map[string]string{"x": "1", "y": "<absent>", "z": "<absent>", "gone": "g"} {
		if got := load(t, s, "g", k); got != want {
			t.Errorf("after the failed batch: %s = %q, want %q", k, got, want)
		}
	}
	// With the check holding, every write is made; checks see the state
	// before the call, and of two writes to one key the last wins.
	mustApply(t, s, "g", set("x", "2"), expect("x", []byte("1")), set("y", "1"), del("gone"), set("z", "a"), set("z", "b"), expect("y", nil))
	for k, want := range map[string]string{"x": "2", "y": "1", "z": "b", "gone": "<absent>"} {
		if got := load(t, s, "g", k); got != want {
			t.Errorf("after the batch: %s = %q, want %q", k, got, want)
		}
	}
}

func testStateChecks(t *testing.T, s hub.StateStore) {
	ctx := context.Background()
	create := func(key, value string) error {
		return s.ApplyState(ctx, "g", []hub.StateOp{{Key: key, Check: true, Set: true, Value: []byte(value)}})
	}
	if err := create("k", "first"); err != nil {
		t.Fatalf("create if absent: %v", err)
	}
	if err := create("k", "second"); !errors.Is(err, hub.ErrStateConflict) {
		t.Errorf("create if absent of an existing key: %v, want ErrStateConflict", err)
	}
	if got := load(t, s, "g", "k"); got != "first" {
		t.Errorf("k = %q, want first", got)
	}
	mustApply(t, s, "g", set("empty", ""))
	for _, tt := range []struct {
		name   string
		key    string
		expect []byte
		holds  bool
	}{
		{"value", "k", []byte("first"), true},
		{"other value", "k", []byte("firs"), false},
		{"absent, key present", "k", nil, false},
		{"absent", "none", nil, true},
		{"empty value, key absent", "none", []byte{}, false},
		{"empty value", "empty", []byte{}, true},
		{"absent, value empty", "empty", nil, false},
	} {
		err := s.ApplyState(ctx, "g", []hub.StateOp{expect(tt.key, tt.expect)})
		if tt.holds && err != nil || !tt.holds && !errors.Is(err, hub.ErrStateConflict) {
			t.Errorf("%s: check only: %v, want holds %v", tt.name, err, tt.holds)
		}
	}
	if keys, _ := scan(t, s, "g", ""); !slices.Equal(keys, []string{"empty", "k"}) {
		t.Errorf("checks wrote something: keys %q", keys)
	}
}

// testStateIncrements runs compare-and-set increments of one counter from
// many goroutines: every increment that succeeds must count.
func testStateIncrements(t *testing.T, s hub.StateStore) {
	const goroutines, perG = 8, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perG; {
				v, ok, err := s.LoadState(ctx, "g", "n")
				if err != nil {
					t.Error(err)
					return
				}
				n := 0
				if ok {
					n, _ = strconv.Atoi(string(v))
				} else {
					v = nil // the check is for absence
				}
				op := hub.StateOp{Key: "n", Check: true, Expect: v, Set: true, Value: []byte(strconv.Itoa(n + 1))}
				err = s.ApplyState(ctx, "g", []hub.StateOp{op, set(fmt.Sprintf("by/%d/%d", g, done), "")})
				switch {
				case err == nil:
					done++
				case !errors.Is(err, hub.ErrStateConflict):
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, want := load(t, s, "g", "n"), strconv.Itoa(goroutines*perG); got != want {
		t.Errorf("counter %s after %d increments: updates were lost", got, goroutines*perG)
	}
	if keys, _ := scan(t, s, "g", "by/"); len(keys) != goroutines*perG {
		t.Errorf("%d increment markers, want %d", len(keys), goroutines*perG)
	}
}

func testStateCopies(t *testing.T, s hub.StateStore) {
	ctx := context.Background()
	in := []byte("value")
	mustApply(t, s, "g", hub.StateOp{Key: "k", Set: true, Value: in})
	in[0] = 'X'
	if got := load(t, s, "g", "k"); got != "value" {
		t.Errorf("changing the slice given to ApplyState changed the stored value: %q", got)
	}
	v, _, _ := s.LoadState(ctx, "g", "k")
	v[0] = 'Y'
	if err := s.ScanState(ctx, "g", "", func(_ string, v []byte) bool { v[0] = 'Z'; return true }); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, "g", "k"); got != "value" {
		t.Errorf("changing a returned value changed the stored one: %q", got)
	}
}

func testStateLimits(t *testing.T, s hub.StateStore) {
	ctx := context.Background()
	canary := set("canary", "x")
	big := make([]byte, hub.MaxStateValue)
	many := make([]hub.StateOp, hub.MaxStateOps)
	for i := range many {
		many[i] = set(fmt.Sprintf("m%d", i), "")
	}
	heavy := []hub.StateOp{canary}
	for i := 0; i*hub.MaxStateValue <= hub.MaxStateApplyBytes; i++ {
		heavy = append(heavy, hub.StateOp{Key: fmt.Sprint(i), Set: true, Value: big})
	}
	for _, tt := range []struct {
		name  string
		space string
		ops   []hub.StateOp
	}{
		{"empty space", "", []hub.StateOp{canary}},
		{"bad space", "a b", []hub.StateOp{canary}},
		{"long space", strings.Repeat("s", 201), []hub.StateOp{canary}},
		{"empty key", "g", []hub.StateOp{canary, set("", "v")}},
		{"long key", "g", []hub.StateOp{canary, set(strings.Repeat("k", hub.MaxStateKey+1), "v")}},
		{"large value", "g", []hub.StateOp{canary, {Key: "k", Set: true, Value: append(big, 0)}}},
		{"large expected value", "g", []hub.StateOp{canary, {Key: "k", Check: true, Expect: append(big, 0)}}},
		{"too many ops", "g", append([]hub.StateOp{canary}, many...)},
		{"too many bytes", "g", heavy},
		{"op does nothing", "g", []hub.StateOp{canary, {Key: "k"}}},
		{"set and delete", "g", []hub.StateOp{canary, {Key: "k", Set: true, Delete: true}}},
		{"value without set", "g", []hub.StateOp{canary, {Key: "k", Delete: true, Value: []byte("v")}}},
		{"expect without check", "g", []hub.StateOp{canary, {Key: "k", Set: true, Expect: []byte("v")}}},
	} {
		if err := s.ApplyState(ctx, tt.space, tt.ops); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("%s: ApplyState: %v, want ErrBadInput", tt.name, err)
		}
	}
	if keys, _ := scan(t, s, "g", ""); len(keys) != 0 {
		t.Errorf("refused calls wrote %d keys", len(keys))
	}
	// The limits themselves are accepted.
	mustApply(t, s, "g", set(strings.Repeat("k", hub.MaxStateKey), ""), hub.StateOp{Key: "big", Set: true, Value: big})
	mustApply(t, s, "g", many...)
	mustApply(t, s, strings.Repeat("s", 200), canary)

	for _, tt := range []struct{ name, space, key string }{
		{"empty space", "", "k"},
		{"bad space", "a..b", "k"},
		{"empty key", "g", ""},
		{"long key", "g", strings.Repeat("k", hub.MaxStateKey+1)},
	} {
		if _, _, err := s.LoadState(ctx, tt.space, tt.key); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("%s: LoadState: %v, want ErrBadInput", tt.name, err)
		}
	}
	noop := func(string, []byte) bool { return true }
	if err := s.ScanState(ctx, "g", strings.Repeat("k", hub.MaxStateKey+1), noop); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("ScanState with a long prefix: %v, want ErrBadInput", err)
	}
	if err := s.ScanState(ctx, "", "", noop); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("ScanState of an empty space name: %v, want ErrBadInput", err)
	}
}

func testStateCancelled(t *testing.T, s hub.StateStore) {
	mustApply(t, s, "g", set("k", "v"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ApplyState(ctx, "g", []hub.StateOp{set("new", "v")}); !errors.Is(err, context.Canceled) {
		t.Errorf("ApplyState: %v, want context.Canceled", err)
	}
	if _, _, err := s.LoadState(ctx, "g", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadState: %v, want context.Canceled", err)
	}
	called := false
	if err := s.ScanState(ctx, "g", "", func(string, []byte) bool { called = true; return true }); !errors.Is(err, context.Canceled) || called {
		t.Errorf("ScanState: %v (fn called: %v), want context.Canceled", err, called)
	}
	if got := load(t, s, "g", "new"); got != "<absent>" {
		t.Errorf("a cancelled ApplyState wrote: %q", got)
	}
}
