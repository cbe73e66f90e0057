package hub_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	eng := memory.New(memory.Options{})
	defer eng.Close()
	h := hub.New(eng, hub.Options{})
	for i := 0; i < 5; i++ {
		if _, err := h.Publish(ctx, "a", []event.Record{{Data: []byte(`1`)}}); err != nil {
			t.Fatal(err)
		}
	}
	woke := make(chan struct{}, 1)
	s, _ := h.NewSubscriber(hub.SubscriberOptions{Wake: func() {
		select {
		case woke <- struct{}{}:
		default:
		}
	}})
	info, _, _ := h.Info(ctx, "a")
	if _, err := s.Subscribe(ctx, "a", hub.Start{Set: true, Position: event.Position{Epoch: info.Epoch, Offset: 2}}); err != nil {
		t.Fatal(err)
	}
	h.Publish(ctx, "a", []event.Record{{Data: []byte(`1`)}})
	items, r := s.Next(ctx, nil)
	if r != hub.CloseNone || len(items) != 4 || items[0].Event.Offset != 3 || items[3].Event.Offset != 6 {
		t.Fatalf("got %d items %v", len(items), r)
	}
	h.Publish(ctx, "a", []event.Record{{Data: []byte(`1`)}})
	items, _ = s.Next(ctx, items)
	if len(items) != 1 || items[0].Event.Offset != 7 {
		t.Fatalf("live: %+v", items)
	}
	res, err := h.Pull(ctx, hub.PullRequest{Topics: []string{"a"}, Earliest: true, Limit: 3})
	if err != nil || len(res.Events) != 3 {
		t.Fatal(err, res)
	}
	s.Close(hub.CloseClient)
	if h.Subscribers("a") != 0 {
		t.Fatal("left subscribed")
	}
}
