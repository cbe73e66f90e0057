package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

func TestCheckRecord(t *testing.T) {
	headers := map[string]string{}
	for i := 0; i <= wire.MaxHeaders; i++ {
		headers[strings.Repeat("h", i+1)] = "v"
	}
	for _, tt := range []struct {
		name string
		rec  event.Record
		ok   bool
	}{
		{"plain", event.Record{Type: "greeting", Key: "k", Headers: map[string]string{"trace": "1"}}, true},
		{"longest type", event.Record{Type: strings.Repeat("t", wire.MaxTypeLen)}, true},
		{"type too long", event.Record{Type: strings.Repeat("t", wire.MaxTypeLen+1)}, false},
		{"gap", event.Record{Type: "gap"}, false},
		{"error", event.Record{Type: "error"}, false},
		{"join", event.Record{Type: "join"}, false},
		{"leave", event.Record{Type: "leave"}, false},
		{"line break in type", event.Record{Type: "a\nb"}, false},
		{"key too long", event.Record{Key: strings.Repeat("k", wire.MaxKeyLen+1)}, false},
		{"key not UTF-8", event.Record{Key: "\xff"}, false},
		{"too many headers", event.Record{Headers: headers}, false},
		{"empty header name", event.Record{Headers: map[string]string{"": "v"}}, false},
		{"header value not UTF-8", event.Record{Headers: map[string]string{"a": "\xff"}}, false},
	} {
		err := wire.CheckRecord(&tt.rec)
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("%s: CheckRecord = %v, want ok %v (errors wrapping ErrBadInput)", tt.name, err, tt.ok)
		}
	}
}

func TestDecodeBase64(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"AAEC", "\x00\x01\x02", true},
		{"/+8=", "\xff\xef", true},
		{"/+8", "\xff\xef", true},
		{"_-8", "\xff\xef", true},
		{"_-8=", "\xff\xef", true},
		{"", "", true},
		{"!!", "", false},
		{"A", "", false},
		{"/-8", "", false}, // mixed alphabets
	} {
		got, err := wire.DecodeBase64(tt.in)
		if (err == nil) != tt.ok || (tt.ok && string(got) != tt.want) {
			t.Errorf("wire.DecodeBase64(%q) = %x, %v; want %x ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestSetPayload(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name       string
		data       []byte
		text, b64  *string
		want       string
		enc        event.Encoding
		wantErrSub string
	}{
		{name: "json", data: []byte(`{"a":1}`), want: `{"a":1}`, enc: event.EncodingJSON},
		{name: "text", text: str("hi"), want: "hi", enc: event.EncodingText},
		{name: "empty text", text: str(""), want: "", enc: event.EncodingText},
		{name: "binary", b64: str("AAEC"), want: "\x00\x01\x02", enc: event.EncodingBinary},
		{name: "bad base64", b64: str("!!"), wantErrSub: "data_base64"},
		{name: "none", wantErrSub: "exactly one"},
		{name: "two", data: []byte(`1`), text: str("x"), wantErrSub: "exactly one"},
	} {
		var rec event.Record
		err := wire.SetPayload(&rec, tt.data, tt.text, tt.b64)
		if tt.wantErrSub != "" {
			if err == nil || !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Errorf("%s: err %v, want ErrBadInput mentioning %q", tt.name, err, tt.wantErrSub)
			}
			continue
		}
		if err != nil || string(rec.Data) != tt.want || rec.Data == nil || rec.Encoding != tt.enc {
			t.Errorf("%s: %q %v %v, want %q %v", tt.name, rec.Data, rec.Encoding, err, tt.want, tt.enc)
		}
	}
}
