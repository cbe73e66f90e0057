package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
)

// TestSubscribeWSDetails: over WebSocket an event carries every detail,
// as in a pull answer, and presence notices of the topic are not messages.
func TestSubscribeWSDetails(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Presence = true })
	sub := ts.subscribe([]string{"det.a"}, client.WithTransport(client.TransportWS))
	other := ts.subscribe([]string{"det.a"}, client.WithTransport(client.TransportWS)) // a join
	defer other.Close()
	before := time.Now().Add(-time.Second)
	ack, err := ts.c.Publish(context.Background(), "det.a", []byte{0, 1, 2}, client.WithContentType("application/octet-stream"), client.WithType("blob"), client.WithHeader("Trace", "t1"))
	if err != nil {
		t.Fatal(err)
	}
	m := nextEvent(t, sub)
	ev := m.Event
	if ev.Topic != "det.a" || ev.Offset != ack.Offset || ev.Epoch != ack.Epoch || ev.Type != "blob" ||
		ev.Encoding != client.EncodingBinary || ev.Headers["trace"] != "t1" || ev.Time.Before(before) {
		t.Errorf("event %+v", ev)
	}
	if p, err := ev.Payload(); err != nil || string(p) != "\x00\x01\x02" {
		t.Errorf("payload %q %v", p, err)
	}
	if m.Cursor != ack.Cursor {
		t.Errorf("cursor %q, want the ack's %q", m.Cursor, ack.Cursor)
	}
}

// TestSubscribeSSEPresenceNotices: an SSE stream of a topic with presence
// gets join and leave events; the client does not take them for events.
func TestSubscribeSSEPresenceNotices(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Presence = true })
	sub := ts.subscribe([]string{"pres.a"})
	other := ts.subscribe([]string{"pres.a"})
	other.Close() // a join, then (at its next heartbeat) a leave
	ack := ts.publish("pres.a", `"real"`)
	if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset || ev.Topic != "pres.a" {
		t.Errorf("got %+v, want the published event", ev)
	}
}
