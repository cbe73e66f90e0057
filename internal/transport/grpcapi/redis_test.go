package grpcapi_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/hub"
)

// TestPublishStreamsOnRedisNodes: two nodes on one Redis, two
// PublishStreams on each, every stream keeping many single-event requests
// in flight to two topics. Requests merged by a stream and appends
// coalesced by the engine still give every event one offset, dense per
// topic, each stream's events of a topic in the order sent, and the
// history holds each event at the offset its ack named.
func TestPublishStreamsOnRedisNodes(t *testing.T) {
	url := redistest.Start(t, redistest.Options{}).URL()
	var nodes []*harness
	for range 2 {
		eng, err := redis.New(context.Background(), redis.Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		nodes = append(nodes, start(t, func(su *setup) {
			su.engine = func(*memory.Engine) hub.Engine { return eng }
		}))
	}
	const streams, perStream = 4, 500
	topics := []string{"rs.a", "rs.b"}
	type sent struct {
		stream, seq int
	}
	var mu sync.Mutex
	stored := map[string]map[uint64]sent{} // topic → offset → event
	for _, tp := range topics {
		stored[tp] = map[uint64]sent{}
	}
	var wg sync.WaitGroup
	for s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps, err := nodes[s%2].c.PublishStream(ctxT(t))
			if err != nil {
				t.Error(err)
				return
			}
			go func() {
				for i := range perStream {
					req := &heraldv1.PublishRequest{Topic: topics[i%2], Id: uint64(i), Events: []*heraldv1.PublishEvent{{Data: fmt.Appendf(nil, `{"s":%d,"i":%d}`, s, i)}}}
					if err := ps.Send(req); err != nil {
						return // the receiver reports the stream's end
					}
				}
				ps.CloseSend()
			}()
			last := map[string]uint64{}
			for i := range perStream {
				resp, err := ps.Recv()
				if err != nil {
					t.Errorf("stream %d: Recv %d: %v", s, i, err)
					return
				}
				if resp.Id != uint64(i) || len(resp.Acks) != 1 || resp.Error != nil {
					t.Errorf("stream %d: response %d: %v", s, i, resp)
					return
				}
				a := resp.Acks[0]
				if a.Offset <= last[a.Topic] {
					t.Errorf("stream %d: request %d stored at %s/%d, before its request %d's %d", s, i, a.Topic, a.Offset, i-2, last[a.Topic])
				}
				last[a.Topic] = a.Offset
				mu.Lock()
				if prev, dup := stored[a.Topic][a.Offset]; dup {
					t.Errorf("%s/%d acked twice: stream %d request %d and stream %d request %d", a.Topic, a.Offset, prev.stream, prev.seq, s, i)
				}
				stored[a.Topic][a.Offset] = sent{s, i}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, tp := range topics {
		want := streams * perStream / 2
		res, err := nodes[0].c.Pull(ctxT(t), &heraldv1.PullRequest{Topics: []string{tp}, From: heraldv1.From_FROM_EARLIEST, Limit: uint32(want + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != want || len(stored[tp]) != want {
			t.Fatalf("%s: %d events stored, %d acked; want %d", tp, len(res.Events), len(stored[tp]), want)
		}
		for k, ev := range res.Events {
			s := stored[tp][ev.Offset]
			if ev.Offset != uint64(k+1) || string(ev.Data) != fmt.Sprintf(`{"s":%d,"i":%d}`, s.stream, s.seq) {
				t.Fatalf("%s: event %d at offset %d is %s, acked as stream %d request %d", tp, k, ev.Offset, ev.Data, s.stream, s.seq)
			}
		}
	}
}
