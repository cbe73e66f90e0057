package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func badInput(format string, a ...any) error {
	return fmt.Errorf("%w: %s", hub.ErrBadInput, fmt.Sprintf(format, a...))
}

// EventFields are an event's fields in a JSON publish, the same in an HTTP
// batch entry and a WebSocket publish command: exactly one of data (any
// JSON value), text or data_base64, and the optional type, idempotency key
// and headers.
type EventFields struct {
	Data       json.RawMessage   `json:"data"`
	Text       *string           `json:"text"`
	DataBase64 *string           `json:"data_base64"`
	Type       string            `json:"type"`
	Key        string            `json:"key"`
	Headers    map[string]string `json:"headers"`
}

// Record returns the record f describes, checking its payload fields (the
// hub checks the rest when it is published).
func (f *EventFields) Record() (event.Record, error) {
	rec := event.Record{Type: f.Type, Key: f.Key, Headers: f.Headers}
	err := SetPayload(&rec, f.Data, f.Text, f.DataBase64)
	return rec, err
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
