package durable

import (
	"maps"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

// FuzzDecodeEvent checks that decoding arbitrary stored bytes never panics
// and that encoding then decoding a record gives it back.
func FuzzDecodeEvent(f *testing.F) {
	f.Add("msg", []byte(`{"x":1}`), "k1", "h", "v", uint8(1), []byte{})
	f.Add("", []byte{}, "", "", "", uint8(0), []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0x80})
	f.Fuzz(func(t *testing.T, typ string, data []byte, key, hk, hv string, enc uint8, raw []byte) {
		decodeEvent("t", 1, 1, raw) // must not panic

		r := event.Record{Type: typ, Data: data, Key: key, Encoding: event.Encoding(enc)}
		if hk != "" {
			r.Headers = map[string]string{hk: hv}
		}
		in := &event.Event{Topic: "t", Offset: 7, Epoch: 3, Time: 1234, Record: r}
		out, err := decodeEvent("t", 3, 7, encodeEvent(in))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if out.Type != r.Type || string(out.Data) != string(r.Data) || out.Key != r.Key || out.Encoding != r.Encoding ||
			out.Time != 1234 || out.Offset != 7 || out.Epoch != 3 || !maps.Equal(out.Headers, r.Headers) {
			t.Fatalf("round trip: got %+v, want %+v", out.Record, r)
		}
	})
}
