package wire

import (
	"context"
	"errors"
	"net/http"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Error codes of the HTTP API (docs/api.md, "Errors").
const (
	CodeBadRequest       = "bad_request"
	CodeBadTopic         = "bad_topic"
	CodeBadCursor        = "bad_cursor"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeUnavailable      = "unavailable"
	CodeStorageFull      = "storage_full"
	CodeShuttingDown     = "shutting_down"
	CodeInternal         = "internal_error"
)

// Classify maps an error from the hub or a handler to an HTTP status and
// an error code.
func Classify(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, event.ErrBadTopic):
		return http.StatusBadRequest, CodeBadTopic
	case errors.Is(err, cursor.ErrMalformed):
		return http.StatusBadRequest, CodeBadCursor
	case errors.Is(err, hub.ErrBadInput):
		return http.StatusBadRequest, CodeBadRequest
	case errors.Is(err, hub.ErrTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, CodeTooLarge
	case errors.Is(err, hub.ErrForbidden):
		return http.StatusForbidden, CodeForbidden
	case errors.Is(err, hub.ErrClosed):
		return http.StatusServiceUnavailable, CodeShuttingDown
	case errors.Is(err, hub.ErrStorageFull):
		return http.StatusInsufficientStorage, CodeStorageFull
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable
	default:
		return http.StatusInternalServerError, CodeInternal
	}
}

// WriteError writes the API's error JSON for err.
func WriteError(w http.ResponseWriter, err error) {
	status, code, msg := Describe(err)
	WriteErrorCode(w, status, code, msg)
}

// Describe returns the status, code and message the API answers err with.
// The message of an internal error points to the server log instead of
// exposing the error.
func Describe(err error) (status int, code, msg string) {
	status, code = Classify(err)
	msg = err.Error()
	if status == http.StatusInternalServerError {
		msg = "internal error; see the server log"
	}
	return status, code, msg
}

// AppendError appends the API's error JSON, with a final newline.
func AppendError(b []byte, code, msg string) []byte {
	b = append(b, `{"error":{"code":"`...)
	b = append(b, code...)
	b = append(b, `","message":`...)
	b = AppendString(b, msg)
	return append(b, "}}\n"...)
}

// WriteErrorCode writes the API's error JSON with an explicit status, code
// and message.
func WriteErrorCode(w http.ResponseWriter, status int, code, msg string) {
	b := AppendError(make([]byte, 0, 64+len(msg)), code, msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
