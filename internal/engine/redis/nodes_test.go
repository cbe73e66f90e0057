package redis_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestNodesShareTopics runs publishers on three nodes of one Redis, in a
// Cluster and standalone: offsets stay dense, idempotency keys are shared,
// and every node reads one history.
func TestNodesShareTopics(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"standalone", func(t *testing.T) string { return redistest.Start(t, redistest.Options{}).URL() }},
		{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).URL() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			nodes := []*node{startNode(t, url), startNode(t, url), startNode(t, url)}
			const perG = 100
			var wg sync.WaitGroup
			for i, n := range nodes {
				for g := 0; g < 3; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := 0; j < perG; j++ {
							if _, err := n.h.Publish(hub.Internal(bg), "dense", []event.Record{{Data: data(i*1000 + g*100 + j)}, {Data: data(-1)}}); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
			}
			wg.Wait()
			total := uint64(len(nodes) * 3 * perG * 2)
			var first []*event.Event
			for i, n := range nodes {
				b, err := n.eng.Read(bg, "dense", 0, int(total)+10)
				if err != nil {
					t.Fatal(err)
				}
				if b.Info.Last != total || len(b.Events) != int(total) {
					t.Fatalf("node %d: last %d, %d events; want %d", i, b.Info.Last, len(b.Events), total)
				}
				for k, ev := range b.Events {
					if ev.Offset != uint64(k+1) {
						t.Fatalf("node %d: event %d has offset %d", i, k, ev.Offset)
					}
					if k%2 == 1 && string(ev.Data) != string(data(-1)) {
						t.Fatalf("a batch was split: offset %d is %s", ev.Offset, ev.Data)
					}
				}
				if i == 0 {
					first = b.Events
				} else if !slices.EqualFunc(first, b.Events, func(a, b *event.Event) bool { return string(a.Data) == string(b.Data) && a.Epoch == b.Epoch }) {
					t.Fatalf("node %d reads another history than node 0", i)
				}
			}
			// An idempotency key used on one node is a duplicate on another.
			for i, n := range nodes {
				acks, err := n.h.Publish(hub.Internal(bg), "dense", []event.Record{{Data: data(7), Key: "once"}})
				if err != nil {
					t.Fatal(err)
				}
				if acks[0].Offset != total+1 || acks[0].Duplicate != (i > 0) {
					t.Fatalf("node %d: key once: %+v, want offset %d, duplicate %v", i, acks[0], total+1, i > 0)
				}
			}
		})
	}
}

// TestLostTopicGetsNewEpoch removes one topic's keys, as a Cluster node
// that failed over to a replica without them would: the topic comes back
// under a new epoch, so positions in the lost history are not silently
// taken for positions in the new one, while other topics keep theirs.
func TestLostTopicGetsNewEpoch(t *testing.T) {
	cl := redistest.StartCluster(t)
	n := startNode(t, cl.URL())
	n.publish(t, "lost", 1, 3)
	n.publish(t, "kept", 1, 3)
	before, _, _ := n.eng.Info(bg, "lost")
	kept, _, _ := n.eng.Info(bg, "kept")
	c := n.eng.Client()
	for _, k := range n.eng.TopicKeys("lost") {
		if err := c.Do(bg, c.B().Del().Key(k).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := n.eng.Read(bg, "lost", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if b.Info.Epoch == before.Epoch || b.Info.Last != 0 {
		t.Fatalf("read of a lost topic: %+v; want empty under an epoch other than %v", b.Info, before.Epoch)
	}
	acks, err := n.h.Publish(hub.Internal(bg), "lost", []event.Record{{Data: data(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Epoch != b.Info.Epoch || acks[0].Offset != 1 {
		t.Fatalf("first publish after the loss: %+v, want offset 1 of %v (what the read announced)", acks[0], b.Info.Epoch)
	}
	if i, _, _ := n.eng.Info(bg, "kept"); i != kept {
		t.Fatalf("a topic that was not lost changed: %+v, was %+v", i, kept)
	}
	ts, err := n.eng.Topics(bg)
	if err != nil || len(ts) != 2 || ts[0].Name != "kept" || ts[1].Name != "lost" {
		t.Fatalf("Topics = %+v, %v", ts, err)
	}
}
