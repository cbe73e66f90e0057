package wire

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
)

// Classify returns the reason (package reason's table: code, HTTP status,
// WebSocket close code, gRPC code) that err from the hub or a handler is
// answered with. It is the one place where errors become codes; every
// transport asks it.
func Classify(err error) reason.Reason {
	var mbe *http.MaxBytesError
	var code reason.Code
	switch {
	case errors.Is(err, event.ErrBadTopic):
		code = reason.BadTopic
	case errors.Is(err, cursor.ErrMalformed):
		code = reason.BadCursor
	case errors.Is(err, hub.ErrBadInput):
		code = reason.BadRequest
	case errors.Is(err, hub.ErrNotFound):
		code = reason.NotFound
	case errors.Is(err, hub.ErrConflict):
		code = reason.Conflict
	case errors.Is(err, hub.ErrTooLarge), errors.As(err, &mbe):
		code = reason.TooLarge
	case errors.Is(err, hub.ErrLimit):
		code = reason.LimitReached
	case errors.Is(err, hub.ErrTokenExpired):
		code = reason.TokenExpired
	case errors.Is(err, hub.ErrUnauthenticated):
		code = reason.Unauthenticated
	case errors.Is(err, hub.ErrForbidden):
		code = reason.Forbidden
	case errors.Is(err, hub.ErrClosed):
		code = reason.ShuttingDown
	case errors.Is(err, hub.ErrStorageFull):
		code = reason.StorageFull
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		code = reason.Unavailable
	default:
		code = reason.Internal
	}
	return reason.MustOf(code)
}

// Describe returns the reason and message the API answers err with. The
// message of an internal error points to the server log instead of
// exposing the error.
func Describe(err error) (reason.Reason, string) {
	r := Classify(err)
	msg := err.Error()
	if r.Code == reason.Internal {
		msg = "internal error; see the server log"
	}
	return r, msg
}

// WriteError writes the API's error JSON for err, with Retry-After when
// err carries a retry hint (a limit's refusal).
func WriteError(w http.ResponseWriter, err error) {
	r, msg := Describe(err)
	if d := hub.RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(RetrySeconds(d)))
	}
	WriteErrorCode(w, r.Code, msg)
}

// RetrySeconds is a retry hint in whole seconds, as Retry-After counts
// them: rounded up, at least 1.
func RetrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// AppendError appends the API's error JSON, with a final newline.
func AppendError(b []byte, code reason.Code, msg string) []byte {
	b = append(b, `{"error":{"code":"`...)
	b = append(b, code...)
	b = append(b, `","message":`...)
	b = AppendString(b, msg)
	return append(b, "}}\n"...)
}

// WriteErrorCode writes the API's error JSON for code, with the code's
// HTTP status from the reason table, and msg.
func WriteErrorCode(w http.ResponseWriter, code reason.Code, msg string) {
	b := AppendError(make([]byte, 0, 64+len(msg)), code, msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(reason.MustOf(code).HTTP)
	w.Write(b)
}
