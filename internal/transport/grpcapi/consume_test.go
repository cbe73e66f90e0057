package grpcapi_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/group"
)

func withGroups(su *setup) { su.groups = true }

// consumeStream is a client's Consume call.
type consumeStream struct {
	t    *testing.T
	call heraldv1.Herald_ConsumeClient
	id   uint64
}

// createGroup creates a group over topics from the earliest event.
func (hs *harness) createGroup(name string, ackWait time.Duration, topics ...string) {
	hs.t.Helper()
	if _, _, err := hs.groups.Put(context.Background(), group.Config{Name: name, Topics: topics, Start: "earliest", AckWait: ackWait}); err != nil {
		hs.t.Fatalf("Put group %s: %v", name, err)
	}
}

// consume opens a Consume stream as member of grp and checks the opened
// reply.
func (hs *harness) consume(ctx context.Context, grp, member string) *consumeStream {
	hs.t.Helper()
	call, err := hs.c.Consume(ctx)
	if err != nil {
		hs.t.Fatal(err)
	}
	cs := &consumeStream{t: hs.t, call: call}
	resp := cs.do(&heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: grp, Member: member}}})
	o := resp.GetOpened()
	if o == nil || o.Group != grp || (member != "" && o.Member != member) || o.Member == "" {
		hs.t.Fatalf("open answered %v", resp)
	}
	return cs
}

// send sends a command with the next id and returns the id.
func (cs *consumeStream) send(req *heraldv1.ConsumeRequest) uint64 {
	cs.t.Helper()
	cs.id++
	req.Id = cs.id
	if err := cs.call.Send(req); err != nil {
		cs.t.Fatalf("send: %v", err)
	}
	return req.Id
}

// do sends a command and returns its reply, keeping messages that come
// meanwhile out (the tests that use do expect none).
func (cs *consumeStream) do(req *heraldv1.ConsumeRequest) *heraldv1.ConsumeResponse {
	cs.t.Helper()
	id := cs.send(req)
	resp, err := cs.call.Recv()
	if err != nil {
		cs.t.Fatalf("recv: %v", err)
	}
	if resp.Id != id {
		cs.t.Fatalf("reply %v, want one to command %d", resp, id)
	}
	return resp
}

func (cs *consumeStream) grant(n uint32) {
	cs.t.Helper()
	cs.send(&heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Grant{Grant: &heraldv1.Grant{Events: n}}})
}

// messages receives until it has n messages.
func (cs *consumeStream) messages(n int) []*heraldv1.GroupMessage {
	cs.t.Helper()
	var out []*heraldv1.GroupMessage
	for len(out) < n {
		resp, err := cs.call.Recv()
		if err != nil {
			cs.t.Fatalf("recv after %d of %d messages: %v", len(out), n, err)
		}
		ms := resp.GetMessages()
		if ms == nil {
			cs.t.Fatalf("got %v, want messages", resp)
		}
		out = append(out, ms.Messages...)
	}
	if len(out) != n {
		cs.t.Fatalf("got %d messages, want %d (credit exceeded)", len(out), n)
	}
	return out
}

// answer sends an answer and returns its results.
func (cs *consumeStream) answer(op string, a *heraldv1.Answer) []*heraldv1.AnswerResult {
	cs.t.Helper()
	resp := cs.do(answerRequest(op, a))
	ans := resp.GetAnswered()
	if ans == nil {
		cs.t.Fatalf("%s answered %v", op, resp)
	}
	if len(ans.Results) != len(a.Ids) {
		cs.t.Fatalf("%s: %d results for %d ids", op, len(ans.Results), len(a.Ids))
	}
	return ans.Results
}

func answerRequest(op string, a *heraldv1.Answer) *heraldv1.ConsumeRequest {
	req := &heraldv1.ConsumeRequest{}
	switch op {
	case "ack":
		req.Command = &heraldv1.ConsumeRequest_Ack{Ack: a}
	case "nak":
		req.Command = &heraldv1.ConsumeRequest_Nak{Nak: a}
	case "in_progress":
		req.Command = &heraldv1.ConsumeRequest_InProgress{InProgress: a}
	case "term":
		req.Command = &heraldv1.ConsumeRequest_Term{Term: a}
	}
	return req
}

func ids(ms ...*heraldv1.GroupMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Id
	}
	return out
}

func TestConsume(t *testing.T) {
	hs := start(t, withGroups)
	ctx := ctxT(t)
	hs.publish("jobs", 1, 5)
	hs.createGroup("workers", time.Minute, "jobs")
	cs := hs.consume(ctx, "workers", "w1")

	// Credit bounds what is sent: 2 granted, 2 sent, nothing more.
	cs.grant(2)
	got := cs.messages(2)
	for i, m := range got {
		if n(t, m.Event) != i+1 || m.Delivery != 1 || m.Id == "" || m.Cursor == "" || m.Deadline.AsTime().Before(time.Now().Add(50*time.Second)) {
			t.Errorf("message %d: %v", i, m)
		}
	}
	// An answer's reply comes next, not a third message.
	res := cs.answer("ack", &heraldv1.Answer{Ids: ids(got[0])})
	if res[0].Error != nil || res[0].Id != got[0].Id {
		t.Fatalf("ack: %v", res[0])
	}
	// Acked twice: not in flight any more.
	res = cs.answer("ack", &heraldv1.Answer{Ids: ids(got[0])})
	if res[0].Error.GetCode() != "not_found" {
		t.Errorf("second ack: %v, want not_found", res[0])
	}
	// in_progress answers the new deadline.
	res = cs.answer("in_progress", &heraldv1.Answer{Ids: ids(got[1])})
	if res[0].Error != nil || res[0].Deadline == nil {
		t.Errorf("in_progress: %v", res[0])
	}
	// A nak hands it back: it comes again, with delivery 2, once credit
	// allows.
	res = cs.answer("nak", &heraldv1.Answer{Ids: ids(got[1])})
	if res[0].Error != nil {
		t.Fatalf("nak: %v", res[0])
	}
	cs.grant(4)
	rest := cs.messages(4)
	redelivered := 0
	for _, m := range rest {
		if n(t, m.Event) == 2 {
			redelivered++
			if m.Delivery != 2 || m.Id == got[1].Id {
				t.Errorf("redelivery %v: want delivery 2 with a new id", m)
			}
		}
	}
	if redelivered != 1 {
		t.Errorf("%d redeliveries of event 2 in %v", redelivered, rest)
	}
	res = cs.answer("ack", &heraldv1.Answer{Ids: ids(rest...)})
	for i, r := range res {
		if r.Error != nil {
			t.Errorf("ack %d: %v", i, r)
		}
	}
	// An unknown id among known ones is refused alone.
	hs.publish("jobs", 6, 1)
	cs.grant(1)
	last := cs.messages(1)
	res = cs.answer("term", &heraldv1.Answer{Ids: []string{"nonsense", last[0].Id}, Reason: "poison"})
	if res[0].Error.GetCode() == "" || res[1].Error != nil {
		t.Errorf("term: %v", res)
	}
	if err := cs.call.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.call.Recv(); err != io.EOF {
		t.Errorf("after half-close: %v, want the stream to end OK", err)
	}
	info, err := hs.groups.Get(ctx, "workers")
	if err != nil {
		t.Fatal(err)
	}
	if info.InFlight != 0 || info.Pending != 0 || info.DeadLettered != 1 {
		t.Errorf("group: in flight %d, pending %d, dead-lettered %d; want 0, 0, 1", info.InFlight, info.Pending, info.DeadLettered)
	}
}

// A member whose stream ends hands its deliveries back: another member
// gets them at once, long before their leases would end.
func TestConsumeHandBack(t *testing.T) {
	hs := start(t, withGroups)
	ctx := ctxT(t)
	hs.publish("jobs", 1, 3)
	hs.createGroup("workers", time.Hour, "jobs")

	cctx, cancel := context.WithCancel(ctx)
	first := hs.consume(cctx, "workers", "w1")
	first.grant(3)
	got := first.messages(3)
	first.answer("ack", &heraldv1.Answer{Ids: ids(got[0])})
	cancel()

	second := hs.consume(ctx, "workers", "w2")
	second.grant(10)
	again := second.messages(2)
	for _, m := range again {
		if m.Delivery != 2 || n(t, m.Event) == 1 {
			t.Errorf("redelivered %v; want events 2 and 3, delivery 2", m)
		}
	}
}

func TestConsumeRefusals(t *testing.T) {
	hs := start(t, withGroups)
	ctx := ctxT(t)
	hs.publish("jobs", 1, 1)
	hs.createGroup("workers", time.Minute, "jobs")

	// A missing group ends the stream NOT_FOUND.
	call, err := hs.c.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: "nope", Member: "w"}}})
	_, err = call.Recv()
	wantStatus(t, err, codes.NotFound, "not_found")

	// The first command must be open.
	call, err = hs.c.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Grant{Grant: &heraldv1.Grant{Events: 1}}})
	_, err = call.Recv()
	wantStatus(t, err, codes.InvalidArgument, "bad_request")

	// Commands refused on an open stream leave it open.
	cs := hs.consume(ctx, "workers", "w1")
	for _, tc := range []struct {
		name string
		req  *heraldv1.ConsumeRequest
	}{
		{"no ids", answerRequest("ack", &heraldv1.Answer{})},
		{"delay on ack", answerRequest("ack", &heraldv1.Answer{Ids: []string{"x"}, Delay: durationpb.New(time.Second)})},
		{"negative delay", answerRequest("nak", &heraldv1.Answer{Ids: []string{"x"}, Delay: durationpb.New(-time.Second)})},
		{"reason on nak", answerRequest("nak", &heraldv1.Answer{Ids: []string{"x"}, Reason: "why"})},
		{"open again", &heraldv1.ConsumeRequest{Command: &heraldv1.ConsumeRequest_Open{Open: &heraldv1.ConsumeOpen{Group: "workers"}}}},
		{"no command", &heraldv1.ConsumeRequest{}},
	} {
		resp := cs.do(tc.req)
		if resp.GetError().GetCode() != "bad_request" {
			t.Errorf("%s: %v, want bad_request", tc.name, resp)
		}
	}
	// Nothing changed: the one event is still there for the member.
	cs.grant(1)
	if m := cs.messages(1); m[0].Delivery != 1 {
		t.Errorf("after refusals: %v", m[0])
	}
}

// A drain ends Consume streams UNAVAILABLE shutting_down, with a retry
// hint.
func TestConsumeDrain(t *testing.T) {
	hs := start(t, withGroups)
	ctx := ctxT(t)
	hs.publish("jobs", 1, 1)
	hs.createGroup("workers", time.Minute, "jobs")
	cs := hs.consume(ctx, "workers", "w1")
	cs.grant(1)
	cs.messages(1)
	cs.grant(10) // the stream waits in a fetch
	ended := make(chan error, 1)
	go func() {
		_, err := cs.call.Recv()
		ended <- err
	}()
	hs.stop()
	err := <-ended
	if errors.Is(err, io.EOF) {
		t.Fatal("the stream ended OK; want UNAVAILABLE")
	}
	wantStatus(t, err, codes.Unavailable, "shutting_down")
}

// Without a group manager (an engine without state), Consume is
// UNAVAILABLE.
func TestConsumeUnavailable(t *testing.T) {
	hs := start(t)
	call, err := hs.c.Consume(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = call.Recv()
	wantStatus(t, err, codes.Unavailable, "unavailable")
}
