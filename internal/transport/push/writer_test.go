package push

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lines is a Framer of the simplest protocol: each event is its payload
// and a newline; the idle frame is "ping\n"; the end is "end <code>\n".
type lines struct{}

func (lines) AppendItems(b []byte, items []hub.Item) []byte {
	for _, it := range items {
		ev := it.Event
		if n, ok := it.Note.(*event.Event); ok {
			ev = n // BenchmarkDrain's events, queued as notes
		}
		if ev != nil {
			b = append(b, ev.Data...)
			b = append(b, '\n')
		}
	}
	return b
}

func (lines) AppendIdle(b []byte) []byte { return append(b, "ping\n"...) }

func (lines) FrameEnd(b []byte, skip, n int) int {
	if n < skip {
		return skip
	}
	if n == skip || n >= len(b) || b[n-1] == '\n' {
		return n
	}
	return n + bytes.IndexByte(b[n:], '\n') + 1
}

func (lines) AppendEnd(b []byte, r hub.CloseReason) ([]byte, time.Duration) {
	if r == hub.CloseClient {
		return b, 0
	}
	return append(b, "end "+r.String()+"\n"...), time.Second
}

// rig is a Writer over a real hub and a real loopback connection.
type rig struct {
	h        *hub.Hub
	g        *Group
	w        *Writer
	sub      *hub.Subscriber
	peer     net.Conn // the client's end
	released chan struct{}
}

func newRig(t testing.TB, writeTimeout time.Duration, queue int) *rig {
	t.Helper()
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{MaxQueueBytes: queue})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	r := &rig{h: h, g: NewGroup(1, writeTimeout), w: new(Writer), peer: peer, released: make(chan struct{})}
	r.w.Init(r.g, lines{})
	r.sub, err = h.NewSubscriber(hub.SubscriberOptions{Wake: r.w.Wake, Kick: r.w.Kick})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewConnSink(server, false)
	r.w.Attach(r.sub, &sink, func() { server.Close(); close(r.released) })
	ctx := hub.Internal(context.Background())
	if _, err := r.sub.Subscribe(ctx, &hub.SubscribeRequest{Topics: []string{"t"}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.sub.Close(hub.CloseClient)
		peer.Close()
		r.g.Close()
		if err := r.g.Wait(context.Background()); err != nil {
			t.Error(err)
		}
		h.Close()
		eng.Close()
	})
	return r
}

func (r *rig) publish(t testing.TB, data string) {
	t.Helper()
	if _, err := r.h.Publish(hub.Internal(context.Background()), "t", []event.Record{{Data: []byte(data)}}); err != nil {
		t.Fatal(err)
	}
}

// read reads lines from the client's end until want have come.
func (r *rig) read(t testing.TB, want int) []string {
	t.Helper()
	r.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []string
	var buf bytes.Buffer
	b := make([]byte, 64<<10)
	for len(got) < want {
		n, err := r.peer.Read(b)
		buf.Write(b[:n])
		for {
			line, err := buf.ReadString('\n')
			if err != nil {
				buf.WriteString(line)
				break
			}
			got = append(got, strings.TrimSuffix(line, "\n"))
		}
		if err != nil {
			t.Fatalf("read after %d lines: %v", len(got), err)
		}
	}
	return got
}

// TestWriterDelivers: the setup's write goes first, then events as they
// come, then the end frame; the connection is released once.
func TestWriterDelivers(t *testing.T) {
	r := newRig(t, 10*time.Second, 0)
	r.w.SendNow([]byte("hello\n"))
	r.w.Run()
	r.publish(t, "a")
	r.publish(t, "b")
	if got := r.read(t, 3); fmt.Sprint(got) != "[hello a b]" {
		t.Fatalf("got %q", got)
	}
	r.w.AskIdle()
	if got := r.read(t, 1); got[0] != "ping" {
		t.Fatalf("got %q, want a ping", got)
	}
	r.sub.Close(hub.CloseShutdown)
	if got := r.read(t, 1); got[0] != "end shutting_down" {
		t.Fatalf("end frame %q", got)
	}
	<-r.released
}

// TestWriterCoalesces: what was queued while the writer was away leaves
// in one write.
func TestWriterCoalesces(t *testing.T) {
	r := newRig(t, 10*time.Second, 0)
	r.w.Run()
	if !r.w.Hold() {
		t.Fatal("the writer role is taken")
	}
	for i := range 10 {
		r.publish(t, fmt.Sprint(i))
	}
	for deadline := time.Now().Add(10 * time.Second); r.sub.QueuedBytes() < 10*130 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // the hub's fan-out runs on its own goroutine
	}
	before := r.w.Writes()
	r.w.Run()
	if got := r.w.Writes() - before; got != 1 {
		t.Errorf("10 queued events took %d writes", got)
	}
	r.read(t, 10)
}

// TestWriterHandsOffAndEndsSlowConsumer: a client that stops reading
// fills the socket; the pooled writer hands the rest to a goroutine of the
// connection's own (the pool stays free), which gives up after the write
// timeout and ends the connection as a slow consumer. What a cut write
// left of a frame goes before the end frame, so the client never reads a
// frame spliced into another.
func TestWriterHandsOffAndEndsSlowConsumer(t *testing.T) {
	r := newRig(t, 300*time.Millisecond, 64<<20)
	r.w.Run()
	big := strings.Repeat("x", 256<<10)
	for range 64 { // 16 MiB: more than loopback socket buffers hold
		r.publish(t, big)
	}
	select {
	case <-r.released:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled connection was not ended")
	}
	if got := r.sub.Reason(); got != hub.CloseSlow {
		t.Fatalf("ended with %v, want slow_consumer", got)
	}
	// Now read all: whole lines, and the end frame when it still fitted.
	// The last write may have been cut before the socket was closed, but
	// no frame is ever spliced into another.
	r.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(r.peer)
	lines := strings.Split(string(all), "\n")
	for i, l := range lines {
		last := i == len(lines)-1 // unterminated: a cut write, or ""
		if l != big && l != "end slow_consumer" && !(last && strings.HasPrefix(big, l)) {
			t.Fatalf("line %d of %d is %d bytes: %.20q", i, len(lines), len(l), l)
		}
	}
}

// TestServeInline: a connection served from its handler's goroutine is
// woken by the subscriber and ends when the context does.
func TestServeInline(t *testing.T) {
	r := newRig(t, 10*time.Second, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.w.ServeInline(ctx) }()
	r.publish(t, "a")
	r.read(t, 1)
	cancel()
	wg.Wait()
	<-r.released
}

// BenchmarkDrain measures the writer loop per delivered event: Next on a
// real subscriber, framing, one write to a real socket. 0 allocations per
// delivery is the goal (TestDrainAllocs holds it).
func BenchmarkDrain(b *testing.B) {
	r := newRig(b, 10*time.Second, 64<<20)
	go io.Copy(io.Discard, r.peer)
	r.w.Run()
	ev := &event.Event{Topic: "t", Offset: 1, Record: event.Record{Data: make([]byte, 128)}}
	b.ReportAllocs()
	for b.Loop() {
		drainOne(b, r, ev)
	}
}

func TestDrainAllocs(t *testing.T) {
	r := newRig(t, 10*time.Second, 64<<20)
	go io.Copy(io.Discard, r.peer)
	r.w.Run()
	ev := &event.Event{Topic: "t", Offset: 1, Record: event.Record{Data: make([]byte, 128)}}
	drainOne(t, r, ev)
	if n := testing.AllocsPerRun(200, func() { drainOne(t, r, ev) }); n != 0 {
		t.Errorf("%v allocations per delivery, want 0", n)
	}
}

// drainOne queues ev as a note (Enqueue takes the queue path fan-out
// takes, without the engine) and runs the writer.
func drainOne(tb testing.TB, r *rig, ev *event.Event) {
	if !r.w.Hold() {
		tb.Fatal("the writer role is taken")
	}
	r.sub.Enqueue(ev, len(ev.Data)+128)
	r.w.Run()
}
