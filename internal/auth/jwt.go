package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// JSON Web Tokens are for end users: an application's backend (or an
// identity provider) signs a token naming the user (sub), its expiry (exp,
// required) and its grants (the claim auth.jwt.claim, "herald" by
// default):
//
//	{
//	  "sub": "alice",
//	  "exp": 1767225600,
//	  "aud": "herald",                      // checked when auth.jwt.audience is set
//	  "iss": "https://id.example.com",      // checked when auth.jwt.issuer is set
//	  "herald": {
//	    "subscribe": ["chat.>"],
//	    "history":   ["chat.>"],
//	    "publish":   ["chat.room-1"],
//	    "presence":  ["chat.>"]
//	  }
//	}
//
// Every key source pins the algorithm it verifies, so that a token cannot
// choose how it is checked: the HMAC secret verifies HS256 and nothing
// else, a public key (a PEM file or a JWKS entry) the one algorithm of its
// type: RSA keys (2048 bits or more) RS256, EC P-256 keys ES256, Ed25519
// keys EdDSA. An HS256 token is therefore never checked against a public
// key (the algorithm confusion attack), and "none" is never accepted.

// ErrTokenExpired is wrapped by the refusal of a token past its exp; it
// wraps hub.ErrUnauthenticated. Transports answer it with token_expired.
var ErrTokenExpired = hub.ErrTokenExpired

// The algorithms and the key types that verify them.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// minRSABits is the smallest RSA modulus accepted (NIST SP 800-57).
const minRSABits = 2048

// verified is what a valid token establishes: it is cached, and every
// identity made from the token shares it.
type verified struct {
	subject string
	expires time.Time
	grants  *Grants
	gen     uint64 // the key generation it was verified under (jwks.gen)
}

// verifier checks JWTs against the configured keys.
type verifier struct {
	parser *jwt.Parser
	algs   []string // accepted, in JWTAlgorithms order
	hmac   []byte   // nil: HS256 is not accepted
	pub    any      // the public key file's key; nil when none
	pubAlg string   // the algorithm pub verifies
	jwks   *jwks    // nil when no JWKS is configured
	claim  string
	leeway time.Duration
	aud    string
	iss    string
	now    func() time.Time
	cache  *cache       // nil: no cache
	fresh  atomic.Int64 // verifications from scratch, for tests
}

// newVerifier builds the verifier for cfg, or returns nil when no JWT key
// is configured. Errors name the key. jwks, when not nil, is the key set
// already built from auth.jwt.jwks_url.
func newVerifier(cfg config.JWT, ks *jwks, now func() time.Time) (*verifier, error) {
	v := &verifier{jwks: ks, claim: cfg.Claim, leeway: cfg.Leeway, aud: cfg.Audience, iss: cfg.Issuer, now: now}
	secret, err := LoadHMACSecret(cfg)
	if err != nil {
		return nil, err
	}
	v.hmac = secret
	var have []string
	if v.hmac != nil {
		have = append(have, algHS256)
	}
	if cfg.PublicKeyFile != "" {
		v.pub, v.pubAlg, err = loadPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.public_key_file: %w", err)
		}
		have = append(have, v.pubAlg)
	}
	if ks != nil {
		have = append(have, algRS256, algES256, algEdDSA)
	}
	if len(have) == 0 {
		return nil, nil
	}
	for _, alg := range config.JWTAlgorithms {
		if slices.Contains(have, alg) && (len(cfg.Algorithms) == 0 || slices.Contains(cfg.Algorithms, alg)) {
			v.algs = append(v.algs, alg)
		}
	}
	if len(v.algs) == 0 {
		return nil, fmt.Errorf("auth.jwt.algorithms: %s leaves no algorithm the configured keys verify (%s)",
			strings.Join(cfg.Algorithms, ", "), strings.Join(have, ", "))
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	if cfg.CacheSize > 0 {
		v.cache = newCache(cfg.CacheSize)
	}
	return v, nil
}

// LoadHMACSecret returns the configured HS256 secret (from
// auth.jwt.hmac_secret or the file auth.jwt.hmac_secret_file), or nil when
// none is configured.
func LoadHMACSecret(cfg config.JWT) ([]byte, error) {
	switch {
	case cfg.HMACSecret != "":
		return []byte(cfg.HMACSecret), nil
	case cfg.HMACSecretFile != "":
		b, err := os.ReadFile(cfg.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.hmac_secret_file: %w", err)
		}
		b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
		if len(b) < config.MinHMACSecretBytes {
			return nil, fmt.Errorf("auth.jwt.hmac_secret_file: %s holds %d bytes; an HS256 secret must be at least %d (generate one with: openssl rand -base64 32)",
				cfg.HMACSecretFile, len(b), config.MinHMACSecretBytes)
		}
		return b, nil
	}
	return nil, nil
}

// loadPublicKey reads a PEM public key (or certificate) and returns it with
// the one algorithm it verifies.
func loadPublicKey(path string) (any, string, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, algRS256, checkKey(k, algRS256)
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
		return k, algES256, checkKey(k, algES256)
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		return k, algEdDSA, nil
	}
	return nil, "", fmt.Errorf("%s holds no RSA, EC or Ed25519 public key in PEM form", path)
}

// checkKey reports whether key is of the type and strength alg needs.
func checkKey(key any, alg string) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != algRS256 {
			break
		}
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("the RSA key has %d bits; at least %d are needed", k.N.BitLen(), minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if alg != algES256 {
			break
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("the EC key is on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		if alg == algEdDSA {
			return nil
		}
	}
	return fmt.Errorf("a %s key does not verify %s tokens", keyType(key), alg)
}

func keyType(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC"
	case ed25519.PublicKey:
		return "Ed25519"
	case []byte:
		return "HMAC"
	}
	return fmt.Sprintf("%T", key)
}

// keyError is a refusal found while choosing the key: its message is
// written for the caller.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

// keyfunc chooses the key that verifies t, by t's algorithm (already one
// of v.algs, the parser checks) and key id.
func (v *verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == algHS256 {
			return v.hmac, nil // never a public key, whatever the token says
		}
		kid, hasKid := t.Header["kid"].(string)
		switch {
		case v.jwks != nil && (hasKid || v.pub == nil):
			return v.jwks.key(ctx, t, kid, alg)
		case v.pub != nil:
			if alg != v.pubAlg {
				return nil, &keyError{fmt.Sprintf("the token is signed with %s, but the public key (auth.jwt.public_key_file) verifies %s", alg, v.pubAlg)}
			}
			return v.pub, nil
		}
		return nil, &keyError{"no key verifies " + alg}
	}
}

// tokenClaims are the claims herald reads: the registered ones and the
// grants claim, whose name is configured.
type tokenClaims struct {
	jwt.RegisteredClaims
	claim  string          // the grants claim's name
	grants json.RawMessage // its value
}

// UnmarshalJSON reads the registered claims and the grants claim.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	c.grants = all[c.claim]
	return nil
}

// verify checks token, through the cache when there is one.
func (v *verifier) verify(ctx context.Context, token string) (*verified, error) {
	if v.cache == nil {
		return v.verifyFresh(ctx, token, v.gen())
	}
	now, gen := v.now(), v.gen()
	return v.cache.do(ctx, token, now, now.Add(-v.leeway), gen, func() (*verified, error) {
		// Without the first caller's cancellation: others may wait on
		// the result. Only an unknown-kid JWKS fetch waits, boundedly.
		return v.verifyFresh(context.WithoutCancel(ctx), token, gen)
	})
}

// gen is the current key generation: it changes when a JWKS refresh drops
// or changes a key, which invalidates cached verifications.
func (v *verifier) gen() uint64 {
	if v.jwks == nil {
		return 0
	}
	return v.jwks.store.gen.Load()
}

// verifyFresh checks token's signature and claims from scratch.
func (v *verifier) verifyFresh(ctx context.Context, token string, gen uint64) (*verified, error) {
	v.fresh.Add(1)
	c := &tokenClaims{claim: v.claim}
	t, err := v.parser.ParseWithClaims(token, c, v.keyfunc(ctx))
	if err != nil {
		return nil, v.explain(t, c, err)
	}
	if c.ExpiresAt == nil { // WithExpirationRequired makes this unreachable
		return nil, fmt.Errorf("%w: the token has no exp claim; herald requires one", hub.ErrUnauthenticated)
	}
	g, err := parseGrantsClaim(c.grants)
	if err != nil {
		return nil, fmt.Errorf("%w: the token's %q claim: %v", hub.ErrUnauthenticated, v.claim, err)
	}
	return &verified{subject: c.Subject, expires: c.ExpiresAt.Time, grants: g, gen: gen}, nil
}

// explain turns a parser error into a refusal the caller can act on. It
// reports what the token says and what herald expects, never a key.
func (v *verifier) explain(t *jwt.Token, c *tokenClaims, err error) error {
	var ke *keyError
	alg := ""
	if t != nil && t.Method != nil {
		alg = t.Method.Alg()
	} else if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	var msg string
	switch {
	case errors.As(err, &ke):
		msg = ke.msg
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "malformed token (a JWT is three base64url parts separated by dots): " + err.Error()
	case alg != "" && !slices.Contains(v.algs, alg):
		msg = fmt.Sprintf("algorithm %q is not accepted; this server verifies %s", alg, strings.Join(v.algs, ", "))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "the token names no algorithm herald knows (alg)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		msg = "the token's signature is invalid (signed with another key, or changed after signing)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && c.ExpiresAt == nil:
		msg = "the token has no exp claim; herald requires one"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.aud != "" && len(c.Audience) == 0:
		msg = fmt.Sprintf("the token has no aud claim; this server requires %q (auth.jwt.audience)", v.aud)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.iss != "" && c.Issuer == "":
		msg = fmt.Sprintf("the token has no iss claim; this server requires %q (auth.jwt.issuer)", v.iss)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w at %s (now %s, leeway %v); get a new token", ErrTokenExpired,
			c.ExpiresAt.UTC().Format(time.RFC3339), v.now().UTC().Format(time.RFC3339), v.leeway)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = fmt.Sprintf("the token is not valid before %s (nbf; now %s, leeway %v)",
			c.NotBefore.UTC().Format(time.RFC3339), v.now().UTC().Format(time.RFC3339), v.leeway)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = fmt.Sprintf("the token's audience %q does not include %q (auth.jwt.audience)", []string(c.Audience), v.aud)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = fmt.Sprintf("the token's issuer is %q, not %q (auth.jwt.issuer)", c.Issuer, v.iss)
	default:
		msg = "token refused: " + err.Error()
	}
	return fmt.Errorf("%w: %s", hub.ErrUnauthenticated, msg)
}
