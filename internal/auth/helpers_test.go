package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSecret is the HS256 secret of the tests.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testKeyPairs are generated once: RSA keys take a while.
type testKeyPairs struct {
	rsa, rsa2 *rsa.PrivateKey
	ec, ec2   *ecdsa.PrivateKey
	ed, ed2   ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keysVal  testKeyPairs
)

func testKeys(t testing.TB) *testKeyPairs {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		keysVal.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keysVal.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keysVal.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keysVal.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		_, keysVal.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		_, keysVal.ed2, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
	return &keysVal
}

// pemFile writes pub as a PEM public key file and returns its path and
// bytes.
func pemFile(t *testing.T, pub crypto.PublicKey) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// claims builds token claims: sub alice, exp in an hour, the given grants
// under "herald", then extra (a nil value deletes a claim).
func claims(grants map[string]any, extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "herald": grants}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
			continue
		}
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

// sign signs c with key by method, with kid in the header when not "".
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.Claims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned returns a token with alg none and no signature.
func unsigned(t testing.TB, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper replaces the payload of token with that of other, keeping
// token's header and signature.
func tamper(token, other string) string {
	a, b := strings.Split(token, "."), strings.Split(other, ".")
	return a[0] + "." + b[1] + "." + a[2]
}

// swapHeader returns token with the header of other.
func swapHeader(token, other string) string {
	a, b := strings.Split(token, "."), strings.Split(other, ".")
	return b[0] + "." + a[1] + "." + a[2]
}

// newTestAuth builds an Auth over cfg's auth and namespaces, closed at the
// end of the test.
func newTestAuth(t *testing.T, cfg config.Config) *Auth {
	t.Helper()
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// authConfig is the default config with auth settings changed by edit.
func authConfig(edit func(*config.Auth)) config.Config {
	c := config.Default()
	if edit != nil {
		edit(&c.Auth)
	}
	return c
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mustEC returns a public key on the named curve (P256 or P384).
func mustEC(t *testing.T, curve string) *ecdsa.PublicKey {
	t.Helper()
	c := elliptic.P256()
	if curve == "P384" {
		c = elliptic.P384()
	}
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// benchPEM is pemFile for benchmarks.
func benchPEM(b *testing.B, pub crypto.PublicKey) string {
	b.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}
