package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// matrixAuth is the configuration of the auth matrix: an HS256 secret and
// an RSA public key for tokens, three API keys, and a namespace open to
// anonymous readers.
func matrixAuth(t *testing.T) (a *Auth, keys map[string]string, rsaPEM []byte) {
	t.Helper()
	k := testKeys(t)
	pemPath, pemBytes := pemFile(t, &k.rsa.PublicKey)
	keys = map[string]string{}
	var apiKeys []config.APIKey
	for _, c := range []struct {
		name   string
		grants config.Grants
	}{
		{"publisher", config.Grants{Publish: []string{"chat.>"}}},
		{"reader", config.Grants{Subscribe: []string{"chat.*"}, History: []string{"chat.*"}}},
		{"operator", config.Grants{Admin: true}},
	} {
		key, hash, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[c.name] = key
		apiKeys = append(apiKeys, config.APIKey{Name: c.name, Hash: hash, Grants: c.grants})
	}
	cfg := authConfig(func(au *config.Auth) {
		au.APIKeys = apiKeys
		au.JWT.HMACSecret = string(testSecret)
		au.JWT.PublicKeyFile = pemPath
		au.JWT.Audience = "herald"
		au.JWT.Issuer = "https://id.example.com"
	})
	cfg.Namespaces = map[string]config.Namespace{"public": {Anonymous: []string{"subscribe", "history"}}}
	return newTestAuth(t, cfg), keys, pemBytes
}

// TestAuthMatrix runs every credential case through Authenticate and then
// the Gate, as the hub does.
func TestAuthMatrix(t *testing.T) {
	a, keys, rsaPEM := matrixAuth(t)
	k := testKeys(t)
	chatA := map[string]any{"subscribe": []string{"chat.a"}, "publish": []string{"chat.a"}}
	std := func(extra ...any) jwt.MapClaims {
		return claims(chatA, append([]any{"aud", "herald", "iss", "https://id.example.com"}, extra...)...)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c, "") }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, k.rsa, c, "") }
	valid := hs(std())
	wide := hs(claims(map[string]any{"subscribe": []string{"chat.*", ">"}, "publish": []string{"chat.*"}},
		"aud", "herald", "iss", "https://id.example.com"))

	type want struct {
		authErr string // substring of Authenticate's error; "" when it succeeds
		gateErr error  // what Allow's error wraps; nil when allowed
		msg     string // substring of Allow's error
	}
	tests := []struct {
		name   string
		token  string
		source hub.CredentialSource
		action hub.Action
		topic  string
		want   want
	}{
		{name: "no credential", action: hub.ActionSubscribe, topic: "chat.a", want: want{gateErr: hub.ErrUnauthenticated, msg: "present credentials"}},
		{name: "no credential, anonymous namespace", action: hub.ActionSubscribe, topic: "public.news"},
		{name: "no credential, anonymous history", action: hub.ActionHistory, topic: "public.news"},
		{name: "no credential, publish to anonymous namespace", action: hub.ActionPublish, topic: "public.news", want: want{gateErr: hub.ErrUnauthenticated, msg: "anonymous publish"}},
		{name: "no credential, lookalike namespace", action: hub.ActionSubscribe, topic: "publicx.news", want: want{gateErr: hub.ErrUnauthenticated}},
		{name: "no credential, admin", action: hub.ActionAdmin, want: want{gateErr: hub.ErrUnauthenticated}},

		{name: "valid HS256", token: valid, action: hub.ActionSubscribe, topic: "chat.a"},
		{name: "valid RS256", token: rs(std()), action: hub.ActionPublish, topic: "chat.a"},
		{name: "valid, from a cookie", token: valid, source: hub.SourceCookie, action: hub.ActionSubscribe, topic: "chat.a"},
		{name: "valid, from the query", token: valid, source: hub.SourceQuery, action: hub.ActionSubscribe, topic: "chat.a"},
		{name: "alg none", token: unsigned(t, std()), action: hub.ActionSubscribe, topic: "chat.a", want: want{authErr: `algorithm "none" is not accepted`}},
		{name: "HS256 signed with the RSA public key (algorithm confusion)", token: sign(t, jwt.SigningMethodHS256, rsaPEM, std(), ""), want: want{authErr: "signature is invalid"}},
		{name: "HS384", token: sign(t, jwt.SigningMethodHS384, testSecret, std(), ""), want: want{authErr: `algorithm "HS384" is not accepted; this server verifies HS256, RS256`}},
		{name: "RS256 with another RSA key", token: rs(std()) + "x", want: want{authErr: "signature is invalid"}},
		{name: "bad signature", token: sign(t, jwt.SigningMethodRS256, k.rsa2, std(), ""), want: want{authErr: "signature is invalid"}},
		{name: "ES256 without an EC key", token: sign(t, jwt.SigningMethodES256, k.ec, std(), ""), want: want{authErr: `algorithm "ES256" is not accepted`}},
		{name: "tampered payload", token: tamper(valid, hs(claims(map[string]any{"subscribe": []string{">"}}))), want: want{authErr: "signature is invalid"}},
		{name: "RS256 header on an HS256 token", token: swapHeader(hs(std()), rs(std())), want: want{authErr: "signature is invalid"}},
		{name: "HS256 header on an RS256 token", token: swapHeader(rs(std()), hs(std())), want: want{authErr: "signature is invalid"}},
		{name: "expired", token: hs(std("exp", time.Now().Add(-time.Second).Add(-5*time.Second).Unix())), want: want{authErr: "token expired at"}},
		{name: "expired within the leeway", token: hs(std("exp", time.Now().Add(-2*time.Second).Unix())), action: hub.ActionSubscribe, topic: "chat.a"},
		{name: "no exp", token: hs(std("exp", nil)), want: want{authErr: "exp"}},
		{name: "not yet valid", token: hs(std("nbf", time.Now().Add(time.Minute).Unix())), want: want{authErr: "not valid before"}},
		{name: "wrong audience", token: hs(std("aud", "other")), want: want{authErr: `audience ["other"] does not include "herald"`}},
		{name: "no audience", token: hs(std("aud", nil)), want: want{authErr: `no aud claim; this server requires "herald"`}},
		{name: "no issuer", token: hs(std("iss", nil)), want: want{authErr: "no iss claim"}},
		{name: "wrong issuer", token: hs(std("iss", "https://evil.example")), want: want{authErr: `issuer is "https://evil.example"`}},
		{name: "misspelt grant", token: hs(std("herald", map[string]any{"subscibe": []string{">"}})), want: want{authErr: "subscibe"}},
		{name: "bad pattern in grant", token: hs(std("herald", map[string]any{"subscribe": []string{"chat.*x"}})), want: want{authErr: "whole segments"}},
		{name: "not a token", token: "eyJhbGciOi.nope", want: want{authErr: "malformed"}},
		{name: "garbage", token: "Bearer x", want: want{authErr: "malformed"}},

		{name: "token for chat.a on chat.b", token: valid, action: hub.ActionSubscribe, topic: "chat.b", want: want{gateErr: hub.ErrForbidden, msg: `jwt "alice" may not subscribe to chat.b`}},
		{name: "token for chat.a, publish chat.b", token: valid, action: hub.ActionPublish, topic: "chat.b", want: want{gateErr: hub.ErrForbidden}},
		{name: "token without history", token: valid, action: hub.ActionHistory, topic: "chat.a", want: want{gateErr: hub.ErrForbidden, msg: "history"}},
		{name: "token without presence", token: valid, action: hub.ActionPresence, topic: "chat.a", want: want{gateErr: hub.ErrForbidden}},
		{name: "token, anonymous namespace", token: valid, action: hub.ActionSubscribe, topic: "public.news"},
		{name: "escape: chat.a.x vs chat.a", token: valid, action: hub.ActionSubscribe, topic: "chat.a.x", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: chatx.a vs chat.*", token: wide, action: hub.ActionPublish, topic: "chatx.a", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: chat.a.b vs chat.*", token: wide, action: hub.ActionPublish, topic: "chat.a.b", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: encoded separator", token: wide, action: hub.ActionSubscribe, topic: "chat%2Ea", want: want{gateErr: event.ErrBadTopic}},
		{name: "escape: encoded separator, exact", token: valid, action: hub.ActionSubscribe, topic: "chat%2Ea", want: want{gateErr: event.ErrBadTopic}},
		{name: "escape: unicode dot lookalike", token: wide, action: hub.ActionSubscribe, topic: "chat\u2024a", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: unicode letter lookalike", token: wide, action: hub.ActionSubscribe, topic: "сhat.a", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: very long name", token: wide, action: hub.ActionSubscribe, topic: strings.Repeat("chat.", 1<<12) + "a", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: trailing dot", token: wide, action: hub.ActionSubscribe, topic: "chat.a.", want: want{gateErr: hub.ErrForbidden}},
		{name: "escape: empty topic", token: wide, action: hub.ActionSubscribe, topic: "", want: want{gateErr: hub.ErrForbidden}},
		{name: "wide token on a long valid name", token: wide, action: hub.ActionSubscribe, topic: strings.Repeat("a.", 99) + "b"},

		{name: "publisher key publishes", token: keys["publisher"], action: hub.ActionPublish, topic: "chat.room-1.typing"},
		{name: "publisher key cannot subscribe", token: keys["publisher"], action: hub.ActionSubscribe, topic: "chat.room-1", want: want{gateErr: hub.ErrForbidden, msg: `api_key "publisher" may not subscribe to chat.room-1`}},
		{name: "reader key reads history", token: keys["reader"], action: hub.ActionHistory, topic: "chat.a"},
		{name: "reader key cannot publish", token: keys["reader"], action: hub.ActionPublish, topic: "chat.a", want: want{gateErr: hub.ErrForbidden}},
		{name: "operator key lists topics", token: keys["operator"], action: hub.ActionAdmin},
		{name: "operator key reads a topic's state", token: keys["operator"], action: hub.ActionAdmin, topic: "chat.a"},
		{name: "operator key cannot publish", token: keys["operator"], action: hub.ActionPublish, topic: "chat.a", want: want{gateErr: hub.ErrForbidden}},
		{name: "publisher key cannot list topics", token: keys["publisher"], action: hub.ActionAdmin, want: want{gateErr: hub.ErrForbidden}},
		{name: "unknown API key", token: "hk_" + strings.Repeat("A", 43), want: want{authErr: "unknown API key"}},
		{name: "revoked key's neighbour", token: keys["publisher"][:len(keys["publisher"])-1] + "x", want: want{authErr: "unknown API key"}},
		{name: "huge API key", token: "hk_" + strings.Repeat("A", 1<<16), want: want{authErr: "malformed API key"}},
		{name: "API key in the query", token: keys["publisher"], source: hub.SourceQuery, want: want{authErr: "not in a query parameter"}},
		{name: "API key in a cookie", token: keys["publisher"], source: hub.SourceCookie, want: want{authErr: "not in a cookie"}},
		{name: "API key in a WebSocket frame", token: keys["publisher"], source: hub.SourceFrame, action: hub.ActionPublish, topic: "chat.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.source
			if src == hub.SourceNone && tt.token != "" {
				src = hub.SourceHeader
			}
			ctx := context.Background()
			id, err := a.Authenticate(ctx, hub.Credentials{Token: tt.token, Source: src, Transport: "test", RemoteAddr: "192.0.2.1:1234"})
			if tt.want.authErr != "" {
				if err == nil {
					t.Fatalf("Authenticate succeeded as %+v", id)
				}
				if !errors.Is(err, hub.ErrUnauthenticated) || !strings.Contains(err.Error(), tt.want.authErr) {
					t.Fatalf("Authenticate: %v; want hub.ErrUnauthenticated with %q", err, tt.want.authErr)
				}
				for _, secret := range []string{string(testSecret), keys["publisher"], tt.token} {
					if len(tt.token) < 1000 && strings.Contains(err.Error(), secret) && secret != "" {
						t.Fatalf("the error %q reveals a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.Transport != "test" || id.RemoteAddr != "192.0.2.1:1234" {
				t.Errorf("identity %+v does not carry the credentials' transport and address", id)
			}
			err = a.Gate().Allow(hub.WithIdentity(ctx, id), tt.action, tt.topic)
			switch {
			case tt.want.gateErr == nil && err != nil:
				t.Fatalf("Allow(%s, %q): %v", tt.action, tt.topic, err)
			case tt.want.gateErr != nil && !errors.Is(err, tt.want.gateErr):
				t.Fatalf("Allow(%s, %q) = %v, want an error wrapping %v", tt.action, tt.topic, err, tt.want.gateErr)
			case err != nil && !strings.Contains(err.Error(), tt.want.msg):
				t.Fatalf("Allow(%s, %q) = %v, want it to say %q", tt.action, tt.topic, err, tt.want.msg)
			}
		})
	}
}

func TestIdentities(t *testing.T) {
	a, keys, _ := matrixAuth(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil, "exp", exp.Unix(), "aud", "herald", "iss", "https://id.example.com", "sub", "bob"), "")
	id, err := a.Authenticate(ctx, hub.Credentials{Token: tok, Source: hub.SourceHeader, Transport: "sse"})
	if err != nil {
		t.Fatal(err)
	}
	// A stream lasts as long as its token is accepted: exp plus the leeway.
	if id.Subject != "bob" || id.Method != MethodJWT || !id.Expires.Equal(exp.Add(config.Default().Auth.JWT.Leeway)) || id.Anonymous() {
		t.Errorf("JWT identity %+v", id)
	}
	// No grants claim: the token allows what anyone may, nothing more.
	if err := a.Allow(hub.WithIdentity(ctx, id), hub.ActionSubscribe, "chat.a"); !errors.Is(err, hub.ErrForbidden) {
		t.Errorf("a token without grants: %v", err)
	}
	id, err = a.Authenticate(ctx, hub.Credentials{Token: keys["reader"], Source: hub.SourceHeader, Transport: "rest"})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "reader" || id.Method != MethodAPIKey || !id.Expires.IsZero() {
		t.Errorf("API key identity %+v", id)
	}
	id, err = a.Authenticate(ctx, hub.Credentials{Transport: "ws", RemoteAddr: "x"})
	if err != nil || !id.Anonymous() || id.Method != MethodAnonymous || id.Transport != "ws" {
		t.Errorf("anonymous identity %+v, %v", id, err)
	}
	if err := a.Allow(ctx, hub.ActionSubscribe, "public.x"); !errors.Is(err, hub.ErrUnauthenticated) {
		t.Errorf("a context without identity: %v", err)
	}
}

// TestAPIKeyIdentityReuse checks that a key's identity is reused for the
// same transport and address, and not for another.
func TestAPIKeyIdentityReuse(t *testing.T) {
	a, keys, _ := matrixAuth(t)
	ctx := context.Background()
	c := hub.Credentials{Token: keys["publisher"], Source: hub.SourceHeader, Transport: "rest", RemoteAddr: "192.0.2.1:1"}
	id1, _ := a.Authenticate(ctx, c)
	id2, _ := a.Authenticate(ctx, c)
	if id1 != id2 {
		t.Error("the same key from the same address made a new identity")
	}
	c.RemoteAddr = "192.0.2.2:1"
	id3, _ := a.Authenticate(ctx, c)
	if id3 == id1 || id3.RemoteAddr != c.RemoteAddr || id1.RemoteAddr != "192.0.2.1:1" {
		t.Errorf("another address: %+v (first %+v)", id3, id1)
	}
}

func TestAuthOff(t *testing.T) {
	a := newTestAuth(t, config.Default())
	if a.Enabled() {
		t.Fatal("auth on with no auth config")
	}
	if _, ok := a.Authenticator().(hub.AnonymousAuth); !ok {
		t.Errorf("Authenticator() = %T, want hub.AnonymousAuth", a.Authenticator())
	}
	if _, ok := a.Gate().(hub.AllowAll); !ok {
		t.Errorf("Gate() = %T, want hub.AllowAll", a.Gate())
	}
	// Enabled with no credentials: only anonymous namespaces.
	cfg := authConfig(func(au *config.Auth) { au.Enabled = true })
	cfg.Namespaces = map[string]config.Namespace{"public": {Anonymous: []string{"subscribe", "presence"}}}
	a = newTestAuth(t, cfg)
	ctx := context.Background()
	id, err := a.Authenticator().Authenticate(ctx, hub.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	ctx = hub.WithIdentity(ctx, id)
	for _, tt := range []struct {
		action hub.Action
		topic  string
		ok     bool
	}{
		{hub.ActionSubscribe, "public.a", true},
		{hub.ActionPresence, "public.a", true},
		{hub.ActionHistory, "public.a", false},
		{hub.ActionPublish, "public.a", false},
		{hub.ActionSubscribe, "chat.a", false},
	} {
		if err := a.Gate().Allow(ctx, tt.action, tt.topic); (err == nil) != tt.ok {
			t.Errorf("Allow(%s, %s) = %v, want allowed %v", tt.action, tt.topic, err, tt.ok)
		}
	}
	if _, err := a.Authenticate(ctx, hub.Credentials{Token: "eyJ.x.y"}); err == nil || !strings.Contains(err.Error(), "no JWT keys") {
		t.Errorf("a token with no JWT keys: %v", err)
	}
	if _, err := a.Authenticate(ctx, hub.Credentials{Token: "hk_x"}); err == nil || !strings.Contains(err.Error(), "unknown API key") {
		t.Errorf("a key with no keys: %v", err)
	}
}

// TestAlgorithms checks each public key type: its algorithm verifies,
// others do not, and an HS256 token signed with the public key's PEM is
// refused whether or not an HMAC secret is configured.
func TestAlgorithms(t *testing.T) {
	k := testKeys(t)
	tests := []struct {
		name   string
		pub    any
		method jwt.SigningMethod
		priv   any
		other  any // another private key of the same type
	}{
		{"RS256", &k.rsa.PublicKey, jwt.SigningMethodRS256, k.rsa, k.rsa2},
		{"ES256", &k.ec.PublicKey, jwt.SigningMethodES256, k.ec, k.ec2},
		{"EdDSA", k.ed.Public(), jwt.SigningMethodEdDSA, k.ed, k.ed2},
	}
	all := map[string]struct {
		m    jwt.SigningMethod
		priv any
	}{"RS256": {jwt.SigningMethodRS256, k.rsa}, "ES256": {jwt.SigningMethodES256, k.ec}, "EdDSA": {jwt.SigningMethodEdDSA, k.ed}}
	for _, tt := range tests {
		for _, withHMAC := range []bool{false, true} {
			name := tt.name
			if withHMAC {
				name += "+HS256"
			}
			t.Run(name, func(t *testing.T) {
				path, pemBytes := pemFile(t, tt.pub)
				a := newTestAuth(t, authConfig(func(au *config.Auth) {
					au.JWT.PublicKeyFile = path
					if withHMAC {
						au.JWT.HMACSecret = string(testSecret)
					}
				}))
				auth := func(tok string) error {
					_, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok, Source: hub.SourceHeader})
					return err
				}
				c := claims(map[string]any{"subscribe": []string{">"}})
				if err := auth(sign(t, tt.method, tt.priv, c, "")); err != nil {
					t.Errorf("a valid %s token: %v", tt.name, err)
				}
				if err := auth(sign(t, tt.method, tt.other, c, "")); err == nil || !strings.Contains(err.Error(), "signature is invalid") {
					t.Errorf("signed by another key: %v", err)
				}
				if err := auth(sign(t, jwt.SigningMethodHS256, pemBytes, c, "")); err == nil {
					t.Error("HS256 signed with the public key's PEM was accepted")
				}
				for alg, o := range all {
					if alg == tt.name {
						continue
					}
					if err := auth(sign(t, o.m, o.priv, c, "")); err == nil || !strings.Contains(err.Error(), "not accepted") {
						t.Errorf("a %s token against a %s key: %v", alg, tt.name, err)
					}
				}
			})
		}
	}
}

func TestNewErrorsNameTheKey(t *testing.T) {
	k := testKeys(t)
	dir := t.TempDir()
	short := dir + "/short"
	writeTestFile(t, short, "tooshort\n")
	good := dir + "/good"
	writeTestFile(t, good, string(testSecret)+"\n")
	notPEM := dir + "/notpem"
	writeTestFile(t, notPEM, "hello")
	ecPath, _ := pemFile(t, &k.ec.PublicKey)
	p384, _ := pemFile(t, mustEC(t, "P384"))
	_, hash, _ := NewKey()
	tests := []struct {
		name string
		edit func(*config.Auth)
		want string
	}{
		{"secret file missing", func(a *config.Auth) { a.JWT.HMACSecretFile = dir + "/nope" }, "auth.jwt.hmac_secret_file"},
		{"secret file short", func(a *config.Auth) { a.JWT.HMACSecretFile = short }, "auth.jwt.hmac_secret_file"},
		{"public key missing", func(a *config.Auth) { a.JWT.PublicKeyFile = dir + "/nope" }, "auth.jwt.public_key_file"},
		{"public key not PEM", func(a *config.Auth) { a.JWT.PublicKeyFile = notPEM }, "auth.jwt.public_key_file"},
		{"EC key not P-256", func(a *config.Auth) { a.JWT.PublicKeyFile = p384 }, "P-256"},
		{"algorithms exclude every key", func(a *config.Auth) { a.JWT.PublicKeyFile = ecPath; a.JWT.Algorithms = []string{"RS256"} }, "auth.jwt.algorithms"},
		{"bad grant pattern", func(a *config.Auth) {
			a.APIKeys = []config.APIKey{{Name: "ci", Hash: hash, Grants: config.Grants{Subscribe: []string{"ok"}, Publish: []string{"chat.room-*"}}}}
		}, "auth.api_keys[0] (ci).grants.publish[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(authConfig(tt.edit), nil)
			if err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
	a := newTestAuth(t, authConfig(func(a *config.Auth) { a.JWT.HMACSecretFile = good }))
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), "")
	if _, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok}); err != nil {
		t.Errorf("secret from a file with a trailing newline: %v", err)
	}
}

func TestMintHS256(t *testing.T) {
	a := newTestAuth(t, authConfig(func(au *config.Auth) {
		au.JWT.HMACSecret = string(testSecret)
		au.JWT.Audience = "herald"
		au.JWT.Claim = "perms"
	}))
	now := time.Now()
	tok, err := MintHS256(testSecret, TokenRequest{
		Subject: "alice", TTL: time.Hour, Audience: "herald", Claim: "perms",
		Grants: config.Grants{Subscribe: []string{"chat.>"}, Publish: []string{"chat.room-1"}},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := a.Authenticate(ctx, hub.Credentials{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice" || id.Expires.Unix() != now.Add(time.Hour+config.Default().Auth.JWT.Leeway).Unix() {
		t.Errorf("identity %+v", id)
	}
	ctx = hub.WithIdentity(ctx, id)
	if err := a.Allow(ctx, hub.ActionSubscribe, "chat.x.y"); err != nil {
		t.Error(err)
	}
	if err := a.Allow(ctx, hub.ActionPublish, "chat.room-2"); !errors.Is(err, hub.ErrForbidden) {
		t.Errorf("publish beyond the grant: %v", err)
	}
	for _, r := range []TokenRequest{
		{TTL: time.Hour},
		{Subject: "a"},
		{Subject: "a", TTL: time.Hour, Grants: config.Grants{Publish: []string{"a..b"}}},
	} {
		if _, err := MintHS256(testSecret, r, now); err == nil {
			t.Errorf("MintHS256(%+v) succeeded", r)
		}
	}
	if _, err := MintHS256([]byte("short"), TokenRequest{Subject: "a", TTL: time.Hour}, now); err == nil {
		t.Error("a short secret was used")
	}
}

func TestKeys(t *testing.T) {
	key, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, KeyPrefix) || len(key) != keyLen || HashKey(key) != hash || !strings.HasPrefix(hash, HashPrefix) || len(hash) != len(HashPrefix)+64 {
		t.Errorf("key %q hash %q", key, hash)
	}
	key2, _, _ := NewKey()
	if key2 == key {
		t.Error("two keys are the same")
	}
}
