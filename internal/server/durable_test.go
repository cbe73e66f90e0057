package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// TestDurableRestart checks that cursors taken before a restart of a
// durable server resume after it, over pull, long polling and SSE, with no
// gap and no duplicate, and that the epoch survives the restart.
func TestDurableRestart(t *testing.T) {
	dir := t.TempDir()
	durable := func(c *config.Config) { c.Engine = "durable"; c.DataDir = dir }

	a := startServer(t, durable)
	acks := a.publishN("dur.a", 0, 5)
	pullCursor := a.pull("/v1/events?topic=dur.a").Cursor
	s := a.openSSE("topic=dur.a&from=earliest")
	s.next() // the opening retry: and id:
	var sseID string
	for i := 1; i <= 5; i++ {
		b := s.nextEvent()
		if off := streamOffset(t, b, "dur.a"); off != uint64(i) {
			t.Fatalf("SSE before the restart: offset %d, want %d", off, i)
		}
		sseID = b.id
	}
	s.close()
	a.shutdown()

	b := startServer(t, durable)
	if info, ok := b.info("dur.a"); !ok || info.Last != 5 || info.Epoch != acks[0].Epoch {
		t.Fatalf("after the restart: info %+v (found %v), want last 5 in epoch %s", info, ok, acks[0].Epoch)
	}
	lp := b.startLongPoll("/v1/events?topic=dur.a&wait=10s&cursor=" + url.QueryEscape(pullCursor))
	waitFor(t, "the long poll to wait", 5*time.Second, func() bool { return b.subscribers("dur.a") == 1 })
	b.publishN("dur.a", 5, 3)

	if got := decodePull(t, lp.wait(t, 10*time.Second).body); len(got.Events) == 0 || got.Events[0].Offset != 6 || len(got.Gaps) != 0 {
		t.Fatalf("long poll from a cursor taken before the restart: %s", got.raw)
	}
	got := b.pull("/v1/events?topic=dur.a&cursor=" + url.QueryEscape(pullCursor))
	if fmtOffsets(got.Events) != "dur.a:6 dur.a:7 dur.a:8" || len(got.Gaps) != 0 {
		t.Fatalf("pull from a cursor taken before the restart: %s", got.raw)
	}
	s2 := b.openSSE("topic=dur.a", "Last-Event-ID", sseID)
	s2.next()
	for i := 6; i <= 8; i++ {
		if off := streamOffset(t, s2.nextEvent(), "dur.a"); off != uint64(i) {
			t.Fatalf("SSE resumed across the restart: offset %d, want %d", off, i)
		}
	}
	s2.close()
}

// TestDurableStorageFull restarts a durable server with a free-space
// reserve larger than the disk, which is what a full disk looks like to
// the engine: publishes fail with 507 storage_full and store nothing, and
// reads, topics and SSE go on.
func TestDurableStorageFull(t *testing.T) {
	dir := t.TempDir()
	a := startServer(t, func(c *config.Config) { c.Engine = "durable"; c.DataDir = dir })
	a.publishN("full.a", 0, 3)
	a.shutdown()

	b := startServer(t, func(c *config.Config) {
		c.Engine = "durable"
		c.DataDir = dir
		c.DataReserveBytes = 1 << 62
	})
	e := wantError(t, b.do(http.MethodPost, "/v1/topics/full.a/events", []byte(`{"n":4}`), "Content-Type", "application/json"), http.StatusInsufficientStorage, "storage_full")
	if !strings.Contains(e.Error.Message, "data_reserve_bytes") {
		t.Errorf("storage_full message %q does not name the setting", e.Error.Message)
	}
	wantError(t, b.do(http.MethodPost, "/v1/events", []byte(`{"events":[{"topic":"full.b","data":1}]}`), "Content-Type", "application/json"), http.StatusInsufficientStorage, "storage_full")
	if got := b.pull("/v1/events?topic=full.a&from=earliest"); fmtOffsets(got.Events) != "full.a:1 full.a:2 full.a:3" {
		t.Fatalf("pull on a full disk: %s", got.raw)
	}
	if info, ok := b.info("full.a"); !ok || info.Last != 3 {
		t.Fatalf("topic after refused publishes: %+v", info)
	}
	if _, ok := b.info("full.b"); ok {
		t.Errorf("a refused batch created topic full.b")
	}
}
