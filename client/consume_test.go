package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// consumeBackends are the two ways Consume reaches a server.
var consumeBackends = []struct {
	name string
	make func(ts *testServer) *client.Client
}{
	{"http", func(ts *testServer) *client.Client { return ts.c }},
	{"grpc", func(ts *testServer) *client.Client { return ts.grpcClient() }},
}

// createGroup creates a group over topic from its earliest event.
func (ts *testServer) createGroup(name, topic string, ackWait time.Duration) {
	ts.t.Helper()
	if _, _, err := ts.srv.Groups().Put(context.Background(), group.Config{Name: name, Topics: []string{topic}, Start: "earliest", AckWait: ackWait}); err != nil {
		ts.t.Fatalf("create group %s: %v", name, err)
	}
}

// groupInfo returns a group's state.
func (ts *testServer) groupInfo(name string) group.Info {
	ts.t.Helper()
	in, err := ts.srv.Groups().Get(context.Background(), name)
	if err != nil {
		ts.t.Fatal(err)
	}
	return in
}

func payloadN(t *testing.T, m *client.GroupMessage) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(string(m.Event.Data), `{"n":%d}`, &n); err != nil {
		t.Errorf("payload %s: %v", m.Event.Data, err)
	}
	return n
}

// Consume with 4 handlers at once: nil acks, an error naks (the event
// comes again with delivery 2), Terminal dead-letters; every event is
// handled, the group ends with nothing pending or in flight.
func TestConsume(t *testing.T) {
	for _, b := range consumeBackends {
		t.Run(b.name, func(t *testing.T) {
			ts := startServer(t)
			const events = 40
			for i := 1; i <= events; i++ {
				ts.publish("jobs", `{"n":`+strconv.Itoa(i)+`}`)
			}
			ts.createGroup("workers", "jobs", time.Minute)
			c := b.make(ts)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var mu sync.Mutex
			seen := make(map[int][]int) // event → deliveries seen
			running, most := 0, 0
			done := 0
			handler := func(_ context.Context, m *client.GroupMessage) error {
				n := payloadN(t, m)
				mu.Lock()
				running++
				most = max(most, running)
				seen[n] = append(seen[n], m.Delivery)
				first := len(seen[n]) == 1
				mu.Unlock()
				defer func() {
					mu.Lock()
					running--
					if n != 7 || !first {
						done++
						if done == events {
							cancel()
						}
					}
					mu.Unlock()
				}()
				if m.ID == "" || m.Cursor == "" || m.Event.Topic != "jobs" || m.Deadline.IsZero() {
					t.Errorf("message %+v", m)
				}
				switch {
				case n == 7 && first:
					return errors.New("try again")
				case n == 9:
					return client.Terminal(errors.New("poison"))
				}
				return nil
			}
			var answerErrs []error
			err := c.Consume(ctx, "workers", handler, client.WithConcurrency(4), client.WithMember("m1"),
				client.WithConsumeErrors(func(err error) { mu.Lock(); answerErrs = append(answerErrs, err); mu.Unlock() }))
			if err != nil {
				t.Fatalf("Consume: %v", err)
			}
			if ctx.Err() != context.Canceled {
				t.Fatalf("Consume returned before every event was handled: %d of %d", done, events)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := 1; i <= events; i++ {
				want := []int{1}
				if i == 7 {
					want = []int{1, 2}
				}
				if fmt.Sprint(seen[i]) != fmt.Sprint(want) {
					t.Errorf("event %d: deliveries %v, want %v", i, seen[i], want)
				}
			}
			if most > 4 {
				t.Errorf("%d handlers ran at once; the concurrency is 4", most)
			}
			if len(answerErrs) > 0 {
				t.Errorf("answers refused: %v", answerErrs)
			}
			in := ts.groupInfo("workers")
			if in.InFlight != 0 || in.Pending != 0 || in.DeadLettered != 1 || in.Redelivered != 1 {
				t.Errorf("group: in flight %d, pending %d, dead-lettered %d, redelivered %d; want 0, 0, 1, 1",
					in.InFlight, in.Pending, in.DeadLettered, in.Redelivered)
			}
		})
	}
}

// A handler that runs for several leases keeps its event: Consume extends
// the lease (in_progress) at half of it, so the event is not redelivered.
func TestConsumeLongHandler(t *testing.T) {
	for _, b := range consumeBackends {
		t.Run(b.name, func(t *testing.T) {
			ts := startServer(t)
			ts.publish("jobs", `{"n":1}`)
			ts.createGroup("slow", "jobs", 400*time.Millisecond)
			c := b.make(ts)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var deliveries []int
			err := c.Consume(ctx, "slow", func(_ context.Context, m *client.GroupMessage) error {
				deliveries = append(deliveries, m.Delivery)
				time.Sleep(1500 * time.Millisecond) // the handler's work: almost four leases
				cancel()
				return nil
			}, client.WithConsumeErrors(func(err error) { t.Errorf("consume: %v", err) }))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(deliveries) != "[1]" {
				t.Errorf("deliveries %v, want [1]", deliveries)
			}
			if in := ts.groupInfo("slow"); in.InFlight != 0 || in.Redelivered != 0 {
				t.Errorf("group: in flight %d, redelivered %d; want 0, 0", in.InFlight, in.Redelivered)
			}
		})
	}
}

// NakAfter delays the redelivery.
func TestConsumeNakAfter(t *testing.T) {
	for _, b := range consumeBackends {
		t.Run(b.name, func(t *testing.T) {
			ts := startServer(t)
			ts.publish("jobs", `{"n":1}`)
			ts.createGroup("later", "jobs", time.Minute)
			c := b.make(ts)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var first time.Time
			var gap time.Duration
			err := c.Consume(ctx, "later", func(_ context.Context, m *client.GroupMessage) error {
				if m.Delivery == 1 {
					first = time.Now()
					return client.NakAfter(errors.New("not yet"), 300*time.Millisecond)
				}
				gap = time.Since(first)
				cancel()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if gap < 300*time.Millisecond {
				t.Errorf("redelivered after %v; the nak asked for 300ms", gap)
			}
		})
	}
}

// Consume on a group that does not exist returns not_found at once.
func TestConsumeMissingGroup(t *testing.T) {
	for _, b := range consumeBackends {
		t.Run(b.name, func(t *testing.T) {
			ts := startServer(t)
			c := b.make(ts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := c.Consume(ctx, "nope", func(context.Context, *client.GroupMessage) error { return nil })
			var e *client.Error
			if !errors.As(err, &e) || e.Code != client.CodeNotFound {
				t.Fatalf("Consume: %v, want not_found", err)
			}
			if ctx.Err() != nil {
				t.Error("Consume waited for the context")
			}
		})
	}
}

// Consume needs the consume action on the group's topics: a key with
// only subscribe is refused forbidden (Consume returns it), a key with
// consume takes the events.
func TestConsumeAuth(t *testing.T) {
	const workerKey, readerKey = "hk_worker_0123456789abcdef", "hk_reader_0123456789abcdef"
	for _, b := range []struct {
		name string
		make func(ts *testServer, key string) *client.Client
	}{
		{"http", func(ts *testServer, key string) *client.Client {
			c, err := client.New("http://"+ts.addr, client.WithStaticToken(key), client.WithHTTPClient(&http.Client{Transport: ts.tr}))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"grpc", func(ts *testServer, key string) *client.Client { return ts.grpcClient(client.WithStaticToken(key)) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			ts := startServer(t, func(c *config.Config) {
				c.Auth.APIKeys = []config.APIKey{
					{Name: "worker", Hash: auth.HashKey(workerKey), Grants: config.Grants{Consume: []string{"jobs"}, Publish: []string{">"}}},
					{Name: "reader", Hash: auth.HashKey(readerKey), Grants: config.Grants{Subscribe: []string{"jobs"}}},
				}
			})
			if _, err := b.make(ts, workerKey).Publish(context.Background(), "jobs", []byte(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ts.srv.Groups().Put(hub.Internal(context.Background()), group.Config{Name: "workers", Topics: []string{"jobs"}, Start: "earliest"}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := b.make(ts, readerKey).Consume(ctx, "workers", func(context.Context, *client.GroupMessage) error {
				t.Error("the reader got an event")
				return nil
			})
			var e *client.Error
			if !errors.As(err, &e) || e.Code != client.CodeForbidden {
				t.Fatalf("Consume with a subscribe-only key: %v, want forbidden", err)
			}
			got := 0
			err = b.make(ts, workerKey).Consume(ctx, "workers", func(context.Context, *client.GroupMessage) error {
				got++
				cancel()
				return nil
			})
			if err != nil || got != 1 {
				t.Fatalf("Consume with the worker key: %v, %d events", err, got)
			}
			if in := ts.groupInfo("workers"); in.InFlight != 0 || in.Pending != 0 {
				t.Errorf("group: in flight %d, pending %d", in.InFlight, in.Pending)
			}
		})
	}
}

// userAuth takes tokens "NAME-N" as the user NAME, valid ttl after they
// are presented, and counts where each came from.
type userAuth struct {
	ttl time.Duration
	mu  sync.Mutex
	by  map[string]int // credentials seen, by "transport source"
}

func (a *userAuth) Authenticate(_ context.Context, c hub.Credentials) (*hub.Identity, error) {
	name, _, ok := strings.Cut(c.Token, "-")
	if !ok {
		return &hub.Identity{Method: "anonymous", Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
	}
	a.mu.Lock()
	a.by[c.Transport+" "+c.Source.String()]++
	a.mu.Unlock()
	return &hub.Identity{Subject: name, Method: "test", Expires: time.Now().Add(a.ttl), Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
}

// TestConsumeRefreshesItsToken: over gRPC, with credentials that expire
// from a source that renews them (WithToken), Consume refreshes its
// stream before they expire: a handler that runs past the first token's
// expiry acks its message on the same stream, and the message is handled
// once, with no reconnection and no hand-back.
func TestConsumeRefreshesItsToken(t *testing.T) {
	au := &userAuth{ttl: 2 * time.Second, by: map[string]int{}}
	ts := startServerWith(t, []server.Option{server.WithAccess(au, hub.AllowAll{})})
	ts.publish("jobs", `{"n":1}`)
	ts.createGroup("refreshing", "jobs", time.Minute)
	var n atomic.Int64
	c := ts.grpcClient(client.WithToken(func(context.Context) (string, error) {
		return "uma-" + strconv.FormatInt(n.Add(1), 10), nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	handled := 0
	var mu sync.Mutex
	var errs, acks []error
	err := c.Consume(ctx, "refreshing", func(ctx context.Context, m *client.GroupMessage) error {
		handled++
		time.Sleep(3500 * time.Millisecond) // past the first token's expiry, and its refresh's
		return nil
	}, client.WithConsumeErrors(func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}), client.WithAnswered(func(_ *client.GroupMessage, _ string, err error) {
		mu.Lock()
		acks = append(acks, err)
		mu.Unlock()
		cancel()
	}))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled != 1 || len(errs) > 0 || len(acks) != 1 || acks[0] != nil {
		t.Errorf("handled %d times, errors %v, acks %v; want once, no error, one ack taken", handled, errs, acks)
	}
	if in := ts.groupInfo("refreshing"); in.InFlight != 0 || in.Pending != 0 || in.Topics[0].Committed != 1 {
		t.Errorf("group: %d in flight, %d pending, committed %d; want the message acked", in.InFlight, in.Pending, in.Topics[0].Committed)
	}
	au.mu.Lock()
	defer au.mu.Unlock()
	if au.by["grpc metadata"] != 1 || au.by["grpc frame"] < 2 {
		t.Errorf("credentials seen %v: want the stream opened once and refreshed at least twice", au.by)
	}
}
