// Package config holds herald's configuration: one struct, its defaults in
// one place (Default), loading from a YAML file, HERALD_* environment
// variables and command-line flags (in rising precedence), and validation
// that names the bad key.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/heraldhq/herald/internal/event"
)

// Config is the whole server configuration. The koanf tags are the keys
// used in the YAML file; the environment variable of a key is HERALD_ and
// the key upper-cased with dots as underscores (http.addr: HERALD_HTTP_ADDR).
type Config struct {
	HTTP    HTTP   `koanf:"http"`
	Engine  string `koanf:"engine"`   // "memory", "durable" or "redis"
	DataDir string `koanf:"data_dir"` // the durable engine's directory
	// Redis locates the Redis that the redis engine keeps topics in.
	Redis Redis `koanf:"redis"`
	// DataReserveBytes is the free space the durable engine keeps on the
	// data directory's file system: below it, publishes fail with
	// storage_full (507) and nothing is written. 0 turns the check off.
	DataReserveBytes int64   `koanf:"data_reserve_bytes"`
	History          History `koanf:"history"`
	Limits           Limits  `koanf:"limits"`
	SSE              SSE     `koanf:"sse"`
	WS               WS      `koanf:"ws"`
	GRPC             GRPC    `koanf:"grpc"`
	// ProxyProtocol says which peers are proxies that send a PROXY
	// protocol header (limits.go).
	ProxyProtocol ProxyProtocol `koanf:"proxy_protocol"`
	Pull          Pull          `koanf:"pull"`
	Shutdown      Shutdown      `koanf:"shutdown"`
	Log           Log           `koanf:"log"`
	Auth          Auth          `koanf:"auth"`
	UI            UI            `koanf:"ui"`
	// Presence turns on presence (join/leave events and the presence
	// query) for topics whose namespace does not say otherwise.
	Presence bool `koanf:"presence"`
	// ClientPublish lets WebSocket and gRPC Connect clients publish to
	// topics whose namespace does not say otherwise.
	ClientPublish bool `koanf:"client_publish"`
	// Namespaces override settings for topics whose first dot-separated
	// segment is the map key ("chat" for "chat.room-1").
	Namespaces map[string]Namespace `koanf:"namespaces"`
	// Outbound configures the requests herald makes itself (sources.go).
	Outbound Outbound `koanf:"outbound"`
	// Sources are source pollers the operator declares (sources.go). A
	// list, as the API keys are.
	Sources []Source `koanf:"sources"`
	// Groups are consumer groups the operator declares (groups.go), a
	// list too.
	Groups []Group `koanf:"groups"`
	// Webhooks are outbound webhook subscriptions the operator declares
	// (webhooks.go), a list like sources.
	Webhooks []Webhook `koanf:"webhooks"`
}

// HTTP configures the HTTP listener.
type HTTP struct {
	Addr string `koanf:"addr"`
	// ReadHeaderTimeout bounds the time a client may take to send a
	// request's head (on the fast path, its head and body), counted from
	// its first byte, or from the connection's opening for the first
	// request: the slowloris defence.
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	// MaxHeaderBytes bounds a request's head (request line and headers);
	// over it the answer is 431.
	MaxHeaderBytes int           `koanf:"max_header_bytes"`
	IdleTimeout    time.Duration `koanf:"idle_timeout"`
	MaxBodyBytes   int64         `koanf:"max_body_bytes"` // batch publish body cap
	CORSOrigins    []string      `koanf:"cors_origins"`   // allowed Origin values; "*" allows any
	// FastPath serves single-event publishes without net/http (package
	// httpfast); off, net/http serves every request.
	FastPath bool `koanf:"fast_path"`
	// TrustedProxies lists the addresses (IPs or CIDR prefixes) of HTTP
	// reverse proxies whose ForwardedHeader herald believes for the
	// client's address of each request (not for the connection limits,
	// which count connections). Empty: no header is read.
	TrustedProxies []string `koanf:"trusted_proxies"`
	// ForwardedHeader is the header those proxies append the client to:
	// x-forwarded-for or forwarded (RFC 7239).
	ForwardedHeader string `koanf:"forwarded_header"`
}

// History is the default retention of every topic.
type History struct {
	MaxEvents    int           `koanf:"max_events"`
	MaxAge       time.Duration `koanf:"max_age"`
	MaxBytes     int64         `koanf:"max_bytes"`
	DedupeWindow time.Duration `koanf:"dedupe_window"` // how long idempotency keys are remembered
}

// Limits bound what one client can make the server hold and do
// (docs/security.md, "Limits"). Per-address limits apply to client
// addresses outside IPExempt; an IPv6 client is counted by its /64.
type Limits struct {
	MaxEventBytes int `koanf:"max_event_bytes"` // largest payload; a namespace may set its own
	MaxQueueBytes int `koanf:"max_queue_bytes"` // per push connection, before "slow consumer"
	// MaxConnections caps the node's open connections, HTTP and gRPC
	// together; 0 takes the process's open-file limit less a headroom
	// (limit.DefaultMaxConns).
	MaxConnections      int `koanf:"max_connections"`
	MaxConnectionsPerIP int `koanf:"max_connections_per_ip"` // 0: no cap
	// MaxConnectionsPerUser caps the push connections (SSE streams,
	// WebSockets, gRPC Subscribe and Connect streams) one user, a JWT's
	// subject, holds at once on a node; 0: no cap.
	MaxConnectionsPerUser int `koanf:"max_connections_per_user"`
	// NewConnectionsPerIP is the new connections a client address may
	// open per second on average, NewConnectionsPerIPBurst at once; 0: no
	// limit.
	NewConnectionsPerIP      float64 `koanf:"new_connections_per_ip"`
	NewConnectionsPerIPBurst int     `koanf:"new_connections_per_ip_burst"`
	// IPExempt lists the client addresses (IPs or CIDR prefixes) that the
	// per-address limits skip: this host, a reverse proxy.
	IPExempt []string `koanf:"ip_exempt"`
	// MaxSubscriptionsPerConnection caps the topics one connection (a
	// WebSocket, an SSE stream, a gRPC stream) follows at once.
	MaxSubscriptionsPerConnection int `koanf:"max_subscriptions_per_connection"`
	// Publish rates, in events per second (0: no limit), and bursts, in
	// events at once: per API key, per user (a JWT's subject), per
	// client address of anonymous callers, and per end-user connection
	// (WebSocket, gRPC Connect).
	PublishRatePerKey         float64 `koanf:"publish_rate_per_key"`
	PublishBurstPerKey        int     `koanf:"publish_burst_per_key"`
	PublishRatePerUser        float64 `koanf:"publish_rate_per_user"`
	PublishBurstPerUser       int     `koanf:"publish_burst_per_user"`
	PublishRatePerIP          float64 `koanf:"publish_rate_per_ip"`
	PublishBurstPerIP         int     `koanf:"publish_burst_per_ip"`
	PublishRatePerConnection  float64 `koanf:"publish_rate_per_connection"`
	PublishBurstPerConnection int     `koanf:"publish_burst_per_connection"`
}

// MaxWriters bounds sse.writers and ws.writers: a writer is a goroutine,
// and more of them than CPUs only queue for the CPUs.
const MaxWriters = 1024

// SSE configures the Server-Sent Events transport.
type SSE struct {
	Heartbeat    time.Duration `koanf:"heartbeat"`     // comment sent after this long without traffic
	Retry        time.Duration `koanf:"retry"`         // the retry: hint sent to browsers
	WriteTimeout time.Duration `koanf:"write_timeout"` // a write blocked this long ends the stream
	Writers      int           `koanf:"writers"`       // goroutines writing woken streams; 0: GOMAXPROCS-1, at least 1
}

// WS configures the WebSocket transport (GET /v1/ws).
type WS struct {
	PingInterval    time.Duration `koanf:"ping_interval"`     // a ping is sent after this long without traffic from the client
	IdleTimeout     time.Duration `koanf:"idle_timeout"`      // a client silent this long (no frame, no pong) is disconnected
	WriteTimeout    time.Duration `koanf:"write_timeout"`     // a write blocked this long ends the connection
	MaxMessageBytes int           `koanf:"max_message_bytes"` // largest client message, after decompression
	Compression     bool          `koanf:"compression"`       // negotiate permessage-deflate when the client offers it
	Writers         int           `koanf:"writers"`           // goroutines writing woken connections; 0: GOMAXPROCS-1, at least 1
}

// GRPC configures the gRPC listener.
type GRPC struct {
	Enabled         bool   `koanf:"enabled"`
	Addr            string `koanf:"addr"`
	MaxMessageBytes int    `koanf:"max_message_bytes"` // largest request message
	// Retry is the base of the resume hint (RetryInfo) of streams a drain
	// ends: each gets one to four times it.
	Retry time.Duration `koanf:"retry"`
}

// Pull configures the pull API and long polling.
type Pull struct {
	MaxWait time.Duration `koanf:"max_wait"` // longest wait= accepted
}

// UI configures the dashboard at /ui/ (package web).
type UI struct {
	// Enabled serves the dashboard. With auth on, its pages ask for an
	// operator's credential (the admin grant reads the topics API); with
	// auth off it is served on loopback addresses only, unless Insecure.
	Enabled bool `koanf:"enabled"`
	// Insecure serves the dashboard with auth off on an address other
	// machines can reach (auth.insecure_open): anyone there sees every
	// topic and may publish.
	Insecure bool `koanf:"insecure"`
}

// UIServed reports whether the dashboard is served, and when it is not,
// why, in words for the operator.
func (c *Config) UIServed() (bool, string) {
	switch {
	case !c.UI.Enabled:
		return false, "the dashboard is off (ui.enabled: false)"
	case c.Auth.On() || c.UI.Insecure:
		return true, ""
	}
	host, _, err := net.SplitHostPort(c.HTTP.Addr)
	if err == nil && loopbackHost(host) {
		return true, ""
	}
	return false, fmt.Sprintf("the dashboard is off: auth is off and http.addr %s is reachable from other machines, "+
		"so anyone there could use it; configure auth (its pages then ask for an API key or token with the admin grant), "+
		"or set ui.insecure: true to accept that", c.HTTP.Addr)
}

// Shutdown configures draining on SIGTERM.
type Shutdown struct {
	Timeout time.Duration `koanf:"timeout"` // how long in-flight work may take to finish
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level"`  // debug, info, warn, error
	Format string `koanf:"format"` // text or json
}

// Namespace overrides settings for one namespace.
type Namespace struct {
	History Retention `koanf:"history"`
	// Presence and ClientPublish override the top-level settings of the
	// same name; nil keeps them.
	Presence      *bool `koanf:"presence"`
	ClientPublish *bool `koanf:"client_publish"`
	// Anonymous lists what callers without credentials may do on the
	// namespace's topics when auth is on: any of subscribe, history,
	// presence, publish. Empty: nothing.
	Anonymous []string `koanf:"anonymous"`
	// MaxEventBytes overrides limits.max_event_bytes for the namespace's
	// topics (larger or smaller); 0 keeps it.
	MaxEventBytes int `koanf:"max_event_bytes"`
}

// Retention is a namespace's history bounds; a zero field keeps the
// default from history.
type Retention struct {
	MaxEvents int           `koanf:"max_events"`
	MaxAge    time.Duration `koanf:"max_age"`
	MaxBytes  int64         `koanf:"max_bytes"`
}

// namespaceKeys are the keys a namespace may set, below namespaces.NAME.
var namespaceKeys = []string{"history.max_events", "history.max_age", "history.max_bytes", "presence", "client_publish", "anonymous", "max_event_bytes"}

// AnonymousActions are the actions a namespace may open to anonymous
// callers (namespaces.NAME.anonymous).
var AnonymousActions = []string{"subscribe", "history", "presence", "publish"}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		HTTP: HTTP{
			Addr:              "127.0.0.1:8080",
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    64 << 10,
			IdleTimeout:       120 * time.Second,
			MaxBodyBytes:      16 << 20,
			FastPath:          true,
			TrustedProxies:    []string{},
			ForwardedHeader:   "x-forwarded-for",
		},
		Engine:           "memory",
		Redis:            Redis{Prefix: "herald", PresenceTTL: 60 * time.Second},
		DataReserveBytes: 256 << 20,
		History: History{
			MaxEvents:    event.DefaultRetention().MaxEvents,
			MaxAge:       event.DefaultRetention().MaxAge,
			MaxBytes:     event.DefaultRetention().MaxBytes,
			DedupeWindow: event.DefaultDedupeWindow,
		},
		Limits: Limits{
			MaxEventBytes:                 1 << 20,
			MaxQueueBytes:                 1 << 20,
			MaxConnections:                0, // the open-file limit less a headroom
			MaxConnectionsPerIP:           1000,
			NewConnectionsPerIP:           50,
			NewConnectionsPerIPBurst:      100,
			IPExempt:                      []string{"127.0.0.0/8", "::1/128"},
			MaxSubscriptionsPerConnection: 128,
			PublishRatePerKey:             0,
			PublishBurstPerKey:            1000,
			PublishRatePerUser:            100,
			PublishBurstPerUser:           200,
			PublishRatePerIP:              100,
			PublishBurstPerIP:             200,
			PublishRatePerConnection:      0,
			PublishBurstPerConnection:     200,
		},
		SSE: SSE{
			Heartbeat:    15 * time.Second,
			Retry:        2 * time.Second,
			WriteTimeout: 10 * time.Second,
		},
		WS: WS{
			PingInterval:    25 * time.Second,
			IdleTimeout:     60 * time.Second,
			WriteTimeout:    10 * time.Second,
			MaxMessageBytes: 1<<20 + 64<<10,
		},
		GRPC:          GRPC{Enabled: true, Addr: "127.0.0.1:9090", MaxMessageBytes: 16 << 20, Retry: 2 * time.Second},
		ProxyProtocol: ProxyProtocol{Trusted: []string{}, HeaderTimeout: 5 * time.Second},
		ClientPublish: true,
		Pull:          Pull{MaxWait: 120 * time.Second},
		Shutdown:      Shutdown{Timeout: 10 * time.Second},
		Log:           Log{Level: "info", Format: "text"},
		UI:            UI{Enabled: true},
		Auth: Auth{
			CookieName: "herald_token",
			QueryParam: "access_token",
			JWT: JWT{
				Leeway:                5 * time.Second,
				Claim:                 "herald",
				CacheSize:             10000,
				JWKSRefresh:           time.Hour,
				JWKSUnknownKIDRefresh: 5 * time.Minute,
			},
		},
	}
}

// Retention returns the history bounds for topic: its namespace's, where
// set, else the defaults.
func (c *Config) Retention(topic string) event.Retention {
	h := c.History
	if ns, ok := c.Namespaces[event.Namespace(topic)]; ok {
		if ns.History.MaxEvents != 0 {
			h.MaxEvents = ns.History.MaxEvents
		}
		if ns.History.MaxAge != 0 {
			h.MaxAge = ns.History.MaxAge
		}
		if ns.History.MaxBytes != 0 {
			h.MaxBytes = ns.History.MaxBytes
		}
	}
	return event.Retention{MaxEvents: h.MaxEvents, MaxAge: h.MaxAge, MaxBytes: h.MaxBytes}
}

// PresenceOn reports whether topic has presence: its namespace's setting,
// where set, else the top-level presence.
func (c *Config) PresenceOn(topic string) bool {
	if ns, ok := c.Namespaces[event.Namespace(topic)]; ok && ns.Presence != nil {
		return *ns.Presence
	}
	return c.Presence
}

// ClientPublishOn reports whether WebSocket and gRPC Connect clients may
// publish to topic: its namespace's setting, where set, else the top-level
// client_publish.
func (c *Config) ClientPublishOn(topic string) bool {
	if ns, ok := c.Namespaces[event.Namespace(topic)]; ok && ns.ClientPublish != nil {
		return *ns.ClientPublish
	}
	return c.ClientPublish
}

// Validate checks every value and names the first bad key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, a...)))
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr", "%q is not host:port (%v)", c.HTTP.Addr, err)
	}
	positiveDur := map[string]time.Duration{
		"http.read_header_timeout":      c.HTTP.ReadHeaderTimeout,
		"http.idle_timeout":             c.HTTP.IdleTimeout,
		"sse.heartbeat":                 c.SSE.Heartbeat,
		"sse.retry":                     c.SSE.Retry,
		"sse.write_timeout":             c.SSE.WriteTimeout,
		"grpc.retry":                    c.GRPC.Retry,
		"proxy_protocol.header_timeout": c.ProxyProtocol.HeaderTimeout,
		"pull.max_wait":                 c.Pull.MaxWait,
		"shutdown.timeout":              c.Shutdown.Timeout,
		"history.dedupe_window":         c.History.DedupeWindow,
		"ws.ping_interval":              c.WS.PingInterval,
		"ws.idle_timeout":               c.WS.IdleTimeout,
		"ws.write_timeout":              c.WS.WriteTimeout,
	}
	for _, k := range sortedKeys(positiveDur) {
		if positiveDur[k] <= 0 {
			bad(k, "must be a positive duration such as 15s, got %v", positiveDur[k])
		}
	}
	if c.HTTP.MaxBodyBytes <= 0 {
		bad("http.max_body_bytes", "must be positive, got %d", c.HTTP.MaxBodyBytes)
	}
	if c.Limits.MaxEventBytes <= 0 {
		bad("limits.max_event_bytes", "must be positive, got %d", c.Limits.MaxEventBytes)
	}
	if largest, key := c.largestEvent(); c.Limits.MaxQueueBytes < largest {
		bad("limits.max_queue_bytes", "must be at least %s (%d), got %d", key, largest, c.Limits.MaxQueueBytes)
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		bad("http.max_header_bytes", "must be at least 1024, got %d", c.HTTP.MaxHeaderBytes)
	}
	c.Limits.validate(bad)
	c.ProxyProtocol.validate(bad)
	for i, e := range c.HTTP.TrustedProxies {
		if _, err := ParsePrefix(e); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if h := c.HTTP.ForwardedHeader; h != "x-forwarded-for" && h != "forwarded" {
		bad("http.forwarded_header", "must be x-forwarded-for or forwarded, got %q", h)
	}
	if c.WS.IdleTimeout <= c.WS.PingInterval {
		bad("ws.idle_timeout", "must be longer than ws.ping_interval (%v), got %v", c.WS.PingInterval, c.WS.IdleTimeout)
	}
	writers := map[string]int{"sse.writers": c.SSE.Writers, "ws.writers": c.WS.Writers}
	for _, k := range sortedKeys(writers) {
		if v := writers[k]; v < 0 || v > MaxWriters {
			bad(k, "must be between 0 (one per CPU but one) and %d, got %d", MaxWriters, v)
		}
	}
	if c.WS.MaxMessageBytes < 1024 {
		bad("ws.max_message_bytes", "must be at least 1024, got %d", c.WS.MaxMessageBytes)
	}
	if c.GRPC.Enabled {
		if _, _, err := net.SplitHostPort(c.GRPC.Addr); err != nil {
			bad("grpc.addr", "%q is not host:port (%v); set grpc.enabled=false to turn gRPC off", c.GRPC.Addr, err)
		}
	}
	if c.GRPC.MaxMessageBytes < 1024 {
		bad("grpc.max_message_bytes", "must be at least 1024, got %d", c.GRPC.MaxMessageBytes)
	}
	if c.DataReserveBytes < 0 {
		bad("data_reserve_bytes", "must not be negative, got %d", c.DataReserveBytes)
	}
	switch c.Engine {
	case "memory":
	case "durable":
		if c.DataDir == "" {
			bad("data_dir", "the durable engine needs a data directory (--data-dir or HERALD_DATA_DIR)")
		}
	case "redis":
		if msg := c.Redis.check(); msg != "" {
			bad("redis.url", "%s", msg)
		}
	default:
		bad("engine", "unknown engine %q; available: memory, durable, redis", c.Engine)
	}
	if c.Redis.Prefix == "" || strings.ContainsAny(c.Redis.Prefix, "{}") {
		bad("redis.prefix", "must be non-empty and without braces, got %q", c.Redis.Prefix)
	}
	if c.Redis.PresenceTTL < time.Second {
		bad("redis.presence_ttl", "must be at least 1s (members are refreshed every third of it), got %v", c.Redis.PresenceTTL)
	}
	checkHistory := func(prefix string, h Retention, def bool) {
		if h.MaxEvents < 0 {
			bad(prefix+".max_events", "must not be negative (0: no count bound), got %d", h.MaxEvents)
		}
		if h.MaxAge < 0 {
			bad(prefix+".max_age", "must not be negative (0: no age bound), got %v", h.MaxAge)
		}
		if h.MaxBytes < 0 {
			bad(prefix+".max_bytes", "must not be negative (0: no size bound), got %d", h.MaxBytes)
		}
		if def && h.MaxEvents == 0 && h.MaxBytes == 0 && h.MaxAge == 0 {
			bad(prefix, "set at least one of %[1]s.max_events, %[1]s.max_age, %[1]s.max_bytes", prefix)
		}
	}
	checkHistory("history", Retention{MaxEvents: c.History.MaxEvents, MaxAge: c.History.MaxAge, MaxBytes: c.History.MaxBytes}, true)
	for _, name := range sortedKeys(c.Namespaces) {
		if err := event.ValidateTopic(name); err != nil || strings.Contains(name, ".") {
			bad("namespaces."+name, "a namespace is one topic segment without dots")
		}
		checkHistory("namespaces."+name+".history", c.Namespaces[name].History, false)
		if n := c.Namespaces[name].MaxEventBytes; n < 0 {
			bad("namespaces."+name+".max_event_bytes", "must not be negative (0 keeps limits.max_event_bytes), got %d", n)
		}
		for _, a := range c.Namespaces[name].Anonymous {
			if !slices.Contains(AnonymousActions, a) {
				bad("namespaces."+name+".anonymous", "unknown action %q; anonymous callers may be allowed %s", a, strings.Join(AnonymousActions, ", "))
			}
		}
	}
	c.Auth.validate(bad)
	c.validateSources(bad)
	c.validateGroups(bad)
	c.validateWebhooks(bad)
	c.checkExposure(bad)
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown level %q; use debug, info, warn or error", s)
	}
	return l, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnvPrefix starts every environment variable the server reads.
const EnvPrefix = "HERALD_"

// clientEnv are HERALD_* variables that belong to the CLI client and the
// test suite, not to the server; Load ignores them.
var clientEnv = []string{"HERALD_SERVER", "HERALD_REQUIRE_INTEGRATION", "HERALD_CONFIG"}

// Load builds a Config from the defaults, then the YAML file at path (if
// path is not empty), then environ (HERALD_* entries, as os.Environ gives
// them), then flags (key to value, as strings). Unknown keys and bad values
// are errors that name the key.
func Load(path string, environ []string, flags map[string]string) (Config, error) {
	k := koanf.New(".")
	def := Default()
	if err := k.Load(confmap.Provider(toMap(def), "."), nil); err != nil {
		return Config{}, fmt.Errorf("load defaults: %w", err)
	}
	known := make(map[string]string) // ENV form → key
	for _, key := range k.Keys() {
		known[strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return Config{}, fmt.Errorf("config file: %w", err)
		}
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := k.Merge(fk); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(clientEnv, name) {
			continue
		}
		key, ok := known[strings.TrimPrefix(name, EnvPrefix)]
		if !ok {
			return Config{}, fmt.Errorf("environment variable %s: no such setting (see herald serve --help)", name)
		}
		if err := k.Set(key, envValue(def, key, val)); err != nil {
			return Config{}, fmt.Errorf("environment variable %s: %w", name, err)
		}
	}
	for key, val := range flags {
		if err := k.Set(key, val); err != nil {
			return Config{}, fmt.Errorf("flag for %s: %w", key, err)
		}
	}
	if err := checkKeys(k.Keys(), known); err != nil {
		return Config{}, err
	}
	var c Config
	err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				durationNeedsUnit,
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
			ErrorUnused:      true,
			WeaklyTypedInput: true,
			Result:           &c,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// checkKeys reports the first key that is not a setting, by its full name.
func checkKeys(keys []string, known map[string]string) error {
	valid := make(map[string]bool, len(known))
	for _, k := range known {
		valid[k] = true
	}
	for _, key := range keys {
		if valid[key] {
			continue
		}
		if rest, ok := strings.CutPrefix(key, "namespaces."); ok {
			if _, sub, ok := strings.Cut(rest, "."); ok && slices.Contains(namespaceKeys, sub) {
				continue
			}
			return fmt.Errorf("config %s: unknown key; a namespace may set %s", key, strings.Join(namespaceKeys, ", "))
		}
		return fmt.Errorf("config %s: unknown key (docs/configuration.md lists every key)", key)
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// durationNeedsUnit refuses plain numbers for durations: "2" would
// otherwise mean two nanoseconds.
func durationNeedsUnit(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if from == durationType {
			return data, nil
		}
		return nil, fmt.Errorf("%v is a plain number; give a duration with a unit, such as 15s or 2m", data)
	}
	return data, nil
}

// listKeys are the keys whose value is a list of strings.
var listKeys = []string{"http.cors_origins", "auth.jwt.algorithms", "limits.ip_exempt", "proxy_protocol.trusted", "http.trusted_proxies", "outbound.allow_networks", "outbound.allow_hosts"}

// envValue turns an environment string into the type a key expects where
// the decoder would not: lists are comma-separated.
func envValue(def Config, key, val string) any {
	if slices.Contains(listKeys, key) {
		if val == "" {
			return []string{}
		}
		return strings.Split(val, ",")
	}
	return val
}

// toMap flattens a Config into a koanf key map, keeping leaf values typed.
func toMap(c Config) map[string]any {
	out := make(map[string]any)
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := f.Tag.Get("koanf")
			if prefix != "" {
				key = prefix + "." + key
			}
			fv := v.Field(i)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(key, fv)
			case f.Type.Kind() == reflect.Map:
				// maps (namespaces) have no defaults; they come from files
			default:
				out[key] = fv.Interface()
			}
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

// Redis configures the redis engine (docs/redis.md).
type Redis struct {
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS).
	// A Cluster's further seed addresses follow as ?addr=host:port
	// (repeated); with ?master_set=NAME the addresses are Sentinels'.
	URL string `koanf:"url"`
	// Prefix starts every key and channel name herald uses, so that several
	// deployments can share one Redis.
	Prefix string `koanf:"prefix"`
	// PresenceTTL is how long a client stays in a topic's presence after
	// its node last refreshed it (every third of it): the clients of a
	// node that dies without a word vanish that long after.
	PresenceTTL time.Duration `koanf:"presence_ttl"`
}

// check returns what is wrong with r for the redis engine, or "".
func (r Redis) check() string {
	if r.URL == "" {
		return "the redis engine needs a URL (--redis-url or HERALD_REDIS_URL), e.g. redis://127.0.0.1:6379"
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Sprintf("%q is not a URL: %v", r.URL, err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return fmt.Sprintf("scheme %q: use redis://, rediss:// (TLS) or unix://", u.Scheme)
	}
	return ""
}
