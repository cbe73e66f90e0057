package grpcapi

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// The hand-written encodings must decode, with the generated code, into
// exactly the messages they stand for.

func TestEventFrameDecodes(t *testing.T) {
	tests := []struct {
		name string
		ev   *event.Event
		want *heraldv1.Event
	}{
		{
			name: "json with headers",
			ev: &event.Event{Topic: "chat.room-1", Offset: 7, Epoch: 0x9f3c2a1b0d4e5f60, Time: 1764100200123,
				Record: event.Record{Type: "msg", Data: []byte(`{"a":1}`), Encoding: event.EncodingJSON, Headers: map[string]string{"b": "2", "a": ""}}},
			want: &heraldv1.Event{Topic: "chat.room-1", Offset: 7, Epoch: "9f3c2a1b0d4e5f60",
				Time: timestamppb.New(time.UnixMilli(1764100200123)), Type: "msg", Encoding: heraldv1.Encoding_ENCODING_JSON,
				Data: []byte(`{"a":1}`), Headers: map[string]string{"b": "2", "a": ""}},
		},
		{
			name: "empty text, epoch with leading zeros, whole second",
			ev:   &event.Event{Topic: "a", Offset: 1, Epoch: 1, Time: 2000, Record: event.Record{Encoding: event.EncodingText}},
			want: &heraldv1.Event{Topic: "a", Offset: 1, Epoch: "0000000000000001", Time: &timestamppb.Timestamp{Seconds: 2},
				Encoding: heraldv1.Encoding_ENCODING_TEXT},
		},
		{
			name: "binary before 1970",
			ev:   &event.Event{Topic: "x.y", Offset: 1 << 40, Epoch: ^event.Epoch(0), Time: -1500, Record: event.Record{Data: []byte{0, 1, 2}, Encoding: event.EncodingBinary}},
			want: &heraldv1.Event{Topic: "x.y", Offset: 1 << 40, Epoch: "ffffffffffffffff", Time: &timestamppb.Timestamp{Seconds: -2, Nanos: 5e8},
				Encoding: heraldv1.Encoding_ENCODING_BINARY, Data: []byte{0, 1, 2}},
		},
		{
			name: "epoch time zero",
			ev:   &event.Event{Topic: "t", Offset: 3, Epoch: 5, Time: 0, Record: event.Record{Data: []byte("1"), Encoding: event.EncodingJSON}},
			want: &heraldv1.Event{Topic: "t", Offset: 3, Epoch: "0000000000000005", Time: &timestamppb.Timestamp{},
				Encoding: heraldv1.Encoding_ENCODING_JSON, Data: []byte("1")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := new(heraldv1.Event)
			if err := proto.Unmarshal(eventFrame(tt.ev), got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !proto.Equal(tt.want, got) {
				t.Errorf("decoded event:\n got %s\nwant %s", prototext.Format(got), prototext.Format(tt.want))
			}
			if b := proto.Size(tt.want); b != len(eventFrame(tt.ev)) {
				t.Errorf("frame is %d bytes, proto would make %d", len(eventFrame(tt.ev)), b)
			}
		})
	}
}

func TestDeliveryDecodes(t *testing.T) {
	ev1 := &event.Event{Topic: "a", Offset: 4, Epoch: 9, Time: 1000, Record: event.Record{Data: []byte(`"x"`), Encoding: event.EncodingJSON}}
	ev2 := &event.Event{Topic: "b", Offset: 1, Epoch: 9, Time: 1001, Record: event.Record{Data: []byte("hi"), Encoding: event.EncodingText}}
	gap := &hub.Gap{Topic: "a", Reason: hub.GapTrimmed, Requested: event.Position{Epoch: 9, Offset: 1}, Resumed: event.Position{Epoch: 9, Offset: 3}, Earliest: 4}
	var cur cursor.Cursor
	cur.Set("c", event.Position{Epoch: 9, Offset: 2})
	var d delivery
	for _, it := range []hub.Item{{Gap: gap}, {Event: ev1}, {Event: ev2}} {
		if !d.fits(it, maxDeliveryBytes) {
			t.Fatalf("item %+v does not fit", it)
		}
		d.add(it)
	}
	if d.fits(hub.Item{Gap: gap}, maxDeliveryBytes) {
		t.Error("a gap fits after events; it must start a new delivery")
	}
	advance(&cur, &d)
	token := cur.AppendEncoded(nil)
	for _, conn := range []bool{false, true} {
		b := appendDelivery(nil, &d, token, conn)
		if len(b) != deliverySize(&d, token, conn) {
			t.Errorf("conn=%v: size %d, deliverySize %d", conn, len(b), deliverySize(&d, token, conn))
		}
		got := new(heraldv1.Delivery)
		if conn {
			cr := new(heraldv1.ConnectResponse)
			if err := proto.Unmarshal(b, cr); err != nil {
				t.Fatalf("decode ConnectResponse: %v", err)
			}
			got = cr.GetDelivery()
		} else if err := proto.Unmarshal(b, got); err != nil {
			t.Fatalf("decode Delivery: %v", err)
		}
		want := &heraldv1.Delivery{
			Gaps:   []*heraldv1.Gap{gapMessage(gap)},
			Events: []*heraldv1.Event{eventMessage(ev1), eventMessage(ev2)},
			Cursor: string(token),
		}
		if !proto.Equal(want, got) {
			t.Errorf("conn=%v: delivery:\n got %s\nwant %s", conn, prototext.Format(got), prototext.Format(want))
		}
	}
	c, err := cursor.Parse(string(token))
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]uint64{"a": 4, "b": 1, "c": 2} {
		if p, _ := c.Get(topic); p.Offset != want {
			t.Errorf("cursor %s at %d, want %d", topic, p.Offset, want)
		}
	}
}

// FuzzEventFrame checks that any event encodes into a frame that decodes
// to the same fields.
func FuzzEventFrame(f *testing.F) {
	f.Add("a", uint64(1), uint64(2), int64(3), "t", []byte("d"), uint8(0), "k", "v")
	f.Fuzz(func(t *testing.T, topic string, off, epoch uint64, ms int64, typ string, data []byte, enc uint8, hk, hv string) {
		ev := &event.Event{Topic: topic, Offset: off, Epoch: event.Epoch(epoch), Time: ms,
			Record: event.Record{Type: typ, Data: data, Encoding: event.Encoding(enc % 3), Headers: map[string]string{hk: hv}}}
		got := new(heraldv1.Event)
		// Strings that are not UTF-8 are refused by proto3's decoder; the
		// server never stores such topics, types or headers.
		if err := proto.Unmarshal(eventFrame(ev), got); err != nil {
			if proto.Unmarshal(eventFrame(&event.Event{Topic: "ok"}), new(heraldv1.Event)) != nil {
				t.Fatal("a plain event does not decode")
			}
			return
		}
		if got.Topic != topic || got.Offset != off || got.Epoch != event.Epoch(epoch).String() || got.Type != typ ||
			string(got.Data) != string(data) || got.Headers[hk] != hv || got.Time.AsTime().UnixMilli() != ms {
			t.Errorf("round trip: got %v", got)
		}
	})
}
