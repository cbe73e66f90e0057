package durable

import (
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldhq/herald/internal/hub"
)

// spaceGuard keeps a reserve of free space on the data directory's file
// system. pebble treats a failed WAL write as fatal (it stops the process),
// so the engine must refuse a publish before the disk fills rather than
// find out from a write error. The reserve also leaves room for flushes and
// compactions, which need space to free space.
//
// Asking the file system for its free space on every commit would cost a
// system call per round, so the guard caches the answer and counts what was
// committed since; it asks again when the cache is older than
// spaceCheckEvery, when more than a sixteenth of the reserve was written
// since, or before refusing.
type spaceGuard struct {
	fs      vfs.FS // static
	dir     string // static
	reserve int64  // static; 0 disables the guard

	mu      sync.Mutex // guards the fields below
	avail   int64      // free bytes at the last check
	written int64      // bytes admitted since the last check
	checked time.Time  // when avail was read; zero: never
}

// spaceCheckEvery bounds the age of the cached free-space figure.
const spaceCheckEvery = 100 * time.Millisecond

// growthFactor estimates the disk a committed batch takes before its
// memtable is flushed and its WAL deleted: the WAL copy and the table copy.
const growthFactor = 2

// admit reports whether a batch of n bytes may be committed, and counts it
// if so. It fails with an error wrapping hub.ErrStorageFull.
func (g *spaceGuard) admit(n int) error {
	if g.reserve <= 0 {
		return nil
	}
	need := int64(n) * growthFactor
	g.mu.Lock()
	defer g.mu.Unlock()
	stale := g.checked.IsZero() || time.Since(g.checked) > spaceCheckEvery || g.written > g.reserve/16
	if !stale && g.avail-g.written-need >= g.reserve {
		g.written += need
		return nil
	}
	if err := g.refresh(); err != nil {
		return err
	}
	if g.avail-need < g.reserve {
		return fmt.Errorf("%w: %d bytes free on the file system of %s, the reserve (data_reserve_bytes) is %d: free some space or lower retention",
			hub.ErrStorageFull, g.avail, g.dir, g.reserve)
	}
	g.written += need
	return nil
}

// refresh reads the file system's free space. g.mu must be held.
func (g *spaceGuard) refresh() error {
	u, err := g.fs.GetDiskUsage(g.dir)
	if err != nil {
		return fmt.Errorf("%w: read free space of %s: %w", hub.ErrUnavailable, g.dir, err)
	}
	g.avail = int64(min(u.AvailBytes, 1<<62))
	g.written = 0
	g.checked = time.Now()
	return nil
}
