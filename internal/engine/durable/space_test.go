package durable_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// smallDisk is the real file system with a capacity: the bytes under root
// count as used, GetDiskUsage reports what is left, and a write that would
// go past the capacity fails with ENOSPC, as a full disk's would.
type smallDisk struct {
	vfs.FS
	root string

	mu       sync.Mutex
	capacity int64
	failed   int // writes refused with ENOSPC
}

func (d *smallDisk) used() int64 {
	var n int64
	filepath.Walk(d.root, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func (d *smallDisk) setCapacity(c int64) {
	d.mu.Lock()
	d.capacity = c
	d.mu.Unlock()
}

// room fails with ENOSPC when n more bytes do not fit.
func (d *smallDisk) room(n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used()+n > d.capacity {
		d.failed++
		return syscall.ENOSPC
	}
	return nil
}

func (d *smallDisk) GetDiskUsage(string) (vfs.DiskUsage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	used := d.used()
	return vfs.DiskUsage{AvailBytes: uint64(max(0, d.capacity-used)), TotalBytes: uint64(d.capacity), UsedBytes: uint64(used)}, nil
}

func (d *smallDisk) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &smallFile{File: f, disk: d}, nil
}

func (d *smallDisk) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return d.wrap(d.FS.Create(name, c))
}

func (d *smallDisk) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return d.wrap(d.FS.OpenReadWrite(name, c, opts...))
}

func (d *smallDisk) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return d.wrap(d.FS.ReuseForWrite(oldname, newname, c))
}

func (d *smallDisk) Unwrap() vfs.FS { return d.FS }

type smallFile struct {
	vfs.File
	disk *smallDisk
}

func (f *smallFile) Write(p []byte) (int, error) {
	if err := f.disk.room(int64(len(p))); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *smallFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.disk.room(int64(len(p))); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

// TestStorageFull fills a small disk: publishes are refused with
// ErrStorageFull before the store's own writes fail (pebble stops the
// process on a failed WAL write), nothing of a refused publish is stored,
// reads go on, and publishes succeed again once space is freed.
func TestStorageFull(t *testing.T) {
	dir := t.TempDir()
	disk := &smallDisk{FS: vfs.Default, root: dir, capacity: 24 << 20}
	const reserve = 8 << 20
	e := open(t, dir, durable.Options{FS: disk, ReserveBytes: reserve})
	ctx := context.Background()
	payload := []byte(strings.Repeat("x", 16<<10))

	var acked uint64
	var full error
	for i := 0; i < 2000 && full == nil; i++ {
		acks, err := e.Append(ctx, "t", []event.Record{{Data: payload}})
		if err != nil {
			full = err
			break
		}
		if acks[0].Offset != acked+1 {
			t.Fatalf("offset %d after %d", acks[0].Offset, acked)
		}
		acked = acks[0].Offset
	}
	if !errors.Is(full, hub.ErrStorageFull) {
		t.Fatalf("filling a 24 MiB disk: err = %v after %d events, want ErrStorageFull", full, acked)
	}
	if !strings.Contains(full.Error(), "data_reserve_bytes") {
		t.Errorf("error %q does not name the setting", full)
	}
	if acked < 100 {
		t.Fatalf("only %d events fit before the disk was reported full", acked)
	}
	if disk.failed != 0 {
		t.Fatalf("%d writes reached a full disk: the guard must refuse first", disk.failed)
	}
	used := disk.used()
	t.Logf("%d events of 16 KiB stored, %d bytes used of %d when the guard refused", acked, used, disk.capacity)
	if free := disk.capacity - used; free < reserve/2 {
		t.Errorf("%d bytes free when publishes stopped, reserve %d", free, reserve)
	}

	// Refused again; nothing stored; reads go on.
	if _, err := e.Append(ctx, "t", []event.Record{{Data: payload}, {Data: []byte("small")}}); !errors.Is(err, hub.ErrStorageFull) {
		t.Fatalf("second append on a full disk: %v", err)
	}
	if got := info(t, e, "t"); got.Last != acked || got.Retained != int(acked) {
		t.Fatalf("after refusals: %+v, want last %d", got, acked)
	}
	b := read(t, e, "t", 0, int(acked)+10)
	if len(b.Events) != int(acked) || b.Events[len(b.Events)-1].Offset != acked {
		t.Fatalf("read %d events on a full disk, want %d", len(b.Events), acked)
	}

	// Space comes back: publishing resumes at the next offset.
	disk.setCapacity(256 << 20)
	acks, err := e.Append(ctx, "t", []event.Record{rec("after")})
	if err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if acks[0].Offset != acked+1 {
		t.Fatalf("offset after space came back: %d, want %d", acks[0].Offset, acked+1)
	}
	e.Close()

	e2 := open(t, dir, durable.Options{})
	if got := info(t, e2, "t"); got.Last != acked+1 || got.Retained != int(acked+1) {
		t.Errorf("after reopen: %+v, want last %d", got, acked+1)
	}
}

// TestStorageFullOnTmpfs runs the engine on a real 96 MiB tmpfs until the
// guard refuses publishes, then checks every acknowledged event after a
// reopen. It needs permission to mount (root).
func TestStorageFullOnTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot mount a tmpfs here (%v: %s); TestStorageFull covers the same with a simulated disk", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	dir := filepath.Join(mnt, "data")
	e := open(t, dir, durable.Options{ReserveBytes: 16 << 20})
	ctx := context.Background()
	payload := []byte(strings.Repeat("y", 32<<10))
	var acked uint64
	var err error
	for i := 0; i < 5000; i++ {
		var acks []event.Ack
		if acks, err = e.Append(ctx, "t", []event.Record{{Data: payload}}); err != nil {
			break
		}
		acked = acks[0].Offset
	}
	if !errors.Is(err, hub.ErrStorageFull) {
		t.Fatalf("filling a 96 MiB tmpfs: err = %v after %d events, want ErrStorageFull", err, acked)
	}
	t.Logf("%d events of 32 KiB stored on a 96 MiB tmpfs before the guard refused", acked)
	if got := len(read(t, e, "t", 0, 10000).Events); got != int(acked) {
		t.Fatalf("read %d events on a full disk, want %d", got, acked)
	}
	e.Close()
	e2 := open(t, dir, durable.Options{})
	if got := info(t, e2, "t"); got.Last != acked {
		t.Errorf("after reopen: last %d, want %d", got.Last, acked)
	}
	e2.Close()
}
