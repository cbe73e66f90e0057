package ws

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
)

func TestWelcome(t *testing.T) {
	f := newFixture(t, fixtureOpts{ws: Options{PingInterval: time.Hour, IdleTimeout: 2 * time.Hour}})
	c := f.dial(t)
	w := c.welcome
	if len(w.str("client")) != 16 || w.num("protocol") != ProtocolVersion || w.num("max_message_bytes") != 1<<20+64<<10 ||
		w.num("max_topics") != MaxTopicsPerConn || w.num("ping_interval_ms") != 3600000 || w["compression"] != false {
		t.Errorf("welcome %v", w)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("OnConn count %d, want 1", n)
	}
}

// TestSubscribeAndEvents covers subscribed, event and unsubscribed, and
// that an event frame carries every field and its one-topic cursor.
func TestSubscribeAndEvents(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial(t)
	sub := c.subscribe(1, `"topics":["a","b"]`)
	topics := sub["topics"].([]any)
	if len(topics) != 2 || topics[0].(map[string]any)["topic"] != "a" || topics[0].(map[string]any)["offset"] != 0.0 {
		t.Fatalf("subscribed %v", sub)
	}
	cur, err := cursor.Parse(sub.str("cursor"))
	if err != nil || cur.Len() != 2 {
		t.Fatalf("subscribed cursor %q: %v", sub.str("cursor"), err)
	}

	h := map[string]string{"k": "v"}
	acks, err := f.hub.Publish(hub.Internal(context.Background()), "a", []event.Record{{Type: "note", Data: []byte(`{"x":1}`), Headers: h}})
	if err != nil {
		t.Fatal(err)
	}
	ev := c.expect("event")
	if ev.str("topic") != "a" || ev.num("offset") != 1 || ev.str("epoch") != acks[0].Epoch.String() || ev.str("type") != "note" ||
		ev.str("encoding") != "json" || ev.str("time") == "" || ev["headers"].(map[string]any)["k"] != "v" {
		t.Errorf("event %v", ev)
	}
	if d, _ := json.Marshal(ev["data"]); string(d) != `{"x":1}` {
		t.Errorf("data %s", d)
	}
	ec, err := cursor.Parse(ev.str("cursor"))
	if pos, ok := ec.Get("a"); err != nil || ec.Len() != 1 || !ok || pos != acks[0].Position {
		t.Errorf("event cursor %q holds %v (%v), want a at %v", ev.str("cursor"), ec.Entries(), err, acks[0].Position)
	}
	f.publish("b", "two")
	if ev := c.expect("event"); ev.str("topic") != "b" || ev.str("data") != "two" || ev.str("encoding") != "text" {
		t.Errorf("event %v", ev)
	}

	c.send(`{"op":"unsubscribe","id":"u","topics":["a","zz"]}`)
	un := c.expect("unsubscribed")
	if un.str("id") != "u" || fmt.Sprint(un["topics"]) != "[a]" {
		t.Errorf("unsubscribed %v", un)
	}
	f.publish("a", "after")
	f.publish("b", "three")
	if ev := c.expect("event"); ev.str("topic") != "b" || ev.str("data") != "three" {
		t.Errorf("after unsubscribing a: %v, want b's event", ev)
	}
}

// TestRecovery: a subscribe with cursors recovers history, then goes
// live, across several topics; a position that cannot be served is a gap,
// after the subscribed reply and before the events.
func TestRecovery(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	a := f.publish("r.a", "a1", "a2", "a3")
	b := f.publish("r.b", "b1", "b2")
	ca := cursor.AppendSingle(nil, "r.a", a[0].Position) // after a1
	cb := cursor.AppendSingle(nil, "r.b", b[1].Position) // after b2
	var other cursor.Cursor
	other.Set("r.c", event.Position{Epoch: a[0].Epoch + 1, Offset: 9}) // another epoch

	c := f.dial(t)
	c.subscribe(1, fmt.Sprintf(`"topics":["r.a","r.b","r.c"],"cursors":[%q,%q],"cursor":%q`, ca, cb, other.String()))
	gap := c.expect("gap")
	if gap.str("topic") != "r.c" || gap.str("reason") != "epoch_changed" || gap.str("cursor") == "" {
		t.Errorf("gap %v", gap)
	}
	var got []string
	for range 2 {
		got = append(got, c.expect("event").str("data"))
	}
	if !slices.Equal(got, []string{"a2", "a3"}) {
		t.Errorf("recovered %q, want a2 a3", got)
	}
	f.publish("r.b", "b3")
	if ev := c.expect("event"); ev.str("data") != "b3" {
		t.Errorf("live %v", ev)
	}
	// from earliest for a topic without a position
	c2 := f.dial(t)
	c2.subscribe(2, `"topics":["r.b"],"from":"earliest"`)
	for _, want := range []string{"b1", "b2", "b3"} {
		if ev := c2.expect("event"); ev.str("data") != want {
			t.Errorf("from earliest: %v, want %s", ev, want)
		}
	}
}

// TestClientPublish covers ack and the publish errors, including the
// client_publish policy enforced by the hub.
func TestClientPublish(t *testing.T) {
	f := newFixture(t, fixtureOpts{hub: hub.Options{
		MaxEventBytes: 64,
		ClientPublish: func(topic string) bool { return event.Namespace(topic) != "ro" },
	}})
	c := f.dial(t)
	c.subscribe(1, `"topics":["p.a"]`)
	c.send(`{"op":"publish","id":2,"topic":"p.a","data":{"n":1},"type":"t","key":"k1","headers":{"h":"v"}}`)
	var ack, ev msg
	ack, ev = c.ackAndEvent()
	if ack.num("id") != 2 || ack.str("topic") != "p.a" || ack.num("offset") != 1 || ack["duplicate"] != false || ack.str("cursor") == "" {
		t.Errorf("ack %v", ack)
	}
	if ev.str("type") != "t" || ev["headers"].(map[string]any)["h"] != "v" {
		t.Errorf("event %v", ev)
	}
	c.send(`{"op":"publish","id":3,"topic":"p.a","data":{"n":1},"key":"k1"}`)
	if ack := c.expect("ack"); ack["duplicate"] != true || ack.num("offset") != 1 {
		t.Errorf("retry with the same key: %v", ack)
	}
	c.send(`{"op":"publish","id":4,"topic":"p.a","text":"hi"}`)
	ack, ev = c.ackAndEvent()
	if ack.num("offset") != 2 {
		t.Errorf("text publish ack %v", ack)
	}
	if ev.num("offset") != 2 || ev.str("data") != "hi" {
		t.Errorf("text event %v", ev)
	}
	c.send(`{"op":"publish","id":5,"topic":"p.b","data_base64":"AAEC"}`)
	if ack := c.expect("ack"); ack.str("topic") != "p.b" {
		t.Errorf("binary ack %v", ack)
	}

	for _, tt := range []struct{ cmd, code string }{
		{`{"op":"publish","id":10,"topic":"a..b","text":"x"}`, "bad_topic"},
		{`{"op":"publish","id":10,"topic":"p.a","text":"` + strings.Repeat("x", 65) + `"}`, "too_large"},
		{`{"op":"publish","id":10,"topic":"p.a","text":"x","data":1}`, "bad_request"},
		{`{"op":"publish","id":10,"topic":"p.a"}`, "bad_request"},
		{`{"op":"publish","id":10,"topic":"p.a","data_base64":"!!"}`, "bad_request"},
		{`{"op":"publish","id":10,"topic":"p.a","text":"x","type":"gap"}`, "bad_request"},
		{`{"op":"publish","id":10,"topic":"p.a","text":"x","type":"join"}`, "bad_request"},
		{`{"op":"publish","id":10,"topic":"ro.a","text":"x"}`, "forbidden"},
	} {
		c.send("%s", tt.cmd)
		e := c.expect("error")
		if e.num("id") != 10 || e.str("code") != tt.code || e.str("message") == "" {
			t.Errorf("%s: %v, want code %s", tt.cmd, e, tt.code)
		}
	}
	// The service-side API is not held to client_publish.
	if _, err := f.hub.Publish(hub.Internal(context.Background()), "ro.a", []event.Record{{Data: []byte("1")}}); err != nil {
		t.Errorf("a service publish to ro.a: %v", err)
	}
}

// TestCommandErrors: every way a command can be refused is an error
// message, and the connection goes on.
func TestCommandErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{hub: hub.Options{Gate: denyGate("secret")}})
	c := f.dial(t)
	c.subscribe(1, `"topics":["e.a"]`)
	many := make([]string, MaxTopicsPerConn)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprintf("m.%d", i))
	}
	for _, tt := range []struct {
		cmd, id, code string
	}{
		{`not json`, "", "bad_request"},
		{`{"op":"subscribe","topics":["x"]}`, "", "bad_request"},           // no id
		{`{"op":"subscribe","id":{},"topics":["x"]}`, "", "bad_request"},   // bad id
		{`{"op":"subscribe","id":true,"topics":["x"]}`, "", "bad_request"}, // bad id
		{`{"id":7}`, "7", "bad_request"},
		{`{"id":7,"op":"dance"}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":["x"],"colour":1}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":"x"}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":[]}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":["x","x"]}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":["a..b"]}`, "7", "bad_topic"},
		{`{"id":7,"op":"subscribe","topics":["x"],"cursor":"%%"}`, "7", "bad_cursor"},
		{`{"id":7,"op":"subscribe","topics":["x"],"cursors":["AAAA"]}`, "7", "bad_cursor"},
		{`{"id":7,"op":"subscribe","topics":["x"],"from":"now"}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":["e.a"]}`, "7", "bad_request"}, // already subscribed
		{`{"id":7,"op":"subscribe","topics":["x","secret.y"]}`, "7", "forbidden"},
		{`{"id":7,"op":"subscribe","topics":[` + strings.Join(many, ",") + `]}`, "7", "bad_request"}, // over 64 per command
		{`{"id":"s","op":"presence","topic":"e.a"}`, `"s"`, "bad_request"},                           // presence off
		{`{"id":7,"op":"presence"}`, "7", "bad_request"},
		{`{"id":7,"op":"subscribe","topics":["x"]} {}`, "", "bad_request"}, // two objects
		{`{"id":7,"op":"subscribe","topics":["x"],"presence":{"a":1}}`, "7", "subscribed"},
	} {
		c.send("%s", tt.cmd)
		m := c.next()
		id, _ := json.Marshal(m["id"])
		if m["id"] == nil {
			id = nil
		}
		if tt.code == "subscribed" {
			if m.str("op") != "subscribed" {
				t.Errorf("%s: %v", tt.cmd, m)
			}
			continue
		}
		if m.str("op") != "error" || m.str("code") != tt.code || string(id) != tt.id || m.str("message") == "" {
			t.Errorf("%s: %v, want an error %s with id %s", tt.cmd, m, tt.code, tt.id)
		}
	}
	// A refused subscribe to several topics subscribes to none of them.
	if n := f.hub.Subscribers("x"); n != 1 { // the last case's
		t.Errorf("subscribers of x: %d, want 1", n)
	}
	// Topics per connection.
	for i := 0; i+60 <= MaxTopicsPerConn; i += 60 {
		c.subscribe(100+i, `"topics":[`+strings.Join(many[i:i+60], ",")+`]`)
	}
	c.send(`{"id":8,"op":"subscribe","topics":[%s]}`, strings.Join(many[240:256], ","))
	if e := c.expect("error"); e.str("code") != string(reason.LimitReached) {
		t.Errorf("over %d topics: %v", MaxTopicsPerConn, e)
	}
	// Still serving.
	f.publish("e.a", "alive")
	if ev := c.expect("event"); ev.str("data") != "alive" {
		t.Errorf("event %v", ev)
	}
}

// denyGate refuses the namespace it names.
type denyGate string

func (g denyGate) Allow(_ context.Context, _ hub.Action, topic string) error {
	if event.Namespace(topic) == string(g) {
		return fmt.Errorf("%w: not for you", hub.ErrForbidden)
	}
	return nil
}

func TestPresence(t *testing.T) {
	f := newFixture(t, fixtureOpts{hub: hub.Options{Presence: func(topic string) bool { return event.Namespace(topic) == "room" }}})
	ann := f.dial(t)
	ann.subscribe(1, `"topics":["room.1"],"presence":{"name":"ann"}`)
	if j := ann.expect("join"); j.str("client") != ann.welcome.str("client") || j["info"].(map[string]any)["name"] != "ann" || j.str("since") == "" {
		t.Errorf("ann's own join %v", j)
	}
	bob := f.dial(t)
	bob.subscribe(1, `"topics":["room.1","other"],"presence":{"name":"bob"}`)
	if j := bob.expect("join"); j.str("client") != bob.welcome.str("client") {
		t.Errorf("bob's own join %v", j)
	}
	if j := ann.expect("join"); j.str("client") != bob.welcome.str("client") || j.str("topic") != "room.1" {
		t.Errorf("ann sees %v, want bob's join", j)
	}
	ann.send(`{"op":"presence","id":2,"topic":"room.1"}`)
	p := ann.expect("presence")
	members := p["members"].([]any)
	if p.num("count") != 2 || len(members) != 2 || members[0].(map[string]any)["client"] != ann.welcome.str("client") {
		t.Errorf("presence %v", p)
	}
	info, ok, err := f.hub.Info(hub.Internal(context.Background()), "room.1")
	if err != nil || !ok || info.Presence == nil || info.Presence.Count != 2 {
		t.Errorf("hub.Info: %+v %v %v", info, ok, err)
	}
	// Presence is not history.
	if info.Last != 0 {
		t.Errorf("presence consumed offsets: last %d", info.Last)
	}
	bob.send(`{"op":"unsubscribe","id":3,"topics":["room.1"]}`)
	bob.expect("unsubscribed")
	if l := ann.expect("leave"); l.str("client") != bob.welcome.str("client") || l["info"].(map[string]any)["name"] != "bob" {
		t.Errorf("leave %v", l)
	}
	bob.subscribe(4, `"topics":["room.1"]`) // no info
	if j := ann.expect("join"); j["info"] != nil {
		t.Errorf("join without info: %v", j)
	}
	bob.nc.Close() // a client that goes away leaves
	if l := ann.expect("leave"); l.str("client") != bob.welcome.str("client") {
		t.Errorf("leave on disconnect %v", l)
	}
	ann.send(`{"op":"subscribe","id":5,"topics":["room.2"],"presence":[1]}`)
	if e := ann.expect("error"); e.str("code") != "bad_request" {
		t.Errorf("presence info that is not an object: %v", e)
	}
	ann.send(`{"op":"subscribe","id":6,"topics":["room.2"],"presence":{"x":"%s"}}`, strings.Repeat("y", hub.MaxPresenceInfo))
	if e := ann.expect("error"); e.str("code") != "bad_request" {
		t.Errorf("presence info over the limit: %v", e)
	}
}

// TestCloseCodes checks every close code the server sends.
func TestCloseCodes(t *testing.T) {
	t.Run("1000 echo", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		c := f.dial(t)
		c.frame(true, 0, ws.OpClose, closePayload(1000, "bye"))
		c.expectClose(1000)
		waitFor(t, "the connection to be released", func() bool { return f.conns.Load() == 0 })
	})
	t.Run("1001 shutting_down", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		c := f.dial(t)
		c.subscribe(1, `"topics":["a"]`)
		f.hub.Close()
		if r := c.expectClose(1001); !strings.HasPrefix(r, "shutting_down: ") {
			t.Errorf("reason %q", r)
		}
	})
	t.Run("1001 Close without hub", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		c := f.dial(t)
		f.h.Close()
		c.expectClose(1001)
	})
	for _, tt := range []struct {
		name  string
		write func(c *client)
		code  ws.StatusCode
	}{
		{"unmasked", func(c *client) {
			c.nc.Write([]byte{0x81, 0x02, '{', '}'})
		}, 1002},
		{"reserved opcode", func(c *client) { c.frame(true, 0, 0x3, nil) }, 1002},
		{"rsv bits", func(c *client) { c.frame(true, 0x2, ws.OpText, []byte("{}")) }, 1002},
		{"rsv1 without deflate", func(c *client) { c.frame(true, 0x4, ws.OpText, []byte("{}")) }, 1002},
		{"continuation first", func(c *client) { c.frame(true, 0, ws.OpContinuation, []byte("{}")) }, 1002},
		{"new message inside a fragmented one", func(c *client) {
			c.frame(false, 0, ws.OpText, []byte("{"))
			c.frame(true, 0, ws.OpText, []byte("}"))
		}, 1002},
		{"long ping", func(c *client) { c.frame(true, 0, ws.OpPing, make([]byte, 126)) }, 1002},
		{"fragmented ping", func(c *client) { c.frame(false, 0, ws.OpPing, nil) }, 1002},
		{"close code 1005", func(c *client) { c.frame(true, 0, ws.OpClose, closePayload(1005, "")) }, 1002},
		{"close body of one byte", func(c *client) { c.frame(true, 0, ws.OpClose, []byte{3}) }, 1002},
		{"invalid utf-8", func(c *client) { c.frame(true, 0, ws.OpText, []byte("{\"id\":\"\xff\"}")) }, 1007},
		{"invalid utf-8 close reason", func(c *client) { c.frame(true, 0, ws.OpClose, closePayload(1000, "\xff")) }, 1007},
		{"too large", func(c *client) { c.frame(true, 0, ws.OpText, make([]byte, 2000)) }, 1009},
		{"too large, fragmented", func(c *client) {
			c.frame(false, 0, ws.OpText, make([]byte, 1000))
			c.frame(true, 0, ws.OpContinuation, make([]byte, 1000))
		}, 1009},
		{"too large, announced", func(c *client) {
			c.nc.Write([]byte{0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}) // 4 GiB, masked, no payload
		}, 1009},
	} {
		t.Run(fmt.Sprint(tt.code, " ", tt.name), func(t *testing.T) {
			f := newFixture(t, fixtureOpts{ws: Options{MaxMessageBytes: 1500}})
			c := f.dial(t)
			tt.write(c)
			r := c.expectClose(tt.code)
			want := map[ws.StatusCode]string{1002: "protocol_error: ", 1007: "invalid_payload: ", 1009: "too_large: "}[tt.code]
			if !strings.HasPrefix(r, want) {
				t.Errorf("reason %q, want it to start with %q", r, want)
			}
		})
	}
	t.Run("1011 internal_error", func(t *testing.T) {
		eng := &failingEngine{Engine: memory.New(memory.Options{})}
		defer eng.Engine.Close()
		f := newFixture(t, fixtureOpts{eng: eng})
		f.publish("a", "1", "2")
		c := f.dial(t)
		eng.fail.Store(true)
		c.send(`{"op":"subscribe","id":1,"topics":["a"],"from":"earliest"}`)
		// The subscribe itself reads the head: it fails with an error
		// message; a catch-up read failing later ends the connection.
		if e := c.expect("error"); e.str("code") != "internal_error" {
			t.Fatalf("subscribe while the engine fails: %v", e)
		}
		eng.fail.Store(false)
		eng.failAfterHead.Store(true)
		c.send(`{"op":"subscribe","id":2,"topics":["a"],"from":"earliest"}`)
		// (The subscribed reply may be lost: a connection that ends drops
		// what it had queued.)
		if r := c.expectClose(1011); !strings.HasPrefix(r, "internal_error: ") {
			t.Errorf("reason %q", r)
		}
	})
	t.Run("4000 idle_timeout", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{ws: Options{PingInterval: 100 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}})
		c := f.dial(t)
		// The test client does not answer pings.
		start := time.Now()
		if r := c.expectClose(4000); !strings.HasPrefix(r, "idle_timeout: ") {
			t.Errorf("reason %q", r)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("closed for idleness after %v", d)
		}
	})
	t.Run("4001 token_expired", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{hub: hub.Options{Authenticator: expiringAuth{}}})
		var status int
		f.dialRawErr(t, ws.Dialer{OnStatusError: func(s int, _ []byte, _ io.Reader) { status = s }})
		if status != http.StatusUnauthorized {
			t.Errorf("refused upgrade: status %d, want 401", status)
		}
		c := f.dial(t, "Authorization", "Bearer ok")
		if r := c.expectClose(4001); !strings.HasPrefix(r, "token_expired: ") {
			t.Errorf("reason %q", r)
		}
	})
	t.Run("4029 limit_reached", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{ws: Options{MaxConns: 1}})
		f.dial(t)
		c := f.dialRaw(t, ws.Dialer{})
		if r := c.expectClose(4029); !strings.HasPrefix(r, "limit_reached: ") {
			t.Errorf("reason %q", r)
		}
	})
	// 4008 slow_consumer: slow_test.go.
}

// dialRawErr dials expecting the handshake to fail.
func (f *fixture) dialRawErr(t *testing.T, d ws.Dialer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, _, _, err := d.Dial(ctx, f.url)
	if err == nil {
		nc.Close()
		t.Fatal("the upgrade succeeded")
	}
}

// failingEngine fails reads on demand.
type failingEngine struct {
	*memory.Engine
	fail          atomic.Bool // every Read fails
	failAfterHead atomic.Bool // reads of events (limit > 0) fail
}

func (e *failingEngine) Read(ctx context.Context, topic string, after uint64, limit int) (event.Batch, error) {
	if e.fail.Load() || (limit > 0 && e.failAfterHead.Load()) {
		return event.Batch{}, errors.New("disk on fire")
	}
	return e.Engine.Read(ctx, topic, after, limit)
}

func TestPingPong(t *testing.T) {
	f := newFixture(t, fixtureOpts{ws: Options{PingInterval: 100 * time.Millisecond, IdleTimeout: time.Hour}})
	c := f.dial(t)
	// The server pings a quiet client.
	for {
		fr, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if fr.h.OpCode == ws.OpPing {
			break
		}
	}
	// A pong keeps the connection; a client's ping gets a pong with its
	// payload.
	c.frame(true, 0, ws.OpPong, nil)
	c.frame(true, 0, ws.OpPing, []byte("hello"))
	for {
		fr, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if fr.h.OpCode == ws.OpPong {
			if string(fr.payload) != "hello" {
				t.Errorf("pong %q, want hello", fr.payload)
			}
			break
		}
	}
}

// TestFragmentedCommand: a command in several frames, with a ping in
// between, is one command.
func TestFragmentedCommand(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.dial(t)
	cmd := []byte(`{"op":"subscribe","id":1,"topics":["fr.a"]}`)
	c.frame(false, 0, ws.OpText, cmd[:10])
	c.frame(true, 0, ws.OpPing, nil)
	c.frame(false, 0, ws.OpContinuation, cmd[10:20])
	c.frame(true, 0, ws.OpContinuation, cmd[20:])
	c.expect("subscribed")
	// Binary messages are read the same way.
	c.frame(true, 0, ws.OpBinary, []byte(`{"op":"unsubscribe","id":2,"topics":["fr.a"]}`))
	c.expect("unsubscribed")
}

// TestEarlyFrames: commands the client sends right behind its handshake,
// before the server answered it, are read.
func TestEarlyFrames(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.publish("early", "1")
	nc, br := rawUpgrade(t, f, `{"op":"subscribe","id":1,"topics":["early"],"from":"earliest"}`)
	c := &client{t: t, nc: nc, br: br}
	c.expect("welcome")
	c.expect("subscribed")
	if ev := c.expect("event"); ev.str("data") != "1" {
		t.Errorf("event %v", ev)
	}
}

func TestCompression(t *testing.T) {
	f := newFixture(t, fixtureOpts{ws: Options{Compression: true, MaxMessageBytes: 4096}})
	d := ws.Dialer{Extensions: []httphead.Option{{Name: []byte("permessage-deflate")}}}
	c := f.dialRaw(t, d)
	w, err := c.read()
	if err != nil || w.h.Rsv != 0 {
		t.Fatalf("welcome %v %+v", err, w.h)
	}
	if !bytes.Contains(w.payload, []byte(`"compression":true`)) {
		t.Fatalf("welcome %s", w.payload)
	}
	// A compressed command.
	c.frame(true, 0x4, ws.OpText, deflate(t, []byte(`{"op":"subscribe","id":1,"topics":["z"]}`)))
	c.expect("subscribed")
	// Events are compressed when it pays.
	long := strings.Repeat("compressible ", 40)
	f.publish("z", long)
	fr, err := c.read()
	if err != nil || fr.h.Rsv != 0x4 {
		t.Fatalf("event frame %+v %v, want RSV1", fr.h, err)
	}
	plain := inflateTest(t, fr.payload)
	if !bytes.Contains(plain, []byte(long)) || len(fr.payload) >= len(plain) {
		t.Errorf("inflated %d→%d bytes: %.80s", len(fr.payload), len(plain), plain)
	}
	// A bomb: a small message that inflates past the limit.
	c.frame(true, 0x4, ws.OpText, deflate(t, bytes.Repeat([]byte{' '}, 100_000)))
	if r := c.expectClose(1009); !strings.Contains(r, "inflates") {
		t.Errorf("reason %q", r)
	}

	// Without the offer there is no compression.
	c2 := f.dial(t)
	if c2.welcome["compression"] != false {
		t.Errorf("welcome without an offer: %v", c2.welcome)
	}
	c2.subscribe(1, `"topics":["z"]`)
	f.publish("z", long)
	if fr, err := c2.read(); err != nil || fr.h.Rsv != 0 {
		t.Errorf("frame %+v %v, want plain", fr.h, err)
	}
}

func deflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func inflateTest(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail)))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// TestRefusals: requests that are not upgrades, or not allowed, get the
// API's error answers.
func TestRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{ws: Options{AllowOrigin: func(o string) string {
		if o == "https://ok.example" {
			return o
		}
		return ""
	}}})
	for _, tt := range []struct {
		method string
		hdr    map[string]string
		status int
	}{
		{"POST", nil, 405},
		{"GET", nil, 400},
		{"GET", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "https://evil.example"}, 403},
		{"GET", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400}, // no key
	} {
		req, _ := http.NewRequest(tt.method, f.srv.URL+"/v1/ws", nil)
		for k, v := range tt.hdr {
			req.Header.Set(k, v)
		}
		res, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status {
			t.Errorf("%s %v: %d %s, want %d", tt.method, tt.hdr, res.StatusCode, body, tt.status)
		}
	}
	f.dial(t, "Origin", "https://ok.example")
	f.dial(t, "Origin", f.srv.URL) // the server's own origin
	if n := f.conns.Load(); n != 2 {
		t.Errorf("connections %d, want 2", n)
	}
}

// expiringAuth accepts the token "ok", for 300 ms.
type expiringAuth struct{}

func (expiringAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	if c.Token != "ok" {
		return nil, fmt.Errorf("%w: bad token", hub.ErrUnauthenticated)
	}
	return &hub.Identity{Subject: "ok", Method: "test", Expires: time.Now().Add(300 * time.Millisecond)}, nil
}
