package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// API keys are for services and operators. A key is KeyPrefix and the
// base64url form of 32 random bytes (256 bits: nobody guesses one); the
// server's config holds only its SHA-256 ("sha256:" and 64 hex digits), so
// a leaked config leaks no key.
//
// Checking a key is hashing it and looking the hash up in a map. That a
// map lookup does not take constant time is harmless: its timing can only
// tell an attacker something about the hashes of the configured keys, and
// a hash does not lead back to a key (SHA-256 is preimage resistant); the
// attacker's input is hashed before any comparison, so it cannot be tuned
// byte by byte toward a key, which is what constant-time comparison
// defends against. A slow password hash (bcrypt, argon2) would buy nothing
// either: a 256-bit random key cannot be brute-forced, and it would make
// every request pay milliseconds. So no cache of verified keys is needed:
// the check is one SHA-256 of 46 bytes and one map lookup, without
// allocation (BenchmarkAPIKey).

// KeyPrefix starts every API key, so that a token is told from a JWT by
// its first bytes (and so that secret scanners can find leaked keys).
const KeyPrefix = "hk_"

// keyLen is the length of a key herald makes: the prefix and 43 base64url
// characters.
const keyLen = len(KeyPrefix) + 43

// HashPrefix starts every key hash in the config.
const HashPrefix = "sha256:"

// NewKey returns a new random API key and its hash, for the config.
func NewKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("read random bytes: %w", err)
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashKey(key), nil
}

// HashKey returns the hash of key as the config holds it.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(sum[:])
}

// apiKey is one configured key.
type apiKey struct {
	name   string
	hash   [sha256.Size]byte
	grants *Grants
	// last is the identity most recently made for this key. Identities
	// are immutable, so a request from the same transport and address (a
	// publisher on a keep-alive connection) gets it again instead of a new
	// allocation.
	last atomic.Pointer[hub.Identity]
}

// keyring finds API keys by their hash. It is built once and only read.
type keyring struct {
	byHash map[[sha256.Size]byte]*apiKey
}

// newKeyring compiles the configured keys; errors name the key.
func newKeyring(keys []config.APIKey) (*keyring, error) {
	kr := &keyring{byHash: make(map[[sha256.Size]byte]*apiKey, len(keys))}
	for i, k := range keys {
		where := fmt.Sprintf("auth.api_keys[%d] (%s)", i, k.Name)
		hexSum, ok := strings.CutPrefix(k.Hash, HashPrefix)
		var sum [sha256.Size]byte
		if n, err := hex.Decode(sum[:], []byte(hexSum)); !ok || err != nil || n != sha256.Size {
			return nil, fmt.Errorf("%s.hash: must be %s and 64 hex digits, as `herald key new` prints it", where, HashPrefix)
		}
		if _, dup := kr.byHash[sum]; dup {
			return nil, fmt.Errorf("%s.hash: two keys have the same hash", where)
		}
		g, err := CompileGrants(k.Grants)
		if err != nil {
			return nil, fmt.Errorf("%s.grants.%w", where, err)
		}
		kr.byHash[sum] = &apiKey{name: k.Name, hash: sum, grants: g}
	}
	return kr, nil
}

// maxKeyLen bounds what is hashed: longer tokens are refused unhashed.
const maxKeyLen = 128

// lookup returns the key token is, or an error a caller can act on. It
// does not allocate for a known key.
func (kr *keyring) lookup(token string) (*apiKey, error) {
	if len(token) > maxKeyLen {
		return nil, fmt.Errorf("%w: malformed API key (%d bytes; herald's keys are %d)", hub.ErrUnauthenticated, len(token), keyLen)
	}
	// Hash from a stack copy: []byte(token) of more than 32 bytes would
	// be a heap allocation per request.
	var buf [maxKeyLen]byte
	n := copy(buf[:], token)
	sum := sha256.Sum256(buf[:n])
	k, ok := kr.byHash[sum]
	// The map found the key by its hash; the comparison is repeated in
	// constant time so that the property does not hang on how a map
	// compares its keys (see the comment at the top of this file).
	if !ok || subtle.ConstantTimeCompare(sum[:], k.hash[:]) != 1 {
		return nil, fmt.Errorf("%w: unknown API key (revoked, or not in this server's auth.api_keys)", hub.ErrUnauthenticated)
	}
	return k, nil
}

// identity returns an identity for k as seen from c.
func (k *apiKey) identity(c hub.Credentials) *hub.Identity {
	if id := k.last.Load(); id != nil && id.Transport == c.Transport && id.RemoteAddr == c.RemoteAddr {
		return id
	}
	id := &hub.Identity{Subject: k.name, Method: MethodAPIKey, Grants: k.grants, Transport: c.Transport, RemoteAddr: c.RemoteAddr}
	k.last.Store(id)
	return id
}
