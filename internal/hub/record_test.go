package hub_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// TestPublishChecksRecords: every event published through the hub, from
// any transport, passes the same checks.
func TestPublishChecksRecords(t *testing.T) {
	h := newHub(t, hub.Options{MaxEventBytes: 16}, memory.Options{})
	headers := map[string]string{}
	for i := 0; i <= hub.MaxHeaders; i++ {
		headers[strings.Repeat("h", i+1)] = "v"
	}
	for _, tt := range []struct {
		name string
		rec  event.Record
		ok   bool
	}{
		{"largest payload", event.Record{Data: make([]byte, 16)}, true},
		{"payload too large", event.Record{Data: make([]byte, 17)}, false},
		{"plain", event.Record{Type: "greeting", Key: "k", Headers: map[string]string{"trace": "1"}}, true},
		{"longest type", event.Record{Type: strings.Repeat("t", hub.MaxTypeLen)}, true},
		{"type too long", event.Record{Type: strings.Repeat("t", hub.MaxTypeLen+1)}, false},
		{"gap", event.Record{Type: "gap"}, false},
		{"error", event.Record{Type: "error"}, false},
		{"join", event.Record{Type: "join"}, false},
		{"leave", event.Record{Type: "leave"}, false},
		{"line break in type", event.Record{Type: "a\nb"}, false},
		{"key too long", event.Record{Key: strings.Repeat("k", hub.MaxKeyLen+1)}, false},
		{"key not UTF-8", event.Record{Key: "\xff"}, false},
		{"too many headers", event.Record{Headers: headers}, false},
		{"empty header name", event.Record{Headers: map[string]string{"": "v"}}, false},
		{"header value not UTF-8", event.Record{Headers: map[string]string{"a": "\xff"}}, false},
	} {
		_, err := h.Publish(bg, "r.a", []event.Record{tt.rec})
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, hub.ErrBadInput) && !errors.Is(err, hub.ErrTooLarge) {
			t.Errorf("%s: Publish = %v, want ok %v (errors wrapping ErrBadInput or ErrTooLarge)", tt.name, err, tt.ok)
		}
	}
}

// TestRecordErrorNamesTheRecord: a refused record of several is named by
// its index, so that a batch can say which of its events was refused.
func TestRecordErrorNamesTheRecord(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	_, err := h.Publish(bg, "r.b", []event.Record{{Data: []byte("1")}, {Data: []byte("2"), Type: "gap"}})
	var re *hub.RecordError
	if !errors.As(err, &re) || re.Index != 1 || !errors.Is(err, hub.ErrBadInput) {
		t.Fatalf("Publish = %v, want a RecordError for event 1 wrapping ErrBadInput", err)
	}
	if info, ok, _ := h.Info(bg, "r.b"); ok && info.Last != 0 {
		t.Errorf("a refused batch stored events: %+v", info)
	}
}
