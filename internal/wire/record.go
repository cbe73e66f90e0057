package wire

import (
	"encoding/base64"
	"fmt"
	"strings"
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

// SetPayload sets rec's Data and Encoding from the payload fields of a
// JSON publish (an HTTP batch entry, a WebSocket publish command): exactly
// one of data (any JSON value, stored as json), text (stored as text) and
// dataBase64 (standard or URL-safe base64, stored as binary) is given.
// Errors wrap hub.ErrBadInput.
func SetPayload(rec *event.Record, data []byte, text, dataBase64 *string) error {
	n := 0
	if data != nil {
		n++
		rec.Data, rec.Encoding = data, event.EncodingJSON
	}
	if text != nil {
		n++
		rec.Data, rec.Encoding = []byte(*text), event.EncodingText
	}
	if dataBase64 != nil {
		n++
		raw, err := DecodeBase64(*dataBase64)
		if err != nil {
			return badInput("data_base64: %v", err)
		}
		rec.Data, rec.Encoding = raw, event.EncodingBinary
	}
	if n != 1 {
		return badInput("give exactly one of data, text or data_base64")
	}
	if rec.Data == nil {
		rec.Data = []byte{}
	}
	return nil
}

// DecodeBase64 accepts standard or URL-safe base64, padded or not.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
