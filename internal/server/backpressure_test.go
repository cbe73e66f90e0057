//go:build unix

package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// tinyReadBuffer makes the kernel advertise a small receive window, so that
// a client that does not read stalls the server's writes quickly.
func tinyReadBuffer(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
	})
	if err != nil {
		return err
	}
	return serr
}

// TestSlowConsumer stalls one SSE client among readers, in the two ways a
// stream is found too slow: its queue overflows while a write is blocked,
// or one write stays blocked for sse.write_timeout.
func TestSlowConsumer(t *testing.T) {
	tests := []struct {
		name         string
		queueBytes   int
		writeTimeout time.Duration
	}{
		{"queue overflow", 64 << 10, 10 * time.Second},
		{"write timeout", 64 << 20, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testSlowConsumer(t, func(c *config.Config) {
				c.Limits.MaxQueueBytes = tt.queueBytes
				c.Limits.MaxEventBytes = 16 << 10
				c.SSE.WriteTimeout = tt.writeTimeout
			})
		})
	}
}

func testSlowConsumer(t *testing.T, cfg func(*config.Config)) {
	const (
		topic    = "slow.a"
		readers  = 3
		perBatch = 4 // 16 KiB a batch: the readers' 64 KiB queues hold several
		payload  = 4096
		maxBytes = 64 << 20 // give up publishing after this much
	)
	ts := startServer(t, cfg)

	stalled := ts.dialSSE(&net.Dialer{Timeout: 5 * time.Second, Control: tinyReadBuffer}, "topic="+topic)
	if stalled.status != 200 {
		t.Fatalf("stalled stream: status %d", stalled.status)
	}
	var rs []*sseStream
	for i := 0; i < readers; i++ {
		s := ts.openSSE("topic=" + topic)
		s.next()
		rs = append(rs, s)
	}
	waitFor(t, "all streams to subscribe", 5*time.Second, func() bool { return ts.subscribers(topic) == readers+1 })

	// The readers read in the background, checking order as they go,
	// until the text event "end".
	type result struct {
		count int
		err   error
	}
	results := make([]chan result, readers)
	progress := make([]atomic.Int64, readers) // events read
	for i, s := range rs {
		results[i] = make(chan result, 1)
		go func() {
			want := 0
			for {
				b, err := s.read()
				if err != nil {
					results[i] <- result{want, err}
					return
				}
				if b.data == nil {
					continue
				}
				if b.Data() == "end" {
					results[i] <- result{want, nil}
					return
				}
				var v struct{ N int }
				if err := json.Unmarshal([]byte(b.Data()), &v); err != nil || v.N != want {
					results[i] <- result{want, fmt.Errorf("got %.80s, want n=%d", b.Data(), want)}
					return
				}
				want++
				progress[i].Store(int64(want))
			}
		}()
	}
	// caughtUp reports whether every reader has read n events. Publishing
	// waits for it, so that on a loaded machine the readers' 64 KiB queues
	// never hold more than one batch: only the stalled stream may overflow.
	caughtUp := func(n int) bool {
		for i := range progress {
			if progress[i].Load() < int64(n) {
				return false
			}
		}
		return true
	}

	pad := strings.Repeat("x", payload)
	n := 0
	// The stalled stream leaves the topic's subscribers when it is ended.
	for sent := 0; ts.subscribers(topic) > readers; {
		if sent > maxBytes {
			t.Fatalf("published %d bytes and the stalled stream was not ended", sent)
		}
		var b strings.Builder
		b.WriteString(`{"events":[`)
		for j := 0; j < perBatch; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"topic":%q,"data":{"n":%d,"pad":%q}}`, topic, n, pad)
			n++
		}
		b.WriteString("]}")
		ts.batch(b.String())
		sent += perBatch * payload
		for deadline := time.Now().Add(10 * time.Second); !caughtUp(n); time.Sleep(200 * time.Microsecond) {
			if time.Now().After(deadline) {
				for i := range results {
					select {
					case r := <-results[i]:
						t.Errorf("reader %d stopped after %d events: %v", i, r.count, r.err)
					default:
					}
				}
				t.Fatalf("the readers did not read event %d within 10s", n-1)
			}
		}
	}
	// The stalled client reads now, within the second the server gives
	// its closing frame: everything that reached it is whole events in
	// order, then the slow_consumer error, then the end of the stream.
	lastN, ended := -1, false
	for {
		b, err := stalled.read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stalled stream: %v after n=%d", err, lastN)
		}
		if ended {
			t.Fatalf("stalled stream: a frame after the error: %v", b)
		}
		if b.data == nil {
			continue // the opening retry: and id:
		}
		if b.event == "error" {
			var e struct{ Code, Message string }
			if err := json.Unmarshal([]byte(b.Data()), &e); err != nil || e.Code != "slow_consumer" || e.Message == "" {
				t.Errorf("stalled stream ended with %s", b.Data())
			}
			ended = true
			continue
		}
		var v struct{ N int }
		if err := json.Unmarshal([]byte(b.Data()), &v); err != nil || v.N != lastN+1 {
			t.Fatalf("stalled stream: got %.80s after n=%d", b.Data(), lastN)
		}
		if off := streamOffset(t, b, topic); off != uint64(v.N+1) {
			t.Fatalf("stalled stream: id offset %d for n=%d", off, v.N)
		}
		lastN = v.N
	}
	if !ended {
		t.Errorf("the stalled stream ended without the slow_consumer error")
	}
	if lastN >= n-1 {
		t.Fatalf("the stalled stream received everything (%d events); it never stalled", lastN+1)
	}

	waitFor(t, "the slow consumer metric", 5*time.Second, func() bool {
		return ts.metric("herald_slow_consumer_disconnects_total") == 1
	})
	// A few more after the disconnect: the others still get them.
	for j := 0; j < 10; j++ {
		ts.publish(topic, "application/json", []byte(fmt.Sprintf(`{"n":%d}`, n)))
		n++
	}
	ts.publish(topic, "text/plain", []byte("end"))
	t.Logf("published %d events (%d KiB); the stalled stream received %d before it was ended",
		n, n*payload>>10, lastN+1)

	for i := range rs {
		select {
		case r := <-results[i]:
			if r.err != nil || r.count != n {
				t.Errorf("reader %d: read %d of %d events: %v", i, r.count, n, r.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("reader %d did not finish", i)
		}
	}
	if v := ts.metric("herald_slow_consumer_disconnects_total"); v != 1 {
		t.Errorf("herald_slow_consumer_disconnects_total = %v, want 1", v)
	}
	if v := ts.metric(`herald_disconnects_total{reason="slow_consumer"}`); v != 1 {
		t.Errorf(`herald_disconnects_total{reason="slow_consumer"} = %v, want 1`, v)
	}
	if got := ts.subscribers(topic); got != readers {
		t.Errorf("subscribers = %d, want %d (the stalled one gone)", got, readers)
	}
	if v := ts.metric(`herald_connections{transport="sse"}`); v != readers {
		t.Errorf("sse connections = %v, want %d", v, readers)
	}

	// Reconnecting with its last id resumes with exactly what it missed.
	re := ts.openSSE("topic="+topic, "Last-Event-ID", stalled.lastID)
	re.next()
	for want := lastN + 1; want <= n; want++ {
		b := re.nextEvent()
		if want == n {
			if b.Data() != "end" {
				t.Fatalf("resumed stream: got %.80s, want the end", b.Data())
			}
			break
		}
		var v struct{ N int }
		if err := json.Unmarshal([]byte(b.Data()), &v); err != nil || v.N != want {
			t.Fatalf("resumed stream: got %.80s, want n=%d", b.Data(), want)
		}
	}
}
