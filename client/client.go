package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/reason"
)

// DefaultUserAgent is the User-Agent sent when WithUserAgent is not used.
const DefaultUserAgent = "herald-go-client/1"

// Client talks to one herald server. Create it with New (the HTTP API) or
// NewGRPC (the gRPC API). It is safe for concurrent use. A client of the
// HTTP API holds no goroutines of its own; connections are pooled by its
// *http.Client. A gRPC client holds a gRPC connection until Close.
type Client struct {
	base      string       // scheme://host[/prefix], no trailing slash; static after New
	hc        *http.Client // static after New
	userAgent string       // static after New
	header    http.Header  // default headers; static after New

	// Set by NewGRPC; static after it.
	grpcConn   *grpc.ClientConn
	grpc       heraldv1.HeraldClient
	grpcTarget string
	grpcOpts   []grpc.DialOption
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc. Subscriptions
// and long polls hold requests open for a long time, so hc should have no
// overall Timeout (deadlines come from each call's context) and its
// Transport no ResponseHeaderTimeout shorter than the longest poll wait.
// The default is a client over http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// WithHeader adds a header sent with every request, such as an
// Authorization bearer token. It may be given several times; a key given
// again replaces the earlier value.
func WithHeader(key, value string) Option {
	return func(c *Client) { c.header.Set(key, value) }
}

// New returns a client of the server at baseURL, such as
// "http://127.0.0.1:8080" or "https://events.example.com/herald" (a path
// prefix is kept: the API's paths are appended to it).
func New(baseURL string, opts ...Option) (*Client, error) {
	if !strings.Contains(baseURL, "://") {
		return nil, fmt.Errorf("herald client: base URL %q has no scheme; give a URL such as http://127.0.0.1:8080", baseURL)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("herald client: base URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("herald client: base URL %q: the scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("herald client: base URL %q has no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("herald client: base URL %q must not have a query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		base:      u.String(),
		hc:        &http.Client{},
		userAgent: DefaultUserAgent,
		header:    make(http.Header),
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	return c, nil
}

// BaseURL returns the server address the client was created with, without
// a trailing slash: the HTTP base URL, or for a gRPC client its target.
func (c *Client) BaseURL() string {
	if c.grpc != nil {
		return c.grpcTarget
	}
	return c.base
}

// newRequest builds a request for path (which starts with "/v1/") with the
// client's default headers.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	for k, v := range c.header {
		req.Header[k] = append([]string(nil), v...)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return req, nil
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// maxAnswerBody bounds how much of a JSON answer is read: a pull of 10,000
// events of 1 MiB each is far more than any server sends by default.
const maxAnswerBody = 1 << 30

// doJSON sends req and decodes a 2xx JSON answer into out. Any other
// answer becomes an *Error.
func (c *Client) doJSON(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBody))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	// Drain the rest (a newline) so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 512))
	return nil
}

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
	if e.Code != "" {
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
// resumed. Subscriptions reconnect after retryable errors and stop on the
// others.
func (e *Error) Retryable() bool {
	if r, known := reason.Of(reason.Code(e.Code)); known {
		return r.Retryable
	}
	if e.GRPCCode != codes.OK {
		return grpcRetryable(e.GRPCCode)
	}
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// readError turns a non-2xx answer into an *Error.
func readError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		return e
	}
	e.Message = strings.TrimSpace(string(body))
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// ErrClosed is returned by Subscription.Next once Close was called.
var ErrClosed = errors.New("herald client: subscription closed")
