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
// herald's error code (the ErrorInfo reason). Which herald code an error
// has is wire.Classify's decision, shared with the HTTP API; this adds the
// errors only gRPC answers (a topic that does not exist, a deadline, a
// cancellation) and turns herald's codes into gRPC's.
func Classify(err error) (codes.Code, string) {
	_, reason := wire.Classify(err)
	if reason == wire.CodeUnavailable && !errors.Is(err, hub.ErrUnavailable) {
		return codes.DeadlineExceeded, reason // wire's other unavailable: a context deadline
	}
	if code, ok := grpcCodes[reason]; ok {
		return code, reason
	}
	switch {
	case errors.Is(err, errNotFound):
		return codes.NotFound, wire.CodeNotFound
	case errors.Is(err, context.Canceled):
		return codes.Canceled, wire.CodeUnavailable
	}
	return codes.Internal, wire.CodeInternal
}

// grpcCodes is the gRPC code of each herald error code wire.Classify
// gives; any other is Internal.
var grpcCodes = map[string]codes.Code{
	wire.CodeBadTopic:     codes.InvalidArgument,
	wire.CodeBadCursor:    codes.InvalidArgument,
	wire.CodeBadRequest:   codes.InvalidArgument,
	wire.CodeTooLarge:     codes.InvalidArgument,
	wire.CodeForbidden:    codes.PermissionDenied,
	wire.CodeShuttingDown: codes.Unavailable,
	wire.CodeStorageFull:  codes.ResourceExhausted,
	wire.CodeUnavailable:  codes.Unavailable,
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
