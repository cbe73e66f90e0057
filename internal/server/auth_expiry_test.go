package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

// expiryServer is a server verifying HS256 tokens with the given leeway,
// and an API key that may publish anywhere (the tests' publisher).
type expiryServer struct {
	*testServer
	pubKey string
}

func startExpiryServer(t *testing.T, leeway time.Duration) *expiryServer {
	t.Helper()
	key, cfgKey := newAPIKey(t, "publisher", config.Grants{Publish: []string{">"}})
	ts := startServer(t, func(c *config.Config) {
		c.Auth.JWT.HMACSecret = string(authSecret)
		c.Auth.JWT.Audience = testAudience
		c.Auth.JWT.Issuer = testIssuer
		c.Auth.JWT.Leeway = leeway
		c.Auth.APIKeys = []config.APIKey{cfgKey}
	})
	return &expiryServer{testServer: ts, pubKey: key}
}

func (es *expiryServer) in(t *testing.T) *expiryServer {
	return &expiryServer{testServer: es.testServer.in(t), pubKey: es.pubKey}
}

// publishTo publishes {"n":n} to each topic with the publisher's key.
func (es *expiryServer) publishTo(n int, topics ...string) {
	es.t.Helper()
	for _, topic := range topics {
		ack := es.publish(topic, "application/json", []byte(`{"n":`+strconv.Itoa(n)+`}`), bearer(es.pubKey)...)
		if ack.Offset != uint64(n) {
			es.t.Fatalf("publish %d to %s: offset %d", n, topic, ack.Offset)
		}
	}
}

// expiresIn returns an exp about d from now, in whole seconds as a JWT
// carries it: between d-1s and d ahead.
func expiresIn(d time.Duration) time.Time { return time.Unix(time.Now().Add(d).Unix(), 0) }

// userToken is a token for sub, expiring at exp, with every action but
// admin on patterns.
func userToken(t *testing.T, sub string, exp time.Time, patterns ...string) string {
	t.Helper()
	return hs256(t, userClaims(sub, exp, grantsOn(patterns...)))
}

// checkEndTime checks that a stream's end, seen at end, came within a
// second after exp.
func checkEndTime(t *testing.T, what string, exp, end time.Time) {
	t.Helper()
	if d := end.Sub(exp); d < -10*time.Millisecond || d >= time.Second {
		t.Errorf("%s ended %v after exp, want within [0, 1s)", what, d)
	}
}

// offsets is the offsets seen per topic, to check that none is missing
// or repeated.
type offsets map[string][]uint64

func (o offsets) want(t *testing.T, topic string, n int) {
	t.Helper()
	var want []uint64
	for i := 1; i <= n; i++ {
		want = append(want, uint64(i))
	}
	if got := o[topic]; !slices.Equal(got, want) {
		t.Errorf("%s: offsets %v, want 1..%d each once", topic, got, n)
	}
}

// TestAuthExpiry: a stream whose token expires ends within a second of
// its exp with the documented signal, on every transport that streams; a
// refresh before exp keeps it going without losing an event; a refresh
// with narrower grants ends the subscriptions they no longer allow; SSE
// resumes with a new token and its Last-Event-ID. The leeway (250ms) is
// below the second of tolerance, so these hold whether a stream ends at
// exp or at exp plus the leeway (TestAuthExpiryLeeway tells which).
func TestAuthExpiry(t *testing.T) {
	es := startExpiryServer(t, 250*time.Millisecond)

	t.Run("sse", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		const topic = "exp.sse"
		exp := expiresIn(2 * time.Second)
		s := es.openSSE("topic=" + topic + "&access_token=" + userToken(t, "carol", exp, "exp.>"))
		s.next()
		seen := offsets{}
		for n := 1; n <= 3; n++ {
			es.publishTo(n, topic)
			seen[topic] = append(seen[topic], streamOffset(t, s.nextEvent(), topic))
		}
		b := s.nextEvent()
		end := time.Now()
		var e struct{ Code string }
		if err := json.Unmarshal([]byte(b.Data()), &e); b.event != "error" || err != nil || e.Code != "token_expired" {
			t.Fatalf("last block %v, want event: error with code token_expired", b)
		}
		checkEndTime(t, "the SSE stream", exp, end)
		if rest := s.wantEOF(); len(rest) != 0 {
			t.Errorf("after the error: %v", rest)
		}
		waitFor(t, "the expired stream's subscriber to go", 5*time.Second, func() bool {
			return es.srv.Hub().Subscribers(topic) == 0
		})

		// Events published meanwhile come with the reconnect that
		// presents a new token and the last id.
		for n := 4; n <= 6; n++ {
			es.publishTo(n, topic)
		}
		s2 := es.openSSE("topic="+topic+"&access_token="+userToken(t, "carol", expiresIn(time.Hour), "exp.>"),
			"Last-Event-ID", s.lastID)
		s2.next()
		for n := 4; n <= 7; n++ {
			if n == 7 {
				es.publishTo(n, topic)
			}
			seen[topic] = append(seen[topic], streamOffset(t, s2.nextEvent(), topic))
		}
		seen.want(t, topic, 7)
	})

	t.Run("websocket", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		a, b := "exp.ws.a", "exp.ws.b"
		exp := expiresIn(2 * time.Second)
		wc := es.wsConnect("access_token="+userToken(t, "dave", exp, "exp.>"), a, b)
		seen := offsets{}
		var events []map[string]any
		collect := func(n int) {
			t.Helper()
			for len(events) < n {
				events = append(events, wc.read())
			}
		}
		for n := 1; n <= 3; n++ {
			es.publishTo(n, a, b)
		}
		refreshed := wc.reply(10, `{"op":"refresh","id":10,"token":"`+userToken(t, "dave", expiresIn(time.Hour), "exp.>")+`"}`, &events)
		if refreshed["op"] != "refreshed" || refreshed["subject"] != "dave" || len(refreshed["unsubscribed"].([]any)) != 0 {
			t.Fatalf("refresh: %v", refreshed)
		}
		if other := wc.reply(11, `{"op":"refresh","id":11,"token":"`+userToken(t, "mallory", expiresIn(time.Hour), ">")+`"}`, &events); other["code"] != "forbidden" {
			t.Errorf("a refresh to another subject: %v, want forbidden", other)
		}
		for n := 4; n <= 6; n++ {
			es.publishTo(n, a, b)
		}
		// Past the first token's exp (and leeway), the connection goes on.
		<-time.After(time.Until(exp.Add(time.Second)))
		for n := 7; n <= 9; n++ {
			es.publishTo(n, a, b)
		}
		collect(18)
		for _, e := range events {
			if e["op"] != "event" {
				t.Fatalf("message %v, want events only", e)
			}
			seen[e["topic"].(string)] = append(seen[e["topic"].(string)], uint64(e["offset"].(float64)))
		}
		seen.want(t, a, 9)
		seen.want(t, b, 9)

		// Narrower grants end the subscriptions they do not allow.
		events = nil
		narrow := wc.reply(12, `{"op":"refresh","id":12,"token":"`+userToken(t, "dave", expiresIn(time.Hour), a)+`"}`, &events)
		if got := fmt.Sprint(narrow["unsubscribed"]); narrow["op"] != "refreshed" || got != "["+b+"]" {
			t.Fatalf("narrowing refresh: %v, want unsubscribed [%s]", narrow, b)
		}
		if n := es.srv.Hub().Subscribers(b); n != 0 {
			t.Errorf("%d subscribers of %s after the narrowing refresh", n, b)
		}
		es.publishTo(10, b, a)
		if e := wc.read(); e["op"] != "event" || e["topic"] != a || e["offset"] != 10.0 {
			t.Errorf("after the narrowing refresh: %v, want %s's event 10 (and nothing of %s)", e, a, b)
		}
	})

	t.Run("websocket without refresh", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		const topic = "exp.ws.c"
		exp := expiresIn(2 * time.Second)
		// Opened without credentials, the connection takes them with its
		// first command (as a browser that keeps the token out of URLs).
		wc, err := es.dialWS("")
		if err != nil {
			t.Fatal(err)
		}
		if r := wc.reply(1, `{"op":"refresh","id":1,"token":"`+userToken(t, "erin", exp, "exp.>")+`"}`, nil); r["op"] != "refreshed" || r["subject"] != "erin" || r["expires"] != float64(exp.Add(250*time.Millisecond).UnixMilli()) {
			t.Fatalf("refresh: %v", r)
		}
		if r := wc.reply(2, `{"op":"subscribe","id":2,"topics":["`+topic+`"]}`, nil); r["op"] != "subscribed" {
			t.Fatalf("subscribe: %v", r)
		}
		m, err := wc.next()
		if err == nil {
			t.Fatalf("message %v, want the close", m)
		}
		end := time.Now()
		if ce, ok := wsCloseOf(err); !ok || ce.Code != 4001 {
			t.Fatalf("the connection ended with %v, want close 4001 token_expired", err)
		}
		checkEndTime(t, "the WebSocket connection", exp, end)
		waitFor(t, "the expired connection's subscriber to go", 5*time.Second, func() bool {
			return es.srv.Hub().Subscribers(topic) == 0
		})
	})

	t.Run("grpc subscribe", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		const topic = "exp.grpc.s"
		exp := expiresIn(2 * time.Second)
		ctx := grpcAuth(grpcCtx(t), userToken(t, "frank", exp, "exp.>"))
		sub, err := es.grpcClient().Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{topic}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Recv(); err != nil {
			t.Fatal(err)
		}
		es.publishTo(1, topic)
		for {
			d, err := sub.Recv()
			if err == nil {
				if len(d.Events) != 1 || d.Events[0].Offset != 1 {
					t.Fatalf("delivery %v, want event 1", d)
				}
				continue
			}
			end := time.Now()
			if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || grpcReason(err) != "token_expired" {
				t.Fatalf("the stream ended with %v, want UNAUTHENTICATED token_expired", err)
			}
			checkEndTime(t, "the gRPC Subscribe stream", exp, end)
			break
		}
	})

	t.Run("grpc connect", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		a, b := "exp.grpc.a", "exp.grpc.b"
		exp := expiresIn(2 * time.Second)
		cs := es.grpcConnect(t, userToken(t, "grace", exp, "exp.>"), a, b)
		seen := offsets{}
		for n := 1; n <= 3; n++ {
			es.publishTo(n, a, b)
		}
		r := cs.command(&heraldv1.ConnectRequest{Id: 10, Command: &heraldv1.ConnectRequest_Refresh{
			Refresh: &heraldv1.RefreshCommand{Token: userToken(t, "grace", expiresIn(time.Hour), "exp.>")}}})
		if f := r.GetRefreshed(); f == nil || f.Subject != "grace" || len(f.Unsubscribed) != 0 {
			t.Fatalf("refresh: %v", r)
		}
		for n := 4; n <= 6; n++ {
			es.publishTo(n, a, b)
		}
		<-time.After(time.Until(exp.Add(time.Second)))
		for n := 7; n <= 9; n++ {
			es.publishTo(n, a, b)
		}
		for _, e := range cs.events(18) {
			seen[e.Topic] = append(seen[e.Topic], e.Offset)
		}
		seen.want(t, a, 9)
		seen.want(t, b, 9)

		r = cs.command(&heraldv1.ConnectRequest{Id: 11, Command: &heraldv1.ConnectRequest_Refresh{
			Refresh: &heraldv1.RefreshCommand{Token: userToken(t, "grace", expiresIn(time.Hour), a)}}})
		if f := r.GetRefreshed(); f == nil || !slices.Equal(f.Unsubscribed, []string{b}) {
			t.Fatalf("narrowing refresh: %v, want unsubscribed [%s]", r, b)
		}
		if n := es.srv.Hub().Subscribers(b); n != 0 {
			t.Errorf("%d subscribers of %s after the narrowing refresh", n, b)
		}
		es.publishTo(10, b, a)
		if evs := cs.events(1); evs[0].Topic != a || evs[0].Offset != 10 {
			t.Errorf("after the narrowing refresh: %v, want %s's event 10 (and nothing of %s)", evs, a, b)
		}
	})

	t.Run("grpc consume", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		const topic = "exp.grpc.g"
		es.publishTo(1, topic)
		if _, _, err := es.srv.Groups().Put(hub.Internal(context.Background()), group.Config{Name: "exp.workers", Topics: []string{topic}, Start: "earliest"}); err != nil {
			t.Fatal(err)
		}
		exp := expiresIn(2 * time.Second)
		token := hs256(t, userClaims("ivan", exp, config.Grants{Consume: []string{"exp.>"}}))
		ctx, cancel := context.WithTimeout(grpcAuth(context.Background(), token), 10*time.Second)
		defer cancel()
		stream, err := es.grpcClient().Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, req := range []*heraldv1.ConsumeRequest{
			{Id: 1, Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: "exp.workers", Member: "w1"}}},
			{Id: 2, Command: &heraldv1.ConsumeRequest_Grant{Grant: &heraldv1.Grant{Events: 10}}},
		} {
			if err := stream.Send(req); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		got := 0
		for {
			res, err := stream.Recv()
			if err == nil {
				got += len(res.GetMessages().GetMessages()) // left unanswered
				continue
			}
			end := time.Now()
			if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || grpcReason(err) != "token_expired" {
				t.Fatalf("the stream ended with %v, want UNAUTHENTICATED token_expired", err)
			}
			checkEndTime(t, "the gRPC Consume stream", exp, end)
			break
		}
		if got != 1 {
			t.Errorf("%d messages before the end, want 1", got)
		}
		// The unanswered delivery was handed back when the stream ended.
		in, err := es.srv.Groups().Get(context.Background(), "exp.workers")
		if err != nil || in.InFlight != 0 {
			t.Errorf("group after the stream's end: %d in flight (%v), want 0", in.InFlight, err)
		}
	})

	t.Run("grpc consume with refresh", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		const topic = "exp.grpc.r"
		es.publishTo(1, topic)
		if _, _, err := es.srv.Groups().Put(hub.Internal(context.Background()), group.Config{Name: "exp.refreshed", Topics: []string{topic}, Start: "earliest"}); err != nil {
			t.Fatal(err)
		}
		consume := config.Grants{Consume: []string{"exp.>"}}
		exp := expiresIn(2 * time.Second)
		ctx, cancel := context.WithTimeout(grpcAuth(context.Background(), hs256(t, userClaims("judy", exp, consume))), 10*time.Second)
		defer cancel()
		stream, err := es.grpcClient().Consume(ctx)
		if err != nil {
			t.Fatal(err)
		}
		send := func(req *heraldv1.ConsumeRequest) {
			t.Helper()
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		recv := func() *heraldv1.ConsumeResponse {
			t.Helper()
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			return res
		}
		refresh := func(id uint64, token string) *heraldv1.ConsumeResponse {
			t.Helper()
			send(&heraldv1.ConsumeRequest{Id: id, Command: &heraldv1.ConsumeRequest_Refresh{Refresh: &heraldv1.RefreshCommand{Token: token}}})
			for {
				if res := recv(); res.Id == id {
					return res
				}
			}
		}
		send(&heraldv1.ConsumeRequest{Id: 1, Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: "exp.refreshed", Member: "w1"}}})
		if res := recv(); res.GetOpened() == nil {
			t.Fatalf("open: %v", res)
		}
		send(&heraldv1.ConsumeRequest{Id: 2, Command: &heraldv1.ConsumeRequest_Grant{Grant: &heraldv1.Grant{Events: 10}}})
		first := recv().GetMessages().GetMessages()
		if len(first) != 1 {
			t.Fatalf("first messages: %v", first)
		}
		// Refused: another subject, and a token that may not consume.
		if r := refresh(3, hs256(t, userClaims("mallory", expiresIn(time.Hour), consume))); r.GetError().GetCode() != "forbidden" {
			t.Errorf("refresh to another subject: %v, want forbidden", r)
		}
		if r := refresh(4, hs256(t, userClaims("judy", expiresIn(time.Hour), config.Grants{Subscribe: []string{">"}}))); r.GetError().GetCode() != "forbidden" {
			t.Errorf("refresh without consume: %v, want forbidden", r)
		}
		later := expiresIn(time.Hour)
		if r := refresh(5, hs256(t, userClaims("judy", later, consume))); r.GetRefreshed().GetSubject() != "judy" || r.GetRefreshed().GetExpires() < later.UnixMilli() {
			t.Fatalf("refresh: %v", r)
		}
		// Past the first token's exp, the stream goes on: its delivery is
		// still leased to it, and a new event is delivered.
		time.Sleep(time.Until(exp) + 500*time.Millisecond)
		send(&heraldv1.ConsumeRequest{Id: 6, Command: &heraldv1.ConsumeRequest_Ack{Ack: &heraldv1.Answer{Ids: []string{first[0].Id}}}})
		if res := recv(); res.Id != 6 || res.GetAnswered() == nil || res.GetAnswered().GetResults()[0].GetError() != nil {
			t.Fatalf("ack after the first token's exp: %v", res)
		}
		es.publishTo(2, topic)
		if m := recv().GetMessages().GetMessages(); len(m) != 1 || m[0].Event.Offset != 2 {
			t.Fatalf("after the refresh: %v, want event 2", m)
		}
	})

	t.Run("grpc connect without refresh", func(t *testing.T) {
		t.Parallel()
		es := es.in(t)
		exp := expiresIn(2 * time.Second)
		cs := es.grpcConnect(t, userToken(t, "heidi", exp, "exp.>"), "exp.grpc.c")
		err := cs.end()
		end := time.Now()
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || grpcReason(err) != "token_expired" {
			t.Fatalf("the stream ended with %v, want UNAUTHENTICATED token_expired", err)
		}
		checkEndTime(t, "the gRPC Connect stream", exp, end)
	})
}

// TestAuthExpiryLeeway: a token is accepted until exp plus the leeway
// (clock skew), and a stream it opens lasts as long; so a token past its
// exp but within the leeway opens a stream that lasts until then, rather
// than one that ends at once.
func TestAuthExpiryLeeway(t *testing.T) {
	const leeway = 3 * time.Second
	es := startExpiryServer(t, leeway)

	t.Run("ends at exp plus the leeway", func(t *testing.T) {
		exp := expiresIn(time.Second)
		s := es.in(t).openSSE("topic=lw.a&access_token=" + userToken(t, "ivan", exp, "lw.>"))
		s.next()
		b := s.nextEvent()
		checkEndTime(t, "the stream", exp.Add(leeway), time.Now())
		if b.event != "error" {
			t.Errorf("block %v, want the token_expired error", b)
		}
	})

	t.Run("a token inside the leeway", func(t *testing.T) {
		es := es.in(t)
		exp := time.Unix(time.Now().Unix()-1, 0)
		tok := userToken(t, "ivan", exp, "lw.>")
		if r := es.get("/v1/events?topic=lw.b", bearer(tok)...); r.status != http.StatusOK {
			t.Fatalf("a pull with a token within the leeway: %d %s", r.status, r.body)
		}
		s := es.openSSE("topic=lw.b&access_token=" + tok)
		s.next()
		b := s.nextEvent()
		checkEndTime(t, "the stream", exp.Add(leeway), time.Now())
		if b.event != "error" {
			t.Errorf("block %v, want the token_expired error", b)
		}
	})
}

// wsConnect opens a WebSocket with query and subscribes to topics.
func (es *expiryServer) wsConnect(query string, topics ...string) *wsClient {
	es.t.Helper()
	wc, err := es.dialWS(query)
	if err != nil {
		es.t.Fatal(err)
	}
	cmd, _ := json.Marshal(map[string]any{"op": "subscribe", "id": 1, "topics": topics})
	if r := wc.reply(1, string(cmd), nil); r["op"] != "subscribed" {
		es.t.Fatalf("subscribe: %v", r)
	}
	return wc
}

// connectStream is a gRPC Connect stream with credit for every event.
type connectStream struct {
	t      *testing.T
	stream heraldv1.Herald_ConnectClient
	held   []*heraldv1.Event // events read while waiting for a reply
}

// grpcConnect opens a Connect stream with token, grants it credit and
// subscribes to topics.
func (es *expiryServer) grpcConnect(t *testing.T, token string, topics ...string) *connectStream {
	t.Helper()
	ctx, cancel := context.WithCancel(grpcAuth(context.Background(), token))
	t.Cleanup(cancel)
	stream, err := es.grpcClient().Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs := &connectStream{t: t, stream: stream}
	if err := stream.Send(&heraldv1.ConnectRequest{Command: &heraldv1.ConnectRequest_Grant{Grant: &heraldv1.Grant{Events: 1 << 20}}}); err != nil {
		t.Fatal(err)
	}
	r := cs.command(&heraldv1.ConnectRequest{Id: 1, Command: &heraldv1.ConnectRequest_Subscribe{
		Subscribe: &heraldv1.SubscribeCommand{Topics: topics}}})
	if r.GetSubscribed() == nil {
		t.Fatalf("subscribe: %v", r)
	}
	return cs
}

// recv reads the next message within readTimeout.
func (cs *connectStream) recv() (*heraldv1.ConnectResponse, error) {
	type res struct {
		r   *heraldv1.ConnectResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := cs.stream.Recv()
		ch <- res{r, err}
	}()
	select {
	case x := <-ch:
		return x.r, x.err
	case <-time.After(readTimeout):
		cs.t.Fatalf("nothing on the Connect stream for %v", readTimeout)
		return nil, nil
	}
}

// command sends req and returns its reply, holding the events that come
// before it.
func (cs *connectStream) command(req *heraldv1.ConnectRequest) *heraldv1.ConnectResponse {
	cs.t.Helper()
	if err := cs.stream.Send(req); err != nil {
		cs.t.Fatal(err)
	}
	for {
		r, err := cs.recv()
		if err != nil {
			cs.t.Fatalf("waiting for the reply to %d: %v", req.Id, err)
		}
		if r.Id == req.Id {
			return r
		}
		cs.held = append(cs.held, r.GetDelivery().GetEvents()...)
	}
}

// events returns the next n events.
func (cs *connectStream) events(n int) []*heraldv1.Event {
	cs.t.Helper()
	for len(cs.held) < n {
		r, err := cs.recv()
		if err != nil {
			cs.t.Fatalf("after %d of %d events: %v", len(cs.held), n, err)
		}
		if r.GetDelivery() == nil {
			cs.t.Fatalf("message %v, want deliveries", r)
		}
		cs.held = append(cs.held, r.GetDelivery().GetEvents()...)
	}
	out := cs.held[:n]
	cs.held = cs.held[n:]
	return out
}

// end reads until the stream ends and returns its status.
func (cs *connectStream) end() error {
	cs.t.Helper()
	for {
		r, err := cs.recv()
		if err != nil {
			return err
		}
		if r.GetDelivery() == nil {
			cs.t.Fatalf("message %v before the end", r)
		}
	}
}
