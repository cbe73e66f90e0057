// Package auth decides who may do what: it turns the credentials a
// transport found (an API key or a JSON Web Token) into a hub.Identity,
// and decides from the identity's grants and the namespace policy whether
// it may take an action on a topic. It plugs into the hub's access seam
// (hub.Authenticator and hub.Gate, internal/hub/access.go): the hub asks,
// every transport goes through the hub, so no transport can skip a check.
//
// Files by concern: pattern.go (topic patterns), grants.go (what a
// credential allows), apikey.go (API keys), jwt.go (tokens), jwks.go (keys
// from an identity provider), cache.go (verified tokens), gate.go (the
// decision), token.go (minting development tokens). docs/security.md is
// the user's view.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// The methods an identity can be established by (hub.Identity.Method).
const (
	MethodAnonymous = "anonymous"
	MethodAPIKey    = "api_key"
	MethodJWT       = "jwt"
)

// Auth is the configured authentication and permission policy. It
// implements hub.Authenticator and hub.Gate; use Authenticator and Gate,
// which give the hub's open defaults when auth is off.
type Auth struct {
	on     bool
	keys   *keyring
	jwt    *verifier // nil when no JWT key is configured
	jwks   *jwks     // nil when no JWKS URL is configured; owned, closed by Close
	policy policy
	log    *slog.Logger
}

// New builds the policy of cfg (its auth and namespaces sections). It
// reads the key files and fetches the JWKS, if configured; errors name the
// config key. Close releases what it started.
func New(cfg config.Config, log *slog.Logger) (*Auth, error) {
	return newAuth(cfg, log, time.Now)
}

func newAuth(cfg config.Config, log *slog.Logger, now func() time.Time) (*Auth, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Auth{on: cfg.Auth.On(), policy: newPolicy(cfg.Namespaces), log: log}
	if !a.on {
		if cfg.Auth.InsecureOpen {
			log.Warn("auth is off and auth.insecure_open is set: anyone who can reach herald may publish to and read every topic",
				"http.addr", cfg.HTTP.Addr)
		}
		return a, nil
	}
	var err error
	if a.keys, err = newKeyring(cfg.Auth.APIKeys); err != nil {
		return nil, err
	}
	if cfg.Auth.JWT.JWKSURL != "" {
		if a.jwks, err = newJWKS(cfg.Auth.JWT, log); err != nil {
			return nil, err
		}
	}
	if a.jwt, err = newVerifier(cfg.Auth.JWT, a.jwks, now); err != nil {
		a.Close()
		return nil, err
	}
	var methods []string
	if len(cfg.Auth.APIKeys) > 0 {
		methods = append(methods, fmt.Sprintf("%d API keys", len(cfg.Auth.APIKeys)))
	}
	if a.jwt != nil {
		methods = append(methods, "JWT ("+strings.Join(a.jwt.algs, ", ")+")")
	}
	if len(methods) == 0 {
		methods = append(methods, "no credentials: only what namespaces open to anonymous callers")
	}
	log.Info("auth is on", "credentials", strings.Join(methods, "; "))
	return a, nil
}

// Enabled reports whether auth is on.
func (au *Auth) Enabled() bool { return au.on }

// Authenticator returns the hub's Authenticator: au when auth is on, else
// hub.AnonymousAuth (everyone anonymous, tokens ignored).
func (au *Auth) Authenticator() hub.Authenticator {
	if !au.on {
		return hub.AnonymousAuth{}
	}
	return au
}

// Gate returns the hub's Gate: au when auth is on, else hub.AllowAll.
func (au *Auth) Gate() hub.Gate {
	if !au.on {
		return hub.AllowAll{}
	}
	return au
}

// Close stops the JWKS refresh, if any. It is safe to call more than once.
func (au *Auth) Close() error {
	if au.jwks != nil {
		au.jwks.close()
	}
	return nil
}

// Authenticate establishes who c comes from (hub.Authenticator): no token
// is an anonymous caller (the Gate decides what namespaces allow them); a
// token starting with KeyPrefix is an API key; any other is a JWT.
// Refusals wrap hub.ErrUnauthenticated and say what is wrong without
// revealing a key.
func (au *Auth) Authenticate(ctx context.Context, c hub.Credentials) (*hub.Identity, error) {
	switch {
	case c.Token == "":
		return &hub.Identity{Method: MethodAnonymous, Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
	case strings.HasPrefix(c.Token, KeyPrefix):
		if c.Source == hub.SourceQuery || c.Source == hub.SourceCookie {
			return nil, fmt.Errorf("%w: API keys are for services and are accepted in the Authorization header, gRPC metadata or a WebSocket frame, not in a %s (where logs, browser history or other pages can reach them); browsers use tokens",
				hub.ErrUnauthenticated, sourceName(c.Source))
		}
		k, err := au.keys.lookup(c.Token)
		if err != nil {
			return nil, err
		}
		return k.identity(c), nil
	case au.jwt == nil:
		return nil, fmt.Errorf("%w: the token is not an API key (%s…) and this server has no JWT keys configured", hub.ErrUnauthenticated, KeyPrefix)
	}
	v, err := au.jwt.verify(ctx, c.Token)
	if err != nil {
		return nil, err
	}
	// The token is accepted until exp plus the leeway (clock skew), so a
	// stream it opens lasts as long: ending it at exp would end, at once,
	// a stream the same token was just allowed to open.
	return &hub.Identity{Subject: v.subject, Method: MethodJWT, Expires: v.expires.Add(au.jwt.leeway), Grants: v.grants,
		Transport: c.Transport, RemoteAddr: c.RemoteAddr}, nil
}

func sourceName(s hub.CredentialSource) string {
	switch s {
	case hub.SourceQuery:
		return "query parameter"
	case hub.SourceCookie:
		return "cookie"
	}
	return s.String()
}
