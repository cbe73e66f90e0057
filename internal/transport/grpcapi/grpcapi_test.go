package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/grpcapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a hub over a memory engine, served by a grpcapi.Server on a
// real TCP listener, and a client connection to it.
type harness struct {
	t      *testing.T
	hub    *hub.Hub
	eng    *memory.Engine
	srv    *grpcapi.Server
	addr   string
	conn   *grpc.ClientConn
	c      heraldv1.HeraldClient
	groups *group.Manager // with setup.groups
	done   bool
}

// setup configures a harness before it starts.
type setup struct {
	hub       hub.Options
	grpc      grpcapi.Options
	retention event.Retention
	dial      []grpc.DialOption
	groups    bool                            // serve Consume with a group.Manager
	engine    func(*memory.Engine) hub.Engine // wraps the memory engine, when set
}

func start(t *testing.T, opts ...func(*setup)) *harness {
	t.Helper()
	su := setup{
		hub:  hub.Options{MaxEventBytes: 4096, MaxQueueBytes: 64 << 10},
		grpc: grpcapi.Options{MaxEventBytes: 4096, MaxMessageBytes: 64 << 10, MaxWait: 5 * time.Second, Retry: 100 * time.Millisecond},
	}
	for _, o := range opts {
		o(&su)
	}
	var ret func(string) event.Retention
	if su.retention != (event.Retention{}) {
		ret = func(string) event.Retention { return su.retention }
	}
	eng := memory.New(memory.Options{Retention: ret})
	var he hub.Engine = eng
	if su.engine != nil {
		he = su.engine(eng)
	}
	h := hub.New(he, su.hub)
	var groups *group.Manager
	if su.groups {
		m, err := group.New(context.Background(), h, group.Options{})
		if err != nil {
			t.Fatal(err)
		}
		groups, su.grpc.Groups = m, m
	}
	srv, err := grpcapi.New(h, su.grpc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	hs := &harness{t: t, hub: h, eng: eng, srv: srv, addr: ln.Addr().String(), groups: groups}
	hs.conn = hs.dial(su.dial...)
	hs.c = heraldv1.NewHeraldClient(hs.conn)
	t.Cleanup(func() {
		hs.stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return hs
}

// dial opens a client connection, closed when the test ends.
func (hs *harness) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	hs.t.Helper()
	conn, err := grpc.NewClient(hs.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		hs.t.Fatal(err)
	}
	hs.t.Cleanup(func() { conn.Close() })
	return conn
}

// stop drains the server as herald's does: GOAWAY, then the hub ends the
// streams.
func (hs *harness) stop() {
	if hs.done {
		return
	}
	hs.done = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- hs.srv.Drain(ctx) }()
	hs.hub.Close()
	if err := <-drained; err != nil {
		hs.t.Errorf("Drain: %v", err)
	}
	if hs.groups != nil {
		hs.groups.Close()
	}
	hs.eng.Close()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// publish publishes JSON payloads {"n":i} to topic and returns the acks.
func (hs *harness) publish(topic string, from, n int) []*heraldv1.Ack {
	hs.t.Helper()
	req := &heraldv1.PublishRequest{Topic: topic}
	for i := from; i < from+n; i++ {
		req.Events = append(req.Events, &heraldv1.PublishEvent{Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)})
	}
	resp, err := hs.c.Publish(ctxT(hs.t), req)
	if err != nil {
		hs.t.Fatalf("Publish: %v", err)
	}
	return resp.Acks
}

// wantStatus checks err's code and ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a status; want %v %s", err, code, reason)
	}
	if st.Code() != code {
		t.Fatalf("code %v (%s), want %v", st.Code(), st.Message(), code)
	}
	if got := errorInfo(st).GetReason(); got != reason {
		t.Fatalf("reason %q (%s), want %q", got, st.Message(), reason)
	}
	return st
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// n reads an event's {"n":N} payload.
func n(t *testing.T, ev *heraldv1.Event) int {
	t.Helper()
	s := strings.TrimSuffix(strings.TrimPrefix(string(ev.Data), `{"n":`), "}")
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("event data %q is not {\"n\":N}", ev.Data)
	}
	return v
}

func TestPublishAndPull(t *testing.T) {
	hs := start(t)
	ctx := ctxT(t)
	acks := hs.publish("a.b", 1, 3)
	for i, a := range acks {
		if a.Topic != "a.b" || a.Offset != uint64(i+1) || a.Duplicate || a.Cursor == "" || len(a.Epoch) != 16 {
			t.Errorf("ack %d: %v", i, a)
		}
	}
	// A batch over two topics, with types, headers, keys and encodings.
	resp, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "a.b", Events: []*heraldv1.PublishEvent{
		{Data: []byte("plain"), Type: "note", Headers: map[string]string{"Source": "test"}},
		{Topic: "c", Data: []byte{0xff, 0}, Key: "k1"},
		{Data: []byte(`"x"`), Encoding: heraldv1.Encoding_ENCODING_TEXT},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint64{resp.Acks[0].Offset, resp.Acks[1].Offset, resp.Acks[2].Offset}; got[0] != 4 || got[1] != 1 || got[2] != 5 {
		t.Errorf("batch offsets %v, want [4 1 5]", got)
	}
	// The same key again: a duplicate with the original position.
	dup, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "c", Events: []*heraldv1.PublishEvent{{Data: []byte("other"), Key: "k1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if a := dup.Acks[0]; !a.Duplicate || a.Offset != 1 {
		t.Errorf("duplicate ack %v", a)
	}

	res, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"a.b"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || n(t, res.Events[0]) != 1 || n(t, res.Events[1]) != 2 || len(res.Gaps) != 0 {
		t.Fatalf("first page %v", res)
	}
	res, err = hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"a.b"}, Cursor: res.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 3 {
		t.Fatalf("second page has %d events, want 3", len(res.Events))
	}
	ev := res.Events[1]
	if ev.Type != "note" || ev.Encoding != heraldv1.Encoding_ENCODING_TEXT || string(ev.Data) != "plain" ||
		ev.Headers["source"] != "test" || ev.Time.AsTime().Before(time.Now().Add(-time.Minute)) {
		t.Errorf("event 4: %v", ev)
	}
	if e := res.Events[2]; e.Encoding != heraldv1.Encoding_ENCODING_TEXT || string(e.Data) != `"x"` {
		t.Errorf("event 5: %v", e)
	}
	c, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"c"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Events) != 1 || c.Events[0].Encoding != heraldv1.Encoding_ENCODING_BINARY {
		t.Errorf("topic c: %v", c.Events)
	}

	// Topics.
	list, err := hs.c.ListTopics(ctx, &heraldv1.ListTopicsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Topics) != 2 || list.Topics[0].Name != "a.b" || list.Topics[0].Last != 5 || list.Topics[1].Name != "c" {
		t.Errorf("ListTopics: %v", list.Topics)
	}
	info, err := hs.c.GetTopic(ctx, &heraldv1.GetTopicRequest{Topic: "a.b"})
	if err != nil || info.Last != 5 || info.First != 1 || info.Retained != 5 {
		t.Errorf("GetTopic: %v, %v", info, err)
	}
	_, err = hs.c.GetTopic(ctx, &heraldv1.GetTopicRequest{Topic: "nope"})
	wantStatus(t, err, codes.NotFound, "not_found")
}

func TestPullLongPoll(t *testing.T) {
	hs := start(t)
	ctx := ctxT(t)
	first, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"lp"}, From: heraldv1.From_FROM_LATEST})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Publish once the long poll waits (its waiter is a subscription).
		for deadline := time.Now().Add(5 * time.Second); hs.hub.Subscribers("lp") == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		hs.publish("lp", 1, 1)
	}()
	start := time.Now()
	res, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"lp"}, Cursor: first.Cursor, Wait: durationpb.New(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || time.Since(start) > 3*time.Second {
		t.Errorf("long poll: %d events after %v", len(res.Events), time.Since(start))
	}

	// The deadline bounds the wait: the answer comes, empty, before it
	// (after it, the call would fail with DEADLINE_EXCEEDED).
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	empty, err := hs.c.Pull(dctx, &heraldv1.PullRequest{Topics: []string{"lp"}, Cursor: res.Cursor, Wait: durationpb.New(5 * time.Second)})
	if err != nil {
		t.Fatalf("long poll with a deadline: %v", err)
	}
	if len(empty.Events) != 0 || empty.Cursor != res.Cursor {
		t.Errorf("long poll with a deadline: %v", empty)
	}
	_, err = hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"lp"}, Wait: durationpb.New(time.Hour)})
	wantStatus(t, err, codes.InvalidArgument, "bad_request")
}

func TestPublishStream(t *testing.T) {
	hs := start(t)
	ps, err := hs.c.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const reqs = 50
	go func() {
		for i := 1; i <= reqs; i++ {
			req := &heraldv1.PublishRequest{Topic: "ps", Id: uint64(i)}
			if i == 25 {
				req.Topic = "bad topic" // refused, the stream goes on
			}
			for j := 0; j < 10; j++ {
				req.Events = append(req.Events, &heraldv1.PublishEvent{Data: []byte(`{"n":` + strconv.Itoa(i*10+j) + `}`)})
			}
			if err := ps.Send(req); err != nil {
				t.Errorf("Send: %v", err)
				return
			}
		}
		ps.CloseSend()
	}()
	var next uint64 = 1
	for i := 1; i <= reqs; i++ {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if resp.Id != uint64(i) {
			t.Fatalf("response %d has id %d", i, resp.Id)
		}
		if i == 25 {
			if resp.Error.GetCode() != "bad_topic" || len(resp.Acks) != 0 {
				t.Errorf("refused request: %v", resp)
			}
			continue
		}
		if len(resp.Acks) != 10 || resp.Acks[0].Offset != next {
			t.Fatalf("response %d: %v", i, resp)
		}
		next += 10
	}
	if _, err := ps.Recv(); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
	info, err := hs.c.GetTopic(ctxT(t), &heraldv1.GetTopicRequest{Topic: "ps"})
	if err != nil || info.Last != 490 {
		t.Errorf("stored %v, %v; want 490 events", info, err)
	}
}

// recvDelivery receives the next Delivery, failing the test on an error.
func recvDelivery(t *testing.T, s heraldv1.Herald_SubscribeClient) *heraldv1.Delivery {
	t.Helper()
	d, err := s.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return d
}

// recvEvents receives deliveries until want events came.
func recvEvents(t *testing.T, s heraldv1.Herald_SubscribeClient, want int) ([]*heraldv1.Event, string) {
	t.Helper()
	var evs []*heraldv1.Event
	var cursor string
	for len(evs) < want {
		d := recvDelivery(t, s)
		if len(d.Gaps) > 0 {
			t.Fatalf("unexpected gaps %v", d.Gaps)
		}
		evs = append(evs, d.Events...)
		cursor = d.Cursor
	}
	return evs, cursor
}

func TestSubscribeLiveAndResume(t *testing.T) {
	hs := start(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"live", "other"}})
	if err != nil {
		t.Fatal(err)
	}
	startD := recvDelivery(t, s)
	if startD.Cursor == "" || len(startD.Events) != 0 {
		t.Fatalf("first delivery %v: want the starting cursor alone", startD)
	}
	hs.publish("live", 1, 5)
	evs, _ := recvEvents(t, s, 5)
	for i, ev := range evs {
		if n(t, ev) != i+1 || ev.Offset != uint64(i+1) || ev.Topic != "live" {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	cancel()

	// Resume after the third event: a cursor made from the first delivery's
	// cursor plus three events, as a client would keep it.
	res, err := hs.c.Pull(ctxT(t), &heraldv1.PullRequest{Topics: []string{"live", "other"}, Cursor: startD.Cursor, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	hs.publish("live", 6, 2)
	s2, err := hs.c.Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"live", "other"}, Cursor: res.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if d := recvDelivery(t, s2); d.Cursor != res.Cursor {
		t.Errorf("resumed stream starts at %q, want %q", d.Cursor, res.Cursor)
	}
	evs, _ = recvEvents(t, s2, 4)
	for i, ev := range evs {
		if n(t, ev) != i+4 {
			t.Fatalf("recovered event %d is %d, want %d", i, n(t, ev), i+4)
		}
	}
}

func TestSubscribeGaps(t *testing.T) {
	hs := start(t, func(s *setup) { s.retention = event.Retention{MaxEvents: 3} })
	acks := hs.publish("g", 1, 5) // 1 and 2 are trimmed
	ctx := ctxT(t)
	// A cursor at event 1 (trimmed history after it).
	s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"g"}, Cursor: acks[0].Cursor})
	if err != nil {
		t.Fatal(err)
	}
	recvDelivery(t, s)
	d := recvDelivery(t, s)
	if len(d.Gaps) != 1 || d.Gaps[0].Reason != heraldv1.GapReason_GAP_REASON_TRIMMED || d.Gaps[0].Resumed.Offset != 2 || d.Gaps[0].Earliest != 3 {
		t.Fatalf("want a trimmed gap, got %v", d)
	}
	evs := d.Events
	for len(evs) < 3 {
		evs = append(evs, recvDelivery(t, s).Events...)
	}
	if evs[0].Offset != 3 {
		t.Errorf("delivery resumed at %d, want 3", evs[0].Offset)
	}

	// A cursor of another epoch.
	var oc cursor.Cursor
	oc.Set("g", event.Position{Epoch: 1, Offset: 1})
	other := oc.String()
	s2, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"g"}, Cursor: other})
	if err != nil {
		t.Fatal(err)
	}
	recvDelivery(t, s2)
	d = recvDelivery(t, s2)
	if len(d.Gaps) != 1 || d.Gaps[0].Reason != heraldv1.GapReason_GAP_REASON_EPOCH_CHANGED {
		t.Fatalf("want an epoch_changed gap, got %v", d)
	}
}

func TestBadInput(t *testing.T) {
	hs := start(t)
	ctx := ctxT(t)
	big := make([]byte, 5000) // over MaxEventBytes (4096), under MaxMessageBytes
	huge := make([]byte, 70<<10)
	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"publish bad topic", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "a b", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}})
			return err
		}, codes.InvalidArgument, "bad_topic"},
		{"publish no topic", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"publish no events", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t"})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"publish bad JSON", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t", Events: []*heraldv1.PublishEvent{{Data: []byte("{"), Encoding: heraldv1.Encoding_ENCODING_JSON}}})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"publish reserved type", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t", Events: []*heraldv1.PublishEvent{{Data: []byte("1"), Type: "gap"}}})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"payload over limits.max_event_bytes", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}, {Data: big}}})
			return err
		}, codes.InvalidArgument, "too_large"},
		{"message over grpc.max_message_bytes", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t", Events: []*heraldv1.PublishEvent{{Data: huge}}})
			return err
		}, codes.ResourceExhausted, ""},
		{"batch with one bad topic", func() error {
			_, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "t", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}, {Topic: "x..y", Data: []byte("2")}}})
			return err
		}, codes.InvalidArgument, "bad_topic"},
		{"pull bad topic", func() error {
			_, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"é"}})
			return err
		}, codes.InvalidArgument, "bad_topic"},
		{"pull malformed cursor", func() error {
			_, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"t"}, Cursor: "!!"})
			return err
		}, codes.InvalidArgument, "bad_cursor"},
		{"pull no topic", func() error {
			_, err := hs.c.Pull(ctx, &heraldv1.PullRequest{})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"pull limit", func() error {
			_, err := hs.c.Pull(ctx, &heraldv1.PullRequest{Topics: []string{"t"}, Limit: 10001})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"get bad topic", func() error {
			_, err := hs.c.GetTopic(ctx, &heraldv1.GetTopicRequest{Topic: ".x"})
			return err
		}, codes.InvalidArgument, "bad_topic"},
		{"subscribe bad topic", func() error {
			s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"a/b"}})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.InvalidArgument, "bad_topic"},
		{"subscribe malformed cursor", func() error {
			s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"t"}, Cursor: "AQ-x"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.InvalidArgument, "bad_cursor"},
		{"subscribe twice the same topic", func() error {
			s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"t", "t"}})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, codes.InvalidArgument, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st, ok := status.FromError(err)
			if !ok || st.Code() != tt.code {
				t.Fatalf("error %v, want code %v", err, tt.code)
			}
			if tt.reason != "" {
				wantStatus(t, err, tt.code, tt.reason)
			}
		})
	}
	// Nothing was stored by any of them.
	list, err := hs.c.ListTopics(ctx, &heraldv1.ListTopicsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Topics) != 0 {
		t.Errorf("refused calls stored topics %v", list.Topics)
	}
}

// connect opens a Connect stream whose replies and deliveries are read by
// the test through recv.
type connectStream struct {
	t *testing.T
	s heraldv1.Herald_ConnectClient
}

func (hs *harness) connect(ctx context.Context) *connectStream {
	hs.t.Helper()
	s, err := hs.c.Connect(ctx)
	if err != nil {
		hs.t.Fatal(err)
	}
	return &connectStream{t: hs.t, s: s}
}

func (c *connectStream) send(req *heraldv1.ConnectRequest) {
	c.t.Helper()
	if err := c.s.Send(req); err != nil {
		c.t.Fatalf("Send: %v", err)
	}
}

func (c *connectStream) recv() *heraldv1.ConnectResponse {
	c.t.Helper()
	r, err := c.s.Recv()
	if err != nil {
		c.t.Fatalf("Recv: %v", err)
	}
	return r
}

func (c *connectStream) subscribe(id uint64, topics ...string) *heraldv1.Subscribed {
	c.t.Helper()
	c.send(&heraldv1.ConnectRequest{Id: id, Command: &heraldv1.ConnectRequest_Subscribe{Subscribe: &heraldv1.SubscribeCommand{Topics: topics}}})
	r := c.recv()
	if r.Id != id || r.GetSubscribed() == nil {
		c.t.Fatalf("subscribe reply %v", r)
	}
	return r.GetSubscribed()
}

func (c *connectStream) grant(n uint32) {
	c.t.Helper()
	c.send(&heraldv1.ConnectRequest{Command: &heraldv1.ConnectRequest_Grant{Grant: &heraldv1.Grant{Events: n}}})
}

// TestConnectFlowControl is the check: a consumer that grants 10
// gets 10 and no more until it grants again.
func TestConnectFlowControl(t *testing.T) {
	hs := start(t)
	c := hs.connect(ctxT(t))
	sub := c.subscribe(1, "fc")
	if sub.Cursor == "" {
		t.Error("subscribed reply without a cursor")
	}
	hs.publish("fc", 1, 25)
	got := 0
	for round, want := range []int{10, 10, 5} {
		c.grant(10)
		for got < (round)*10+want {
			r := c.recv()
			d := r.GetDelivery()
			if d == nil {
				t.Fatalf("round %d: want a delivery, got %v", round, r)
			}
			for _, ev := range d.Events {
				got++
				if n(t, ev) != got {
					t.Fatalf("event %d is %d", got, n(t, ev))
				}
			}
		}
		if got != round*10+want {
			t.Fatalf("round %d: %d events, want %d", round, got, round*10+want)
		}
		// Nothing more comes until the next grant: a publish over the
		// stream is answered, its event is not delivered.
		c.send(&heraldv1.ConnectRequest{Id: 9, Command: &heraldv1.ConnectRequest_Publish{Publish: &heraldv1.PublishRequest{
			Topic: "probe", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}}})
		if r := c.recv(); r.GetPublished() == nil || r.Id != 9 {
			t.Fatalf("round %d: after %d events want the publish reply, got %v", round, got, r)
		}
	}
	// 25 published, 30 granted: the next 5 go at once.
	hs.publish("fc", 26, 5)
	for got < 30 {
		for _, ev := range c.recv().GetDelivery().GetEvents() {
			got++
			if n(t, ev) != got {
				t.Fatalf("event %d is %d", got, n(t, ev))
			}
		}
	}
}

func TestConnectCommands(t *testing.T) {
	hs := start(t, func(s *setup) {
		s.hub.ClientPublish = func(topic string) bool { return event.Namespace(topic) != "ro" }
	})
	c := hs.connect(ctxT(t))
	c.grant(1000)
	c.subscribe(1, "x.a", "x.b")
	// Publish over the stream; the events come back.
	c.send(&heraldv1.ConnectRequest{Id: 2, Command: &heraldv1.ConnectRequest_Publish{Publish: &heraldv1.PublishRequest{
		Id: 77, Topic: "x.a", Events: []*heraldv1.PublishEvent{{Data: []byte(`{"n":1}`)}, {Topic: "x.b", Data: []byte(`{"n":2}`)}}}}})
	var evs []*heraldv1.Event
	var pub *heraldv1.PublishResponse
	for len(evs) < 2 || pub == nil {
		r := c.recv()
		switch {
		case r.GetPublished() != nil:
			pub = r.GetPublished()
			if r.Id != 2 || pub.Id != 77 || len(pub.Acks) != 2 {
				t.Fatalf("publish reply %v", r)
			}
		case r.GetDelivery() != nil:
			evs = append(evs, r.GetDelivery().Events...)
		default:
			t.Fatalf("unexpected %v", r)
		}
	}
	// Unsubscribe: nothing of x.a comes after the reply.
	c.send(&heraldv1.ConnectRequest{Id: 3, Command: &heraldv1.ConnectRequest_Unsubscribe{Unsubscribe: &heraldv1.UnsubscribeCommand{Topics: []string{"x.a"}}}})
	r := c.recv()
	if r.Id != 3 || r.GetUnsubscribed() == nil || strings.Contains(r.GetUnsubscribed().Cursor, "x.a") {
		t.Fatalf("unsubscribe reply %v", r)
	}
	hs.publish("x.a", 10, 1)
	hs.publish("x.b", 11, 1)
	d := c.recv().GetDelivery()
	if d == nil || len(d.Events) != 1 || d.Events[0].Topic != "x.b" {
		t.Fatalf("after unsubscribing x.a: %v", d)
	}
	// Refused commands get an error reply; the stream goes on.
	c.send(&heraldv1.ConnectRequest{Id: 4, Command: &heraldv1.ConnectRequest_Subscribe{Subscribe: &heraldv1.SubscribeCommand{Topics: []string{"bad topic"}}}})
	if r := c.recv(); r.Id != 4 || r.GetError().GetCode() != "bad_topic" {
		t.Fatalf("bad subscribe: %v", r)
	}
	c.send(&heraldv1.ConnectRequest{Id: 5, Command: &heraldv1.ConnectRequest_Subscribe{Subscribe: &heraldv1.SubscribeCommand{Topics: []string{"x.b"}}}})
	if r := c.recv(); r.Id != 5 || r.GetError().GetCode() != "bad_request" {
		t.Fatalf("subscribing twice: %v", r)
	}
	c.send(&heraldv1.ConnectRequest{Id: 6, Command: &heraldv1.ConnectRequest_Publish{Publish: &heraldv1.PublishRequest{
		Topic: "ro.x", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}}})
	if r := c.recv(); r.Id != 6 || r.GetError().GetCode() != "forbidden" {
		t.Fatalf("client publish to a read-only namespace: %v", r)
	}
	c.send(&heraldv1.ConnectRequest{Id: 7})
	if r := c.recv(); r.Id != 7 || r.GetError().GetCode() != "bad_request" {
		t.Fatalf("empty command: %v", r)
	}
	// Unary Publish is a service's call: client_publish does not apply.
	if _, err := hs.c.Publish(ctxT(t), &heraldv1.PublishRequest{Topic: "ro.x", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}}); err != nil {
		t.Errorf("unary publish to ro.x: %v", err)
	}
	c.s.CloseSend()
}

// TestSlowConsumer: a consumer that stops reading is ended with
// RESOURCE_EXHAUSTED slow_consumer, and the others are not.
func TestSlowConsumer(t *testing.T) {
	hs := start(t, func(s *setup) {
		// A fixed 64 KiB window, so that a consumer that does not read
		// stops the server's sends soon.
		s.dial = []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}
	})
	ctx := ctxT(t)
	slow, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	recvDelivery(t, slow)
	fastConn := hs.dial()
	fast, err := heraldv1.NewHeraldClient(fastConn).Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	recvDelivery(t, fast)
	payload := []byte(`"` + strings.Repeat("x", 2000) + `"`)
	const total = 200 // 400 KB: over the window, the client's buffers and the 64 KiB queue
	fastDone := make(chan int, 1)
	go func() {
		got := 0
		for got < total {
			d, err := fast.Recv()
			if err != nil {
				break
			}
			got += len(d.Events)
		}
		fastDone <- got
	}()
	for i := 0; i < total; i++ {
		if _, err := hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "s", Events: []*heraldv1.PublishEvent{{Data: payload}}}); err != nil {
			t.Fatal(err)
		}
		// Paced, so that the reading consumer's queue (64 KiB here) never
		// fills while the stuck send of the other holds a pool worker
		// (until the watchdog replaces it, a few milliseconds).
		time.Sleep(time.Millisecond)
	}
	if got := <-fastDone; got != total {
		t.Errorf("the reading consumer got %d of %d", got, total)
	}
	// Now read the slow one: what was buffered, then the end.
	var err2 error
	for err2 == nil {
		_, err2 = slow.Recv()
	}
	st := wantStatus(t, err2, codes.ResourceExhausted, string(reason.SlowConsumer))
	if !strings.Contains(st.Message(), "resume") {
		t.Errorf("message %q does not say what to do", st.Message())
	}
}

// TestDrain: streams end with UNAVAILABLE shutting_down and a resume hint;
// health turns NOT_SERVING.
func TestDrain(t *testing.T) {
	hs := start(t)
	ctx := ctxT(t)
	health := healthpb.NewHealthClient(hs.conn)
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: grpcapi.ServiceName}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", r, err)
	}
	s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	recvDelivery(t, s)
	hs.publish("d", 1, 1)
	recvEvents(t, s, 1)
	c := hs.connect(ctx)
	c.subscribe(1, "d")

	stopped := make(chan struct{})
	go func() { hs.stop(); close(stopped) }()
	_, err = s.Recv()
	st := wantStatus(t, err, codes.Unavailable, string(reason.ShuttingDown))
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() < 100*time.Millisecond {
		t.Errorf("no resume hint: %v", st.Details())
	}
	if cur := errorInfo(st).GetMetadata()["cursor"]; cur == "" {
		t.Error("no cursor in the end status")
	}
	_, err = c.s.Recv()
	wantStatus(t, err, codes.Unavailable, string(reason.ShuttingDown))
	<-stopped
	_, err = hs.c.Publish(ctx, &heraldv1.PublishRequest{Topic: "d", Events: []*heraldv1.PublishEvent{{Data: []byte("1")}}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("publish after the drain: %v", err)
	}
}

// TestDeadline: a stream's deadline ends it with DEADLINE_EXCEEDED and
// frees its subscriber.
func TestDeadline(t *testing.T) {
	hs := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s, err := hs.c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"dl"}})
	if err != nil {
		t.Fatal(err)
	}
	var rerr error
	for rerr == nil {
		_, rerr = s.Recv()
	}
	if status.Code(rerr) != codes.DeadlineExceeded {
		t.Errorf("stream end %v", rerr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hs.hub.Subscribers("dl") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber stayed after the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A cancelled Connect frees its subscriber too.
	cctx, ccancel := context.WithCancel(context.Background())
	c := hs.connect(cctx)
	c.subscribe(1, "dl")
	ccancel()
	for hs.hub.Subscribers("dl") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the Connect subscriber stayed after cancel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.s.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled connect: %v", err)
	}
}

// TestPublishStreamPipelined sends many requests without waiting: the
// requests queued behind a busy store are stored together (one append per
// run of one topic), and every answer is what storing the requests one by
// one, in order, gives: dense offsets in request order, a refused request
// answered alone, an idempotency key repeated across requests answered as a
// duplicate of the first, a request spanning topics stored in its place.
func TestPublishStreamPipelined(t *testing.T) {
	release := make(chan struct{})
	var first sync.Once
	var maxStored atomic.Int64
	hs := start(t, func(su *setup) {
		su.hub.Observer.Published = func(n int) {
			first.Do(func() { <-release }) // hold the first store while requests queue
			for m := maxStored.Load(); int64(n) > m && !maxStored.CompareAndSwap(m, int64(n)); m = maxStored.Load() {
			}
		}
	})
	ps, err := hs.c.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const reqs = 600
	sent := make(chan int, reqs)
	go func() {
		for i := 1; i <= reqs; i++ {
			req := &heraldv1.PublishRequest{Topic: "pp", Id: uint64(i)}
			ev := &heraldv1.PublishEvent{Data: []byte(strconv.Itoa(i))}
			switch {
			case i%97 == 0:
				ev.Type = "gap" // refused by the hub's check
			case i%50 == 25:
				req.Events = append(req.Events, &heraldv1.PublishEvent{Topic: "pq", Data: []byte("x")})
			case i%40 == 0:
				ev.Key = "k" + strconv.Itoa(i-1) // the key of the request before
			case i%40 == 39:
				ev.Key = "k" + strconv.Itoa(i)
			}
			req.Events = append([]*heraldv1.PublishEvent{ev}, req.Events...)
			if err := ps.Send(req); err != nil {
				t.Errorf("Send: %v", err)
				return
			}
			sent <- i
		}
		ps.CloseSend()
	}()
	for range 100 {
		<-sent
	}
	time.Sleep(100 * time.Millisecond) // let the server's reader take them
	close(release)

	var next, keyed uint64 = 1, 0
	for i := 1; i <= reqs; i++ {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if resp.Id != uint64(i) {
			t.Fatalf("response %d has id %d", i, resp.Id)
		}
		switch {
		case i%97 == 0:
			if resp.Error.GetCode() != "bad_request" || len(resp.Acks) != 0 {
				t.Errorf("refused request %d: %v", i, resp)
			}
			continue
		case len(resp.Acks) == 0:
			t.Fatalf("response %d: %v", i, resp)
		case i%40 == 0:
			if a := resp.Acks[0]; !a.Duplicate || a.Offset != keyed {
				t.Errorf("request %d repeats request %d's key: %v, want a duplicate of offset %d", i, i-1, a, keyed)
			}
			continue
		}
		if a := resp.Acks[0]; a.Offset != next || a.Duplicate || a.Topic != "pp" {
			t.Fatalf("response %d: %v, want offset %d of pp", i, a, next)
		}
		if i%40 == 39 {
			keyed = next
		}
		if i%50 == 25 && (len(resp.Acks) != 2 || resp.Acks[1].Topic != "pq") {
			t.Errorf("request %d spanning topics: %v", i, resp)
		}
		next++
	}
	if _, err := ps.Recv(); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
	if n := maxStored.Load(); n < 2 {
		t.Errorf("at most %d event stored per append: the queued requests were not stored together", n)
	}
	info, err := hs.c.GetTopic(ctxT(t), &heraldv1.GetTopicRequest{Topic: "pp"})
	if err != nil || info.Last != next-1 {
		t.Errorf("stored %v, %v; want %d events", info, err, next-1)
	}
}

// heldEngine holds its first Append until release is closed, and fails
// Appends with ErrUnavailable while fail is set.
type heldEngine struct {
	*memory.Engine
	release chan struct{}
	calls   atomic.Int64
	fail    atomic.Bool
}

func (e *heldEngine) Append(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	if e.calls.Add(1) == 1 {
		<-e.release
	} else if e.fail.Load() {
		return nil, fmt.Errorf("test: %w", hub.ErrUnavailable)
	}
	return e.Engine.Append(ctx, topic, recs)
}

// TestPublishStreamMergedFailTogether: requests stored together fail
// together when the engine fails (each answered unavailable, nothing of
// them stored), and the stream goes on.
func TestPublishStreamMergedFailTogether(t *testing.T) {
	eng := &heldEngine{release: make(chan struct{})}
	hs := start(t, func(su *setup) {
		su.engine = func(m *memory.Engine) hub.Engine { eng.Engine = m; return eng }
	})
	ps, err := hs.c.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(id int) {
		t.Helper()
		if err := ps.Send(&heraldv1.PublishRequest{Topic: "pf", Id: uint64(id), Events: []*heraldv1.PublishEvent{{Data: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	for deadline := time.Now().Add(5 * time.Second); eng.calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // 1 is held in the engine
			t.Fatal("request 1 did not reach the engine")
		}
	}
	for id := 2; id <= 11; id++ {
		send(id) // these wait behind it
	}
	time.Sleep(100 * time.Millisecond) // let the server's reader take them
	eng.fail.Store(true)
	close(eng.release)
	for id := 1; id <= 11; id++ {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case resp.Id != uint64(id):
			t.Fatalf("response %d has id %d", id, resp.Id)
		case id == 1 && (len(resp.Acks) != 1 || resp.Acks[0].Offset != 1):
			t.Errorf("request 1: %v", resp)
		case id > 1 && (resp.Error.GetCode() != "unavailable" || len(resp.Acks) != 0):
			t.Errorf("request %d stored while the engine failed: %v", id, resp)
		}
	}
	if n := eng.calls.Load(); n != 2 {
		t.Errorf("%d appends for 11 requests, want 2 (the held one, then the 10 waiting together)", n)
	}
	eng.fail.Store(false)
	send(12)
	resp, err := ps.Recv()
	if err != nil || len(resp.Acks) != 1 || resp.Acks[0].Offset != 2 {
		t.Errorf("after the engine is back: %v, %v; want offset 2", resp, err)
	}
	ps.CloseSend()
	if _, err := ps.Recv(); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
}
