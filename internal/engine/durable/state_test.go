package durable_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func apply(t *testing.T, e *durable.Engine, space string, ops ...hub.StateOp) {
	t.Helper()
	if err := e.ApplyState(context.Background(), space, ops); err != nil {
		t.Fatalf("ApplyState(%s): %v", space, err)
	}
}

func setOp(key, value string) hub.StateOp {
	return hub.StateOp{Key: key, Set: true, Value: []byte(value)}
}

// stateOf returns every key and value of space.
func stateOf(t *testing.T, e *durable.Engine, space string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := e.ScanState(context.Background(), space, "", func(k string, v []byte) bool {
		got[k] = string(v)
		return true
	})
	if err != nil {
		t.Fatalf("ScanState(%s): %v", space, err)
	}
	return got
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir, durable.Options{})
	apply(t, e, "group.a", setOp("pos", "42"), setOp("lease/1", "x"), setOp("gone", "soon"))
	apply(t, e, "group.a", hub.StateOp{Key: "gone", Delete: true}, setOp("empty", ""))
	apply(t, e, "hook.b", setOp("pos", "7"))
	appendN(t, e, "topic", 2)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.ApplyState(context.Background(), "group.a", []hub.StateOp{setOp("k", "v")}); !errors.Is(err, durable.ErrClosed) {
		t.Errorf("ApplyState after Close: %v, want ErrClosed", err)
	}
	if _, _, err := e.LoadState(context.Background(), "group.a", "pos"); !errors.Is(err, durable.ErrClosed) {
		t.Errorf("LoadState after Close: %v, want ErrClosed", err)
	}

	e = open(t, dir, durable.Options{})
	want := map[string]map[string]string{
		"group.a": {"pos": "42", "lease/1": "x", "empty": ""},
		"hook.b":  {"pos": "7"},
	}
	for space, w := range want {
		if got := stateOf(t, e, space); !mapsEqual(got, w) {
			t.Errorf("%s after restart: %q, want %q", space, got, w)
		}
	}
	if info(t, e, "topic").Last != 2 {
		t.Errorf("topic lost")
	}
	// State keys are not topics.
	if ts, _ := e.Topics(context.Background()); len(ts) != 1 {
		t.Errorf("Topics = %+v, want only topic", ts)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestStateAfterCrash takes a copy of the file system as a crash would
// leave it (only what was synced) after acknowledged ApplyStates, and
// opens the engine on it: every acknowledged write is there.
func TestStateAfterCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "/data"
	e := open(t, dir, durable.Options{FS: fs})
	for i := 0; i < 20; i++ {
		apply(t, e, "group.a", setOp(fmt.Sprintf("k%02d", i), fmt.Sprint(i)), hub.StateOp{Key: "n", Set: true, Value: []byte(fmt.Sprint(i))})
	}
	apply(t, e, "group.a", hub.StateOp{Key: "k00", Delete: true})
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // synced data only
	e.Close()

	e = open(t, dir, durable.Options{FS: crashed})
	got := stateOf(t, e, "group.a")
	if len(got) != 20 || got["n"] != "19" || got["k19"] != "19" {
		t.Errorf("after the crash: %d keys, n = %q, k19 = %q; want 20 keys, n = 19", len(got), got["n"], got["k19"])
	}
	if _, ok := got["k00"]; ok {
		t.Errorf("an acknowledged deletion was lost")
	}
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(src, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, en.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// formatOf reads the format version recorded in dir.
func formatOf(t *testing.T, dir string) uint32 {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, c, err := db.Get([]byte("\x00format"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return binary.BigEndian.Uint32(v)
}

// setFormat records version as dir's format.
func setFormat(t *testing.T, dir string, version uint32) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("\x00format"), binary.BigEndian.AppendUint32(nil, version), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenFormat2Migrates opens a directory written by the format-2
// engine (testdata/format2/README.md): its topics, events and epoch are
// kept, it is at format 3 afterwards, and it takes consumer state.
func TestOpenFormat2Migrates(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "format2"))
	if v := formatOf(t, dir); v != 2 {
		t.Fatalf("testdata is at format %d, want 2", v)
	}
	clk := newClock()
	for round := 0; round < 2; round++ { // the second open finds format 3
		e := open(t, dir, durable.Options{Now: clk.Now})
		if got := e.Epoch().String(); got != "d0b9326a8d14a35d" {
			t.Errorf("open %d: epoch %s, want d0b9326a8d14a35d", round, got)
		}
		evs := read(t, e, "chat.room-1", 0, 10).Events
		if len(evs) != 2+round || string(evs[0].Data) != "hello" || evs[0].Key != "k1" || evs[1].Type != "msg" {
			t.Fatalf("open %d: chat.room-1 = %+v", round, evs)
		}
		if round == 0 {
			// Within k1's dedupe window, which is counted from when it
			// was stored, with the event.
			clk.Advance(time.UnixMilli(evs[0].Time).Add(time.Second).Sub(clk.Now()))
		}
		if a, err := e.Append(context.Background(), "chat.room-1", []event.Record{keyed("k1")}); err != nil || !a[0].Duplicate || a[0].Offset != 1 {
			t.Errorf("open %d: k1 retried: %+v, %v; want a duplicate of offset 1", round, a, err)
		}
		if p := read(t, e, "prices", 0, 10).Events; len(p) != 1 || p[0].Encoding != event.EncodingJSON {
			t.Errorf("open %d: prices = %+v", round, p)
		}
		if ts, _ := e.Topics(context.Background()); len(ts) != 2 {
			t.Errorf("open %d: Topics = %+v", round, ts)
		}
		if round == 0 {
			apply(t, e, "group.a", setOp("pos", "2"))
		} else if got := stateOf(t, e, "group.a"); got["pos"] != "2" {
			t.Errorf("state written after the migration: %q", got)
		}
		if acks := appendN(t, e, "chat.room-1", 1); acks[0].Offset != uint64(3+round) {
			t.Errorf("open %d: next offset %d", round, acks[0].Offset)
		}
		e.Close()
		if v := formatOf(t, dir); v != 3 {
			t.Errorf("open %d: format %d afterwards, want 3", round, v)
		}
	}
}

func TestOpenRefusesOtherFormats(t *testing.T) {
	for _, version := range []uint32{1, 4, 99} {
		t.Run(fmt.Sprint(version), func(t *testing.T) {
			dir := t.TempDir()
			open(t, dir, durable.Options{}).Close()
			setFormat(t, dir, version)
			e, err := durable.Open(dir, durable.Options{})
			if e != nil {
				e.Close()
			}
			if !errors.Is(err, durable.ErrIncompatible) || !strings.Contains(err.Error(), dir) ||
				!strings.Contains(err.Error(), fmt.Sprintf("format %d", version)) {
				t.Fatalf("Open of a format-%d directory: %v; want ErrIncompatible naming the version and %s", version, err, dir)
			}
			t.Logf("error: %v", err)
			if v := formatOf(t, dir); v != version {
				t.Errorf("a refused directory was changed: format %d", v)
			}
		})
	}
}

// TestStateKeysOnDisk checks the key layout of state: one contiguous range
// per space, apart from topics' keys.
func TestStateKeysOnDisk(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir, durable.Options{})
	apply(t, e, "ab", setOp("c", "1"))
	apply(t, e, "a", setOp("bc", "2"), setOp("a", "3"))
	e.Close()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'s'}, UpperBound: []byte{'s' + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, string(it.Key()))
	}
	want := []string{"s\x00\x01aa", "s\x00\x01abc", "s\x00\x02abc"}
	if !slices.Equal(keys, want) {
		t.Errorf("state keys on disk %q, want %q", keys, want)
	}
}
