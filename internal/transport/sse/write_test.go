package sse

import (
	"context"
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// countSink counts the writes a stream makes.
type countSink struct{ writes, bytes int }

func (s *countSink) Write(b []byte) (int, error)    { s.writes++; s.bytes += len(b); return len(b), nil }
func (s *countSink) SetWriteDeadline(time.Time)     {}
func (s *countSink) PeerClosed() bool               { return false }
func (s *countSink) TryWrite(b []byte) (int, error) { return s.Write(b) }

// writeRig is a stream (conn) on a real hub whose writes go to a counter.
func writeRig(tb testing.TB, topics ...string) (*hub.Hub, *conn, *countSink) {
	tb.Helper()
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{})
	s := New(h, Options{})
	tb.Cleanup(func() { h.Close(); s.Close(); eng.Close() })
	sink := &countSink{}
	c := &conn{h: s}
	c.Init(s.group, c) // the test holds the writer role, and runs it itself
	sub, err := h.NewSubscriber(hub.SubscriberOptions{Wake: func() {}})
	if err != nil {
		tb.Fatal(err)
	}
	c.Attach(sub, sink, func() {})
	tb.Cleanup(func() { sub.Close(hub.CloseClient) })
	for _, t := range topics {
		pos, err := sub.SubscribeTopic(hub.Internal(context.Background()), t, hub.Start{})
		if err != nil {
			tb.Fatal(err)
		}
		c.cur.Set(t, pos)
	}
	c.Run() // ends recovery
	if !c.Hold() {
		tb.Fatal("the writer role is taken")
	}
	return h, c, sink
}

// TestQueuedEventsLeaveInOneWrite checks the coalescing promise: events
// queued for a stream while its writer was away leave in one write.
func TestQueuedEventsLeaveInOneWrite(t *testing.T) {
	for _, topics := range [][]string{{"w.a"}, {"w.a", "w.b"}} {
		t.Run(fmt.Sprint(len(topics), " topics"), func(t *testing.T) {
			h, c, sink := writeRig(t, topics...)
			for i := 0; i < 10; i++ {
				if _, err := h.Publish(hub.Internal(context.Background()), topics[i%len(topics)], []event.Record{{Data: []byte(`{"i":1}`)}}); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for pendingOf(c) < 10*itemSizeOf(`{"i":1}`, topics[0]) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // fan-out runs on the hub's dispatcher
			}
			before := sink.writes
			c.Run()
			if got := sink.writes - before; got != 1 {
				t.Errorf("10 queued events took %d writes, want 1", got)
			}
		})
	}
}

func itemSizeOf(data, topic string) int { return len(data) + len(topic) + 128 }

// pendingOf returns the bytes queued for c's writer.
func pendingOf(c *conn) int { return c.Subscriber().QueuedBytes() }

// TestFramesAreShared checks that every stream writes the same encoded
// bytes of an event: the frame is built once, not once per subscriber.
func TestFramesAreShared(t *testing.T) {
	ev := &event.Event{Topic: "s.a", Offset: 1, Epoch: 7, Record: event.Record{Data: []byte(`{"x":1}`)}}
	a := ev.Frame(event.FrameSSESolo, encodeSoloFrame)
	b := ev.Frame(event.FrameSSESolo, encodeSoloFrame)
	if unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Error("the one-topic frame was encoded twice")
	}
	c := ev.Frame(event.FrameSSE, encodeFrame)
	d := ev.Frame(event.FrameSSE, encodeFrame)
	if unsafe.SliceData(c) != unsafe.SliceData(d) {
		t.Error("the frame was encoded twice")
	}
}

// BenchmarkWriteItems measures the SSE framing per delivered event, from
// the queued item to the bytes handed to the socket, for a one-topic and a
// three-topic stream. The goal is 0 allocations per delivery. (The writer
// loop around it is measured by package push's BenchmarkDrain.)
func BenchmarkWriteItems(b *testing.B) {
	for _, topics := range [][]string{{"w.a"}, {"w.a", "w.b", "w.c"}} {
		b.Run(fmt.Sprint("topics=", len(topics)), func(b *testing.B) {
			_, c, sink := writeRig(b, topics...)
			evs := make([]*event.Event, 64)
			for i := range evs {
				evs[i] = &event.Event{Topic: topics[0], Offset: uint64(i + 1), Epoch: 1, Record: event.Record{Data: make([]byte, 128)}}
			}
			items := make([]hub.Item, 1)
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				items[0] = hub.Item{Event: evs[i%len(evs)]}
				buf = c.AppendItems(buf[:0], items)
				if _, err := sink.TryWrite(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(sink.bytes)/float64(b.N), "bytes/delivery")
		})
	}
}
