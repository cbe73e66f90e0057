package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// tokenSource is a WithToken callback that hands out a new token, t1, t2,
// …, at each call, as a source that refreshes its token would.
type tokenSource struct{ n atomic.Int64 }

func (s *tokenSource) token(context.Context) (string, error) {
	return "t" + strconv.FormatInt(s.n.Add(1), 10), nil
}

// recordingAuth is the server's Authenticator in these tests: it takes
// bearer tokens that start with "t" (and none, as an anonymous caller),
// refuses others, and records what each connection or request presented.
type recordingAuth struct {
	mu     sync.Mutex
	seen   []string                 // "transport source token"; guarded by mu
	expire map[string]time.Duration // tokens valid only this long after they are presented; static
}

func (a *recordingAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	a.mu.Lock()
	a.seen = append(a.seen, c.Transport+" "+c.Source.String()+" "+c.Token)
	a.mu.Unlock()
	id := &hub.Identity{Subject: c.Token, Method: "test", Transport: c.Transport, RemoteAddr: c.RemoteAddr}
	switch {
	case c.Token == "":
		id.Method = "anonymous"
	case !strings.HasPrefix(c.Token, "t"):
		return nil, fmt.Errorf("%w: unknown token", hub.ErrUnauthenticated)
	}
	if ttl := a.expire[c.Token]; ttl > 0 {
		id.Expires = time.Now().Add(ttl)
	}
	return id, nil
}

// take returns what was presented since the last take, without the
// anonymous requests (the test server's own publishes).
func (a *recordingAuth) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, s := range a.seen {
		if !strings.HasSuffix(s, " ") {
			out = append(out, s)
		}
	}
	a.seen = nil
	return out
}

// startAuthServer starts a server whose Authenticator is auth.
func startAuthServer(t *testing.T, auth *recordingAuth) *testServer {
	return startServerWith(t, []server.Option{server.WithAccess(auth, hub.AllowAll{})})
}

// checkFresh checks that each of seen, "transport source tN", is from
// transport and source, with a token newer than the one before.
func checkFresh(t *testing.T, transport, source string, seen []string) {
	t.Helper()
	last := 0
	for _, s := range seen {
		n, err := strconv.Atoi(strings.TrimPrefix(s, transport+" "+source+" t"))
		if err != nil || n <= last {
			t.Errorf("the server saw %q, want %s %s with a new token each time", seen, transport, source)
			return
		}
		last = n
	}
}

// TestTokenHTTP checks that the token of WithToken reaches the server as a
// bearer token with every request of the HTTP API: publishes, pulls, and
// each connection of a subscription over SSE, long polling and WebSocket,
// including reconnections, which ask for the token again. It replaces an
// Authorization given with WithRequestHeader.
func TestTokenHTTP(t *testing.T) {
	auth := &recordingAuth{}
	ts := startAuthServer(t, auth)
	var src tokenSource
	c, err := client.New("http://"+ts.addr, client.WithHTTPClient(&http.Client{Transport: ts.tr}),
		client.WithRequestHeader("Authorization", "Bearer refused"), client.WithToken(src.token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, []client.BatchEvent{{Topic: "tok.a", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, []string{"tok.a"}); err != nil {
		t.Fatal(err)
	}
	if got, want := auth.take(), []string{"rest header t1", "rest header t2", "rest header t3"}; !slices.Equal(got, want) {
		t.Errorf("publish, batch and pull presented %q, want %q", got, want)
	}

	names := map[client.Transport]string{client.TransportSSE: "sse", client.TransportPoll: "rest", client.TransportWS: "ws"}
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			sub, err := c.Subscribe(ctx, []string{"tok.b"}, client.WithTransport(tr),
				client.WithPollWait(5*time.Second), client.WithBackoff(time.Millisecond, 10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			first := auth.take()
			// A restart ends the connection: the subscription reconnects
			// with a new token.
			ts.restart(true)
			ack := ts.publish("tok.b", `"after"`)
			if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset {
				t.Fatalf("after the restart: %+v, want #%d", ev, ack.Offset)
			}
			// (Leave out what the previous subscription's last requests
			// presented.)
			other := func(s string) bool { return !strings.HasPrefix(s, names[tr]+" ") }
			first, after := slices.DeleteFunc(first, other), slices.DeleteFunc(auth.take(), other)
			if len(first) == 0 || len(after) == 0 {
				t.Fatalf("the server saw %q before the restart and %q after", first, after)
			}
			checkFresh(t, names[tr], "header", append(first, after...))
		})
	}
}

// TestTokenGRPC checks the same over the gRPC API: the token goes as
// authorization metadata with every call, and each reconnection of a
// subscription asks for a new one.
func TestTokenGRPC(t *testing.T) {
	auth := &recordingAuth{}
	ts := startAuthServer(t, auth)
	var src tokenSource
	c := ts.grpcClient(client.WithRequestHeader("Authorization", "Bearer refused"), client.WithToken(src.token))
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
	sub, err := c.Subscribe(ctx, []string{"tok.b"}, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	want := []string{"grpc metadata t1", "grpc metadata t2", "grpc metadata t3", "grpc metadata t4"}
	if got := auth.take(); !slices.Equal(got, want) {
		t.Errorf("publish, batch, pull and subscribe presented %q, want %q", got, want)
	}
	ts.restart(true)
	ack := ts.publish("tok.b", `"after"`)
	if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset {
		t.Fatalf("after the restart: %+v, want #%d", ev, ack.Offset)
	}
	after := auth.take()
	if len(after) == 0 {
		t.Fatal("no reconnection reached the server")
	}
	checkFresh(t, "grpc", "metadata", append(want[3:], after...))
}

// TestTokenExpired lets the server end a subscription whose token expired,
// over SSE, WebSocket and gRPC: with WithToken it reconnects with a fresh
// token and goes on; with WithStaticToken it stops with CodeTokenExpired.
func TestTokenExpired(t *testing.T) {
	auth := &recordingAuth{expire: map[string]time.Duration{"t1": 300 * time.Millisecond}}
	ts := startAuthServer(t, auth)
	ctx := context.Background()
	names := map[client.Transport]string{client.TransportSSE: "sse", client.TransportWS: "ws", client.TransportGRPC: "grpc"}
	for _, tr := range []client.Transport{client.TransportSSE, client.TransportWS, client.TransportGRPC} {
		for _, tt := range []struct {
			name  string
			token func() client.Option
			renew bool
		}{
			{"refreshed", func() client.Option { return client.WithToken(new(tokenSource).token) }, true},
			{"static", func() client.Option { return client.WithStaticToken("t1") }, false},
		} {
			t.Run(string(tr)+"/"+tt.name, func(t *testing.T) {
				source := "header"
				c, err := client.New("http://"+ts.addr, client.WithHTTPClient(&http.Client{Transport: ts.tr}), tt.token())
				if err != nil {
					t.Fatal(err)
				}
				if tr == client.TransportGRPC {
					source, c = "metadata", ts.grpcClient(tt.token())
				}
				auth.take()
				sub, err := c.Subscribe(ctx, []string{"exp.a"}, client.WithTransport(tr))
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Close()
				nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				m, err := sub.Next(nctx) // the end of the first connection
				if !tt.renew {
					if e := apiError(t, err); e.Code != client.CodeTokenExpired {
						t.Fatalf("Next = %+v, %v; want the end of the subscription with %s", m, err, client.CodeTokenExpired)
					}
					return
				}
				if err != nil || m.Err == nil {
					t.Fatalf("Next = %+v, %v; want a reconnection notice", m, err)
				}
				if e := apiError(t, m.Err); e.Code != client.CodeTokenExpired {
					t.Errorf("notice %+v, want %s", e, client.CodeTokenExpired)
				}
				ack := ts.publish("exp.a", `"after"`)
				if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset {
					t.Errorf("after the reconnection: %+v, want #%d", ev, ack.Offset)
				}
				prefix := names[tr] + " " + source + " "
				if got := auth.take(); len(got) < 2 || got[0] != prefix+"t1" || got[1] != prefix+"t2" {
					t.Errorf("the server saw %q, want %st1 then %st2", got, prefix, prefix)
				}
			})
		}
	}
}

// TestTokenError checks that a failing token callback fails the call before
// anything is sent, with its error, and that an empty token sends none.
func TestTokenError(t *testing.T) {
	auth := &recordingAuth{}
	ts := startAuthServer(t, auth)
	errNoToken := errors.New("the identity provider is down")
	fail := client.WithToken(func(context.Context) (string, error) { return "", errNoToken })
	hc := client.WithHTTPClient(&http.Client{Transport: ts.tr})
	c, err := client.New("http://"+ts.addr, hc, fail)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); !errors.Is(err, errNoToken) {
		t.Errorf("publish: %v", err)
	}
	if _, err := c.Pull(ctx, []string{"tok.a"}); !errors.Is(err, errNoToken) {
		t.Errorf("pull: %v", err)
	}
	for _, tr := range transports {
		if _, err := c.Subscribe(ctx, []string{"tok.a"}, client.WithTransport(tr)); !errors.Is(err, errNoToken) {
			t.Errorf("subscribe over %s: %v", tr, err)
		}
	}
	g := ts.grpcClient(fail)
	if _, err := g.Publish(ctx, "tok.a", []byte("1")); !errors.Is(err, errNoToken) {
		t.Errorf("gRPC publish: %v", err)
	}
	if got := auth.take(); len(got) != 0 {
		t.Errorf("the server saw %q", got)
	}

	// An empty token sends no Authorization: the caller is anonymous.
	c, err = client.New("http://"+ts.addr, hc, client.WithToken(func(context.Context) (string, error) { return "", nil }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "tok.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := auth.take(); len(got) != 0 {
		t.Errorf("an empty token presented %q", got)
	}

	// A static token; a refused one is an unauthenticated error.
	for token, want := range map[string]string{"t-static": "", "refused": client.CodeUnauthenticated} {
		c, err = client.New("http://"+ts.addr, hc, client.WithStaticToken(token))
		if err != nil {
			t.Fatal(err)
		}
		_, err := c.Publish(ctx, "tok.a", []byte("1"))
		if want == "" && err != nil || want != "" && apiError(t, err).Code != want {
			t.Errorf("publish with %q: %v, want %q", token, err, want)
		}
		if got := auth.take(); len(got) != 1 || got[0] != "rest header "+token {
			t.Errorf("the server saw %q, want the static token %q", got, token)
		}
	}
}
