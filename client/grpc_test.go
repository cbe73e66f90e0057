package client_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/client"
)

// grpcClient returns a client of ts's gRPC API, closed when the test ends.
func (ts *testServer) grpcClient(opts ...client.Option) *client.Client {
	ts.t.Helper()
	c, err := client.NewGRPC(ts.srv.GRPCAddr(), opts...)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	return c
}

func TestGRPCPublishAndPull(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	ctx := context.Background()
	ack, err := c.Publish(ctx, "g.a", []byte(`{"x":1}`), client.WithType("t"), client.WithHeader("k", "v"), client.WithKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Topic != "g.a" || ack.Offset != 1 || ack.Cursor == "" || ack.Duplicate {
		t.Errorf("ack %+v", ack)
	}
	again, err := c.Publish(ctx, "g.a", []byte(`{"x":2}`), client.WithKey("k1"))
	if err != nil || !again.Duplicate || again.Offset != 1 {
		t.Errorf("duplicate: %+v, %v", again, err)
	}
	acks, err := c.PublishBatch(ctx, []client.BatchEvent{
		{Topic: "g.a", Text: "plain"},
		{Topic: "g.b", Binary: []byte{1, 2}},
		{Topic: "g.a", Data: json.RawMessage(`[1]`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Offset != 2 || acks[1].Offset != 1 || acks[2].Offset != 3 || acks[1].Topic != "g.b" {
		t.Errorf("batch acks %+v", acks)
	}
	// What gRPC stored reads the same over HTTP and over gRPC.
	for name, cl := range map[string]*client.Client{"http": ts.c, "grpc": c} {
		res, err := cl.Pull(ctx, []string{"g.a"}, client.WithFrom(client.FromEarliest))
		if err != nil {
			t.Fatalf("%s pull: %v", name, err)
		}
		if len(res.Events) != 3 {
			t.Fatalf("%s pull: %+v", name, res)
		}
		e := res.Events[0]
		if e.Type != "t" || e.Headers["k"] != "v" || e.Encoding != client.EncodingJSON || string(e.Data) != `{"x":1}` || e.Time.IsZero() {
			t.Errorf("%s event 1: %+v", name, e)
		}
		if p := payload(t, &res.Events[1]); p != "plain" || res.Events[1].Encoding != client.EncodingText {
			t.Errorf("%s event 2: %+v", name, res.Events[1])
		}
		if string(res.Events[2].Data) != `[1]` {
			t.Errorf("%s event 3: %+v", name, res.Events[2])
		}
	}
	res, err := c.Pull(ctx, []string{"g.b"}, client.WithFrom(client.FromEarliest))
	if err != nil || len(res.Events) != 1 || res.Events[0].Encoding != client.EncodingBinary || payload(t, &res.Events[0]) != "\x01\x02" {
		t.Errorf("binary over gRPC: %+v, %v", res, err)
	}
	// A long poll over gRPC.
	go func() {
		time.Sleep(50 * time.Millisecond)
		ts.publish("g.b", "2")
	}()
	res, err = c.Pull(ctx, []string{"g.b"}, client.WithCursor(res.Cursor), client.WithWait(5*time.Second))
	if err != nil || len(res.Events) != 1 || res.Events[0].Offset != 2 {
		t.Errorf("long poll over gRPC: %+v, %v", res, err)
	}
}

func TestGRPCErrors(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	_, err := c.Publish(context.Background(), "bad topic", []byte("1"))
	e := apiError(t, err)
	if e.Code != client.CodeBadTopic || e.GRPCCode != codes.InvalidArgument || e.Retryable() {
		t.Errorf("bad topic: %+v", e)
	}
	_, err = c.Pull(context.Background(), []string{"a"}, client.WithCursor("%%"))
	if e := apiError(t, err); e.Code != client.CodeBadCursor {
		t.Errorf("bad cursor: %+v", e)
	}
	if _, err := c.Subscribe(context.Background(), []string{"a"}, client.WithTransport(client.TransportSSE)); err == nil {
		t.Error("a gRPC client subscribed over SSE")
	}
	if _, err := ts.c.Subscribe(context.Background(), []string{"a"}, client.WithTransport(client.TransportGRPC)); err == nil {
		t.Error("an HTTP client subscribed over gRPC")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, []string{"a b"}); err == nil {
		t.Error("subscribing to a bad topic succeeded")
	} else if e := apiError(t, err); e.Code != client.CodeBadTopic {
		t.Errorf("subscribe to a bad topic: %+v", e)
	}
	if _, err := client.NewGRPC("http://127.0.0.1:9090"); err == nil {
		t.Error("NewGRPC took a URL")
	}
}

// TestGRPCSubscribe follows two topics over gRPC: every event with all its
// details, and a cursor per message that resumes right after it on any
// transport.
func TestGRPCSubscribe(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, []string{"gs.a", "gs.b"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// A batch of one topic: the server may deliver it as one Delivery of
	// several events, whose cursors the client computes.
	if _, err := ts.c.PublishBatch(context.Background(), []client.BatchEvent{
		{Topic: "gs.a", Data: json.RawMessage(`1`)}, {Topic: "gs.a", Data: json.RawMessage(`2`)},
	}); err != nil {
		t.Fatal(err)
	}
	var msgs []client.Message
	for i := 1; i <= 3; i++ {
		if i == 3 {
			ts.c.PublishBatch(context.Background(), []client.BatchEvent{{Topic: "gs.b", Data: json.RawMessage(`3`), Headers: map[string]string{"h": "x"}}})
		}
		m := nextEvent(t, sub)
		if payload(t, m.Event) != strconv.Itoa(i) || m.Event.Time.IsZero() || m.Cursor == "" {
			t.Fatalf("event %d: %+v", i, m)
		}
		msgs = append(msgs, m)
	}
	if msgs[2].Event.Headers["h"] != "x" || msgs[2].Event.Topic != "gs.b" || msgs[1].Event.Offset != 2 {
		t.Errorf("details: %+v %+v", msgs[1].Event, msgs[2].Event)
	}
	// Each message's cursor continues right after it.
	for i, m := range msgs {
		res, err := ts.c.Pull(context.Background(), []string{"gs.a", "gs.b"}, client.WithCursor(m.Cursor))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 2-i {
			t.Errorf("pull after message %d: %d events, want %d", i+1, len(res.Events), 2-i)
		}
	}
	// And a new gRPC subscription from the first message's cursor resumes
	// with the second.
	sub2, err := c.Subscribe(ctx, []string{"gs.a", "gs.b"}, client.WithCursor(msgs[0].Cursor))
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	if m := nextEvent(t, sub2); payload(t, m.Event) != "2" || m.Cursor != msgs[1].Cursor {
		t.Errorf("resumed with %+v, want event 2 with cursor %s", m, msgs[1].Cursor)
	}
}

// TestGRPCSubscribeReconnect restarts the server under a gRPC subscription:
// it is told (shutting_down, with the server's resume hint), reconnects and
// goes on without loss; after a restart that lost history it gets a gap.
func TestGRPCSubscribeReconnect(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, []string{"gr.a"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	old := ts.publish("gr.a", "1")
	nextEvent(t, sub)
	ts.restart(true)
	m, err := sub.Next(ctx)
	if err != nil || m.Err == nil {
		t.Fatalf("Next = %+v, %v; want a reconnection notice", m, err)
	}
	if e := apiError(t, m.Err); e.Code != client.CodeShuttingDown || !e.Retryable() || e.GRPCCode != codes.Unavailable || e.RetryAfter <= 0 {
		t.Errorf("notice %+v", e)
	}
	ts.publish("gr.a", "2")
	if m := nextEvent(t, sub); m.Event.Offset != 2 || m.Event.Epoch != old.Epoch {
		t.Errorf("after the restart: %+v", m.Event)
	}
	ts.restart(false)
	fresh := ts.publish("gr.a", "3")
	m = next(t, sub)
	if m.Gap == nil || m.Gap.Reason != client.GapEpochChanged || m.Gap.Resumed.Epoch != fresh.Epoch {
		t.Fatalf("after losing history: %+v, want an epoch_changed gap", m)
	}
	if m := nextEvent(t, sub); m.Event.Offset != 1 || payload(t, m.Event) != "3" {
		t.Errorf("after the gap: %+v", m.Event)
	}
}
