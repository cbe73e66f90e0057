package auth

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// jwksServer serves a JSON Web Key Set that a test can change, on a local
// listener.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string]any // kid → public key
}

func newJWKSServer(t *testing.T, keys map[string]any) *jwksServer {
	t.Helper()
	return startJWKSServer(t, keys, false)
}

// startJWKSServer is newJWKSServer, over TLS with tls (httptest's own
// certificate, which no system trusts).
func startJWKSServer(t *testing.T, keys map[string]any, tls bool) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var set jwkset.JWKSMarshal
		for kid, key := range s.keys {
			j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			set.Keys = append(set.Keys, j.Marshal())
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// set replaces the served keys.
func (s *jwksServer) set(keys map[string]any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func TestJWKS(t *testing.T) {
	k := testKeys(t)
	srv := newJWKSServer(t, map[string]any{"r1": &k.rsa.PublicKey, "e1": &k.ec.PublicKey, "d1": k.ed.Public()})
	a := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.JWKSURL = srv.URL }))
	fetches := func() int64 { return a.jwks.fetches.Load() }
	auth := func(tok string) error {
		_, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok, Source: hub.SourceHeader})
		return err
	}
	c := func(sub string) jwt.MapClaims { return claims(map[string]any{"subscribe": []string{">"}}, "sub", sub) }
	if n := fetches(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}

	for _, tt := range []struct {
		name string
		tok  string
		want string // "" to pass
	}{
		{"RS256 by kid", sign(t, jwt.SigningMethodRS256, k.rsa, c("a"), "r1"), ""},
		{"ES256 by kid", sign(t, jwt.SigningMethodES256, k.ec, c("a"), "e1"), ""},
		{"EdDSA by kid", sign(t, jwt.SigningMethodEdDSA, k.ed, c("a"), "d1"), ""},
		{"RS256 without kid", sign(t, jwt.SigningMethodRS256, k.rsa, c("a"), ""), ""},
		{"RS256 naming the EC key", sign(t, jwt.SigningMethodRS256, k.rsa, c("a"), "e1"), `key id "e1"`},
		{"ES256 naming the RSA key", sign(t, jwt.SigningMethodES256, k.ec, c("a"), "r1"), `key id "r1"`},
		{"HS256 with the RSA kid", sign(t, jwt.SigningMethodHS256, testSecret, c("a"), "r1"), `"HS256" is not accepted`},
		{"signed by another key", sign(t, jwt.SigningMethodRS256, k.rsa2, c("a"), "r1"), "signature is invalid"},
	} {
		if err := auth(tt.tok); (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if n := fetches(); n != 1 {
		t.Fatalf("%d fetches after known keys, want 1", n)
	}

	// The provider rotates r1 out and r2 in. A token of r2 names an
	// unknown kid: one fetch, then it is accepted.
	old := sign(t, jwt.SigningMethodRS256, k.rsa, c("old"), "r1")
	if err := auth(old); err != nil {
		t.Fatal(err)
	}
	srv.set(map[string]any{"r2": &k.rsa2.PublicKey, "e1": &k.ec.PublicKey})
	newTok := sign(t, jwt.SigningMethodRS256, k.rsa2, c("new"), "r2")
	if err := auth(newTok); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if n := fetches(); n != 2 {
		t.Fatalf("%d fetches after the rotation, want 2", n)
	}
	// The old key's tokens stop working, cached ones included (the refresh
	// dropped r1), and without another fetch (the limit holds).
	if err := auth(old); err == nil || !strings.Contains(err.Error(), `unknown key id "r1"`) {
		t.Errorf("the old key's cached token after the rotation: %v", err)
	}
	if err := auth(sign(t, jwt.SigningMethodRS256, k.rsa, c("old2"), "r1")); err == nil {
		t.Error("a fresh token of the old key was accepted")
	}
	// Kept keys go on working.
	if err := auth(sign(t, jwt.SigningMethodES256, k.ec, c("b"), "e1")); err != nil {
		t.Errorf("a kept key after the rotation: %v", err)
	}

	// A flood of made-up key ids costs no fetch while the limit holds.
	for i := range 100 {
		err := auth(sign(t, jwt.SigningMethodES256, k.ec, c("x"), fmt.Sprintf("made-up-%d", i)))
		if !errors.Is(err, hub.ErrUnauthenticated) || !strings.Contains(err.Error(), "unknown key id") {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if n := fetches(); n != 2 {
		t.Fatalf("%d fetches after 100 unknown kids, want 2 (at most one per jwks_unknown_kid_refresh)", n)
	}

	// The provider is down: the keys held still verify.
	srv.Close()
	if err := auth(sign(t, jwt.SigningMethodRS256, k.rsa2, c("fresh"), "r2")); err != nil {
		t.Errorf("with the JWKS endpoint down: %v", err)
	}
}

// TestJWKSDownAtStart checks that herald starts when the provider is down,
// refuses tokens meanwhile, and accepts them once the set can be fetched.
func TestJWKSDownAtStart(t *testing.T) {
	k := testKeys(t)
	var mu sync.Mutex
	up := false
	srv := newJWKSServer(t, map[string]any{"r1": &k.rsa.PublicKey})
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := up
		mu.Unlock()
		if !ok {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	})
	a := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.JWKSURL = srv.URL }))
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), "r1")
	// The first unknown kid may fetch at once (and fails); the limit then
	// holds, so the token is refused.
	if _, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok}); err == nil {
		t.Fatal("accepted with the provider down")
	}
	mu.Lock()
	up = true
	mu.Unlock()
	// Another instance (a restart) with the provider up verifies.
	b := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.JWKSURL = srv.URL }))
	if _, err := b.Authenticate(context.Background(), hub.Credentials{Token: tok}); err != nil {
		t.Fatalf("after the provider came up: %v", err)
	}
}

// TestCloseStopsRefresh checks that Close ends the JWKS refresh goroutine
// and the connections to the provider.
func TestCloseStopsRefresh(t *testing.T) {
	k := testKeys(t)
	srv := newJWKSServer(t, map[string]any{"r1": &k.rsa.PublicKey})
	before := goleak.IgnoreCurrent()
	a, err := New(authConfig(func(au *config.Auth) { au.JWT.JWKSURL = srv.URL }), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close() // twice is fine
	goleak.VerifyNone(t, before)
}

// TestJWKSPrivateCA: a key set served over TLS with a certificate of a CA
// no system trusts is fetched with auth.jwt.jwks_ca_file naming that CA,
// and not without it; a file with no certificate is refused at start.
func TestJWKSPrivateCA(t *testing.T) {
	k := testKeys(t)
	srv := startJWKSServer(t, map[string]any{"r1": &k.rsa.PublicKey}, true)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeTestFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(map[string]any{"subscribe": []string{">"}}, "sub", "a"), "r1")
	auth := func(a *Auth) error {
		_, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok, Source: hub.SourceHeader})
		return err
	}

	trusted := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.JWKSURL, au.JWT.JWKSCAFile = srv.URL, ca }))
	if err := auth(trusted); err != nil {
		t.Errorf("with the CA file: %v", err)
	}
	untrusted := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.JWKSURL = srv.URL }))
	if err := auth(untrusted); err == nil {
		t.Error("without the CA file: a key fetched from a server no one trusts")
	}

	notPEM := filepath.Join(dir, "not.pem")
	writeTestFile(t, notPEM, "not a certificate\n")
	for _, file := range []string{notPEM, filepath.Join(dir, "missing.pem")} {
		_, err := New(authConfig(func(au *config.Auth) { au.JWT.JWKSURL, au.JWT.JWKSCAFile = srv.URL, file }), nil)
		if err == nil || !strings.Contains(err.Error(), "auth.jwt.jwks_ca_file") {
			t.Errorf("CA file %s: %v, want an error naming auth.jwt.jwks_ca_file", filepath.Base(file), err)
		}
	}
}
