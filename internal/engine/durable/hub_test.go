package durable_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// node is a hub over a durable engine, as `herald serve --engine=durable`
// will run it.
type node struct {
	eng *durable.Engine
	h   *hub.Hub
}

func startNode(t *testing.T, dir string) *node {
	t.Helper()
	eng := open(t, dir, durable.Options{})
	h := hub.New(eng, hub.Options{})
	t.Cleanup(h.Close)
	return &node{eng: eng, h: h}
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	n.h.Close()
	if err := n.eng.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func (n *node) publish(t *testing.T, topic string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := n.h.Publish(hub.Internal(context.Background()), topic, []event.Record{{Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

// take calls Next as a transport's writer does until it has n items.
func take(t *testing.T, s *hub.Subscriber, wake chan struct{}, n int) []hub.Item {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var all, buf []hub.Item
	for len(all) < n {
		var r hub.CloseReason
		buf, r = s.Next(context.Background(), buf)
		if r != hub.CloseNone {
			t.Fatalf("Next: subscriber closed: %v", r)
		}
		all = append(all, buf...)
		if len(buf) == 0 {
			select {
			case <-wake:
			case <-deadline:
				t.Fatalf("timed out with %d items, want %d", len(all), n)
			}
		}
	}
	return all
}

// TestHubRecoversAcrossRestart takes a cursor, restarts the engine and
// checks that a subscriber resuming from the cursor gets every later event
// once, with no gap, the history read from disk and the seam to live
// delivery included.
func TestHubRecoversAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	n.publish(t, "room", 1, 5)
	b, err := n.eng.Read(context.Background(), "room", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	cursor := b.Events[0].Position() // a consumer has seen offset 3
	n.stop(t)

	n = startNode(t, dir)
	n.publish(t, "room", 6, 8) // published after the restart, before the consumer is back
	wake := make(chan struct{}, 1)
	s, err := n.h.NewSubscriber(hub.SubscriberOptions{Wake: func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(hub.CloseClient)
	if _, err := s.SubscribeTopic(hub.Internal(context.Background()), "room", hub.Start{Position: cursor, Set: true}); err != nil {
		t.Fatal(err)
	}
	got := take(t, s, wake, 5) // 4..8 from history
	n.publish(t, "room", 9, 10)
	got = append(got, take(t, s, wake, 2)...) // 9..10 live
	for i, it := range got {
		want := uint64(4 + i)
		if it.Gap != nil {
			t.Fatalf("item %d: gap %+v, want event %d", i, *it.Gap, want)
		}
		if it.Event.Offset != want || it.Event.Epoch != cursor.Epoch || string(it.Event.Data) != fmt.Sprintf(`{"i":%d}`, want) {
			t.Fatalf("item %d: event %d in epoch %v (%s), want %d in epoch %v", i, it.Event.Offset, it.Event.Epoch, it.Event.Data, want, cursor.Epoch)
		}
	}
	if len(got) != 7 {
		t.Fatalf("got %d items, want 7", len(got))
	}
}
