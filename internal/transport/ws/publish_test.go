package ws

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/hub"
)

// burst writes the commands as masked text frames in one write, so that
// the server reads them together.
func (c *client) burst(cmds []string) {
	c.t.Helper()
	var b bytes.Buffer
	for _, cmd := range cmds {
		if err := ws.WriteFrame(&b, ws.MaskFrameInPlace(ws.NewTextFrame([]byte(cmd)))); err != nil {
			c.t.Fatal(err)
		}
	}
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// TestPublishBurst: publishes sent together are stored together (one
// append per run of one topic), and answered as if stored one by one, in
// order: dense offsets in command order, a refused one answered alone in
// its place, one to another topic in its place, a key repeated answered as
// a duplicate of the first.
func TestPublishBurst(t *testing.T) {
	var most atomic.Int64
	f := newFixture(t, fixtureOpts{hub: hub.Options{Observer: hub.Observer{Published: func(n int) {
		for m := most.Load(); int64(n) > m && !most.CompareAndSwap(m, int64(n)); m = most.Load() {
		}
	}}}})
	c := f.dial(t)
	const n = 40
	var cmds []string
	for id := 1; id <= n; id++ {
		topic, extra := "pb.a", ""
		switch id {
		case 10:
			extra = `,"type":"gap"` // reserved: refused by the hub's check
		case 20:
			topic = "pb.b"
		case 25, 26:
			extra = `,"key":"k"`
		case 30:
			extra = `,"nope":1` // not a command: refused at parsing
		}
		cmds = append(cmds, fmt.Sprintf(`{"op":"publish","id":%d,"topic":%q,"data":%d%s}`, id, topic, id, extra))
	}
	c.burst(cmds)
	var next, keyed uint64 = 1, 0
	for id := 1; id <= n; id++ {
		m := c.next()
		if m.num("id") != uint64(id) {
			t.Fatalf("reply %d: %v", id, m)
		}
		switch id {
		case 10, 30:
			if m.str("op") != "error" || m.str("code") != "bad_request" {
				t.Errorf("command %d: %v, want a bad_request error", id, m)
			}
			continue
		case 20:
			if m.str("op") != "ack" || m.str("topic") != "pb.b" || m.num("offset") != 1 {
				t.Errorf("command 20: %v, want pb.b's offset 1", m)
			}
			continue
		case 26:
			if m.str("op") != "ack" || m["duplicate"] != true || m.num("offset") != keyed {
				t.Errorf("command 26: %v, want a duplicate of offset %d", m, keyed)
			}
			continue
		}
		if m.str("op") != "ack" || m.str("topic") != "pb.a" || m.num("offset") != next || m["duplicate"] != false {
			t.Fatalf("command %d: %v, want pb.a's offset %d", id, m, next)
		}
		if id == 25 {
			keyed = next
		}
		next++
	}
	if most.Load() < 2 {
		t.Errorf("at most %d event per append: the publishes read together were stored one by one", most.Load())
	}
}
