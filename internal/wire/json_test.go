package wire_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// checkString checks AppendString(s) against encoding/json: valid JSON,
// the same decoded value, and no raw U+2028/U+2029 (the output is also
// valid JavaScript).
func checkString(t *testing.T, s string) {
	t.Helper()
	got := wire.AppendString([]byte("x"), s)
	if got[0] != 'x' {
		t.Fatalf("AppendString overwrote its prefix")
	}
	got = got[1:]
	if !json.Valid(got) {
		t.Fatalf("AppendString(%q) = %s: not valid JSON", s, got)
	}
	var dec string
	if err := json.Unmarshal(got, &dec); err != nil {
		t.Fatalf("AppendString(%q) = %s: %v", s, got, err)
	}
	std, _ := json.Marshal(s)
	var want string
	json.Unmarshal(std, &want)
	if dec != want {
		t.Fatalf("AppendString(%q) decodes to %q; encoding/json gives %q", s, dec, want)
	}
	if utf8.ValidString(s) && dec != s {
		t.Fatalf("AppendString(%q) decodes to %q", s, dec)
	}
	if bytes.ContainsRune(got, '\u2028') || bytes.ContainsRune(got, '\u2029') {
		t.Fatalf("AppendString(%q) = %s holds a raw line separator", s, got)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted"`, `back\slash`, "\x00\x01\x1f\x7f", "\t\r\n\b\f",
		"héllo wörld", "日本語", "emoji 😀", "\u2028\u2029", "<script>&amp;</script>",
		"\xff", "a\xffb", "\xc3", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\U0010ffff",
		strings.Repeat("x", 1000) + "\n",
	} {
		checkString(t, s)
	}
}

func TestAppendStringRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", `"`, `\`, "/", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
		"é", "€", "😀", "\u2028", "\u2029", "\ufffd", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		n := r.IntN(24)
		for j := 0; j < n; j++ {
			if r.IntN(4) == 0 {
				b.WriteByte(byte(r.IntN(256)))
			} else {
				b.WriteString(alphabet[r.IntN(len(alphabet))])
			}
		}
		checkString(t, b.String())
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff\u2028", "\x00\n"} {
		f.Add(s)
	}
	f.Fuzz(checkString)
}

// jsonEvent is an event as a client decodes it.
type jsonEvent struct {
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     string            `json:"time"`
	Type     string            `json:"type"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers"`
}

func TestEventJSON(t *testing.T) {
	when := time.Date(2026, 11, 25, 19, 50, 0, 123e6, time.UTC)
	tests := []struct {
		name     string
		rec      event.Record
		wantEnc  string
		wantData string
	}{
		{"json", event.Record{Data: []byte(`{"text":"hi"}`), Encoding: event.EncodingJSON}, "json", `{"text":"hi"}`},
		{"json scalar", event.Record{Data: []byte(`-1.5e3`), Encoding: event.EncodingJSON}, "json", `-1.5e3`},
		{"text", event.Record{Data: []byte("line\n\"two\"\u2028"), Encoding: event.EncodingText}, "text", `"line\n\"two\"\u2028"`},
		{"empty text", event.Record{Data: []byte{}, Encoding: event.EncodingText}, "text", `""`},
		{"binary", event.Record{Data: []byte{0, 1, 0xfe, 0xff}, Encoding: event.EncodingBinary}, "binary", `"AAH+/w=="`},
		{"empty binary", event.Record{Data: nil, Encoding: event.EncodingBinary}, "binary", `""`},
		{"typed with headers", event.Record{Data: []byte(`1`), Encoding: event.EncodingJSON, Type: `we"ird`,
			Headers: map[string]string{"a": "1", "quote\"d": "x\ny", "c": ""}}, "json", `1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.Event{Topic: "chat.room-42", Offset: 7, Epoch: 0x9f3c2a1b0d4e5f60, Time: when.UnixMilli(), Record: tt.rec}
			b := wire.EventJSON(ev)
			if again := wire.EventJSON(ev); &again[0] != &b[0] {
				t.Errorf("EventJSON encoded twice")
			}
			var got jsonEvent
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if got.Topic != "chat.room-42" || got.Offset != 7 || got.Epoch != "9f3c2a1b0d4e5f60" ||
				got.Time != "2026-11-25T19:50:00.123Z" || got.Encoding != tt.wantEnc || got.Type != tt.rec.Type {
				t.Errorf("decoded %+v from %s", got, b)
			}
			if string(got.Data) != tt.wantData {
				t.Errorf("data = %s, want %s", got.Data, tt.wantData)
			}
			if len(tt.rec.Headers) != len(got.Headers) {
				t.Errorf("headers = %v, want %v", got.Headers, tt.rec.Headers)
			}
			for k, v := range tt.rec.Headers {
				if got.Headers[k] != v {
					t.Errorf("header %q = %q, want %q", k, got.Headers[k], v)
				}
			}
			var raw map[string]any
			json.Unmarshal(b, &raw)
			if _, ok := raw["type"]; ok != (tt.rec.Type != "") {
				t.Errorf("type present = %v for %q", ok, tt.rec.Type)
			}
			if _, ok := raw["headers"]; ok != (len(tt.rec.Headers) > 0) {
				t.Errorf("headers present = %v", ok)
			}
			if tt.wantEnc == "binary" {
				var s string
				json.Unmarshal(got.Data, &s)
				if raw, err := base64.StdEncoding.DecodeString(s); err != nil || !bytes.Equal(raw, tt.rec.Data) {
					t.Errorf("base64 %q decodes to %x (%v)", s, raw, err)
				}
			}
		})
	}
}

func TestAppendTime(t *testing.T) {
	for _, tt := range []struct {
		ms   int64
		want string
	}{
		{0, "1970-01-01T00:00:00.000Z"},
		{1, "1970-01-01T00:00:00.001Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli(), "2026-01-02T03:04:05.000Z"},
	} {
		if got := string(wire.AppendTime(nil, tt.ms)); got != tt.want {
			t.Errorf("AppendTime(%d) = %s, want %s", tt.ms, got, tt.want)
		}
	}
}

func TestAppendGap(t *testing.T) {
	g := &hub.Gap{Topic: "a.b", Reason: hub.GapTrimmed,
		Requested: event.Position{Epoch: 1, Offset: 3}, Resumed: event.Position{Epoch: 1, Offset: 9}, Earliest: 10}
	got := string(wire.AppendGap(nil, g))
	want := `{"topic":"a.b","reason":"trimmed","requested":{"epoch":"0000000000000001","offset":3},"resumed":{"epoch":"0000000000000001","offset":9},"earliest":10}`
	if got != want {
		t.Errorf("AppendGap = %s\nwant       %s", got, want)
	}
	for r, name := range map[hub.GapReason]string{hub.GapTrimmed: "trimmed", hub.GapEpoch: "epoch_changed", hub.GapAhead: "ahead"} {
		g.Reason = r
		var v struct{ Reason string }
		if err := json.Unmarshal(wire.AppendGap(nil, g), &v); err != nil || v.Reason != name {
			t.Errorf("reason %d: %q (%v)", r, v.Reason, err)
		}
	}
}
