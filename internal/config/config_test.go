package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/event"
)

func TestDefaultValidates(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	got, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatalf("Load with nothing set: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("Load with nothing set = %+v\nwant Default() = %+v", got, c)
	}
}

// writeFile writes a YAML config and returns its path.
func writeFile(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	p := writeFile(t, `
http:
  addr: 0.0.0.0:9000
  cors_origins: [https://a.example, https://b.example]
  max_body_bytes: 1048576
sse:
  heartbeat: 5s
  retry: 1500ms
history:
  max_events: 500
limits:
  max_event_bytes: 4096
  max_queue_bytes: 65536
namespaces:
  chat:
    history:
      max_events: 10
      max_age: 1h
  prices:
    history:
      max_bytes: 1024
log:
  level: debug
  format: json
auth:
  insecure_open: true
`)
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.HTTP.Addr = "0.0.0.0:9000"
	want.HTTP.CORSOrigins = []string{"https://a.example", "https://b.example"}
	want.HTTP.MaxBodyBytes = 1 << 20
	want.SSE.Heartbeat = 5 * time.Second
	want.SSE.Retry = 1500 * time.Millisecond
	want.History.MaxEvents = 500
	want.Limits.MaxEventBytes, want.Limits.MaxQueueBytes = 4096, 65536
	want.Namespaces = map[string]config.Namespace{
		"chat":   {History: config.Retention{MaxEvents: 10, MaxAge: time.Hour}},
		"prices": {History: config.Retention{MaxBytes: 1024}},
	}
	want.Log = config.Log{Level: "debug", Format: "json"}
	want.Auth.InsecureOpen = true
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", c, want)
	}

	// Namespaces override only what they set, and only their own topics.
	def := config.Default().History
	for _, tt := range []struct {
		topic string
		want  event.Retention
	}{
		{"chat.room-1", event.Retention{MaxEvents: 10, MaxAge: time.Hour, MaxBytes: def.MaxBytes}},
		{"chat", event.Retention{MaxEvents: 10, MaxAge: time.Hour, MaxBytes: def.MaxBytes}},
		{"prices.BTC-USD", event.Retention{MaxEvents: 500, MaxAge: def.MaxAge, MaxBytes: 1024}},
		{"chatter.x", event.Retention{MaxEvents: 500, MaxAge: def.MaxAge, MaxBytes: def.MaxBytes}},
	} {
		if got := c.Retention(tt.topic); got != tt.want {
			t.Errorf("Retention(%s) = %+v, want %+v", tt.topic, got, tt.want)
		}
	}
}

func TestNamespacePolicy(t *testing.T) {
	p := writeFile(t, `
presence: false
namespaces:
  chat:
    presence: true
    client_publish: false
  feed:
    history:
      max_events: 5
`)
	c, err := config.Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		topic            string
		presence, public bool
	}{
		{"chat.room-1", true, false},
		{"feed.x", false, true},
		{"other", false, true},
	} {
		if got := c.PresenceOn(tt.topic); got != tt.presence {
			t.Errorf("PresenceOn(%s) = %v, want %v", tt.topic, got, tt.presence)
		}
		if got := c.ClientPublishOn(tt.topic); got != tt.public {
			t.Errorf("ClientPublishOn(%s) = %v, want %v", tt.topic, got, tt.public)
		}
	}
	if _, err := config.Load("", []string{"HERALD_GRPC_ADDR=nope"}, nil); err == nil || !strings.Contains(err.Error(), "grpc.addr") {
		t.Errorf("bad grpc.addr: err = %v, want one naming grpc.addr", err)
	}
	if _, err := config.Load("", []string{"HERALD_GRPC_ENABLED=false", "HERALD_GRPC_ADDR=nope"}, nil); err != nil {
		t.Errorf("grpc off with a bad addr: %v", err)
	}
	if _, err := config.Load("", []string{"HERALD_WS_IDLE_TIMEOUT=10s"}, nil); err == nil || !strings.Contains(err.Error(), "ws.idle_timeout") {
		t.Errorf("idle timeout under ping interval: err = %v", err)
	}
}

func TestLoadEnvAndFlags(t *testing.T) {
	p := writeFile(t, "http:\n  addr: 127.0.0.1:1001\nsse:\n  heartbeat: 3s\npull:\n  max_wait: 30s\n")
	env := []string{
		"PATH=/usr/bin",
		"HERALD_HTTP_ADDR=127.0.0.1:1002",
		"HERALD_HTTP_CORS_ORIGINS=a,b",
		"HERALD_SSE_HEARTBEAT=4s",
		"HERALD_LIMITS_MAX_QUEUE_BYTES=2097152",
		"HERALD_SERVER=http://elsewhere", // the CLI client's, not the server's
		"HERALD_REQUIRE_INTEGRATION=1",
		"HERALD_CONFIG=/nope.yaml",
	}
	c, err := config.Load(p, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:1002" {
		t.Errorf("env over file: http.addr = %s", c.HTTP.Addr)
	}
	if !reflect.DeepEqual(c.HTTP.CORSOrigins, []string{"a", "b"}) {
		t.Errorf("HERALD_HTTP_CORS_ORIGINS=a,b gave %q", c.HTTP.CORSOrigins)
	}
	if c.SSE.Heartbeat != 4*time.Second || c.Pull.MaxWait != 30*time.Second || c.Limits.MaxQueueBytes != 2<<20 {
		t.Errorf("heartbeat %v max_wait %v max_queue_bytes %d", c.SSE.Heartbeat, c.Pull.MaxWait, c.Limits.MaxQueueBytes)
	}

	c, err = config.Load(p, env, map[string]string{"http.addr": "127.0.0.1:1003", "sse.heartbeat": "7s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:1003" || c.SSE.Heartbeat != 7*time.Second {
		t.Errorf("flags over env: %s %v", c.HTTP.Addr, c.SSE.Heartbeat)
	}
	if c.Pull.MaxWait != 30*time.Second {
		t.Errorf("a flag for another key reset pull.max_wait to %v", c.Pull.MaxWait)
	}

	c, err = config.Load("", []string{"HERALD_HTTP_CORS_ORIGINS="}, nil)
	if err != nil || len(c.HTTP.CORSOrigins) != 0 {
		t.Errorf("empty HERALD_HTTP_CORS_ORIGINS: %q, %v", c.HTTP.CORSOrigins, err)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		want  []string // all must appear in the error
	}{
		{name: "unknown file key", file: "http:\n  adress: x\n", want: []string{"http", "adress"}},
		{name: "unknown top-level key", file: "engin: memory\n", want: []string{"engin"}},
		{name: "unknown env var", env: []string{"HERALD_HTTP_ADRESS=x"}, want: []string{"HERALD_HTTP_ADRESS"}},
		{name: "unknown flag key", flags: map[string]string{"sse.hartbeat": "1s"}, want: []string{"sse", "hartbeat"}},
		{name: "bad duration in env", env: []string{"HERALD_SSE_HEARTBEAT=soon"}, want: []string{"sse.heartbeat"}},
		{name: "bad duration in file", file: "pull:\n  max_wait: forever\n", want: []string{"pull.max_wait"}},
		{name: "zero duration", file: "sse:\n  write_timeout: 0s\n", want: []string{"sse.write_timeout"}},
		{name: "negative writers", file: "sse:\n  writers: -1\n", want: []string{"sse.writers"}},
		{name: "too many writers", env: []string{"HERALD_WS_WRITERS=100000"}, want: []string{"ws.writers", "1024"}},
		{name: "negative duration", flags: map[string]string{"shutdown.timeout": "-1s"}, want: []string{"shutdown.timeout"}},
		{name: "bad engine", env: []string{"HERALD_ENGINE=postgres"}, want: []string{"engine", "postgres"}},
		{name: "redis without url", env: []string{"HERALD_ENGINE=redis"}, want: []string{"redis.url", "HERALD_REDIS_URL"}},
		{name: "redis url scheme", env: []string{"HERALD_ENGINE=redis", "HERALD_REDIS_URL=tcp://x:1"}, want: []string{"redis.url", "tcp"}},
		{name: "bad number", env: []string{"HERALD_LIMITS_MAX_EVENT_BYTES=lots"}, want: []string{"limits.max_event_bytes"}},
		{name: "negative event bytes", file: "limits:\n  max_event_bytes: -1\n", want: []string{"limits.max_event_bytes"}},
		{name: "zero body bytes", file: "http:\n  max_body_bytes: 0\n", want: []string{"http.max_body_bytes"}},
		{name: "queue under event", file: "limits:\n  max_queue_bytes: 1024\n", want: []string{"limits.max_queue_bytes"}},
		{name: "negative history", file: "history:\n  max_events: -5\n", want: []string{"history.max_events"}},
		{name: "no history bound", file: "history:\n  max_events: 0\n  max_age: 0s\n  max_bytes: 0\n", want: []string{"history"}},
		{name: "negative namespace history", file: "namespaces:\n  chat:\n    history:\n      max_bytes: -1\n", want: []string{"namespaces.chat.history.max_bytes"}},
		{name: "namespace with a dot", file: "namespaces:\n  a.b:\n    history:\n      max_events: 1\n", want: []string{"namespaces"}},
		{name: "unknown namespace key", file: "namespaces:\n  chat:\n    retention: 1\n", want: []string{"chat", "retention"}},
		{name: "bad address", env: []string{"HERALD_HTTP_ADDR=localhost"}, want: []string{"http.addr"}},
		{name: "bad log level", file: "log:\n  level: loud\n", want: []string{"log.level"}},
		{name: "bad log format", file: "log:\n  format: xml\n", want: []string{"log.format"}},
		{name: "not yaml", file: "http: [\n", want: []string{"herald.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			_, err := config.Load(path, tt.env, tt.flags)
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
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateReportsEveryBadKey(t *testing.T) {
	c := config.Default()
	c.Engine = "x"
	c.SSE.Heartbeat = 0
	c.Limits.MaxEventBytes = -1
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, k := range []string{"config engine", "config sse.heartbeat", "config limits.max_event_bytes"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %q", err, k)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "info", "warn", "error", "INFO"} {
		if _, err := config.ParseLevel(s); err != nil {
			t.Errorf("ParseLevel(%q): %v", s, err)
		}
	}
	if _, err := config.ParseLevel("verbose"); err == nil {
		t.Errorf("ParseLevel(verbose) succeeded")
	}
}

// TestValidateNamesTheKey covers every check of Config.Validate: each bad
// value's error names its key in full, dotted as in the YAML file
// ("config history.max_events: ..."), as docs/configuration.md promises.
func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		key string
		set func(c *config.Config)
	}{
		{"http.addr", func(c *config.Config) { c.HTTP.Addr = "localhost" }},
		{"http.read_header_timeout", func(c *config.Config) { c.HTTP.ReadHeaderTimeout = 0 }},
		{"http.idle_timeout", func(c *config.Config) { c.HTTP.IdleTimeout = -time.Second }},
		{"http.max_body_bytes", func(c *config.Config) { c.HTTP.MaxBodyBytes = 0 }},
		{"sse.heartbeat", func(c *config.Config) { c.SSE.Heartbeat = 0 }},
		{"sse.retry", func(c *config.Config) { c.SSE.Retry = 0 }},
		{"sse.write_timeout", func(c *config.Config) { c.SSE.WriteTimeout = 0 }},
		{"sse.writers", func(c *config.Config) { c.SSE.Writers = -1 }},
		{"pull.max_wait", func(c *config.Config) { c.Pull.MaxWait = 0 }},
		{"shutdown.timeout", func(c *config.Config) { c.Shutdown.Timeout = 0 }},
		{"history.dedupe_window", func(c *config.Config) { c.History.DedupeWindow = 0 }},
		{"history.max_events", func(c *config.Config) { c.History.MaxEvents = -5 }},
		{"history.max_age", func(c *config.Config) { c.History.MaxAge = -time.Second }},
		{"history.max_bytes", func(c *config.Config) { c.History.MaxBytes = -1 }},
		{"history", func(c *config.Config) { c.History.MaxEvents, c.History.MaxAge, c.History.MaxBytes = 0, 0, 0 }},
		{"limits.max_event_bytes", func(c *config.Config) { c.Limits.MaxEventBytes = -1 }},
		{"limits.max_queue_bytes", func(c *config.Config) { c.Limits.MaxQueueBytes = c.Limits.MaxEventBytes - 1 }},
		{"ws.ping_interval", func(c *config.Config) { c.WS.PingInterval = 0 }},
		{"ws.idle_timeout", func(c *config.Config) { c.WS.IdleTimeout = c.WS.PingInterval }},
		{"ws.write_timeout", func(c *config.Config) { c.WS.WriteTimeout = 0 }},
		{"ws.writers", func(c *config.Config) { c.WS.Writers = config.MaxWriters + 1 }},
		{"ws.max_message_bytes", func(c *config.Config) { c.WS.MaxMessageBytes = 10 }},
		{"grpc.addr", func(c *config.Config) { c.GRPC.Enabled, c.GRPC.Addr = true, "nohostport" }},
		{"grpc.max_message_bytes", func(c *config.Config) { c.GRPC.MaxMessageBytes = 10 }},
		{"data_reserve_bytes", func(c *config.Config) { c.DataReserveBytes = -1 }},
		{"data_dir", func(c *config.Config) { c.Engine, c.DataDir = "durable", "" }},
		{"engine", func(c *config.Config) { c.Engine = "postgres" }},
		{"redis.url", func(c *config.Config) { c.Engine = "redis" }},
		{"redis.url", func(c *config.Config) { c.Engine, c.Redis.URL = "redis", "http://127.0.0.1:6379" }},
		{"redis.prefix", func(c *config.Config) { c.Redis.Prefix = "{x}" }},
		{"redis.presence_ttl", func(c *config.Config) { c.Redis.PresenceTTL = 500 * time.Millisecond }},
		{"namespaces.a.b", func(c *config.Config) {
			c.Namespaces = map[string]config.Namespace{"a.b": {}}
		}},
		{"namespaces.chat.history.max_events", func(c *config.Config) {
			c.Namespaces = map[string]config.Namespace{"chat": {History: config.Retention{MaxEvents: -1}}}
		}},
		{"namespaces.chat.history.max_age", func(c *config.Config) {
			c.Namespaces = map[string]config.Namespace{"chat": {History: config.Retention{MaxAge: -time.Second}}}
		}},
		{"namespaces.chat.history.max_bytes", func(c *config.Config) {
			c.Namespaces = map[string]config.Namespace{"chat": {History: config.Retention{MaxBytes: -1}}}
		}},
		{"log.level", func(c *config.Config) { c.Log.Level = "loud" }},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }},
		{"grpc.retry", func(c *config.Config) { c.GRPC.Retry = 0 }},
		{"namespaces.chat.anonymous", func(c *config.Config) {
			c.Namespaces = map[string]config.Namespace{"chat": {Anonymous: []string{"delete"}}}
		}},
		{"auth.api_keys[0].name", func(c *config.Config) { c.Auth.APIKeys = []config.APIKey{{Hash: keyHash("1")}} }},
		{"auth.api_keys[1].name", func(c *config.Config) {
			c.Auth.APIKeys = []config.APIKey{{Name: "a", Hash: keyHash("1")}, {Name: "a", Hash: keyHash("2")}}
		}},
		{"auth.api_keys[0].hash", func(c *config.Config) { c.Auth.APIKeys = []config.APIKey{{Name: "a", Hash: "secret"}} }},
		{"auth.api_keys[1].hash", func(c *config.Config) {
			c.Auth.APIKeys = []config.APIKey{{Name: "a", Hash: keyHash("1")}, {Name: "b", Hash: keyHash("1")}}
		}},
		{"auth.jwt.hmac_secret", func(c *config.Config) { c.Auth.JWT.HMACSecret = "short" }},
		{"auth.jwt.jwks_url", func(c *config.Config) { c.Auth.JWT.JWKSURL = "ftp://keys" }},
		{"auth.jwt.algorithms", func(c *config.Config) { c.Auth.JWT.Algorithms = []string{"none"} }},
		{"auth.jwt.leeway", func(c *config.Config) { c.Auth.JWT.Leeway = time.Hour }},
		{"auth.jwt.jwks_refresh", func(c *config.Config) { c.Auth.JWT.JWKSRefresh = time.Second }},
		{"auth.jwt.jwks_unknown_kid_refresh", func(c *config.Config) { c.Auth.JWT.JWKSUnknownKIDRefresh = 0 }},
		{"auth.jwt.claim", func(c *config.Config) { c.Auth.JWT.Claim = "" }},
		{"auth.jwt.cache_size", func(c *config.Config) { c.Auth.JWT.CacheSize = -1 }},
		{"auth.cookie_name", func(c *config.Config) { c.Auth.CookieName = "a b" }},
		{"auth.query_param", func(c *config.Config) { c.Auth.QueryParam = "a&b" }},
		{"auth", func(c *config.Config) { c.HTTP.Addr, c.Auth.InsecureOpen = "0.0.0.0:8080", false }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := config.Default()
			tt.set(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if want := "config " + tt.key + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name the key as %q", err, want)
			}
		})
	}
}

// keyHash returns a well-formed API key hash, distinct per seed.
func keyHash(seed string) string {
	return "sha256:" + strings.Repeat(seed, 64)[:64]
}

// TestUIServed checks when the dashboard is served: enabled, and auth on
// or a loopback listener or ui.insecure; the reason names the key.
func TestUIServed(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     []string
		served  bool
		because string
	}{
		{"default: loopback, auth off", nil, true, ""},
		{"turned off", []string{"HERALD_UI_ENABLED=false"}, false, "ui.enabled"},
		{"reachable, auth off", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_INSECURE_OPEN=true"}, false, "ui.insecure"},
		{"reachable, auth off, insecure", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_INSECURE_OPEN=true", "HERALD_UI_INSECURE=true"}, true, ""},
		{"reachable, auth on", []string{"HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_AUTH_ENABLED=true"}, true, ""},
		{"localhost", []string{"HERALD_HTTP_ADDR=localhost:8080"}, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load("", tt.env, nil)
			if err != nil {
				t.Fatal(err)
			}
			served, why := c.UIServed()
			if served != tt.served || !strings.Contains(why, tt.because) || (served && why != "") {
				t.Errorf("UIServed() = %v, %q; want %v naming %q", served, why, tt.served, tt.because)
			}
		})
	}
}
