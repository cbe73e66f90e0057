package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("doing something: %w", err) }
	for _, tt := range []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"bad topic", wrap(event.ErrBadTopic), codes.InvalidArgument, wire.CodeBadTopic},
		{"bad cursor", wrap(cursor.ErrMalformed), codes.InvalidArgument, wire.CodeBadCursor},
		{"bad input", badRequest("no"), codes.InvalidArgument, wire.CodeBadRequest},
		{"too large", wrap(hub.ErrTooLarge), codes.InvalidArgument, wire.CodeTooLarge},
		{"forbidden", wrap(hub.ErrForbidden), codes.PermissionDenied, wire.CodeForbidden},
		{"not found", wrap(errNotFound), codes.NotFound, wire.CodeNotFound},
		{"closed", wrap(hub.ErrClosed), codes.Unavailable, wire.CodeShuttingDown},
		{"storage full", wrap(hub.ErrStorageFull), codes.ResourceExhausted, wire.CodeStorageFull},
		{"unavailable", wrap(hub.ErrUnavailable), codes.Unavailable, wire.CodeUnavailable},
		{"unavailable after a deadline", fmt.Errorf("%w: %w", hub.ErrUnavailable, context.DeadlineExceeded), codes.Unavailable, wire.CodeUnavailable},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, wire.CodeUnavailable},
		{"canceled", wrap(context.Canceled), codes.Canceled, wire.CodeUnavailable},
		{"anything else", errors.New("disk on fire"), codes.Internal, wire.CodeInternal},
	} {
		if code, reason := Classify(tt.err); code != tt.code || reason != tt.reason {
			t.Errorf("%s: Classify = %v, %s; want %v, %s", tt.name, code, reason, tt.code, tt.reason)
		}
	}
}
