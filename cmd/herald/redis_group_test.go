package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
)

// TestRedisNodesGroup is issue 19's check for consumer groups: three
// herald processes on one Redis, one member on each consuming one group
// (the Go client's Consume over REST). The third node's member holds its
// events without answering, and the node is killed with SIGKILL: the
// other nodes deliver those events again once their leases end, every
// event is acked once, and both live nodes report the group done.
func TestRedisNodesGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald and runs three processes; skipped with -short")
	}
	srv := redistest.Start(t, redistest.Options{})
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	nodes := []*redisNode{startRedisNode(t, bin, srv.URL()), startRedisNode(t, bin, srv.URL()), startRedisNode(t, bin, srv.URL())}
	const total, held = 600, 4
	events := make([]client.BatchEvent, total)
	for i := range events {
		events[i] = client.BatchEvent{Topic: "work", Data: fmt.Appendf(nil, `{"i":%d}`, i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := nodes[0].client(t, client.TransportSSE).PublishBatch(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := chaosAPI("PUT", "http://"+nodes[1].http+"/v1/groups/workers", `{"topics":["work"],"start":"earliest","ack_wait":"1s"}`, nil); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acks := map[uint64]int{}         // offset → acks the server took
	deliveries := map[uint64][]int{} // offset → delivery counts handled on the live nodes
	allAcked := make(chan struct{})
	var heldOffs []uint64
	holding := make(chan struct{}, held)
	var wg sync.WaitGroup
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	doomedCtx, stopDoomed := context.WithCancel(cctx)
	// The third node's member first, so that it gets events to hold.
	for _, i := range []int{2, 0, 1} {
		n := nodes[i]
		cl := n.client(t, client.TransportSSE)
		handler := func(_ context.Context, m *client.GroupMessage) error {
			mu.Lock()
			deliveries[m.Event.Offset] = append(deliveries[m.Event.Offset], m.Delivery)
			mu.Unlock()
			return nil
		}
		c := cctx
		if i == 2 {
			c = doomedCtx
			handler = func(hctx context.Context, m *client.GroupMessage) error {
				mu.Lock()
				heldOffs = append(heldOffs, m.Event.Offset)
				mu.Unlock()
				holding <- struct{}{}
				<-hctx.Done() // never answers while the node lives
				return hctx.Err()
			}
		}
		answered := func(m *client.GroupMessage, answer string, err error) {
			if i == 2 || answer != "ack" || err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			acks[m.Event.Offset]++
			if len(acks) == total && acks[m.Event.Offset] == 1 {
				close(allAcked)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cl.Consume(c, "workers", handler, client.WithMember(fmt.Sprintf("node%d", i)),
				client.WithConcurrency(held), client.WithAnswered(answered))
			if err != nil {
				t.Errorf("node %d: Consume: %v", i, err)
			}
		}()
		if i == 2 {
			for range held {
				select {
				case <-holding:
				case <-ctx.Done():
					t.Fatal("the third node's member did not get its events")
				}
			}
		}
	}
	nodes[2].cmd.Process.Signal(syscall.SIGKILL)
	nodes[2].cmd.Wait()
	stopDoomed()
	select {
	case <-allAcked:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("%d of %d events acked", len(acks), total)
	}
	stopConsumers()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for off := uint64(1); off <= total; off++ {
		if acks[off] != 1 {
			t.Errorf("offset %d acked %d times, want once", off, acks[off])
		}
	}
	for _, off := range heldOffs {
		if ds := deliveries[off]; len(ds) == 0 || ds[len(ds)-1] < 2 {
			t.Errorf("offset %d, held by the killed node: deliveries on the others %v, want a redelivery", off, ds)
		}
	}
	for _, n := range nodes[:2] {
		var info struct {
			InFlight    int    `json:"in_flight"`
			Redelivered uint64 `json:"redelivered"`
			Positions   []struct {
				Committed uint64 `json:"committed"`
			} `json:"positions"`
		}
		if err := chaosAPI("GET", "http://"+n.http+"/v1/groups/workers", "", &info); err != nil {
			t.Fatal(err)
		}
		if info.InFlight != 0 || len(info.Positions) != 1 || info.Positions[0].Committed != total || info.Redelivered < held {
			t.Errorf("node %s: %+v; want nothing in flight, committed %d, at least %d redelivered", n.http, info, total, held)
		}
	}
}
