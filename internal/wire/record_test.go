package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

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
