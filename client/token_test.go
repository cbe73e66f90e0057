package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/client"
)

// tokenSource is a WithToken callback that hands out a new token, t1, t2,
// …, at each call, as a source that refreshes its token would.
type tokenSource struct{ n atomic.Int64 }

func (s *tokenSource) token(context.Context) (string, error) {
	return "t" + strconv.FormatInt(s.n.Add(1), 10), nil
}

// authRecorder is a reverse proxy in front of a herald server that records
// the Authorization header of every request it passes on.
type authRecorder struct {
	url string
	mu  sync.Mutex
	log []authEntry // guarded by mu
}

type authEntry struct{ path, auth string }

func newAuthRecorder(t *testing.T, target string) *authRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = tr
	proxy.ErrorLog = log.New(io.Discard, "", 0) // 502s while the server restarts
	rec := &authRecorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.log = append(rec.log, authEntry{r.URL.Path, r.Header.Get("Authorization")})
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		tr.CloseIdleConnections()
	})
	rec.url = srv.URL
	return rec
}

// since returns the Authorization headers of the requests for path from
// the mark-th request on.
func (r *authRecorder) since(mark int, path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var auths []string
	for _, e := range r.log[mark:] {
		if e.path == path {
			auths = append(auths, e.auth)
		}
	}
	return auths
}

func (r *authRecorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// checkFresh checks that every request got a bearer token of its own, each
// newer than the one before.
func checkFresh(t *testing.T, what string, auths []string) {
	t.Helper()
	last := 0
	for _, a := range auths {
		n, err := strconv.Atoi(strings.TrimPrefix(a, "Bearer t"))
		if !strings.HasPrefix(a, "Bearer t") || err != nil || n <= last {
			t.Errorf("%s: Authorization headers %q, want a new bearer token each time", what, auths)
			return
		}
		last = n
	}
}

// TestTokenHTTP checks that the token of WithToken is sent as a bearer
// token with every request of the HTTP API: publishes, pulls, and each
// connection of a subscription over SSE, long polling and WebSocket,
// including reconnections, which ask for the token again.
func TestTokenHTTP(t *testing.T) {
	ts := startServer(t)
	rec := newAuthRecorder(t, "http://"+ts.addr)
	var src tokenSource
	c, err := client.New(rec.url, client.WithHTTPClient(&http.Client{Transport: ts.tr}),
		client.WithRequestHeader("Authorization", "Basic replaced"), client.WithToken(src.token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mark := rec.mark()
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, []client.BatchEvent{{Topic: "tok.a", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, []string{"tok.a"}); err != nil {
		t.Fatal(err)
	}
	auths := append(rec.since(mark, "/v1/topics/tok.a/events"), rec.since(mark, "/v1/events")...)
	if strings.Join(auths, ",") != "Bearer t1,Bearer t2,Bearer t3" {
		t.Errorf("publish, batch and pull sent Authorization %q, want Bearer t1, t2 and t3", auths)
	}

	paths := map[client.Transport]string{client.TransportSSE: "/v1/sse", client.TransportPoll: "/v1/events", client.TransportWS: "/v1/ws"}
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			mark := rec.mark()
			sub, err := c.Subscribe(ctx, []string{"tok.b"}, client.WithTransport(tr),
				client.WithPollWait(5*time.Second), client.WithBackoff(time.Millisecond, 10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			first := rec.since(mark, paths[tr])
			if len(first) == 0 {
				t.Fatalf("no request for %s", paths[tr])
			}
			// A restart ends the connection: the subscription reconnects
			// with a new token.
			ts.restart(true)
			ack := ts.publish("tok.b", `"after"`)
			if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset {
				t.Fatalf("after the restart: %+v, want #%d", ev, ack.Offset)
			}
			all := rec.since(mark, paths[tr])
			if len(all) <= len(first) {
				t.Fatalf("no reconnection through the proxy: %q", all)
			}
			checkFresh(t, string(tr), all)
		})
	}
}

// TestTokenError checks that a failing token callback fails the call before
// anything is sent, with its error.
func TestTokenError(t *testing.T) {
	ts := startServer(t)
	rec := newAuthRecorder(t, "http://"+ts.addr)
	errNoToken := errors.New("the identity provider is down")
	fail := client.WithToken(func(context.Context) (string, error) { return "", errNoToken })
	c, err := client.New(rec.url, client.WithHTTPClient(&http.Client{Transport: ts.tr}), fail)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Publish(ctx, "tok.a", []byte("1"))
	if !errors.Is(err, errNoToken) {
		t.Errorf("publish: %v", err)
	}
	_, err = c.Pull(ctx, []string{"tok.a"})
	if !errors.Is(err, errNoToken) {
		t.Errorf("pull: %v", err)
	}
	for _, tr := range transports {
		if _, err := c.Subscribe(ctx, []string{"tok.a"}, client.WithTransport(tr)); !errors.Is(err, errNoToken) {
			t.Errorf("subscribe over %s: %v", tr, err)
		}
	}
	if n := rec.mark(); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
	// No token sends no Authorization.
	c, err = client.New(rec.url, client.WithHTTPClient(&http.Client{Transport: ts.tr}),
		client.WithToken(func(context.Context) (string, error) { return "", nil }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if auths := rec.since(0, "/v1/topics/tok.a/events"); len(auths) != 1 || auths[0] != "" {
		t.Errorf("an empty token sent Authorization %q", auths)
	}
	// A static token.
	c, err = client.New(rec.url, client.WithHTTPClient(&http.Client{Transport: ts.tr}), client.WithStaticToken("s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if auths := rec.since(0, "/v1/topics/tok.a/events"); len(auths) != 2 || auths[1] != "Bearer s3cr3t" {
		t.Errorf("a static token sent Authorization %q", auths)
	}
}

// authGRPCServer is a gRPC server of herald's API that records the
// authorization metadata of each call. Its Subscribe sends the starting
// delivery, then ends the stream as a draining server would, so that the
// client reconnects.
type authGRPCServer struct {
	heraldv1.UnimplementedHeraldServer
	auths chan string // call and authorization, "Publish Bearer t1"
}

func (s *authGRPCServer) record(ctx context.Context, call string) {
	md, _ := metadata.FromIncomingContext(ctx)
	select {
	case s.auths <- call + " " + strings.Join(md.Get("authorization"), ",") + " " + strings.Join(md.Get("x-tenant"), ","):
	default: // the test has seen enough
	}
}

func (s *authGRPCServer) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	s.record(ctx, "Publish")
	resp := &heraldv1.PublishResponse{}
	for i := range req.Events {
		resp.Acks = append(resp.Acks, &heraldv1.Ack{Topic: req.Topic, Offset: uint64(i + 1), Epoch: "0000000000000001"})
	}
	return resp, nil
}

func (s *authGRPCServer) Pull(ctx context.Context, _ *heraldv1.PullRequest) (*heraldv1.PullResponse, error) {
	s.record(ctx, "Pull")
	return &heraldv1.PullResponse{Cursor: "AQ"}, nil
}

func (s *authGRPCServer) Subscribe(_ *heraldv1.SubscribeRequest, st grpc.ServerStreamingServer[heraldv1.Delivery]) error {
	s.record(st.Context(), "Subscribe")
	if err := st.Send(&heraldv1.Delivery{Cursor: "AQ"}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "going away")
}

// TestTokenGRPC checks that the token of WithToken goes as authorization
// metadata with every gRPC call, with the WithRequestHeader headers, and
// that each reconnection of a subscription asks for a new one.
func TestTokenGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &authGRPCServer{auths: make(chan string, 100)}
	heraldv1.RegisterHeraldServer(srv, fake)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		<-served
	}()

	var src tokenSource
	c, err := client.NewGRPC(ln.Addr().String(), client.WithToken(src.token), client.WithRequestHeader("X-Tenant", "acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, []client.BatchEvent{{Topic: "tok.a", Text: "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, []string{"tok.a"}); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, []string{"tok.a"}, client.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Two reconnections after the stream's end.
	for n := 0; n < 2; {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Err != nil {
			n++
		}
	}
	var got []string
	for i := 1; i <= 5; i++ {
		got = append(got, <-fake.auths)
	}
	want := []string{"Publish Bearer t1 acme", "Publish Bearer t2 acme", "Pull Bearer t3 acme",
		"Subscribe Bearer t4 acme", "Subscribe Bearer t5 acme"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
