package hub

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/event"
)

// Limits on an event's metadata, the same on every transport.
const (
	MaxTypeLen = 128 // bytes of an event type
	MaxKeyLen  = 256 // bytes of an idempotency key
	MaxHeaders = 32  // headers of one event
)

// ReservedTypes are the event types of server signals on SSE and
// WebSocket: a published event may not carry them, or a consumer could not
// tell it from the signal.
var ReservedTypes = []string{"gap", "error", "join", "leave"}

// RecordError is the refusal of one record of a publish of several: which
// one (its index in the records given) and why.
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string { return fmt.Sprintf("event %d: %v", e.Index, e.Err) }

// Unwrap returns why the record was refused.
func (e *RecordError) Unwrap() error { return e.Err }

// checkRecords checks every record of a publish: payload size, type, key
// and headers. A publish of several records reports the first refused one
// as a *RecordError.
func (h *Hub) checkRecords(topic string, recs []event.Record) error {
	maxBytes, key := h.eventLimit(topic)
	for i := range recs {
		if err := h.checkRecord(&recs[i], maxBytes, key); err != nil {
			if len(recs) > 1 {
				return &RecordError{Index: i, Err: err}
			}
			return err
		}
	}
	return nil
}

// checkRecord is the one check of a published event, made by Publish
// whatever transport the event came through: a payload of at most
// maxBytes (set by the configuration key key), then type, key and
// headers. Errors wrap ErrTooLarge or ErrBadInput.
func (h *Hub) checkRecord(rec *event.Record, maxBytes int, key string) error {
	if n := len(rec.Data); n > maxBytes {
		h.refused(key)
		return fmt.Errorf("%w: payload is %d bytes, the limit is %d (%s)", ErrTooLarge, n, maxBytes, key)
	}
	if len(rec.Type) > MaxTypeLen {
		return badInput("event type is %d bytes, the limit is %d", len(rec.Type), MaxTypeLen)
	}
	if slices.Contains(ReservedTypes, rec.Type) {
		return badInput("event type %q is reserved for server signals", rec.Type)
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
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, a...))
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
