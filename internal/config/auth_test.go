package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

const testHash = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestLoadAuth(t *testing.T) {
	p := writeFile(t, `
http:
  addr: 0.0.0.0:8080
auth:
  api_keys:
    - name: ci
      hash: `+testHash+`
      grants:
        publish: ["chat.>", "orders.*"]
        admin: true
  jwt:
    hmac_secret_file: /run/secrets/herald
    audience: herald
    issuer: https://id.example.com
    leeway: 2s
    algorithms: [HS256]
  cookie_name: __Host-herald
namespaces:
  public:
    anonymous: [subscribe, history]
`)
	c, err := config.Load(p, []string{"HERALD_AUTH_JWT_CACHE_SIZE=50"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default().Auth
	want.APIKeys = []config.APIKey{{Name: "ci", Hash: testHash, Grants: config.Grants{Publish: []string{"chat.>", "orders.*"}, Admin: true}}}
	want.JWT.HMACSecretFile = "/run/secrets/herald"
	want.JWT.Audience = "herald"
	want.JWT.Issuer = "https://id.example.com"
	want.JWT.Leeway = 2 * time.Second
	want.JWT.Algorithms = []string{"HS256"}
	want.JWT.CacheSize = 50
	want.CookieName = "__Host-herald"
	if !reflect.DeepEqual(c.Auth, want) {
		t.Errorf("auth =\n%+v\nwant\n%+v", c.Auth, want)
	}
	if !c.Auth.On() {
		t.Error("auth with keys is not on")
	}
	if got := c.Namespaces["public"].Anonymous; !reflect.DeepEqual(got, []string{"subscribe", "history"}) {
		t.Errorf("namespaces.public.anonymous = %q", got)
	}

	c, err = config.Load("", []string{"HERALD_AUTH_COOKIE_NAME=", "HERALD_AUTH_QUERY_PARAM="}, nil)
	if err != nil || c.Auth.CookieName != "" || c.Auth.QueryParam != "" {
		t.Errorf("cookie and query parameter off: %q %q, %v", c.Auth.CookieName, c.Auth.QueryParam, err)
	}
	c, err = config.Load("", []string{"HERALD_AUTH_JWT_ALGORITHMS=ES256,EdDSA", "HERALD_AUTH_JWT_JWKS_URL=https://id.example.com/jwks"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Auth.JWT.Algorithms, []string{"ES256", "EdDSA"}) || !c.Auth.On() {
		t.Errorf("from the environment: algorithms %q, on %v", c.Auth.JWT.Algorithms, c.Auth.On())
	}
}

// TestExposure checks that auth off is only allowed where nobody else can
// connect, or when insecure_open says so.
func TestExposure(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		ok   bool
	}{
		{"defaults (make run)", nil, true},
		{"localhost", []string{"HERALD_HTTP_ADDR=localhost:8080"}, true},
		{"ipv6 loopback", []string{"HERALD_HTTP_ADDR=[::1]:8080"}, true},
		{"other loopback", []string{"HERALD_HTTP_ADDR=127.0.0.2:8080"}, true},
		{"all interfaces", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080"}, false},
		{"empty host", []string{"HERALD_HTTP_ADDR=:8080"}, false},
		{"a name", []string{"HERALD_HTTP_ADDR=events.internal:8080"}, false},
		{"grpc exposed", []string{"HERALD_GRPC_ADDR=0.0.0.0:9090"}, false},
		{"grpc exposed but off", []string{"HERALD_GRPC_ADDR=0.0.0.0:9090", "HERALD_GRPC_ENABLED=false"}, true},
		{"insecure_open", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_INSECURE_OPEN=true"}, true},
		{"auth enabled", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_ENABLED=true"}, true},
		{"auth by a jwt key", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_JWT_HMAC_SECRET=" + strings.Repeat("s", 32)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load("", tt.env, nil)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "auth.insecure_open: true")) {
				t.Fatalf("err = %v, want one pointing to auth.insecure_open", err)
			}
		})
	}
}

func TestAuthErrorsNameTheKey(t *testing.T) {
	key := func(name, hash string) string {
		return "    - name: " + name + "\n      hash: " + hash + "\n"
	}
	tests := []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{name: "key without name", file: "auth:\n  api_keys:\n" + key(`""`, testHash), want: []string{"auth.api_keys[0].name"}},
		{name: "two keys one name", file: "auth:\n  api_keys:\n" + key("a", testHash) + key("a", strings.Replace(testHash, "0", "1", 1)), want: []string{"auth.api_keys[1].name", `"a"`}},
		{name: "same hash twice", file: "auth:\n  api_keys:\n" + key("a", testHash) + key("b", testHash), want: []string{"auth.api_keys[1].hash", `"a"`}},
		{name: "a key instead of its hash", file: "auth:\n  api_keys:\n" + key("a", "hk_abc"), want: []string{"auth.api_keys[0].hash", "herald key new"}},
		{name: "upper-case hash", file: "auth:\n  api_keys:\n" + key("a", strings.ToUpper(testHash)), want: []string{"auth.api_keys[0].hash"}},
		{name: "unknown grant", file: "auth:\n  api_keys:\n" + key("a", testHash) + "      grants:\n        publsh: [x]\n", want: []string{"publsh"}},
		{name: "short secret", env: []string{"HERALD_AUTH_JWT_HMAC_SECRET=short"}, want: []string{"auth.jwt.hmac_secret", "32"}},
		{name: "secret twice", file: "auth:\n  jwt:\n    hmac_secret: " + strings.Repeat("x", 32) + "\n    hmac_secret_file: /s\n", want: []string{"auth.jwt.hmac_secret", "not both"}},
		{name: "jwks over http", env: []string{"HERALD_AUTH_JWT_JWKS_URL=http://id.example.com/jwks"}, want: []string{"auth.jwt.jwks_url", "https"}},
		{name: "jwks not a url", env: []string{"HERALD_AUTH_JWT_JWKS_URL=id.example.com"}, want: []string{"auth.jwt.jwks_url"}},
		{name: "jwks ftp", env: []string{"HERALD_AUTH_JWT_JWKS_URL=ftp://id.example.com/jwks"}, want: []string{"auth.jwt.jwks_url", "https"}},
		{name: "jwks ca without jwks", env: []string{"HERALD_AUTH_JWT_JWKS_CA_FILE=/etc/ca.pem"}, want: []string{"auth.jwt.jwks_ca_file", "jwks_url"}},
		{name: "unknown algorithm", env: []string{"HERALD_AUTH_JWT_ALGORITHMS=HS256,none"}, want: []string{"auth.jwt.algorithms", `"none"`}},
		{name: "huge leeway", env: []string{"HERALD_AUTH_JWT_LEEWAY=1h"}, want: []string{"auth.jwt.leeway"}},
		{name: "negative leeway", env: []string{"HERALD_AUTH_JWT_LEEWAY=-1s"}, want: []string{"auth.jwt.leeway"}},
		{name: "fast jwks refresh", env: []string{"HERALD_AUTH_JWT_JWKS_REFRESH=1s"}, want: []string{"auth.jwt.jwks_refresh"}},
		{name: "no claim", env: []string{"HERALD_AUTH_JWT_CLAIM="}, want: []string{"auth.jwt.claim"}},
		{name: "negative cache", env: []string{"HERALD_AUTH_JWT_CACHE_SIZE=-1"}, want: []string{"auth.jwt.cache_size"}},
		{name: "bad cookie", env: []string{"HERALD_AUTH_COOKIE_NAME=a b"}, want: []string{"auth.cookie_name"}},
		{name: "bad query param", env: []string{"HERALD_AUTH_QUERY_PARAM=a&b"}, want: []string{"auth.query_param"}},
		{name: "anonymous admin", file: "namespaces:\n  chat:\n    anonymous: [admin]\n", want: []string{"namespaces.chat.anonymous", `"admin"`}},
		{name: "unknown auth key", file: "auth:\n  jwt:\n    secret: x\n", want: []string{"auth.jwt.secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			_, err := config.Load(path, tt.env, nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
