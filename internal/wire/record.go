package wire

import (
	"fmt"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Limits on an event's metadata, the same on every transport.
const (
	MaxTypeLen = 128 // bytes of an event type
	MaxKeyLen  = 256 // bytes of an idempotency key
	MaxHeaders = 32  // headers of one event
)

// reservedTypes are the event types of server signals on SSE and
// WebSocket: a published event may not carry them, or a consumer could
// not tell it from the signal.
var reservedTypes = []string{"gap", "error", "join", "leave"}

// CheckRecord validates a published event's type, idempotency key and
// headers. Every transport's publish calls it, so that an event refused on
// one is refused on all. Errors wrap hub.ErrBadInput.
func CheckRecord(rec *event.Record) error {
	if len(rec.Type) > MaxTypeLen {
		return badInput("event type is %d bytes, the limit is %d", len(rec.Type), MaxTypeLen)
	}
	for _, r := range reservedTypes {
		if rec.Type == r {
			return badInput("event type %q is reserved for server signals", rec.Type)
		}
	}
	if !printable(rec.Type) {
		return badInput("event type must be printable text without line breaks")
	}
	if len(rec.Key) > MaxKeyLen {
		return badInput("idempotency key is %d bytes, the limit is %d", len(rec.Key), MaxKeyLen)
	}
	if !utf8.ValidString(rec.Key) {
		return badInput("idempotency key must be UTF-8")
	}
	if len(rec.Headers) > MaxHeaders {
		return badInput("%d headers, the limit is %d", len(rec.Headers), MaxHeaders)
	}
	for k, v := range rec.Headers {
		if k == "" || !printable(k) || !utf8.ValidString(v) {
			return badInput("header %q: names must be printable and values UTF-8", k)
		}
	}
	return nil
}

func badInput(format string, a ...any) error {
	return fmt.Errorf("%w: %s", hub.ErrBadInput, fmt.Sprintf(format, a...))
}

// printable reports whether s is UTF-8 text without control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}
