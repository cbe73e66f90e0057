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
	"github.com/heraldhq/herald/internal/reason"
)

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("doing something: %w", err) }
	for _, tt := range []struct {
		name   string
		err    error
		code   codes.Code
		reason reason.Code
	}{
		{"bad topic", wrap(event.ErrBadTopic), codes.InvalidArgument, reason.BadTopic},
		{"bad cursor", wrap(cursor.ErrMalformed), codes.InvalidArgument, reason.BadCursor},
		{"bad input", badRequest("no"), codes.InvalidArgument, reason.BadRequest},
		{"too large", wrap(hub.ErrTooLarge), codes.InvalidArgument, reason.TooLarge},
		{"forbidden", wrap(hub.ErrForbidden), codes.PermissionDenied, reason.Forbidden},
		{"not found", wrap(errNotFound), codes.NotFound, reason.NotFound},
		{"closed", wrap(hub.ErrClosed), codes.Unavailable, reason.ShuttingDown},
		{"storage full", wrap(hub.ErrStorageFull), codes.ResourceExhausted, reason.StorageFull},
		{"unavailable", wrap(hub.ErrUnavailable), codes.Unavailable, reason.Unavailable},
		{"unavailable after a deadline", fmt.Errorf("%w: %w", hub.ErrUnavailable, context.DeadlineExceeded), codes.Unavailable, reason.Unavailable},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, reason.Unavailable},
		{"canceled", wrap(context.Canceled), codes.Canceled, reason.Unavailable},
		{"anything else", errors.New("disk on fire"), codes.Internal, reason.Internal},
	} {
		if code, reason := Classify(tt.err); code != tt.code || reason != tt.reason {
			t.Errorf("%s: Classify = %v, %s; want %v, %s", tt.name, code, reason, tt.code, tt.reason)
		}
	}
}
