//go:build linux

package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestSlowConsumer: among many clients of a topic, one stops reading. It
// is disconnected with slow_consumer (4008) and its queue is released;
// the others receive every event without their latency moving; and when
// it reconnects with the cursor of the last event it got, it receives
// everything it missed, once, in order.
func TestSlowConsumer(t *testing.T) {
	const (
		topic  = "slow.t"
		others = 12
	)
	f := newFixture(t, fixtureOpts{
		hub:    hub.Options{MaxQueueBytes: 128 << 10},
		ws:     Options{WriteTimeout: 5 * time.Second},
		sndbuf: 32 << 10, // so that the stalled client backs up soon
	})
	pad := strings.Repeat("x", 2000)

	// The others read everything and record publish→deliver latency.
	type reader struct {
		c    *client
		seqs []int
		lat  []time.Duration
		n    atomic.Int64 // len(seqs), for the test goroutine
		err  error
	}
	readers := make([]*reader, others)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range readers {
		r := &reader{c: f.dial(t)}
		r.c.subscribe(1, `"topics":["`+topic+`"]`)
		readers[i] = r
		wg.Go(func() {
			for {
				fr, err := r.c.read()
				if err != nil {
					select {
					case <-stop:
					default:
						r.err = err
					}
					return
				}
				if fr.h.OpCode != ws.OpText {
					continue
				}
				if bytes.HasPrefix(fr.payload, []byte(`{"op":"event"`)) {
					r.seqs = append(r.seqs, int(numAfter(fr.payload, `"i":`)))
					r.lat = append(r.lat, time.Duration(time.Now().UnixNano()-numAfter(fr.payload, `"t":`)))
					r.n.Add(1)
				}
			}
		})
	}

	// The slow one, with a small receive buffer so that it backs up soon.
	slow := dialSmallBuffer(t, f)
	slow.subscribe(1, `"topics":["`+topic+`"]`)
	slowConn := f.connOf(slow.welcome.str("client"))

	seq := 0
	publish := func() {
		seq++
		body := fmt.Sprintf(`{"i":%d,"t":%d,"pad":%q}`, seq, time.Now().UnixNano(), pad)
		if _, err := f.hub.Publish(hub.Internal(context.Background()), topic, []event.Record{{Data: []byte(body)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Baseline: everyone reads (the slow one too, for now).
	for range 50 {
		publish()
		time.Sleep(2 * time.Millisecond)
	}
	slowSeqs, slowCursor := readEvents(t, slow, 50)
	baseline := seq

	// The slow one stops reading; publishing goes on until the server
	// ends it.
	stallStart := time.Now()
	for slowConn.sub.Reason() == hub.CloseNone {
		if time.Since(stallStart) > 30*time.Second {
			t.Fatalf("the stalled client was not disconnected after %d events", seq-baseline)
		}
		publish()
		time.Sleep(2 * time.Millisecond)
	}
	if r := slowConn.sub.Reason(); r != hub.CloseSlow {
		t.Fatalf("the stalled client ended with %v, want slow_consumer", r)
	}
	// Its queue and subscriptions are released at once; the connection
	// waits for the close frame to be read (up to the write timeout).
	if n := slowConn.sub.QueuedBytes(); n != 0 || f.hub.Subscribers(topic) != others {
		t.Errorf("after the end: %d bytes still queued, %d subscribers of the topic (want 0 and %d)", n, f.hub.Subscribers(topic), others)
	}
	t.Logf("the stalled client was ended after %d more events (%v)", seq-baseline, time.Since(stallStart).Round(time.Millisecond))
	for range 30 {
		publish()
		time.Sleep(2 * time.Millisecond)
	}
	last := seq

	// It reads again: what the socket held, then the close frame.
	var got []int
	for {
		fr, err := slow.read()
		if err != nil {
			t.Fatalf("the stalled client's connection ended without a close frame: %v", err)
		}
		if fr.h.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(fr.payload)
			if code != 4008 || !strings.HasPrefix(reason, "slow_consumer: ") {
				t.Fatalf("close %d %q, want 4008 slow_consumer", code, reason)
			}
			break
		}
		if i, cu, ok := eventSeq(fr); ok {
			got = append(got, i)
			slowCursor = cu
		}
	}
	slowSeqs = append(slowSeqs, got...)
	waitFor(t, "the stalled connection to be released", func() bool { return f.h.Conns() == others })
	if len(slowSeqs) == 0 {
		t.Fatal("the stalled client got nothing")
	}
	lastSeen := slowSeqs[len(slowSeqs)-1]
	if lastSeen >= last {
		t.Fatalf("the stalled client got everything (%d); the test did not stall it", lastSeen)
	}

	// It resumes from the cursor of the last event it got.
	resume := f.dial(t)
	resume.subscribe(2, `"topics":["`+topic+`"],"cursor":"`+slowCursor+`"`)
	missed, _ := readEvents(t, resume, last-lastSeen)
	all := append(slices.Clone(slowSeqs), missed...)
	for i, s := range all {
		if s != i+1 {
			t.Fatalf("the slow client's events, before and after resuming: %v… want 1..%d once each, in order (first wrong at %d: %d)", all[:min(len(all), 20)], last, i, s)
		}
	}
	if len(all) != last {
		t.Fatalf("%d events, want %d", len(all), last)
	}

	// The others got everything, and the stall did not slow them.
	waitFor(t, "the others to get every event", func() bool {
		for _, r := range readers {
			if r.n.Load() < int64(last) {
				return false
			}
		}
		return true
	})
	close(stop)
	for _, r := range readers {
		r.c.nc.Close()
	}
	wg.Wait()
	var before, during []time.Duration
	for i, r := range readers {
		if r.err != nil {
			t.Errorf("reader %d: %v", i, r.err)
		}
		for j, s := range r.seqs {
			if s != j+1 {
				t.Fatalf("reader %d got %v…, want 1..%d in order", i, r.seqs[:min(20, len(r.seqs))], last)
			}
		}
		before = append(before, r.lat[:baseline]...)
		during = append(during, r.lat[baseline:]...)
	}
	p99b, p99d := p99(before), p99(during)
	t.Logf("others' publish→deliver p99: %v before the stall, %v during it", p99b, p99d)
	if p99d > max(10*p99b, 250*time.Millisecond) {
		t.Errorf("the stalled client slowed the others: p99 %v during the stall, %v before", p99d, p99b)
	}
}

// numAfter parses the number after key in b.
func numAfter(b []byte, key string) int64 {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return -1
	}
	var v int64
	for _, c := range b[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// dialSmallBuffer dials with a 4 KiB receive buffer, set before connecting
// so that the window stays small.
func dialSmallBuffer(t *testing.T, f *fixture) *client {
	t.Helper()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return serr
		}}
		return nd.DialContext(ctx, network, addr)
	}}
	c := f.dialRaw(t, d)
	c.welcome = c.expect("welcome")
	return c
}

// eventSeq returns the "i" of an event frame's payload, and the event's
// cursor.
func eventSeq(fr rawFrame) (int, string, bool) {
	var m struct {
		Op     string `json:"op"`
		Cursor string `json:"cursor"`
		Data   struct {
			I int `json:"i"`
		} `json:"data"`
	}
	if fr.h.OpCode != ws.OpText || json.Unmarshal(fr.payload, &m) != nil || m.Op != "event" {
		return 0, "", false
	}
	return m.Data.I, m.Cursor, true
}

// readEvents reads n events and returns their numbers and the last cursor.
func readEvents(t *testing.T, c *client, n int) ([]int, string) {
	t.Helper()
	var out []int
	var cur string
	for len(out) < n {
		fr, err := c.read()
		if err != nil {
			t.Fatalf("read after %d of %d events: %v", len(out), n, err)
		}
		if i, cu, ok := eventSeq(fr); ok {
			out = append(out, i)
			cur = cu
		}
	}
	return out, cur
}
