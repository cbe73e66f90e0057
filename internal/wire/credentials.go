package wire

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldhq/herald/internal/hub"
)

// TokenSources says where the HTTP transports (REST, long polling, SSE,
// the WebSocket handshake) look for a caller's bearer token, in order:
// the Authorization header, then the query parameter (browsers' EventSource
// and WebSocket cannot set headers), then the cookie (auth.query_param,
// auth.cookie_name).
type TokenSources struct {
	QueryParam string // "" turns it off
	Cookie     string // "" turns it off
	// AllowOrigin reports whether a page of a foreign origin may use the
	// cookie (the CORS setting). A browser sends cookies with requests
	// any page makes, so a cookie is taken only from requests without an
	// Origin, from the server's own origin, or from an allowed one:
	// otherwise a foreign page could publish, or open a WebSocket, with
	// the visitor's credentials (cross-site request forgery, cross-site
	// WebSocket hijacking). nil allows no foreign origin.
	AllowOrigin func(origin string) bool
}

// Credentials returns what r presents: its token and where it was found,
// the caller's address and Origin, and transport. It decides nothing; the
// hub's Authenticator does.
func (ts TokenSources) Credentials(r *http.Request, transport string) hub.Credentials {
	c := hub.Credentials{RemoteAddr: r.RemoteAddr, Origin: r.Header.Get("Origin"), Transport: transport}
	if v := r.Header.Get("Authorization"); v != "" {
		c.Token, c.Source = BearerToken(v), hub.SourceHeader
		return c
	}
	if ts.QueryParam != "" && r.URL.RawQuery != "" {
		if v := r.URL.Query().Get(ts.QueryParam); v != "" {
			c.Token, c.Source = v, hub.SourceQuery
			return c
		}
	}
	if ts.Cookie != "" && ts.originMayUseCookie(c.Origin, r.Host) {
		if ck, err := r.Cookie(ts.Cookie); err == nil && ck.Value != "" {
			c.Token, c.Source = ck.Value, hub.SourceCookie
		}
	}
	return c
}

// BearerToken returns the token of an Authorization header (or gRPC
// metadata) value "Bearer <token>". A value of another scheme is returned
// whole: presented, but not a bearer token, so the Authenticator refuses
// what it cannot read rather than the caller passing as anonymous.
func BearerToken(v string) string {
	if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(token)
	}
	return v
}

// originMayUseCookie reports whether a request with Origin origin, to
// host, may be authenticated by its cookie.
func (ts TokenSources) originMayUseCookie(origin, host string) bool {
	if origin == "" || SameOrigin(origin, host) {
		return true
	}
	return ts.AllowOrigin != nil && ts.AllowOrigin(origin)
}

// SameOrigin reports whether a browser Origin names host itself.
func SameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}
