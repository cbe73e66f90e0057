package redis

import (
	"errors"
	"maps"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []event.Record{
		{},
		{Data: []byte(`{"a":1}`), Encoding: event.EncodingJSON},
		{Data: []byte{0, 1, 2, 255}, Encoding: event.EncodingBinary, Type: "t", Key: "k-1", Headers: map[string]string{"trace": "abc", "": "empty name"}},
	} {
		got, err := decodeRecord(string(encodeRecord(nil, &r)))
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if string(got.Data) != string(r.Data) || got.Type != r.Type || got.Key != r.Key || got.Encoding != r.Encoding || !maps.Equal(got.Headers, r.Headers) {
			t.Errorf("round trip of %+v gave %+v", r, got)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	r := event.Record{Data: []byte("x"), Type: "greeting"}
	msg := "00000000000000ff" + "42:1700000000000:" + string(encodeRecord(nil, &r))
	ev, err := decodeMessage("room", msg)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Topic != "room" || ev.Epoch != 0xff || ev.Offset != 42 || ev.Time != 1700000000000 || string(ev.Data) != "x" || ev.Type != "greeting" {
		t.Errorf("decoded %+v", ev)
	}
	for _, bad := range []string{"", "short", "zzzzzzzzzzzzzzzz1:2:x", "00000000000000ff:2:\x01\x00", "00000000000000ff1:2:\x02", "00000000000000ff1:2:\x01\x00\x05ab"} {
		if _, err := decodeMessage("room", bad); !errors.Is(err, errCorrupt) {
			t.Errorf("decodeMessage(%q) = %v, want errCorrupt", bad, err)
		}
	}
}

// FuzzDecodeMessage checks that no message from the channel, however
// mangled, panics the decoder, and that a record decoded once encodes to
// what decodes the same.
func FuzzDecodeMessage(f *testing.F) {
	r := event.Record{Data: []byte("x"), Type: "t", Key: "k", Headers: map[string]string{"h": "v"}}
	f.Add("00000000000000ff1:2:" + string(encodeRecord(nil, &r)))
	f.Add("00000000000000ff1:2:\x01\x00\x00\x00\x00")
	f.Add("00000000000000ff1:2:\x01\x00\x00\x00\xff\xff\xff\xff\x0f")
	f.Fuzz(func(t *testing.T, msg string) {
		ev, err := decodeMessage("t", msg)
		if err != nil {
			return
		}
		again, err := decodeRecord(string(encodeRecord(nil, &ev.Record)))
		if err != nil || string(again.Data) != string(ev.Data) || again.Key != ev.Key || again.Type != ev.Type || !maps.Equal(again.Headers, ev.Headers) {
			t.Fatalf("re-encoding %+v gave %+v, %v", ev.Record, again, err)
		}
	})
}
