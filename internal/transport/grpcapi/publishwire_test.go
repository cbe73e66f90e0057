package grpcapi

import (
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/event"
)

// The hand-written PublishRequest decoder reads what the generated code
// writes, and the hand-written PublishResponse is what it reads.

func TestDecodePublish(t *testing.T) {
	tests := []*heraldv1.PublishRequest{
		{Topic: "a", Events: []*heraldv1.PublishEvent{{Data: []byte(`{"x":1}`)}}},
		{Topic: "a", Id: 42, Events: []*heraldv1.PublishEvent{
			{Data: []byte("t"), Encoding: heraldv1.Encoding_ENCODING_TEXT, Type: "note", Key: "k", Headers: map[string]string{"h": "v", "e": ""}},
			{Topic: "b.c", Encoding: heraldv1.Encoding_ENCODING_BINARY},
			{Data: make([]byte, 20000)},
		}},
		{Id: 1<<64 - 1},
	}
	for i, req := range tests {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var in publishIn
		if err := decodePublish(b, &in); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if in.topic != req.Topic || in.id != req.Id || len(in.events) != len(req.Events) {
			t.Fatalf("case %d: decoded %+v", i, in)
		}
		for j, e := range req.Events {
			got := in.events[j]
			if got.topic != e.Topic || string(got.data) != string(e.Data) || got.data == nil || got.enc != e.Encoding ||
				got.typ != e.Type || got.key != e.Key || len(got.headers) != len(e.Headers) {
				t.Errorf("case %d event %d: %+v, want %v", i, j, got, e)
			}
			for k, v := range e.Headers {
				if got.headers[k] != v {
					t.Errorf("case %d event %d: header %s = %q, want %q", i, j, k, got.headers[k], v)
				}
			}
		}
		// The payloads are copies, not views of the message's buffer.
		clear(b)
		for j, e := range req.Events {
			if string(in.events[j].data) != string(e.Data) {
				t.Errorf("case %d event %d: the payload changed with the request buffer", i, j)
			}
		}
	}
	for _, bad := range [][]byte{{0x0a, 0x05, 'a'}, {0x12, 0x02, 0x12, 0x09}, {0xff}} {
		if err := decodePublish(bad, new(publishIn)); err == nil {
			t.Errorf("decoded the malformed message %x", bad)
		}
	}
}

func TestPublishResponseDecodes(t *testing.T) {
	out := &publishOut{
		topics: []string{"a.b", "c"},
		acks: []event.Ack{
			{Position: event.Position{Epoch: 0xabc, Offset: 7}},
			{Position: event.Position{Epoch: 1, Offset: 1}, Duplicate: true},
		},
	}
	for _, id := range []uint64{0, 9} {
		b, _ := appendPublishResponse(nil, out, id, nil)
		if len(b) > publishResponseSize(out) {
			t.Errorf("response is %d bytes, over the bound %d", len(b), publishResponseSize(out))
		}
		got := new(heraldv1.PublishResponse)
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if want := out.toProto(id); !proto.Equal(got, want) {
			t.Errorf("response:\n got %s\nwant %s", prototext.Format(got), prototext.Format(want))
		}
	}
	b := appendPublishError(nil, 5, "bad_topic", "no")
	got := new(heraldv1.PublishResponse)
	if err := proto.Unmarshal(b, got); err != nil || got.Id != 5 || got.Error.GetCode() != "bad_topic" || got.Error.GetMessage() != "no" {
		t.Errorf("error response %v, %v", got, err)
	}
}

// FuzzDecodePublish: no input makes the decoder panic, and what the
// generated code accepts, it accepts with the same events.
func FuzzDecodePublish(f *testing.F) {
	seed, _ := proto.Marshal(&heraldv1.PublishRequest{Topic: "a", Events: []*heraldv1.PublishEvent{{Data: []byte("1"), Headers: map[string]string{"k": "v"}}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var in publishIn
		err := decodePublish(b, &in)
		want := new(heraldv1.PublishRequest)
		if proto.Unmarshal(b, want) == nil {
			if err != nil {
				t.Fatalf("generated code decodes %x, hand decoder says %v", b, err)
			}
			if len(in.events) != len(want.Events) || in.topic != want.Topic || in.id != want.Id {
				t.Fatalf("decoded %+v, generated %v", in, want)
			}
		}
	})
}
