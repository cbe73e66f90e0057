//go:build unix

package client_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
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

// drainPayload is a payload large enough to fill socket buffers quickly.
var drainPayload = `{"pad":"` + strings.Repeat("x", 4000) + `"}`

// publishUntil publishes batches of events to topic until done reports
// true, returning how many it published.
func (ts *testServer) publishUntil(topic string, done func() bool) int {
	ts.t.Helper()
	n := 0
	for !done() {
		if n > 20000 {
			ts.t.Fatalf("published %d events and it did not happen", n)
		}
		batch := make([]client.BatchEvent, 16)
		for i := range batch {
			batch[i] = client.BatchEvent{Topic: topic, Data: []byte(drainPayload)}
		}
		if _, err := ts.c.PublishBatch(context.Background(), batch); err != nil {
			ts.t.Fatal(err)
		}
		n += len(batch)
	}
	return n
}

// TestSubscribeSlowConsumer lets a subscriber stop reading until the
// server ends its stream as a slow consumer; once it reads again it
// reconnects and receives every event once, in order.
func TestSubscribeSlowConsumer(t *testing.T) {
	for _, transport := range []client.Transport{client.TransportSSE, client.TransportWS} {
		t.Run(string(transport), func(t *testing.T) { testSlowConsumer(t, transport) })
	}
}

func testSlowConsumer(t *testing.T, transport client.Transport) {
	ts := startServer(t, func(c *config.Config) {
		c.Limits.MaxQueueBytes = 64 << 10
		c.Limits.MaxEventBytes = 16 << 10
		c.Namespaces = map[string]config.Namespace{"slow": {History: config.Retention{MaxEvents: 100000, MaxBytes: 1 << 30}}}
	})
	// A small receive buffer makes the server's writes stall soon after
	// the subscriber stops reading.
	tr := &http.Transport{DialContext: (&net.Dialer{Control: tinyReadBuffer}).DialContext}
	defer tr.CloseIdleConnections()
	c, err := client.New("http://"+ts.addr, client.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(context.Background(), []string{"slow.a"}, client.WithTransport(transport))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	const series = "herald_slow_consumer_disconnects_total"
	n := ts.publishUntil("slow.a", func() bool { return ts.metric(series) >= 1 })
	t.Logf("published %d events before the slow consumer was cut off", n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	notices := 0
	for want := uint64(1); want <= uint64(n); {
		m, err := sub.Next(ctx)
		switch {
		case err != nil:
			t.Fatalf("Next, waiting for #%d of %d: %v", want, n, err)
		case m.Err != nil:
			if e := apiError(t, m.Err); e.Code != client.CodeSlowConsumer {
				t.Errorf("notice %v, want slow_consumer", m.Err)
			}
			notices++
		case m.Event == nil || m.Event.Offset != want:
			t.Fatalf("got %+v, want event #%d", m, want)
		default:
			want++
		}
	}
	if notices != 1 {
		t.Errorf("%d slow-consumer notices, want 1", notices)
	}
}
