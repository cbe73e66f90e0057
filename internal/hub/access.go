package hub

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Who may do what is decided in two steps, both behind the hub so that no
// transport can skip them:
//
//  1. Authenticate turns the credentials a transport found on a request
//     (a bearer token from a header, a query parameter, a cookie, a
//     WebSocket frame or gRPC metadata) into an Identity, through the
//     configured Authenticator, and returns a context carrying it. Every
//     transport calls it once per request or connection.
//  2. Every hub call that reaches a topic (Publish, Subscribe, Pull,
//     Presence, Info, Topics) asks the Gate whether the context's identity
//     may take that Action on that topic. A call whose context carries no
//     identity is refused with ErrUnauthenticated: a transport that forgot
//     step 1 fails closed, not open.
//
// With no Authenticator configured every caller is Anonymous; with no Gate
// every action is allowed. That is today's local development server.

// Action is what a caller wants to do with a topic.
type Action uint8

// The actions a Gate decides on.
const (
	ActionPublish   Action = iota + 1 // append events
	ActionSubscribe                   // receive live events from now on
	ActionHistory                     // read events from before now: pull, a subscription from a cursor or from earliest, export
	ActionPresence                    // see who is on a topic and be seen there (join and leave)
	ActionConsume                     // take events as a member of a consumer group
	ActionAdmin                       // list topics, read topic state, manage groups, webhooks and sources
)

var actionNames = [...]string{
	ActionPublish:   "publish",
	ActionSubscribe: "subscribe",
	ActionHistory:   "history",
	ActionPresence:  "presence",
	ActionConsume:   "consume",
	ActionAdmin:     "admin",
}

// String names the action as grants and error messages do.
func (a Action) String() string {
	if int(a) < len(actionNames) && actionNames[a] != "" {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Gate decides who may do what. The caller's identity travels in ctx
// (IdentityOf). A refusal is returned as the error and wraps ErrForbidden,
// or ErrUnauthenticated when the caller must present credentials first.
// topic is "" for actions on no one topic (listing topics).
type Gate interface {
	Allow(ctx context.Context, a Action, topic string) error
}

// AllowAll is the Gate used when none is configured.
type AllowAll struct{}

// Allow always allows.
func (AllowAll) Allow(context.Context, Action, string) error { return nil }

// CredentialSource says where a transport found a caller's token.
type CredentialSource uint8

// The places credentials come from.
const (
	SourceNone     CredentialSource = iota // no token was presented
	SourceHeader                           // Authorization: Bearer …
	SourceQuery                            // the access_token query parameter (EventSource, WebSocket in browsers)
	SourceCookie                           // a cookie (browsers)
	SourceFrame                            // a WebSocket command or gRPC Connect message
	SourceMetadata                         // gRPC metadata (authorization)
)

var sourceNames = [...]string{"none", "header", "query", "cookie", "frame", "metadata"}

// String names the source for logs and errors.
func (s CredentialSource) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", s)
}

// Credentials are what a caller presented, as its transport found them.
// A transport fills them and nothing else: deciding what they are worth is
// the Authenticator's job.
type Credentials struct {
	Token      string           // a bearer token (an API key or a JWT); "" when none
	Source     CredentialSource // where Token came from
	RemoteAddr string           // the caller's address (host:port), for per-client limits
	Origin     string           // the browser's Origin header, when any (cookie credentials need it checked)
	Transport  string           // "rest", "sse", "ws", "grpc", … for logs and per-transport limits
}

// Identity is who a call comes from, as the Authenticator established it.
// It is immutable once made; a refreshed token makes a new one.
type Identity struct {
	// Subject names the caller: a JWT's sub, an API key's name; "" for an
	// anonymous caller.
	Subject string
	// Method says how the identity was established: "anonymous", "api_key",
	// "jwt", or "internal" for herald's own components.
	Method string
	// Expires is when the credentials stop being valid (zero: never). Long
	// lived streams are ended then unless refreshed.
	Expires time.Time
	// Grants is what the Gate reads to decide; the hub never looks inside.
	Grants any
	// Transport and RemoteAddr are copied from the credentials.
	Transport  string
	RemoteAddr string
}

// Anonymous reports whether id carries no verified credentials.
func (id *Identity) Anonymous() bool { return id.Method == "" || id.Method == "anonymous" }

// Authenticator turns credentials into an identity. It returns an error
// wrapping ErrUnauthenticated for credentials it refuses (a bad signature,
// an expired token, an unknown key). Credentials with no token are not an
// error: they make an anonymous identity, which the Gate may refuse.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (*Identity, error)
}

// AnonymousAuth is the Authenticator used when none is configured: every
// caller is anonymous, and a token, when given, is ignored.
type AnonymousAuth struct{}

// Authenticate returns an anonymous identity.
func (AnonymousAuth) Authenticate(_ context.Context, c Credentials) (*Identity, error) {
	return &Identity{Method: "anonymous", Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
}

// ErrUnauthenticated is wrapped by refusals of credentials, and by calls
// that carry no identity at all.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrTokenExpired is wrapped by refusals of credentials that were valid and
// have expired: the caller needs fresh ones (token_expired).
var ErrTokenExpired = fmt.Errorf("%w: token expired", ErrUnauthenticated)

type identityKey struct{}

// errNoIdentity refuses a call whose context carries no identity.
var errNoIdentity = fmt.Errorf("%w: the call carries no identity (the transport did not authenticate it)", ErrUnauthenticated)

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityOf returns the identity ctx carries, or nil.
func IdentityOf(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// internalIdentity is the identity of herald's own components (webhook
// workers, source pollers, bridges) calling the hub in process.
var internalIdentity = &Identity{Subject: "herald", Method: "internal"}

// Internal returns ctx marked as a call from herald itself. Only
// in-process components use it; no transport may.
func Internal(ctx context.Context) context.Context { return WithIdentity(ctx, internalIdentity) }

// Authenticate establishes the caller behind c and returns ctx carrying
// its identity. Every transport calls it before its first hub call of a
// request or connection.
func (h *Hub) Authenticate(ctx context.Context, c Credentials) (context.Context, *Identity, error) {
	id, err := h.opts.Authenticator.Authenticate(ctx, c)
	if err != nil {
		if !errors.Is(err, ErrUnauthenticated) {
			err = fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		return ctx, nil, err
	}
	return WithIdentity(ctx, id), id, nil
}

// allow is the one check every hub entry point makes: ctx must carry an
// identity, and the Gate must allow a on topic. Calls of herald's own
// components pass.
func (h *Hub) allow(ctx context.Context, a Action, topic string) error {
	id := IdentityOf(ctx)
	if id == nil {
		return errNoIdentity
	}
	if id == internalIdentity {
		return nil
	}
	return h.opts.Gate.Allow(ctx, a, topic)
}
