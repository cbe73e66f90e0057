package redis_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// startPresenceNode is startNode with presence on in namespace room, and
// the engine's presence TTL.
func startPresenceNode(t *testing.T, url string, ttl time.Duration) *node {
	t.Helper()
	eng, err := redis.New(bg, redis.Options{URL: url, Prefix: prefixOf(t), PresenceTTL: ttl})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	h := hub.New(eng, hub.Options{Presence: func(topic string) bool { return event.Namespace(topic) == "room" }})
	t.Cleanup(func() {
		h.Close()
		eng.Close()
	})
	return &node{eng: eng, h: h}
}

// describe renders items as "join CLIENT INFO", "leave CLIENT" and
// "event OFFSET".
func describe(items []hub.Item) []string {
	var out []string
	for _, it := range items {
		switch {
		case it.Presence != nil && it.Presence.Leave:
			out = append(out, "leave "+it.Presence.Member.Client)
		case it.Presence != nil:
			out = append(out, "join "+it.Presence.Member.Client+" "+string(it.Presence.Member.Info))
		case it.Event != nil:
			out = append(out, fmt.Sprint("event ", it.Event.Offset))
		default:
			out = append(out, fmt.Sprintf("%+v", it))
		}
	}
	return out
}

// expect takes len(want) items and checks them.
func (s *sub) expect(t *testing.T, want ...string) {
	t.Helper()
	if got := describe(s.take(t, len(want))); !slices.Equal(got, want) {
		t.Fatalf("items %q, want %q", got, want)
	}
}

// presenceOf polls n's presence of topic until it has want's clients (in
// any order) and returns it, failing after limit.
func presenceOf(t *testing.T, n *node, topic string, limit time.Duration, want ...string) event.Presence {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(limit)
	for {
		p, err := n.h.Presence(hub.Internal(bg), topic)
		if err != nil {
			t.Fatalf("Presence(%s): %v", topic, err)
		}
		var got []string
		for _, m := range p.Members {
			got = append(got, m.Client)
		}
		slices.Sort(got)
		if slices.Equal(got, want) && p.Count == len(want) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence of %s after %v: %d members %q, want %q", topic, limit, p.Count, got, want)
		}
		time.Sleep(10 * time.Millisecond) // Redis's state gives no signal: poll it
	}
}

// redisSetups are the Redis deployments the presence tests run on.
var redisSetups = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"standalone", func(t *testing.T) string { return redistest.Start(t, redistest.Options{}).URL() }},
	{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).URL() }},
}

// TestPresenceAcrossNodes: a client present on one node is in the
// presence list of another within a second, with its info, and the
// subscribers of the topic on every node are told its join and leave,
// once.
func TestPresenceAcrossNodes(t *testing.T) {
	for _, tt := range redisSetups {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			a, b := startPresenceNode(t, url, 0), startPresenceNode(t, url, 0)
			const topic = "room.1"
			obsB := b.subscribe(t, topic, hub.Start{})
			ob := obsB.s.Client()
			obsB.expect(t, "join "+ob+" ")
			presenceOf(t, a, topic, time.Second, ob) // written: a is not told it when it subscribes
			// A node with no subscriber of a topic without history knows
			// the topic by its presence.
			if info, ok, err := a.h.Info(hub.Internal(bg), topic); err != nil || !ok || info.Presence == nil || info.Presence.Count != 1 || info.Last != 0 {
				t.Fatalf("Info on node a before any subscriber there: %+v %v %v", info, ok, err)
			}
			obsA := a.subscribe(t, topic, hub.Start{})
			oa := obsA.s.Client()
			obsA.expect(t, "join "+oa+" ")
			obsB.expect(t, "join "+oa+" ")

			ann := a.subscribe(t, topic, hub.Start{Info: []byte(`{"name": "ann"}`)})
			an := ann.s.Client()
			joined := time.Now()
			p := presenceOf(t, b, topic, time.Second, ob, oa, an)
			t.Logf("on node b %v after the join", time.Since(joined))
			for _, m := range p.Members {
				if m.Client == an && (string(m.Info) != `{"name":"ann"}` || m.Since == 0) {
					t.Errorf("ann on node b: %+v", m)
				}
			}
			if !slices.IsSortedFunc(p.Members, func(x, y event.Member) int { return int(x.Since - y.Since) }) {
				t.Errorf("members %+v: want the longest present first", p.Members)
			}
			presenceOf(t, a, topic, 0, ob, oa, an) // at once on its own node
			obsB.expect(t, "join "+an+` {"name":"ann"}`)
			obsA.expect(t, "join "+an+` {"name":"ann"}`)
			info, ok, err := b.h.Info(hub.Internal(bg), topic)
			if err != nil || !ok || info.Presence == nil || info.Presence.Count != 3 {
				t.Fatalf("Info on node b: %+v %v %v", info, ok, err)
			}

			ann.s.Unsubscribe(topic)
			obsB.expect(t, "leave "+an)
			obsA.expect(t, "leave "+an)
			presenceOf(t, a, topic, 0, ob, oa)
			presenceOf(t, b, topic, time.Second, ob, oa)

			// An event published after the changes reaches both observers
			// behind them: nothing was told twice.
			a.publish(t, topic, 1, 1)
			obsA.expect(t, "event 1")
			obsB.expect(t, "event 1")

			// A node without subscribers of the topic lists it too.
			c := startPresenceNode(t, url, 0)
			presenceOf(t, c, topic, 0, ob, oa)

			// A node shutting down (hub, then engine, as the server does)
			// writes its clients' leaves: they go at once, not after the TTL.
			dave := c.subscribe(t, topic, hub.Start{})
			dv := dave.s.Client()
			obsB.expect(t, "join "+dv+" ")
			c.h.Close()
			c.eng.Close()
			obsB.expect(t, "leave "+dv)
			presenceOf(t, b, topic, 0, ob, oa)
		})
	}
}

// TestPresenceNodeDies closes a node's engine under its clients, as a
// killed process leaves them: they stay listed until the TTL passes, then
// vanish, and the surviving node's subscribers are told their leave, while
// the members of the surviving node, refreshed, stay.
func TestPresenceNodeDies(t *testing.T) {
	for _, tt := range redisSetups {
		t.Run(tt.name, func(t *testing.T) { testPresenceNodeDies(t, tt.url(t)) })
	}
}

func testPresenceNodeDies(t *testing.T, url string) {
	const ttl = time.Second
	a, b := startPresenceNode(t, url, ttl), startPresenceNode(t, url, ttl)
	const topic = "room.dies"
	obs := b.subscribe(t, topic, hub.Start{})
	ob := obs.s.Client()
	obs.expect(t, "join "+ob+" ")
	ann := a.subscribe(t, topic, hub.Start{})
	an := ann.s.Client()
	obs.expect(t, "join "+an+" ")

	a.eng.Close() // no leave is written
	died := time.Now()
	presenceOf(t, b, topic, 0, ob, an)
	presenceOf(t, b, topic, ttl+time.Second, ob)
	gone := time.Since(died)
	obs.expect(t, "leave "+an)
	told := time.Since(died)
	t.Logf("gone from the list after %v, leave told after %v", gone, told)
	if gone < ttl/2 {
		t.Errorf("the dead node's member vanished after %v, before its TTL of %v", gone, ttl)
	}
	if told > ttl+ttl/3+time.Second {
		t.Errorf("leave told after %v; want within the TTL and a refresh period", told)
	}
	// Three TTLs later b's own member is still there: its node refreshes it.
	time.Sleep(3 * ttl)
	presenceOf(t, b, topic, 0, ob)
	b.publish(t, topic, 1, 1)
	obs.expect(t, "event 1") // and nothing in between
}

// TestPresenceRefreshRestores removes a topic's presence keys, as a Redis
// restarted without its data would: the next refresh puts the members
// back and tells the other nodes their join again.
func TestPresenceRefreshRestores(t *testing.T) {
	const ttl = time.Second
	url := redistest.Start(t, redistest.Options{}).URL()
	a, b := startPresenceNode(t, url, ttl), startPresenceNode(t, url, ttl)
	const topic = "room.lost"
	obs := b.subscribe(t, topic, hub.Start{})
	ob := obs.s.Client()
	obs.expect(t, "join "+ob+" ")
	ann := a.subscribe(t, topic, hub.Start{Info: []byte(`{"n":1}`)})
	an := ann.s.Client()
	obs.expect(t, "join "+an+` {"n":1}`)
	c := a.eng.Client()
	for _, k := range a.eng.PresenceKeys(topic) {
		if err := c.Do(bg, c.B().Del().Key(k).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	presenceOf(t, a, topic, ttl, ob, an)
	// b's own refresh puts ob back unseen by itself; a's tells ann's join.
	obs.expect(t, "join "+an+` {"n":1}`)
}

// TestPresenceConcurrent: clients of one node join and leave two topics
// concurrently, so that the node writes its changes in pipelined batches:
// an observer on another node sees each client's notices alternate join,
// leave, ..., and ends with the list of who is still subscribed.
func TestPresenceConcurrent(t *testing.T) {
	for _, tt := range redisSetups {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			a, b := startPresenceNode(t, url, 0), startPresenceNode(t, url, 0)
			topics := []string{"room.c1", "room.c2"}
			obs := make([]*sub, len(topics))
			for i, topic := range topics {
				obs[i] = b.subscribe(t, topic, hub.Start{})
				obs[i].expect(t, "join "+obs[i].s.Client()+" ")
				presenceOf(t, a, topic, time.Second, obs[i].s.Client())
			}
			const clients, rounds = 8, 10
			var wg sync.WaitGroup
			stay := make([]*hub.Subscriber, clients)
			for i := range stay {
				s, err := a.h.NewSubscriber(hub.SubscriberOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close(hub.CloseClient) })
				stay[i] = s
				topic := topics[i%len(topics)]
				wg.Go(func() {
					for j := range rounds {
						if _, err := s.SubscribeTopic(hub.Internal(bg), topic, hub.Start{}); err != nil {
							t.Error(err)
							return
						}
						if j < rounds-1 {
							s.Unsubscribe(topic)
						}
					}
				})
			}
			wg.Wait()
			for i, topic := range topics {
				items := obs[i].take(t, clients/len(topics)*(2*rounds-1))
				state := map[string]bool{}
				for _, it := range items {
					p := it.Presence
					if p == nil {
						t.Fatalf("%s: item %q", topic, describe([]hub.Item{it}))
					}
					if state[p.Member.Client] == !p.Leave {
						t.Fatalf("%s: client %s: %q twice in a row", topic, p.Member.Client, describe([]hub.Item{it}))
					}
					state[p.Member.Client] = !p.Leave
				}
				want := []string{obs[i].s.Client()}
				for j, s := range stay {
					if j%len(topics) == i {
						want = append(want, s.Client())
						if !state[s.Client()] {
							t.Errorf("%s: client %s should be present", topic, s.Client())
						}
					}
				}
				presenceOf(t, b, topic, time.Second, want...)
			}
		})
	}
}

// TestPresenceBigRoom: a room of more members than a list holds is
// counted whole and listed longest present first, reading only the
// members listed (no HGETALL of the room).
func TestPresenceBigRoom(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	n := startPresenceNode(t, srv.URL(), 0)
	const topic, members = "room.big", 2500
	for i := range members {
		// Joined in the reverse order of their since, so that the list's
		// order cannot come from the order of the writes.
		since := int64(members - i)
		n.eng.SharePresence(&hub.PresenceChange{Topic: topic, Member: event.Member{Client: fmt.Sprintf("c%05d", since), Since: since}})
	}
	check := func(max, count int, first int64) {
		t.Helper()
		p, err := n.eng.ListPresence(bg, topic, max)
		if err != nil {
			t.Fatal(err)
		}
		want := min(max, count)
		if max < 0 {
			want = count
		}
		if p.Count != count || len(p.Members) != want {
			t.Fatalf("ListPresence(%d): count %d, %d members; want %d, %d", max, p.Count, len(p.Members), count, want)
		}
		for i, m := range p.Members {
			if m.Since != first+int64(i) || m.Client != fmt.Sprintf("c%05d", m.Since) {
				t.Fatalf("ListPresence(%d): member %d is %+v, want since %d", max, i, m, first+int64(i))
			}
		}
	}
	check(hub.MaxPresenceList, members, 1)
	check(0, members, 1)
	check(-1, members, 1)
	// The longest present leave: the list moves on.
	for since := int64(1); since <= 10; since++ {
		n.eng.SharePresence(&hub.PresenceChange{Topic: topic, Leave: true, Member: event.Member{Client: fmt.Sprintf("c%05d", since), Since: since}})
	}
	check(hub.MaxPresenceList, members-10, 11)
	c := n.eng.Client()
	stats, err := c.Do(bg, c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stats, "cmdstat_hgetall") {
		t.Errorf("a list read the whole room (HGETALL):\n%s", stats)
	}
	// A room written before the join-time index (an older node's): the
	// first list indexes it, and lists it whole and in order.
	if err := c.Do(bg, c.B().Del().Key(n.eng.PresenceKeys(topic)[2]).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check(hub.MaxPresenceList, members-10, 11)
	check(-1, members-10, 11)
}
