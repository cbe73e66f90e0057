package auth

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// BenchmarkAPIKey is the authentication of a publish with an API key, as
// the HTTP fast path does it per request: no allocation.
func BenchmarkAPIKey(b *testing.B) {
	key, hash, err := NewKey()
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(authConfig(func(au *config.Auth) {
		au.APIKeys = []config.APIKey{{Name: "svc", Hash: hash, Grants: config.Grants{Publish: []string{"chat.>"}}}}
	}), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	c := hub.Credentials{Token: key, Source: hub.SourceHeader, Transport: "rest", RemoteAddr: "127.0.0.1:5000"}
	ctx := context.Background()
	b.Run("authenticate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Authenticate(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authenticate+allow", func(b *testing.B) {
		b.ReportAllocs()
		id, _ := a.Authenticate(ctx, c)
		ictx := hub.WithIdentity(ctx, id)
		for b.Loop() {
			if _, err := a.Authenticate(ctx, c); err != nil {
				b.Fatal(err)
			}
			if err := a.Allow(ictx, hub.ActionPublish, "chat.room-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJWT is the cost of authenticating a connection with a token:
// cold (verified from scratch: signature, claims, grants) and cached (the
// same token again, as in a reconnect storm).
func BenchmarkJWT(b *testing.B) {
	k := testKeys(b)
	for _, alg := range []struct {
		name   string
		method jwt.SigningMethod
		priv   any
		pub    any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret, nil},
		{"ES256", jwt.SigningMethodES256, k.ec, &k.ec.PublicKey},
		{"RS256", jwt.SigningMethodRS256, k.rsa, &k.rsa.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, k.ed.Public()},
	} {
		tok := sign(b, alg.method, alg.priv, claims(map[string]any{"subscribe": []string{"chat.>"}, "publish": []string{"chat.room-1"}}), "")
		for _, cached := range []bool{false, true} {
			name := alg.name + "/cold"
			if cached {
				name = alg.name + "/cached"
			}
			b.Run(name, func(b *testing.B) {
				cfg := authConfig(func(au *config.Auth) {
					if alg.pub == nil {
						au.JWT.HMACSecret = string(testSecret)
					} else {
						au.JWT.PublicKeyFile = benchPEM(b, alg.pub)
					}
					if !cached {
						au.JWT.CacheSize = 0
					}
				})
				a, err := New(cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer a.Close()
				c := hub.Credentials{Token: tok, Source: hub.SourceHeader, Transport: "ws"}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.Authenticate(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGate is one decision on a topic by grants.
func BenchmarkGate(b *testing.B) {
	g, err := CompileGrants(config.Grants{Subscribe: []string{"news.*", "chat.room-1", "chat.*.typing", "chat.>"}})
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(authConfig(func(au *config.Auth) { au.Enabled = true }), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := hub.WithIdentity(context.Background(), &hub.Identity{Subject: "a", Method: MethodJWT, Grants: g})
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Allow(ctx, hub.ActionSubscribe, "chat.room-42.typing"); err != nil {
			b.Fatal(err)
		}
	}
}
