package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// tokenAuth accepts "tok-NAME" as the caller NAME, no token as an
// anonymous caller, and refuses anything else.
type tokenAuth struct{}

func (tokenAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	id := &hub.Identity{Transport: c.Transport, RemoteAddr: c.RemoteAddr}
	switch name, ok := strings.CutPrefix(c.Token, "tok-"); {
	case c.Token == "":
		id.Method = "anonymous"
	case ok && name != "bad":
		id.Subject, id.Method = name, "test:"+c.Source.String()
	default:
		return nil, fmt.Errorf("%w: unknown token", hub.ErrUnauthenticated)
	}
	return id, nil
}

// recordingGate allows everything and records who asked for what.
type recordingGate struct {
	mu    sync.Mutex
	calls []string // "subject transport action topic"
}

func (g *recordingGate) Allow(ctx context.Context, a hub.Action, topic string) error {
	id := hub.IdentityOf(ctx)
	who := "<none>"
	if id != nil {
		who = id.Subject
		if who == "" {
			who = "anonymous"
		}
		who += " " + id.Transport
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, who+" "+a.String()+" "+topic)
	return nil
}

func (g *recordingGate) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.calls
	g.calls = nil
	slices.Sort(out)
	return slices.Compact(out)
}

// TestEveryTransportCarriesTheIdentity: the same caller, making the same
// kind of request over every transport, reaches the hub's Gate with the
// same identity, for every action; a caller without credentials reaches it
// as anonymous; refused credentials reach nothing. The credentials seam is
// the hub's: a transport that forgot it would show here as "<none>" (the
// hub refuses such calls) or as a missing line.
func TestEveryTransportCarriesTheIdentity(t *testing.T) {
	gate := &recordingGate{}
	ts := startServerWith(t, []server.Option{server.WithAccess(tokenAuth{}, gate)})
	bearer := []string{"Authorization", "Bearer tok-alice"}

	check := func(t *testing.T, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := gate.take(); !slices.Equal(got, want) {
			t.Errorf("the gate saw\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}

	t.Run("rest", func(t *testing.T) {
		ts := ts.in(t)
		ts.publish("id.a", "application/json", []byte(`{"n":1}`), bearer...)
		r := ts.do(http.MethodPost, "/v1/events", []byte(`{"events":[{"topic":"id.b","data":1}]}`), append(bearer, "Content-Type", "application/json")...)
		if r.status != http.StatusOK {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		for _, path := range []string{"/v1/events?topic=id.a", "/v1/topics/id.a/events?from=latest&wait=10ms", "/v1/topics", "/v1/topics/id.a"} {
			if r := ts.get(path, bearer...); r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, r.status, r.body)
			}
		}
		check(t, "alice rest publish id.a", "alice rest publish id.b", "alice rest history id.a", "alice rest admin ", "alice rest admin id.a")
	})

	t.Run("anonymous on the fast path", func(t *testing.T) {
		ts.in(t).publish("id.a", "application/json", []byte(`{"n":2}`))
		check(t, "anonymous rest publish id.a")
	})

	t.Run("sse", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.base+"/v1/sse?topic=id.d&from=earliest&access_token=tok-alice", nil)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		check(t, "alice sse subscribe id.d", "alice sse history id.d")
	})

	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer tok-alice"}})}
		nc, _, _, err := d.Dial(ctx, "ws://"+ts.addr+"/v1/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		for _, cmd := range []string{
			`{"op":"subscribe","id":1,"topics":["id.e"]}`,
			`{"op":"publish","id":2,"topic":"id.e","data":1}`,
		} {
			if err := wsutil.WriteClientText(nc, []byte(cmd)); err != nil {
				t.Fatal(err)
			}
		}
		for seen := ""; !strings.Contains(seen, `"op":"ack"`); {
			msg, err := wsutil.ReadServerText(nc)
			if err != nil {
				t.Fatal(err)
			}
			seen += string(msg)
		}
		check(t, "alice ws subscribe id.e", "alice ws publish id.e")
	})

	t.Run("grpc", func(t *testing.T) {
		gc := ts.in(t).grpcClient()
		ctx := metadata.AppendToOutgoingContext(grpcCtx(t), "authorization", "Bearer tok-alice")
		if _, err := gc.Publish(ctx, &heraldv1.PublishRequest{Topic: "id.f", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := gc.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"id.f"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := gc.GetTopic(ctx, &heraldv1.GetTopicRequest{Topic: "id.f"}); err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		sub, err := gc.Subscribe(sctx, &heraldv1.SubscribeRequest{Topics: []string{"id.g"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Recv(); err != nil { // the starting cursor: subscribed
			t.Fatal(err)
		}
		stop()
		conn, err := gc.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conn.Send(&heraldv1.ConnectRequest{Id: 1, Command: &heraldv1.ConnectRequest_Subscribe{Subscribe: &heraldv1.SubscribeCommand{Topics: []string{"id.h"}}}})
		conn.Send(&heraldv1.ConnectRequest{Id: 2, Command: &heraldv1.ConnectRequest_Publish{Publish: &heraldv1.PublishRequest{Topic: "id.h", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}}})
		for got := 0; got < 2; {
			m, err := conn.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.Id != 0 {
				got++
			}
		}
		conn.CloseSend()
		check(t, "alice grpc publish id.f", "alice grpc history id.f", "alice grpc admin id.f",
			"alice grpc subscribe id.g", "alice grpc subscribe id.h", "alice grpc publish id.h")
	})

	t.Run("refused credentials reach nothing", func(t *testing.T) {
		ts := ts.in(t)
		bad := []string{"Authorization", "Bearer tok-bad"}
		if r := ts.do(http.MethodPost, "/v1/topics/id.z/events", []byte("1"), bad...); r.status != http.StatusUnauthorized {
			t.Errorf("publish: %d %s", r.status, r.body)
		}
		for _, path := range []string{"/v1/events?topic=id.z", "/v1/sse?topic=id.z", "/v1/sse?topic=id.z&access_token=tok-bad", "/v1/topics"} {
			h := bad
			if strings.Contains(path, "access_token") {
				h = nil
			}
			if r := ts.get(path, h...); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), `"unauthenticated"`) {
				t.Errorf("GET %s: %d %s", path, r.status, r.body)
			}
		}
		var code int
		d := ws.Dialer{
			Header:        ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer tok-bad"}}),
			OnStatusError: func(s int, _ []byte, _ io.Reader) { code = s },
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if nc, _, _, err := d.Dial(ctx, "ws://"+ts.addr+"/v1/ws"); err == nil {
			nc.Close()
			t.Error("a WebSocket with refused credentials was upgraded")
		} else if code != http.StatusUnauthorized {
			t.Errorf("WebSocket upgrade: status %d, want 401", code)
		}
		gctx := metadata.AppendToOutgoingContext(grpcCtx(t), "authorization", "Bearer tok-bad")
		_, err := ts.grpcClient().Publish(gctx, &heraldv1.PublishRequest{Topic: "id.z", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}})
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated {
			t.Errorf("gRPC Publish: %v, want UNAUTHENTICATED", err)
		}
		check(t) // nothing
		if _, ok := ts.info("id.z"); ok {
			t.Error("a refused publish created the topic")
		}
	})
}

// TestCallsWithoutIdentityAreRefused: the hub fails closed for a call
// whose context carries no identity.
func TestCallsWithoutIdentityAreRefused(t *testing.T) {
	ts := startServer(t)
	_, err := ts.srv.Hub().Publish(context.Background(), "x", nil)
	if !errors.Is(err, hub.ErrUnauthenticated) {
		t.Fatalf("Publish without identity: %v", err)
	}
}
