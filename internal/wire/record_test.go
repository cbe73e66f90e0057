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
