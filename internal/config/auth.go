package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Auth configures who may do what (package auth, docs/security.md). Auth is
// on when Enabled is set or any credential is configured (an API key, a
// JWT key); off, every caller may do everything, which herald allows only
// on loopback addresses unless InsecureOpen says otherwise.
type Auth struct {
	// Enabled turns auth on even with no credential configured: then only
	// what namespaces open to anonymous callers is allowed.
	Enabled bool `koanf:"enabled"`
	// InsecureOpen lets herald listen on a non-loopback address with auth
	// off. Without it, that configuration is refused.
	InsecureOpen bool `koanf:"insecure_open"`
	// APIKeys are the keys of services and operators (set in the file only).
	APIKeys []APIKey `koanf:"api_keys"`
	// JWT configures JSON Web Tokens for end users.
	JWT JWT `koanf:"jwt"`
	// CookieName is the cookie browsers may carry a token in; "" turns
	// cookies off.
	CookieName string `koanf:"cookie_name"`
	// QueryParam is the query parameter browsers may carry a token in
	// (EventSource and WebSocket cannot set headers); "" turns it off.
	QueryParam string `koanf:"query_param"`
}

// APIKey is one API key: its name (the identity's subject), the SHA-256 of
// the key (herald never stores the key itself) and what it grants.
type APIKey struct {
	Name   string `koanf:"name"`
	Hash   string `koanf:"hash"` // "sha256:" and 64 hex digits, as herald key new prints it
	Grants Grants `koanf:"grants"`
}

// Grants are what a credential allows: for each action, the topic patterns
// it may be taken on ("chat.room-1", "chat.*", "chat.>", ">"), and whether
// it may administer (the topics API). The same shape is an API key's
// grants in the config and a JWT's grants claim (docs/security.md).
type Grants struct {
	Publish   []string `koanf:"publish" json:"publish,omitempty"`
	Subscribe []string `koanf:"subscribe" json:"subscribe,omitempty"`
	History   []string `koanf:"history" json:"history,omitempty"`
	Presence  []string `koanf:"presence" json:"presence,omitempty"`
	Consume   []string `koanf:"consume" json:"consume,omitempty"`
	Admin     bool     `koanf:"admin" json:"admin,omitempty"`
}

// JWT configures the verification of JSON Web Tokens. Each key source pins
// its algorithms: the HMAC secret verifies HS256 only; a public key
// verifies the one algorithm of its type (RSA: RS256, EC P-256: ES256,
// Ed25519: EdDSA); JWKS keys likewise, by their type.
type JWT struct {
	HMACSecret     string `koanf:"hmac_secret"`      // HS256 secret, at least 32 bytes
	HMACSecretFile string `koanf:"hmac_secret_file"` // a file holding it (one trailing newline is ignored)
	PublicKeyFile  string `koanf:"public_key_file"`  // a PEM public key (RSA, EC P-256 or Ed25519)
	JWKSURL        string `koanf:"jwks_url"`         // an https URL of a JSON Web Key Set
	// JWKSCAFile is a PEM file of CA certificates trusted, besides the
	// system's, for the JWKS URL's TLS (a private identity provider).
	JWKSCAFile string `koanf:"jwks_ca_file"`
	// JWKSRefresh is how often the JWKS is fetched again.
	JWKSRefresh time.Duration `koanf:"jwks_refresh"`
	// JWKSUnknownKIDRefresh is the least time between two fetches caused
	// by tokens with a key id the JWKS does not have (a key rotation).
	JWKSUnknownKIDRefresh time.Duration `koanf:"jwks_unknown_kid_refresh"`
	// Algorithms, when set, narrows the accepted algorithms further.
	Algorithms []string      `koanf:"algorithms"`
	Audience   string        `koanf:"audience"` // required in aud when set
	Issuer     string        `koanf:"issuer"`   // required as iss when set
	Leeway     time.Duration `koanf:"leeway"`   // clock skew allowed on exp and nbf
	Claim      string        `koanf:"claim"`    // the claim holding the grants
	// CacheSize bounds the tokens whose verification is remembered until
	// they expire; 0 verifies every token from scratch.
	CacheSize int `koanf:"cache_size"`
}

// JWTAlgorithms are the algorithms herald verifies JWTs with.
var JWTAlgorithms = []string{"HS256", "RS256", "ES256", "EdDSA"}

// MaxLeeway bounds auth.jwt.leeway: a leeway is a lengthening of every
// token's life.
const MaxLeeway = 5 * time.Minute

// On reports whether auth is on: enabled, or some credential configured.
func (a *Auth) On() bool {
	return a.Enabled || len(a.APIKeys) > 0 || a.JWT.Configured()
}

// Configured reports whether any JWT key source is set.
func (j *JWT) Configured() bool {
	return j.HMACSecret != "" || j.HMACSecretFile != "" || j.PublicKeyFile != "" || j.JWKSURL != ""
}

var (
	keyHashRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	cookieNameRE = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+$`) // an RFC 7230 token
)

// MinHMACSecretBytes is the shortest HS256 secret accepted: as long as the
// hash output (RFC 7518 section 3.2).
const MinHMACSecretBytes = 32

// validate checks the auth section; the patterns in grants and the key
// files are checked when package auth builds its verifiers.
func (a *Auth) validate(bad func(key, format string, args ...any)) {
	names := map[string]bool{}
	hashes := map[string]string{}
	for i, k := range a.APIKeys {
		key := fmt.Sprintf("auth.api_keys[%d]", i)
		switch {
		case k.Name == "":
			bad(key+".name", "every API key needs a name (it is the caller's identity in logs)")
		case names[k.Name]:
			bad(key+".name", "%q names two API keys", k.Name)
		}
		names[k.Name] = true
		if !keyHashRE.MatchString(k.Hash) {
			bad(key+".hash", "must be sha256: and 64 lower-case hex digits, as `herald key new` prints it (never the key itself)")
		} else if other, dup := hashes[k.Hash]; dup {
			bad(key+".hash", "is also the hash of API key %q", other)
		}
		hashes[k.Hash] = k.Name
	}
	j := &a.JWT
	if j.HMACSecret != "" && j.HMACSecretFile != "" {
		bad("auth.jwt.hmac_secret", "set hmac_secret or hmac_secret_file, not both")
	}
	if j.HMACSecret != "" && len(j.HMACSecret) < MinHMACSecretBytes {
		bad("auth.jwt.hmac_secret", "is %d bytes; an HS256 secret must be at least %d (generate one with: openssl rand -base64 32)", len(j.HMACSecret), MinHMACSecretBytes)
	}
	if j.JWKSURL != "" {
		if err := checkJWKSURL(j.JWKSURL); err != nil {
			bad("auth.jwt.jwks_url", "%v", err)
		}
	}
	if j.JWKSCAFile != "" && j.JWKSURL == "" {
		bad("auth.jwt.jwks_ca_file", "is set without auth.jwt.jwks_url: it only applies to the key set's TLS")
	}
	for _, alg := range j.Algorithms {
		if !slices.Contains(JWTAlgorithms, alg) {
			bad("auth.jwt.algorithms", "unknown algorithm %q; herald verifies %s", alg, strings.Join(JWTAlgorithms, ", "))
		}
	}
	if j.Leeway < 0 || j.Leeway > MaxLeeway {
		bad("auth.jwt.leeway", "must be between 0s and %v, got %v", MaxLeeway, j.Leeway)
	}
	if j.JWKSRefresh < time.Minute {
		bad("auth.jwt.jwks_refresh", "must be at least 1m, got %v", j.JWKSRefresh)
	}
	if j.JWKSUnknownKIDRefresh < time.Second {
		bad("auth.jwt.jwks_unknown_kid_refresh", "must be at least 1s, got %v", j.JWKSUnknownKIDRefresh)
	}
	if j.Claim == "" {
		bad("auth.jwt.claim", "must name the claim holding the grants (default herald)")
	}
	if j.CacheSize < 0 {
		bad("auth.jwt.cache_size", "must not be negative (0 turns the cache off), got %d", j.CacheSize)
	}
	if a.CookieName != "" && !cookieNameRE.MatchString(a.CookieName) {
		bad("auth.cookie_name", "%q is not a cookie name (letters, digits and !#$%%&'*+-.^_`|~); empty turns cookies off", a.CookieName)
	}
	if strings.ContainsAny(a.QueryParam, " &=#?%+") {
		bad("auth.query_param", "%q is not a plain query parameter name; empty turns the query parameter off", a.QueryParam)
	}
}

// checkJWKSURL accepts https URLs, and http ones to a loopback host (a
// sidecar or a test): over plain http across a network, whoever sits on
// the path could hand herald their own keys and mint any token.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q has no host", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q is plain http to a non-loopback host; a JWKS must come over https (anyone on the path could swap the keys)", raw)
	default:
		return fmt.Errorf("%q: the scheme must be https", raw)
	}
}

// checkExposure refuses to serve without auth on an address that other
// machines can reach, unless auth.insecure_open says so.
func (c *Config) checkExposure(bad func(key, format string, args ...any)) {
	if c.Auth.On() || c.Auth.InsecureOpen {
		return
	}
	listeners := [][2]string{{"http.addr", c.HTTP.Addr}}
	if c.GRPC.Enabled {
		listeners = append(listeners, [2]string{"grpc.addr", c.GRPC.Addr})
	}
	for _, l := range listeners {
		host, _, err := net.SplitHostPort(l[1])
		if err != nil || loopbackHost(host) {
			continue // a bad address is reported on its own
		}
		bad("auth", "%s is %s, which other machines can reach, and auth is off: anyone could publish and read every topic. "+
			"Configure auth (API keys or JWT, docs/security.md), listen on 127.0.0.1, or set auth.insecure_open: true (herald serve --insecure-open, HERALD_AUTH_INSECURE_OPEN=true) to accept that",
			l[0], l[1])
	}
}

// loopbackHost reports whether host (from host:port) is only reachable
// from this machine: localhost or a loopback IP. An empty host and
// 0.0.0.0 mean every interface; other names may resolve anywhere.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
