package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// guard is how long a test waits for what should happen at once before it
// calls it a failure. It never orders events.
const guard = 10 * time.Second

// node is a hub over a Redis engine, as one `herald serve --engine redis`
// runs it. Nodes of one test share a key prefix, as the nodes of one
// deployment do.
type node struct {
	eng *redis.Engine
	h   *hub.Hub
}

func startNode(t *testing.T, url string) *node {
	t.Helper()
	eng, err := redis.New(bg, redis.Options{URL: url, Prefix: prefixOf(t)})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	h := hub.New(eng, hub.Options{})
	t.Cleanup(func() {
		h.Close()
		eng.Close()
	})
	return &node{eng: eng, h: h}
}

func data(i int) []byte { return fmt.Appendf(nil, `{"i":%d}`, i) }

// publish publishes events from..to, one per call.
func (n *node) publish(t *testing.T, topic string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := n.h.Publish(hub.Internal(bg), topic, []event.Record{{Data: data(i)}}); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
}

// sub is a hub subscriber and the channel its Wake signals.
type sub struct {
	s    *hub.Subscriber
	wake chan struct{}
}

func (n *node) subscribe(t *testing.T, topic string, start hub.Start) *sub {
	t.Helper()
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
	t.Cleanup(func() { s.Close(hub.CloseClient) })
	if _, err := s.SubscribeTopic(hub.Internal(bg), topic, start); err != nil {
		t.Fatal(err)
	}
	return &sub{s: s, wake: wake}
}

// take calls Next as a transport's writer does until it has n items.
func (s *sub) take(t *testing.T, n int) []hub.Item {
	t.Helper()
	deadline := time.After(guard)
	var all, buf []hub.Item
	for len(all) < n {
		var r hub.CloseReason
		buf, r = s.s.Next(bg, buf)
		if r != hub.CloseNone {
			t.Fatalf("Next: subscriber closed: %v", r)
		}
		all = append(all, buf...)
		if len(buf) == 0 {
			select {
			case <-s.wake:
			case <-deadline:
				t.Fatalf("timed out with %d items, want %d", len(all), n)
			}
		}
	}
	return all
}

// wantEvents checks that items are the events from..to of one epoch, in
// order, with no gap, and returns the epoch.
func wantEvents(t *testing.T, items []hub.Item, from, to int) event.Epoch {
	t.Helper()
	if len(items) != to-from+1 {
		t.Fatalf("%d items, want events %d..%d", len(items), from, to)
	}
	var ep event.Epoch
	for i, it := range items {
		want := from + i
		if it.Event == nil {
			t.Fatalf("item %d: %+v, want event %d", i, it, want)
		}
		if ep == 0 {
			ep = it.Event.Epoch
		}
		if it.Event.Offset != uint64(want) || it.Event.Epoch != ep || string(it.Event.Data) != string(data(want)) {
			t.Fatalf("item %d: event %d/%v %s, want %d/%v", i, it.Event.Offset, it.Event.Epoch, it.Event.Data, want, ep)
		}
	}
	return ep
}

// eventually polls cond, which reads state no signal reports (Redis's
// view of its clients), until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// numsub returns how many clients Redis counts on channel.
func numsub(t *testing.T, srv *redistest.Server, sharded bool, channel string) string {
	cmd := "numsub"
	if sharded {
		cmd = "shardnumsub"
	}
	out := strings.Fields(srv.CLI("pubsub", cmd, channel))
	if len(out) != 2 {
		t.Fatalf("PUBSUB %s: %q", cmd, out)
	}
	return out[1]
}

// TestWatchSubscribesOnlyWatchedTopics checks that a node subscribes to
// the channel of a topic only while it has consumers of it, with sharded
// pub/sub on Redis 7 and plain pub/sub as on older servers.
func TestWatchSubscribesOnlyWatchedTopics(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	for _, sharded := range []bool{true, false} {
		t.Run(fmt.Sprintf("sharded=%v", sharded), func(t *testing.T) {
			a, b := startNode(t, srv.URL()), startNode(t, srv.URL())
			if !sharded {
				a.eng.UsePlainPubSub()
				b.eng.UsePlainPubSub()
			} else if !a.eng.Sharded() {
				t.Fatal("Redis 7 and no sharded pub/sub")
			}
			s := a.subscribe(t, "watched", hub.Start{})
			if got := numsub(t, srv, sharded, a.eng.Channel("watched")); got != "1" {
				t.Fatalf("subscribers of the watched topic: %s, want 1", got)
			}
			b.publish(t, "watched", 1, 3)
			b.publish(t, "unwatched", 1, 3)
			if got := numsub(t, srv, sharded, a.eng.Channel("unwatched")); got != "0" {
				t.Fatalf("subscribers of a topic nobody watches: %s, want 0", got)
			}
			wantEvents(t, s.take(t, 3), 1, 3)
			s.s.Close(hub.CloseClient)
			eventually(t, "the last consumer's node to unsubscribe", func() bool {
				return numsub(t, srv, sharded, a.eng.Channel("watched")) == "0"
			})
		})
	}
}

// killSubscribers kills Redis's connections that hold subscriptions.
func killSubscribers(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(srv.CLI("client", "list"), "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["sub"] != "0" || f["ssub"] != "0" {
			srv.CLI("client", "kill", "id", f["id"])
			n++
		}
	}
	return n
}

// TestResubscribeFillsTheHole kills the subscribing connection while
// another node publishes: the consumer still sees every event once, in
// order, the missed ones read from the stream.
func TestResubscribeFillsTheHole(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a, b := startNode(t, srv.URL()), startNode(t, srv.URL())
	s := a.subscribe(t, "room", hub.Start{})
	b.publish(t, "room", 1, 5)
	wantEvents(t, s.take(t, 5), 1, 5)
	if killSubscribers(t, srv) == 0 {
		t.Fatal("no subscribed connection to kill")
	}
	b.publish(t, "room", 6, 10) // some of these reach nobody
	wantEvents(t, s.take(t, 5), 6, 10)
	eventually(t, "the node to subscribe again", func() bool { return numsub(t, srv, true, a.eng.Channel("room")) == "1" })
	b.publish(t, "room", 11, 12)
	wantEvents(t, s.take(t, 2), 11, 12)
}

// publishAgain publishes event i, retrying while Redis is unavailable.
func (n *node) publishAgain(t *testing.T, topic string, i int) event.Ack {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		acks, err := n.h.Publish(hub.Internal(bg), topic, []event.Record{{Data: data(i)}})
		if err == nil {
			return acks[0]
		}
		if !errors.Is(err, hub.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Publish %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // reconnecting: no signal to wait on
	}
}

// TestRedisRestart restarts Redis under a consumer: with its data kept
// (AOF) the consumer sees no gap; with its data wiped, it is told
// (epoch_changed) and offsets never silently start again.
func TestRedisRestart(t *testing.T) {
	t.Run("aof", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{AOF: true})
		a, b := startNode(t, srv.URL()), startNode(t, srv.URL())
		s := a.subscribe(t, "room", hub.Start{})
		b.publish(t, "room", 1, 5)
		ep := wantEvents(t, s.take(t, 5), 1, 5)
		srv.Restart(false)
		for i := 6; i <= 10; i++ {
			if ack := b.publishAgain(t, "room", i); ack.Epoch != ep || ack.Offset != uint64(i) {
				t.Fatalf("publish %d after the restart: %+v, want offset %d of epoch %v", i, ack, i, ep)
			}
		}
		wantEvents(t, s.take(t, 5), 6, 10)
	})
	t.Run("wiped", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		a, b := startNode(t, srv.URL()), startNode(t, srv.URL())
		s := a.subscribe(t, "room", hub.Start{})
		b.publish(t, "room", 1, 5)
		ep := wantEvents(t, s.take(t, 5), 1, 5)
		srv.Restart(true)
		ack := b.publishAgain(t, "room", 1)
		if ack.Epoch == ep || ack.Offset != 1 {
			t.Fatalf("first publish after a wipe: %+v; want offset 1 of a new epoch (the old was %v)", ack, ep)
		}
		// The pool may still hold a connection of before the restart,
		// whose first use fails (EOF, unavailable): retried, as a client
		// of a 503 does.
		for i := 2; i <= 3; i++ {
			b.publishAgain(t, "room", i)
		}
		items := s.take(t, 4)
		g := items[0].Gap
		if g == nil || g.Reason != hub.GapEpoch || g.Requested != (event.Position{Epoch: ep, Offset: 5}) || g.Resumed.Epoch != ack.Epoch {
			t.Fatalf("first item after the wipe: %+v, want an epoch_changed gap from %v/5 to %v", items[0], ep, ack.Epoch)
		}
		if got := wantEvents(t, items[1:], 1, 3); got != ack.Epoch {
			t.Fatalf("events after the gap in epoch %v, want %v", got, ack.Epoch)
		}
	})
}

// TestOutage stops Redis: publishes fail as unavailable, with nothing
// stored, and succeed again once it is back.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true})
	a := startNode(t, srv.URL())
	a.publish(t, "room", 1, 2)
	srv.Stop()
	ctx, cancel := context.WithTimeout(bg, guard)
	defer cancel()
	_, err := a.h.Publish(hub.Internal(ctx), "room", []event.Record{{Data: data(3)}})
	if !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("publish while Redis is down: %v, want ErrUnavailable", err)
	}
	srv.Start()
	if ack := a.publishAgain(t, "room", 3); ack.Offset != 3 {
		t.Fatalf("publish after the outage: %+v, want offset 3 (nothing stored meanwhile)", ack)
	}
}
