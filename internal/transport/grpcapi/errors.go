package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail on every
// status herald returns; the detail's reason is herald's error code.
const ErrorDomain = "herald"

// The reasons of stream ends, beside the codes of package wire.
const (
	ReasonSlowConsumer = "slow_consumer"
	ReasonShuttingDown = "shutting_down"
)

// Classify maps an error from the hub or a handler to a gRPC code and
// herald's error code (the ErrorInfo reason). It is the one place where
// that mapping is made; wire.Classify is its HTTP twin.
func Classify(err error) (codes.Code, string) {
	switch {
	case errors.Is(err, event.ErrBadTopic):
		return codes.InvalidArgument, wire.CodeBadTopic
	case errors.Is(err, cursor.ErrMalformed):
		return codes.InvalidArgument, wire.CodeBadCursor
	case errors.Is(err, hub.ErrBadInput):
		return codes.InvalidArgument, wire.CodeBadRequest
	case errors.Is(err, hub.ErrTooLarge):
		return codes.InvalidArgument, wire.CodeTooLarge
	case errors.Is(err, hub.ErrForbidden):
		return codes.PermissionDenied, wire.CodeForbidden
	case errors.Is(err, errNotFound):
		return codes.NotFound, wire.CodeNotFound
	case errors.Is(err, hub.ErrClosed):
		return codes.Unavailable, wire.CodeShuttingDown
	case errors.Is(err, hub.ErrStorageFull):
		return codes.ResourceExhausted, wire.CodeStorageFull
	case errors.Is(err, hub.ErrUnavailable):
		return codes.Unavailable, wire.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, wire.CodeUnavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled, wire.CodeUnavailable
	default:
		return codes.Internal, wire.CodeInternal
	}
}

// errNotFound is wrapped by answers about topics that do not exist.
var errNotFound = errors.New("not found")

// badRequest returns an error that Classify maps to InvalidArgument.
func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", hub.ErrBadInput, fmt.Sprintf(format, a...))
}

// describe returns the code, reason and message a call answers err with.
// The message of an internal error points to the server log instead of
// exposing the error.
func describe(err error) (codes.Code, string, string) {
	code, reason := Classify(err)
	msg := err.Error()
	if code == codes.Internal {
		msg = "internal error; see the server log"
	}
	return code, reason, msg
}

// statusError returns the status error a call answers err with.
func statusError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err // already a status (from gRPC itself)
	}
	code, reason, msg := describe(err)
	return newStatus(code, reason, msg, nil, 0)
}

// newStatus builds a status error carrying an ErrorInfo (reason, metadata)
// and, when retry is positive, a RetryInfo.
func newStatus(code codes.Code, reason, msg string, meta map[string]string, retry time.Duration) error {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}
