package server_test

// Helpers of the authentication tests (auth_*_test.go): keys, tokens and
// clients of every transport that present credentials.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
)

// The JWT settings of the authentication tests.
const (
	testAudience = "herald"
	testIssuer   = "https://id.test"
)

// authSecret is the HS256 secret of the authentication tests.
var authSecret = []byte("auth-tests-0123456789abcdef-0123")

// newAPIKey returns a new API key and its config entry.
func newAPIKey(t *testing.T, name string, g config.Grants) (string, config.APIKey) {
	t.Helper()
	key, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return key, config.APIKey{Name: name, Hash: hash, Grants: g}
}

// grantsOn grants publish, subscribe, history and presence on patterns.
func grantsOn(patterns ...string) config.Grants {
	return config.Grants{Publish: patterns, Subscribe: patterns, History: patterns, Presence: patterns}
}

// userClaims are the claims of a token for sub, valid from now until exp,
// with grants g, for the tests' audience and issuer.
func userClaims(sub string, exp time.Time, g config.Grants) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": sub, "iat": time.Now().Unix(), "exp": exp.Unix(),
		"aud": testAudience, "iss": testIssuer, "herald": g,
	}
}

// with returns a copy of c with the given claims set (a nil value deletes
// the claim).
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// signJWT signs c with key by method, with kid in the header when not "".
func signJWT(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims, kid string) string {
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

// hs256 signs c with the tests' HMAC secret.
func hs256(t *testing.T, c jwt.Claims) string {
	t.Helper()
	return signJWT(t, jwt.SigningMethodHS256, authSecret, c, "")
}

// unsignedJWT returns c as a token with alg none and no signature.
func unsignedJWT(t *testing.T, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamperJWT returns token with its payload replaced by c, keeping its
// header and signature.
func tamperJWT(t *testing.T, token string, c jwt.MapClaims) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

// rsaPublicKeyFile writes key's public half as a PEM file and returns its
// path and contents.
func rsaPublicKeyFile(t *testing.T, key *rsa.PrivateKey) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	p := filepath.Join(t.TempDir(), "jwt-public.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// bearer is the header pair that presents token.
func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// grpcAuth returns ctx presenting token in gRPC metadata ("" presents none).
func grpcAuth(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// grpcReason returns herald's error code of a gRPC status (its ErrorInfo
// reason), or "".
func grpcReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// apiCode returns the error code of an API error body, or "".
func apiCode(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// wsClient is a WebSocket connection speaking herald's protocol (gobwas/ws
// on the client side).
type wsClient struct {
	t  *testing.T
	nc net.Conn
}

// wsUpgradeError is a refused WebSocket handshake.
type wsUpgradeError struct {
	status int
	body   []byte
}

func (e *wsUpgradeError) Error() string { return "upgrade refused: " + string(e.body) }

// dialWS opens /v1/ws?query with the given request header pairs. A refused
// handshake is returned as a *wsUpgradeError.
func (ts *testServer) dialWS(query string, hdr ...string) (*wsClient, error) {
	ts.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	var refused *wsUpgradeError
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(h),
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			// resp is the whole answer, head and body, on a connection
			// the server keeps open.
			refused = &wsUpgradeError{status: status}
			if res, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				refused.body, _ = io.ReadAll(res.Body)
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	u := "ws://" + ts.addr + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	nc, br, _, err := d.Dial(ctx, u)
	if err != nil {
		if refused != nil {
			return nil, refused
		}
		return nil, err
	}
	if br != nil { // frames that came with the handshake's answer
		nc = &bufferedConn{Conn: nc, r: io.MultiReader(br, nc)}
	}
	c := &wsClient{t: ts.t, nc: nc}
	ts.t.Cleanup(func() { nc.Close() })
	if m := c.read(); m["op"] != "welcome" {
		ts.t.Fatalf("first WebSocket message %v, want welcome", m)
	}
	return c, nil
}

// send writes one command.
func (c *wsClient) send(cmd string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(readTimeout))
	if err := wsutil.WriteClientText(c.nc, []byte(cmd)); err != nil {
		c.t.Fatalf("WebSocket write %s: %v", cmd, err)
	}
}

// next reads the next message, or returns the error that ended the
// connection (a wsutil.ClosedError for a close frame).
func (c *wsClient) next() (map[string]any, error) {
	c.nc.SetReadDeadline(time.Now().Add(readTimeout))
	b, err := wsutil.ReadServerText(c.nc)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("WebSocket message %s: %v", b, err)
	}
	return m, nil
}

// read reads the next message or fails the test.
func (c *wsClient) read() map[string]any {
	c.t.Helper()
	m, err := c.next()
	if err != nil {
		c.t.Fatalf("WebSocket read: %v", err)
	}
	return m
}

// reply sends cmd (which has id) and returns the message answering it,
// collecting the events that arrive on the way into events.
func (c *wsClient) reply(id float64, cmd string, events *[]map[string]any) map[string]any {
	c.t.Helper()
	c.send(cmd)
	for {
		m := c.read()
		if m["id"] == id {
			return m
		}
		if m["op"] == "event" && events != nil {
			*events = append(*events, m)
		}
	}
}

// bufferedConn is a connection whose reads come from r first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// wsCloseOf returns the close frame err carries.
func wsCloseOf(err error) (wsutil.ClosedError, bool) {
	var ce wsutil.ClosedError
	ok := errors.As(err, &ce)
	return ce, ok
}
