package ws

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/group"
)

func (f *fixture) createGroup(name, topic string, ackWait time.Duration) {
	f.t.Helper()
	if _, _, err := f.groups.Put(context.Background(), group.Config{Name: name, Topics: []string{topic}, Start: "earliest", AckWait: ackWait}); err != nil {
		f.t.Fatal(err)
	}
}

// deliveries reads a messages reply's messages.
func deliveries(t *testing.T, m msg) []msg {
	t.Helper()
	list, _ := m["messages"].([]any)
	out := make([]msg, len(list))
	for i, x := range list {
		out[i] = msg(x.(map[string]any))
	}
	return out
}

func TestGroupCommands(t *testing.T) {
	f := newFixture(t, fixtureOpts{groups: true})
	f.publish("jobs", "one", "two", "three")
	f.createGroup("workers", "jobs", time.Minute)
	c := f.dial(t)

	c.send(`{"op":"fetch","id":1,"group":"workers","member":"w1","limit":2}`)
	got := c.expect("messages")
	ms := deliveries(t, got)
	if got.num("id") != 1 || got.str("group") != "workers" || got.str("member") != "w1" || len(ms) != 2 {
		t.Fatalf("messages %v", got)
	}
	for i, m := range ms {
		ev := msg(m["event"].(map[string]any))
		if m.str("id") == "" || m.num("delivery") != 1 || m.str("deadline") == "" || ev.num("offset") != uint64(i+1) || ev.str("topic") != "jobs" {
			t.Errorf("message %d: %v", i, m)
		}
		if cur, err := cursor.Parse(m.str("cursor")); err != nil || cur.Len() != 1 {
			t.Errorf("message %d cursor %q: %v", i, m.str("cursor"), err)
		}
	}
	// ack of one known and one unknown id: a result each.
	c.send(`{"op":"ack","id":2,"group":"workers","member":"w1","ids":[%q,"nonsense"]}`, ms[0].str("id"))
	ans := c.expect("answered")
	res := ans["results"].([]any)
	if ans.num("id") != 2 || len(res) != 2 || res[0].(map[string]any)["error"] != nil ||
		res[1].(map[string]any)["error"].(map[string]any)["code"] != "not_found" {
		t.Errorf("answered %v", ans)
	}
	c.send(`{"op":"in_progress","id":3,"group":"workers","member":"w1","ids":[%q]}`, ms[1].str("id"))
	if ans := c.expect("answered"); ans["results"].([]any)[0].(map[string]any)["deadline"] == nil {
		t.Errorf("in_progress answered %v", ans)
	}
	c.send(`{"op":"nak","id":4,"group":"workers","member":"w1","ids":[%q],"delay":0}`, ms[1].str("id"))
	if ans := c.expect("answered"); ans["results"].([]any)[0].(map[string]any)["error"] != nil {
		t.Errorf("nak answered %v", ans)
	}
	// The naked event comes again (delivery 2), with the third.
	c.send(`{"op":"fetch","id":5,"group":"workers","member":"w1","limit":10}`)
	again := deliveries(t, c.expect("messages"))
	if len(again) != 2 || again[0].num("delivery")+again[1].num("delivery") != 3 {
		t.Fatalf("second fetch: %v", again)
	}
	c.send(`{"op":"term","id":6,"group":"workers","member":"w1","ids":[%q,%q],"reason":"bad"}`, again[0].str("id"), again[1].str("id"))
	c.expect("answered")
	if in, _ := f.groups.Get(context.Background(), "workers"); in.InFlight != 0 || in.DeadLettered != 2 {
		t.Errorf("group: in flight %d, dead-lettered %d", in.InFlight, in.DeadLettered)
	}

	// A fetch that waits does not hold the connection's other commands up.
	c.send(`{"op":"fetch","id":7,"group":"workers","member":"w1","wait":"10s"}`)
	c.send(`{"op":"ack","id":8,"group":"workers","member":"w1","ids":["x"]}`)
	if ans := c.expect("answered"); ans.num("id") != 8 {
		t.Errorf("ack while a fetch waits: %v", ans)
	}
	f.publish("jobs", "four")
	if m := c.expect("messages"); m.num("id") != 7 || len(deliveries(t, m)) != 1 {
		t.Errorf("waiting fetch: %v", m)
	}
}

func TestGroupCommandRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{groups: true})
	f.publish("jobs", "one")
	f.createGroup("workers", "jobs", time.Minute)
	c := f.dial(t)
	for i, tc := range []struct{ cmd, code string }{
		{`"op":"fetch"`, "bad_request"},
		{`"op":"fetch","group":"nope"`, "not_found"},
		{`"op":"fetch","group":"workers","limit":-1`, "bad_request"},
		{`"op":"fetch","group":"workers","limit":100000`, "bad_request"},
		{`"op":"fetch","group":"workers","wait":"forever"`, "bad_request"},
		{`"op":"fetch","group":"workers","wait":"1h"`, "bad_request"},
		{`"op":"fetch","group":"workers","ids":["x"]`, "bad_request"},
		{`"op":"ack","group":"workers"`, "bad_request"},
		{`"op":"ack","group":"nope","ids":["x"]`, "not_found"},
		{`"op":"nak","group":"nope","ids":["x"]`, "not_found"},
		{`"op":"ack","group":"workers","ids":["x"],"delay":"1s"`, "bad_request"},
		{`"op":"nak","group":"workers","ids":["x"],"delay":"-1s"`, "bad_request"},
		{`"op":"nak","group":"workers","ids":["x"],"reason":"r"`, "bad_request"},
		{`"op":"ack","group":"workers","ids":["x"],"limit":3`, "bad_request"},
		{`"op":"fetch","group":"workers","member":"bad\u0001member"`, "bad_request"},
	} {
		c.send(`{"id":%d,%s}`, i, tc.cmd)
		e := c.expect("error")
		if e.num("id") != uint64(i) || e.str("code") != tc.code {
			t.Errorf("{%s}: %v, want %s", tc.cmd, e, tc.code)
		}
	}
	// Nothing changed: the event is there for the first fetch.
	c.send(`{"op":"fetch","id":99,"group":"workers"}`)
	if ms := deliveries(t, c.expect("messages")); len(ms) != 1 || ms[0].num("delivery") != 1 {
		t.Errorf("after refusals: %v", ms)
	}
}

// Deliveries a connection fetched and did not answer are handed back when
// it ends: another member gets them at once, not after their leases.
func TestGroupHandBack(t *testing.T) {
	f := newFixture(t, fixtureOpts{groups: true})
	f.publish("jobs", "one", "two")
	f.createGroup("workers", "jobs", time.Hour)
	c := f.dial(t)
	c.send(`{"op":"fetch","id":1,"group":"workers","member":"w1"}`)
	if ms := deliveries(t, c.expect("messages")); len(ms) != 2 {
		t.Fatalf("fetched %v", ms)
	}
	c.nc.Close()

	// The hand-back naks the two one after the other, so a fetch may see
	// the first before the second: fetch until both are back.
	d := f.dial(t)
	var n []uint64
	for id := 1; len(n) < 2 && id <= 2; id++ {
		d.send(`{"op":"fetch","id":%d,"group":"workers","member":"w2","wait":"10s","limit":%d}`, id, 2-len(n))
		for _, m := range deliveries(t, d.expect("messages")) {
			n = append(n, m.num("delivery"))
		}
	}
	if fmt.Sprint(n) != "[2 2]" {
		t.Errorf("deliveries %v, want [2 2]", n)
	}
}

// Without a group manager the commands answer unavailable.
func TestGroupCommandsUnavailable(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial(t)
	c.send(`{"op":"fetch","id":1,"group":"g"}`)
	if e := c.expect("error"); e.str("code") != "unavailable" {
		t.Errorf("%v", e)
	}
}
