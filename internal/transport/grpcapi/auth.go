package grpcapi

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// Every call of herald's service is authenticated by the interceptors
// below before its handler runs: the caller's token from the
// authorization metadata (Bearer, as over HTTP) goes to the hub's
// Authenticator, and the handler's context carries the identity. The
// Publish handler, which replaces the generated one, calls the interceptor
// itself (publishHandler), so no method reaches the hub without it. The
// health and reflection services are not herald's and are not
// authenticated.

// servicePrefix starts the full method name of herald's calls.
const servicePrefix = "/" + ServiceName + "/"

// authenticate returns ctx carrying the identity of the call's caller.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	c := hub.Credentials{Transport: "grpc"}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.RemoteAddr = p.Addr.String()
	}
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		c.Token, c.Source = wire.BearerToken(vals[0]), hub.SourceMetadata
	}
	ctx, _, err := s.hub.Authenticate(ctx, c)
	return ctx, err
}

// reauthenticate returns ctx carrying the identity of token, a Connect
// stream's refresh: the token must be for the stream's subject (or the
// stream anonymous until now).
func (s *Server) reauthenticate(ctx context.Context, token string) (context.Context, error) {
	old := hub.IdentityOf(ctx)
	c := hub.Credentials{Token: token, Source: hub.SourceFrame, Transport: "grpc"}
	if old != nil {
		c.RemoteAddr = old.RemoteAddr
	}
	nctx, id, err := s.hub.Authenticate(ctx, c)
	if err != nil {
		return nil, err
	}
	if old != nil && old.Subject != "" && id.Subject != old.Subject {
		return nil, fmt.Errorf("%w: the stream is %q; a refresh may not make it %q (open a new stream)", hub.ErrForbidden, old.Subject, id.Subject)
	}
	return nctx, nil
}

// unaryAuth authenticates herald's unary calls.
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	ctx, err := s.authenticate(ctx)
	if err != nil {
		return nil, statusError(err)
	}
	return handler(ctx, req)
}

// streamAuth authenticates herald's streams.
func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(srv, ss)
	}
	ctx, err := s.authenticate(ss.Context())
	if err != nil {
		return statusError(err)
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

// authedStream is a stream whose context carries its caller's identity.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }
