package ws

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/push"
)

// TestQueuedEventsLeaveInOneWrite: events queued for a connection while
// its writer was away leave in one write.
func TestQueuedEventsLeaveInOneWrite(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cl := f.dial(t)
	cl.subscribe(1, `"topics":["w.a","w.b"]`)
	c := f.connOf(cl.welcome.str("client"))
	waitFor(t, "the writer to settle", func() bool { return c.Hold() }) // wakes start no writer meanwhile
	for i := range 10 {
		f.publish([]string{"w.a", "w.b"}[i%2], `{"i":1}`)
	}
	waitFor(t, "10 events queued", func() bool { return c.sub.QueuedBytes() >= 10*(7+3+128) })
	before := c.Writes()
	c.Run()
	for range 10 {
		cl.expect("event")
	}
	// The writer counts a write after the system call returns, which can
	// be after the client has read it.
	if got := c.Writes() - before; got != 1 {
		t.Errorf("10 queued events took %d writes, want 1", got)
	}
}

// TestFramesAreShared: every connection writes the same encoded bytes of
// an event; the frame is built once, not once per subscriber.
func TestFramesAreShared(t *testing.T) {
	ev := &event.Event{Topic: "s.a", Offset: 1, Epoch: 7, Record: event.Record{Data: []byte(`{"x":1}`)}}
	for _, k := range []struct {
		kind event.FrameKind
		enc  func(*event.Event) []byte
	}{{event.FrameWS, encodeEventFrame}, {event.FrameWSDeflate, encodeEventFrameDeflate}} {
		a, b := ev.Frame(k.kind, k.enc), ev.Frame(k.kind, k.enc)
		if unsafe.SliceData(a) != unsafe.SliceData(b) {
			t.Errorf("frame kind %d was encoded twice", k.kind)
		}
	}
	// Two connections over a real server share the frame.
	f := newFixture(t, fixtureOpts{})
	c1, c2 := f.dial(t), f.dial(t)
	c1.subscribe(1, `"topics":["s.b"]`)
	c2.subscribe(1, `"topics":["s.b"]`)
	f.publish("s.b", "hello")
	e1, e2 := c1.expect("event"), c2.expect("event")
	if fmt.Sprint(e1) != fmt.Sprint(e2) {
		t.Errorf("the two connections got %v and %v", e1, e2)
	}
}

// writeRig is a connection writing to a real loopback socket whose other
// end is drained.
func writeRig(tb testing.TB, topics ...string) *conn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	var peer net.Conn
	go func() {
		peer, _ = ln.Accept()
		close(done)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	<-done
	drained := make(chan struct{})
	go func() { io.Copy(io.Discard, peer); close(drained) }()
	tb.Cleanup(func() { nc.Close(); peer.Close(); <-drained })
	c := &conn{h: &Handler{opts: Options{WriteTimeout: 10 * time.Second}}, out: push.NewConnSink(nc, false)}
	for _, t := range topics {
		c.active.add(t)
	}
	return c
}

// BenchmarkWriteItems measures the WebSocket framing per delivered event,
// from the queued item to the socket (a real loopback write), with the
// shared frame. The goal is 0 allocations per delivery. (The writer loop
// around it is measured by package push's BenchmarkDrain.)
func BenchmarkWriteItems(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			c := writeRig(b, "w.a")
			evs := make([]*event.Event, 64)
			for i := range evs {
				evs[i] = &event.Event{Topic: "w.a", Offset: uint64(i + 1), Epoch: 1, Record: event.Record{Data: make([]byte, 128)}}
				for j := range evs[i].Data {
					evs[i].Data[j] = 'x'
				}
				evs[i].Encoding = event.EncodingText
			}
			items := make([]hub.Item, batch)
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				for j := range items {
					items[j] = hub.Item{Event: evs[(i+j)%len(evs)]}
				}
				if err := c.write(&buf, items); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/delivery")
		})
	}
}

// TestWriteItemsAllocs checks the benchmark's promise in the test suite.
func TestWriteItemsAllocs(t *testing.T) {
	c := writeRig(t, "w.a")
	ev := &event.Event{Topic: "w.a", Offset: 1, Epoch: 1, Record: event.Record{Data: []byte("x")}}
	items := []hub.Item{{Event: ev}, {Event: ev}}
	buf := make([]byte, 0, 4096)
	c.write(&buf, items) // builds the cached frame
	if n := testing.AllocsPerRun(200, func() {
		if err := c.write(&buf, items); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per write of 2 events, want 0", n)
	}
}

// write frames items into *buf and writes them as the writer does: without
// blocking, then the rest blocking.
func (c *conn) write(buf *[]byte, items []hub.Item) error {
	*buf = c.AppendItems((*buf)[:0], items)
	n, err := c.out.TryWrite(*buf)
	if err == netio.ErrWouldBlock {
		_, err = c.out.Write((*buf)[n:])
	}
	return err
}
