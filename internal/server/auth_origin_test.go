package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// TestAuthCookieOrigins: a cookie is taken only from requests of the
// server's own origin, of an origin named in http.cors_origins, or without
// an Origin (not a browser's cross-origin request). "*" in
// http.cors_origins lets any page read the API with tokens it holds, but
// never makes a visitor's cookie usable by any page: that would be
// cross-site request forgery and cross-site WebSocket hijacking.
func TestAuthCookieOrigins(t *testing.T) {
	token := hs256(t, userClaims("lee", time.Now().Add(time.Hour), grantsOn("co.>")))
	cookie := []string{"Cookie", "herald_token=" + token}
	for _, tt := range []struct {
		name    string
		origins []string
		origin  string
		taken   bool
	}{
		{"no Origin", nil, "", true},
		{"own origin", nil, "http://SELF", true},
		{"foreign origin", nil, "https://evil.example", false},
		{"allowed origin", []string{"https://app.example"}, "https://app.example", true},
		{"another origin than the allowed", []string{"https://app.example"}, "https://evil.example", false},
		{"any origin allowed", []string{"*"}, "https://evil.example", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *config.Config) {
				c.Auth.JWT.HMACSecret = string(authSecret)
				c.Auth.JWT.Audience = testAudience
				c.Auth.JWT.Issuer = testIssuer
				c.HTTP.CORSOrigins = tt.origins
			})
			hdr := cookie
			if tt.origin != "" {
				o := tt.origin
				if o == "http://SELF" {
					o = ts.base
				}
				hdr = append(hdr, "Origin", o)
			}
			wantStatus, wantSubs := http.StatusUnauthorized, 0
			if tt.taken {
				wantStatus = http.StatusCreated
			}
			if r := ts.do(http.MethodPost, "/v1/topics/co.a/events", []byte(`{"n":1}`), append(hdr, "Content-Type", "application/json")...); r.status != wantStatus {
				t.Errorf("publish: %d %s, want %d", r.status, r.body, wantStatus)
			}
			// A WebSocket from an origin the server accepts connections
			// from is upgraded; its cookie is taken as above.
			wc, err := ts.dialWS("", hdr...)
			if err != nil {
				if tt.taken || len(tt.origins) > 0 && tt.origins[0] == "*" {
					t.Fatalf("WebSocket: %v", err)
				}
				return
			}
			r := wc.reply(1, `{"op":"subscribe","id":1,"topics":["co.a"]}`, nil)
			if tt.taken {
				wantSubs = 1
			}
			if got := ts.srv.Hub().Subscribers("co.a"); got != wantSubs {
				t.Errorf("WebSocket subscribe: %v; %d subscribers, want %d", r, got, wantSubs)
			}
		})
	}
}
