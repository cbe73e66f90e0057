package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/internal/reason"
)

// DefaultUserAgent is the User-Agent sent when WithUserAgent is not used.
const DefaultUserAgent = "herald-go-client/1"

// Client talks to one herald server, over its HTTP API (made with New) or
// its gRPC API (made with NewGRPC); both offer the same methods, with the
// same cursors. It is safe for concurrent use. A client of the HTTP API
// holds no goroutines of its own; connections are pooled by its
// *http.Client. A gRPC client holds a gRPC connection until Close.
type Client struct {
	api   backend // the API the client speaks; static after New or NewGRPC
	renew bool    // a WithToken callback can replace expired credentials; static
}

// backend is one API of the server, as the Client uses it: the HTTP API
// (httpBackend) or the gRPC API (grpcBackend). Arguments are checked and
// defaults applied by the Client; errors are returned unwrapped, the
// server's as *Error.
type backend interface {
	publish(ctx context.Context, topic string, data []byte, p *publishParams) (Ack, error)
	publishBatch(ctx context.Context, events []BatchEvent) ([]Ack, error)
	pull(ctx context.Context, topics []string, p *pullParams) (PullResult, error)
	// dialer returns what opens the connections of a subscription over
	// t, the backend's default transport when t is empty, or an error
	// when the backend does not speak t.
	dialer(t Transport) (dialFunc, error)
	// openGroup starts a member of a consumer group (consume.go).
	openGroup(ctx context.Context, group, member string) (groupSession, error)
	addr() string
	close() error
}

// settings are what Options set, shared by both backends.
type settings struct {
	hc        *http.Client // HTTP only
	userAgent string
	header    http.Header // sent with every request
	token     func(context.Context) (string, error)
	renew     bool              // token is a WithToken callback, which can refresh
	grpcOpts  []grpc.DialOption // gRPC only
}

func newSettings(opts []Option) settings {
	s := settings{userAgent: DefaultUserAgent, header: make(http.Header)}
	for _, o := range opts {
		o(&s)
	}
	if s.hc == nil {
		s.hc = &http.Client{}
	}
	return s
}

// Option configures a Client in New or NewGRPC.
type Option func(*settings)

// WithHTTPClient makes a client of the HTTP API send its requests with hc
// (NewGRPC ignores it). Subscriptions and long polls hold requests open for
// a long time, so hc should have no overall Timeout (deadlines come from
// each call's context) and its Transport no ResponseHeaderTimeout shorter
// than the longest poll wait. The default is a client over
// http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) { s.hc = hc }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(s *settings) { s.userAgent = ua }
}

// WithRequestHeader adds a header sent with every request (over gRPC, as
// metadata). It may be given several times; a key given again replaces the
// earlier value. For credentials that change, use WithToken.
func WithRequestHeader(key, value string) Option {
	return func(s *settings) { s.header.Set(key, value) }
}

// WithToken makes the client ask fn for a bearer token before each request
// and each connection of a subscription, including every reconnection, and
// send it as "Authorization: Bearer <token>": an HTTP header on publishes,
// pulls, SSE streams, long polls and the WebSocket handshake, and gRPC
// metadata ("authorization") on every gRPC call. fn can thus refresh a
// token that expires (return a cached one until then: it is called often).
// It is called with the request's context and may be called concurrently.
// An empty token sends no Authorization. An error from fn fails the call;
// a subscription reports it as a Message.Err and tries again after its
// backoff, like a network error. The token replaces an Authorization given
// with WithRequestHeader.
//
// When the server ends a subscription's connection because its token
// expired (CodeTokenExpired), the subscription reconnects with a token
// from fn and resumes; without WithToken such an end stops it.
func WithToken(fn func(ctx context.Context) (string, error)) Option {
	return func(s *settings) { s.token, s.renew = fn, true }
}

// WithStaticToken sends token as "Authorization: Bearer <token>" with every
// request; see WithToken, for a token that changes. A subscription whose
// token expires stops with CodeTokenExpired.
func WithStaticToken(token string) Option {
	return func(s *settings) {
		s.token = func(context.Context) (string, error) { return token, nil }
		s.renew = false
	}
}

// authorization returns the value of the Authorization header or metadata
// for a request, or "" when there is none to send.
func (s *settings) authorization(ctx context.Context) (string, error) {
	if s.token == nil {
		return "", nil
	}
	t, err := s.token(ctx)
	if err != nil {
		return "", fmt.Errorf("get a token: %w", err)
	}
	if t == "" {
		return "", nil
	}
	return "Bearer " + t, nil
}

// New returns a client of the HTTP API of the server at baseURL, such as
// "http://127.0.0.1:8080" or "https://events.example.com/herald" (a path
// prefix is kept: the API's paths are appended to it).
func New(baseURL string, opts ...Option) (*Client, error) {
	s := newSettings(opts)
	b, err := newHTTPBackend(baseURL, s)
	if err != nil {
		return nil, err
	}
	return &Client{api: b, renew: s.renew}, nil
}

// BaseURL returns the server address the client was created with, without
// a trailing slash: the HTTP base URL, or for a gRPC client its target.
func (c *Client) BaseURL() string { return c.api.addr() }

// Close releases the client's gRPC connection. A client of the HTTP API
// holds nothing to release; Close does nothing for it. Close the client's
// subscriptions first.
func (c *Client) Close() error { return c.api.close() }

// Error is an error answered by the server, in the API's error format
// ({"error":{"code":…,"message":…}}), sent as the error event of an SSE
// stream, or a gRPC status (whose ErrorInfo reason is the code). Use
// errors.As to get it from an error returned by the client.
type Error struct {
	// Status is the HTTP status; 0 when the error came as an SSE error
	// event inside a stream, or over gRPC.
	Status int
	// GRPCCode is the gRPC status code of an error from a gRPC client;
	// codes.OK (0) for the HTTP API.
	GRPCCode codes.Code
	// RetryAfter is the server's hint of when to retry (a gRPC stream ended
	// by a drain carries one); 0 when none came.
	RetryAfter time.Duration
	// Code is the stable error code, one of the Code constants (new codes
	// may appear; treat unknown ones by Status). It is empty when the
	// answer was not in the API's format, for example from a proxy.
	Code string
	// Message is the server's explanation, which says what to do.
	Message string
}

// The error codes of the API (docs/api.md, "Errors"), of an SSE stream's
// error event, of WebSocket close frames and of gRPC statuses (the
// ErrorInfo reason): the server's one table of reasons.
const (
	CodeBadRequest           = string(reason.BadRequest)
	CodeBadTopic             = string(reason.BadTopic)
	CodeBadCursor            = string(reason.BadCursor)
	CodeUnauthenticated      = string(reason.Unauthenticated)
	CodeTokenExpired         = string(reason.TokenExpired) // the connection's credentials expired: needs new ones
	CodeForbidden            = string(reason.Forbidden)
	CodeNotFound             = string(reason.NotFound)
	CodeConflict             = string(reason.Conflict) // e.g. an ack after the lease passed to another member
	CodeMethodNotAllowed     = string(reason.MethodNotAllowed)
	CodeTooLarge             = string(reason.TooLarge)
	CodeUnsupportedMediaType = string(reason.UnsupportedMediaType)
	CodeHeadersTooLarge      = string(reason.HeadersTooLarge)
	CodeLimitReached         = string(reason.LimitReached) // a server limit (connections, rate)
	CodeProtocolError        = string(reason.ProtocolError)
	CodeInvalidPayload       = string(reason.InvalidPayload)
	CodeIdleTimeout          = string(reason.IdleTimeout) // the server heard nothing for too long
	CodeSlowConsumer         = string(reason.SlowConsumer)
	CodeShuttingDown         = string(reason.ShuttingDown)
	CodeUnavailable          = string(reason.Unavailable)
	CodeStorageFull          = string(reason.StorageFull)
	CodeInternal             = string(reason.Internal)
)

// Error returns the code, the message and the status.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Code != "" && !strings.HasPrefix(e.Message, e.Code+": ") {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.GRPCCode != codes.OK {
		fmt.Fprintf(&b, " (gRPC %s)", e.GRPCCode)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later unchanged:
// the server was busy, draining or failing, or a stream was ended to be
// resumed. Subscriptions reconnect after retryable errors, and after
// CodeTokenExpired when a WithToken callback can give a fresh token; they
// stop on the others.
func (e *Error) Retryable() bool {
	if r, known := reason.Of(reason.Code(e.Code)); known {
		return r.Retryable
	}
	if e.GRPCCode != codes.OK {
		return grpcRetryable(e.GRPCCode)
	}
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// ErrClosed is returned by Subscription.Next once Close was called.
var ErrClosed = errors.New("herald client: subscription closed")
