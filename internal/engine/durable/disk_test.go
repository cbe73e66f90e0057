package durable_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
)

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestDiskUseBounded publishes many times the retained bytes through one
// topic and checks that the store's size levels off instead of growing
// with what was written: retention deletes reach the disk through pebble's
// compactions.
func TestDiskUseBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 384 MiB")
	}
	dir := t.TempDir()
	const retained = 4 << 20
	e := open(t, dir, durable.Options{Retention: retain(event.Retention{MaxBytes: retained})})
	recs := make([]event.Record, 64)
	for i := range recs {
		recs[i] = event.Record{Data: []byte(strings.Repeat(string(rune('a'+i%26)), 4096))}
	}
	const total = 384 << 20
	per := int64(len(recs) * 4096)
	var peak int64
	for written := int64(0); written < total; written += per {
		if _, err := e.Append(context.Background(), "steady", recs); err != nil {
			t.Fatal(err)
		}
		if written%(16<<20) == 0 {
			peak = max(peak, dirBytes(dir))
		}
	}
	info := info(t, e, "steady")
	t.Logf("wrote %d MiB, retained %d events (%d KiB); store peaked at %d MiB", total>>20, info.Retained, info.Bytes>>10, peak>>20)
	if info.Bytes > retained {
		t.Errorf("retained %d bytes, bound %d", info.Bytes, retained)
	}
	// The WAL and memtable (32 MiB), a flushed table or two and the
	// preallocated next WAL: well under half of what was written.
	if peak > 160<<20 {
		t.Errorf("store grew to %d MiB after writing %d MiB with %d MiB retained: deletes are not reclaiming space", peak>>20, total>>20, retained>>20)
	}
}
