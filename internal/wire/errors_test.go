package wire_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

func TestClassify(t *testing.T) {
	_, cursorErr := cursor.Parse("!!")
	tests := []struct {
		err    error
		status int
		code   reason.Code
	}{
		{event.ValidateTopic("a..b"), 400, reason.BadTopic},
		{fmt.Errorf("event 3: %w", event.ValidateTopic("")), 400, reason.BadTopic},
		{cursorErr, 400, reason.BadCursor},
		{fmt.Errorf("%w: limit", hub.ErrBadInput), 400, reason.BadRequest},
		{fmt.Errorf("%w: big", hub.ErrTooLarge), 413, reason.TooLarge},
		{&http.MaxBytesError{Limit: 10}, 413, reason.TooLarge},
		{fmt.Errorf("%w: no", hub.ErrForbidden), 403, reason.Forbidden},
		{hub.ErrClosed, 503, reason.ShuttingDown},
		{fmt.Errorf("append: %w", hub.ErrUnavailable), 503, reason.Unavailable},
		{fmt.Errorf("append: %w", hub.ErrStorageFull), 507, reason.StorageFull},
		{context.DeadlineExceeded, 503, reason.Unavailable},
		{fmt.Errorf("%w: no key", hub.ErrUnauthenticated), 401, reason.Unauthenticated},
		{errors.New("boom"), 500, reason.Internal},
	}
	for _, tt := range tests {
		r := wire.Classify(tt.err)
		if status, code := r.HTTP, r.Code; status != tt.status || code != tt.code {
			t.Errorf("Classify(%v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
		}
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		err     error
		status  int
		code    string
		message string
	}{
		{fmt.Errorf("%w: the \"limit\" is\nwrong", hub.ErrBadInput), 400, "bad_request", "bad input: the \"limit\" is\nwrong"},
		{errors.New("secret internals"), 500, "internal_error", "internal error; see the server log"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		wire.WriteError(rec, tt.err)
		if rec.Code != tt.status {
			t.Errorf("%v: status %d, want %d", tt.err, rec.Code, tt.status)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v", rec.Body, err)
		}
		if body.Error.Code != tt.code || body.Error.Message != tt.message {
			t.Errorf("body = %+v, want %s %q", body.Error, tt.code, tt.message)
		}
	}
}
