package wire

import (
	"net/http"
	"strings"

	"github.com/heraldhq/herald/internal/hub"
)

// TokenSources says where the HTTP transports (REST, long polling, SSE,
// the WebSocket handshake) look for a caller's bearer token, in order:
// the Authorization header, then the query parameter (browsers' EventSource
// and WebSocket cannot set headers), then the cookie.
type TokenSources struct {
	QueryParam string // default access_token; "-" turns it off
	Cookie     string // "" turns it off
}

// DefaultQueryParam is the query parameter a token is taken from by
// default.
const DefaultQueryParam = "access_token"

// Credentials returns what r presents: its token and where it was found,
// the caller's address and Origin, and transport. It decides nothing; the
// hub's Authenticator does.
func (ts TokenSources) Credentials(r *http.Request, transport string) hub.Credentials {
	c := hub.Credentials{RemoteAddr: r.RemoteAddr, Origin: r.Header.Get("Origin"), Transport: transport}
	if v := r.Header.Get("Authorization"); v != "" {
		if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
			c.Token, c.Source = strings.TrimSpace(token), hub.SourceHeader
		} else {
			// Another scheme: presented, but not a bearer token. The
			// Authenticator refuses what it cannot read.
			c.Token, c.Source = v, hub.SourceHeader
		}
		return c
	}
	q := ts.QueryParam
	if q == "" {
		q = DefaultQueryParam
	}
	if q != "-" && r.URL.RawQuery != "" {
		if v := r.URL.Query().Get(q); v != "" {
			c.Token, c.Source = v, hub.SourceQuery
			return c
		}
	}
	if ts.Cookie != "" {
		if ck, err := r.Cookie(ts.Cookie); err == nil && ck.Value != "" {
			c.Token, c.Source = ck.Value, hub.SourceCookie
		}
	}
	return c
}
