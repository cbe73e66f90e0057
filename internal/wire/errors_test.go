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
	"github.com/heraldhq/herald/internal/wire"
)

func TestClassify(t *testing.T) {
	_, cursorErr := cursor.Parse("!!")
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{event.ValidateTopic("a..b"), 400, wire.CodeBadTopic},
		{fmt.Errorf("event 3: %w", event.ValidateTopic("")), 400, wire.CodeBadTopic},
		{cursorErr, 400, wire.CodeBadCursor},
		{fmt.Errorf("%w: limit", hub.ErrBadInput), 400, wire.CodeBadRequest},
		{fmt.Errorf("%w: big", hub.ErrTooLarge), 413, wire.CodeTooLarge},
		{&http.MaxBytesError{Limit: 10}, 413, wire.CodeTooLarge},
		{fmt.Errorf("%w: no", hub.ErrForbidden), 403, wire.CodeForbidden},
		{hub.ErrClosed, 503, wire.CodeShuttingDown},
		{fmt.Errorf("append: %w", hub.ErrUnavailable), 503, wire.CodeUnavailable},
		{fmt.Errorf("append: %w", hub.ErrStorageFull), 507, wire.CodeStorageFull},
		{context.DeadlineExceeded, 503, wire.CodeUnavailable},
		{errors.New("boom"), 500, wire.CodeInternal},
	}
	for _, tt := range tests {
		status, code := wire.Classify(tt.err)
		if status != tt.status || code != tt.code {
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
