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

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail on every
// status herald returns; the detail's reason is herald's error code.
const ErrorDomain = "herald"

// Classify maps an error from the hub or a handler to a gRPC code and
// herald's error code (the ErrorInfo reason). Which herald code an error
// has is wire.Classify's decision, shared with the HTTP API, and its gRPC
// code is the reason table's; this adds only the errors gRPC alone answers
// (a topic that does not exist, a deadline, a cancellation).
func Classify(err error) (codes.Code, reason.Code) {
	r := wire.Classify(err)
	switch {
	case r.Code == reason.Unavailable && !errors.Is(err, hub.ErrUnavailable):
		return codes.DeadlineExceeded, r.Code // wire's other unavailable: a context deadline
	case r.Code != reason.Internal:
		return r.GRPC, r.Code
	case errors.Is(err, errNotFound):
		return codes.NotFound, reason.NotFound
	case errors.Is(err, context.Canceled):
		return codes.Canceled, reason.Unavailable
	}
	return codes.Internal, reason.Internal
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
func describe(err error) (codes.Code, reason.Code, string) {
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
	return newStatus(code, reason, msg, nil, hub.RetryAfter(err))
}

// newStatus builds a status error carrying an ErrorInfo (reason, metadata)
// and, when retry is positive, a RetryInfo.
func newStatus(code codes.Code, why reason.Code, msg string, meta map[string]string, retry time.Duration) error {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: string(why), Domain: ErrorDomain, Metadata: meta}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}
