package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/config"
)

// identityProvider serves a JSON Web Key Set of EC P-256 keys on a local
// listener, as an identity provider does, and counts the fetches.
type identityProvider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey // kid → key; guarded by mu
	fetches atomic.Int64
}

func newIdentityProvider(t *testing.T) *identityProvider {
	t.Helper()
	p := &identityProvider{keys: map[string]*ecdsa.PrivateKey{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		set := struct {
			Keys []map[string]string `json:"keys"`
		}{Keys: []map[string]string{}}
		for kid, k := range p.keys {
			b64 := func(n interface{ FillBytes([]byte) []byte }) string {
				return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32)))
			}
			set.Keys = append(set.Keys, map[string]string{
				"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
				"x": b64(k.X), "y": b64(k.Y),
			})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// rotate makes kid the set's only key and returns it.
func (p *identityProvider) rotate(t *testing.T, kid string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys = map[string]*ecdsa.PrivateKey{kid: k}
	p.mu.Unlock()
	return k
}

// TestAuthJWKS: herald takes its keys from an identity provider's JWKS
// URL (plain http is accepted to a loopback host, so the provider is an
// httptest server; anything else must be https). When the provider
// rotates its key, a token signed with the new key is accepted after one
// refresh for its unknown key id, on every transport, and the old key's
// tokens stop working, including ones verified (and cached) before.
func TestAuthJWKS(t *testing.T) {
	idp := newIdentityProvider(t)
	k1 := idp.rotate(t, "k1")
	ts := startServer(t, func(c *config.Config) {
		c.Auth.JWT.JWKSURL = idp.srv.URL + "/.well-known/jwks.json"
		c.Auth.JWT.JWKSUnknownKIDRefresh = time.Second // the smallest allowed
		c.Auth.JWT.Audience = testAudience
		c.Auth.JWT.Issuer = testIssuer
	})
	if n := idp.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches at start, want 1", n)
	}
	claims := userClaims("judy", time.Now().Add(time.Hour), grantsOn("idp.>"))
	tok := func(key *ecdsa.PrivateKey, kid string) string {
		return signJWT(t, jwt.SigningMethodES256, key, claims, kid)
	}
	gc := ts.grpcClient()

	// accepted reports whether token is accepted over REST, SSE,
	// WebSocket and gRPC, and checks that they agree.
	accepted := func(t *testing.T, token string) (bool, string) {
		t.Helper()
		ts := ts.in(t)
		r := ts.get("/v1/events?topic=idp.a", bearer(token)...)
		ok := r.status == http.StatusOK
		s := ts.dialSSE(nil, "topic=idp.a&access_token="+token)
		s.close()
		wc, err := ts.dialWS("access_token=" + token)
		if err == nil {
			wc.nc.Close()
		}
		_, gerr := gc.Pull(grpcAuth(grpcCtx(t), token), &heraldv1.PullRequest{Topics: []string{"idp.a"}})
		if (s.status == http.StatusOK) != ok || (err == nil) != ok || (gerr == nil) != ok {
			t.Errorf("transports disagree: REST %d, SSE %d, WebSocket %v, gRPC %v", r.status, s.status, err, gerr)
		}
		return ok, string(r.body)
	}

	old := tok(k1, "k1")
	if ok, body := accepted(t, old); !ok {
		t.Fatalf("a token of the provider's key: %s", body)
	}

	k2 := idp.rotate(t, "k2")
	fetches := idp.fetches.Load()
	if ok, body := accepted(t, tok(k2, "k2")); !ok {
		t.Fatalf("a token of the rotated key: %s", body)
	}
	if n := idp.fetches.Load() - fetches; n != 1 {
		t.Errorf("%d JWKS fetches for the new key id, want 1", n)
	}
	if ok, body := accepted(t, old); ok || !strings.Contains(body, `unknown key id \"k1\"`) {
		t.Errorf("a token of the rotated-out key: accepted %v, %s", ok, body)
	}
	// A token naming the new key id but signed otherwise is refused.
	if ok, _ := accepted(t, tok(k1, "k2")); ok {
		t.Error("a token naming k2 signed with k1 was accepted")
	}
}
