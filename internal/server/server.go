// Package server wires herald together: it builds the engine, the hub and
// the transports from a config.Config, serves them on the HTTP listener
// (and gRPC on its own), and drains them in order on shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/api"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/engine/memory"
	redisengine "github.com/heraldhq/herald/internal/engine/redis"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/limit"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/source"
	"github.com/heraldhq/herald/internal/transport/grpcapi"
	"github.com/heraldhq/herald/internal/transport/httpfast"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/transport/rest"
	"github.com/heraldhq/herald/internal/transport/sse"
	"github.com/heraldhq/herald/internal/transport/ws"
	"github.com/heraldhq/herald/internal/webhook"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/web"
)

// Engine is a hub engine the server can close.
type Engine interface {
	hub.Engine
	io.Closer
}

// Server is one herald node. Several can run in one process.
type Server struct {
	cfg       config.Config
	log       *slog.Logger
	eng       Engine
	ownEngine bool              // close eng on Shutdown
	authn     hub.Authenticator // nil: from the config (package auth)
	gate      hub.Gate          // nil: from the config (package auth)
	auth      *auth.Auth        // the config's policy, when authn and gate come from it; closed on Shutdown

	hub     *hub.Hub
	sources *source.Manager // nil when the engine keeps no consumer state
	groups  *group.Manager  // nil when the engine keeps no consumer state
	// webhooks is nil when the engine keeps no consumer state; it is closed
	// before groups, whose members its dispatchers are.
	webhooks *webhook.Manager
	rest     *rest.Handler
	fast     *httpfast.Server // owns the listener; serves no request itself when http.fast_path is off
	linger   *netio.Lingerer  // lingering closes of HTTP connections (httpfast's handed-off ones, so WebSocket and SSE too)
	sse      *sse.Handler
	ws       *ws.Handler
	grpc     *grpcapi.Server // nil when grpc.enabled is off
	metrics  *metrics.Metrics
	http     *http.Server
	conns    *limit.Conns // the connection limits of both listeners

	ln       net.Listener
	ready    atomic.Bool
	serveCh  chan error // the result of http.Server.Serve
	grpcLn   net.Listener
	grpcCh   chan error // the result of grpcapi.Server.Serve
	stopOnce sync.Once
	stopErr  error

	newMu    sync.Mutex            // guards newConns
	newConns map[net.Conn]struct{} // accepted, no request read yet
}

// trackNew remembers connections that have not sent a request yet:
// http.Server.Shutdown waits up to 5 s for them (clients open spare
// connections), so the drain closes them instead.
func (s *Server) trackNew(c net.Conn, state http.ConnState) {
	s.newMu.Lock()
	defer s.newMu.Unlock()
	if state == http.StateNew {
		if s.newConns == nil {
			s.newConns = make(map[net.Conn]struct{})
		}
		s.newConns[c] = struct{}{}
		return
	}
	delete(s.newConns, c)
}

// closeNew closes the connections that never sent a request.
func (s *Server) closeNew() {
	s.newMu.Lock()
	defer s.newMu.Unlock()
	for c := range s.newConns {
		c.Close()
	}
	clear(s.newConns)
}

// Option adjusts a Server at construction.
type Option func(*Server)

// WithEngine makes the server use eng instead of building one from the
// config. The caller keeps ownership: Shutdown does not close it, so a test
// can restart a server over the same history.
func WithEngine(eng Engine) Option {
	return func(s *Server) { s.eng = eng }
}

// WithAccess makes the server establish callers' identities with authn
// and decide what they may do with gate, instead of the config's auth
// section (tests use it to watch the seam).
func WithAccess(authn hub.Authenticator, gate hub.Gate) Option {
	return func(s *Server) { s.authn, s.gate = authn, gate }
}

// New builds a server from cfg. It does not listen yet; see Start.
func New(cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), linger: netio.NewLingerer(netio.LingerOptions{})}
	for _, o := range opts {
		o(s)
	}
	if s.eng == nil {
		switch cfg.Engine {
		case "memory":
			s.eng = memory.New(memory.Options{Retention: cfg.Retention, DedupeWindow: cfg.History.DedupeWindow})
		case "durable":
			eng, err := durable.Open(cfg.DataDir, durable.Options{
				Retention:    cfg.Retention,
				DedupeWindow: cfg.History.DedupeWindow,
				ReserveBytes: cfg.DataReserveBytes,
			})
			if err != nil {
				return nil, fmt.Errorf("engine durable: %w", err)
			}
			s.eng = eng
		case "redis":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			eng, err := redisengine.New(ctx, redisengine.Options{
				URL:          cfg.Redis.URL,
				Prefix:       cfg.Redis.Prefix,
				PresenceTTL:  cfg.Redis.PresenceTTL,
				Retention:    cfg.Retention,
				DedupeWindow: cfg.History.DedupeWindow,
				Log:          log,
			})
			cancel()
			if err != nil {
				return nil, fmt.Errorf("engine redis: %w", err)
			}
			s.eng = eng
		default:
			return nil, fmt.Errorf("config engine: unknown engine %q", cfg.Engine)
		}
		s.ownEngine = true
	}
	if s.authn == nil && s.gate == nil {
		a, err := auth.New(cfg, log)
		if err != nil {
			return s.fail(err)
		}
		s.auth, s.authn, s.gate = a, a.Authenticator(), a.Gate()
	}
	s.conns = limit.NewConns(s.connLimits())
	tokens := wire.TokenSources{
		QueryParam:  cfg.Auth.QueryParam,
		Cookie:      cfg.Auth.CookieName,
		AllowOrigin: s.cookieOrigin,
	}
	s.hub = hub.New(s.eng, hub.Options{
		Authenticator:         s.authn,
		Gate:                  s.gate,
		MaxEventBytes:         cfg.Limits.MaxEventBytes,
		EventLimit:            s.cfg.EventLimit(),
		MaxQueueBytes:         cfg.Limits.MaxQueueBytes,
		MaxSubscriptions:      cfg.Limits.MaxSubscriptionsPerConnection,
		MaxConnectionsPerUser: cfg.Limits.MaxConnectionsPerUser,
		PublishLimiter:        s.publishLimiter(),
		Observer:              s.metrics.HubObserver(),
		Presence:              s.cfg.PresenceOn,
		ClientPublish:         s.cfg.ClientPublishOn,
	})
	if err := s.startSources(); err != nil {
		return s.fail(err)
	}
	if err := s.startGroups(); err != nil {
		return s.fail(err)
	}
	if err := s.startWebhooks(); err != nil {
		return s.fail(err)
	}
	// The transports let through the largest event any namespace takes;
	// the hub holds each topic to its own.
	s.rest = rest.New(s.hub, rest.Options{
		MaxEventBytes: cfg.LargestEventBytes(),
		MaxBodyBytes:  cfg.HTTP.MaxBodyBytes,
		MaxWait:       cfg.Pull.MaxWait,
		Tokens:        tokens,
		Sources:       s.sources,
		Groups:        s.groups,
		Webhooks:      s.webhooks,
	})
	sseConns := s.metrics.Connections("sse")
	s.sse = sse.New(s.hub, sse.Options{
		Heartbeat:    cfg.SSE.Heartbeat,
		Retry:        cfg.SSE.Retry,
		WriteTimeout: cfg.SSE.WriteTimeout,
		Writers:      cfg.SSE.Writers,
		AllowOrigin:  s.allowOrigin,
		Tokens:       tokens,
		OnConn:       func(d int) { sseConns.Add(float64(d)) },
		Log:          log,
	})
	wsConns := s.metrics.Connections("ws")
	s.ws = ws.New(s.hub, ws.Options{
		PingInterval:    cfg.WS.PingInterval,
		IdleTimeout:     cfg.WS.IdleTimeout,
		WriteTimeout:    cfg.WS.WriteTimeout,
		Writers:         cfg.WS.Writers,
		MaxMessageBytes: cfg.WS.MaxMessageBytes,
		MaxTopics:       cfg.Limits.MaxSubscriptionsPerConnection,
		Compression:     cfg.WS.Compression,
		AllowOrigin:     s.allowOrigin,
		Tokens:          tokens,
		OnConn:          func(d int) { wsConns.Add(float64(d)) },
		Groups:          s.groups,
		MaxWait:         cfg.Pull.MaxWait,
		Log:             log,
	})
	if cfg.GRPC.Enabled {
		grpcConns := s.metrics.Connections("grpc")
		g, err := grpcapi.New(s.hub, grpcapi.Options{
			MaxEventBytes:   cfg.LargestEventBytes(),
			MaxMessageBytes: cfg.GRPC.MaxMessageBytes,
			MaxQueueBytes:   cfg.Limits.MaxQueueBytes,
			MaxWait:         cfg.Pull.MaxWait,
			Retry:           cfg.GRPC.Retry,
			// The same bound as an HTTP request's head (slowloris).
			HandshakeTimeout: cfg.HTTP.ReadHeaderTimeout,
			OnConn:           func(d int) { grpcConns.Add(float64(d)) },
			Groups:           s.groups,
			Log:              log,
		})
		if err != nil {
			return s.fail(fmt.Errorf("grpc: %w", err))
		}
		s.grpc = g
	}
	s.http = &http.Server{
		ConnState:         s.trackNew,
		ConnContext:       httpfast.ConnContext,
		Handler:           httpfast.Guard(s.forwarded(s.routes())),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		// httpfast's screen answers heads over http.max_header_bytes (431, in
		// the API's form); net/http's own limit, which answers in plain
		// text, stays out of its way.
		MaxHeaderBytes: cfg.HTTP.MaxHeaderBytes + 16<<10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// startSources starts the source pollers the engine keeps and declares
// those of the config.
func (s *Server) startSources() error {
	m, err := source.New(context.Background(), s.hub, source.Options{
		Guard:     s.cfg.Outbound.Guard(),
		UserAgent: "herald-source",
		Observer:  s.metrics.SourceObserver(),
		Log:       s.log,
	})
	if errors.Is(err, source.ErrUnsupported) {
		s.log.Info("source pollers are off", "reason", err)
		return nil
	}
	if err != nil {
		return err
	}
	for i := range s.cfg.Sources {
		if _, _, err := m.Put(context.Background(), s.cfg.Sources[i].Config()); err != nil {
			m.Close()
			return fmt.Errorf("config sources[%d] (%s): %w", i, s.cfg.Sources[i].Name, err)
		}
	}
	s.sources = m
	return nil
}

// startGroups loads the consumer groups the engine keeps and declares
// those of the config.
func (s *Server) startGroups() error {
	m, err := group.New(context.Background(), s.hub, group.Options{Observer: s.metrics.GroupObserver(), Log: s.log})
	if errors.Is(err, group.ErrUnsupported) {
		s.log.Info("consumer groups are off", "reason", err)
		return nil
	}
	if err != nil {
		return err
	}
	for i := range s.cfg.Groups {
		if _, _, err := m.Declare(context.Background(), s.cfg.Groups[i].Config()); err != nil {
			m.Close()
			return fmt.Errorf("config groups[%d] (%s): %w", i, s.cfg.Groups[i].Name, err)
		}
	}
	s.groups = m
	s.metrics.WatchGroups(m)
	return nil
}

// Groups returns the server's consumer groups, nil when the engine keeps
// no consumer state.
func (s *Server) Groups() *group.Manager { return s.groups }

// startWebhooks starts the webhook subscriptions the engine keeps, as
// members of the consumer groups, and declares those of the config.
func (s *Server) startWebhooks() error {
	if s.groups == nil {
		return nil // no consumer state: startGroups said so
	}
	m, err := webhook.New(context.Background(), s.hub, s.groups, webhook.Options{
		Guard:    s.cfg.Outbound.Guard(),
		Observer: s.metrics.WebhookObserver(),
		Log:      s.log,
	})
	if err != nil {
		return err
	}
	for i := range s.cfg.Webhooks {
		w := &s.cfg.Webhooks[i]
		key := fmt.Sprintf("config webhooks[%d] (%s)", i, w.Name)
		in, _, err := m.Put(context.Background(), webhookConfig(w))
		if err == nil && in.GeneratedSecret != "" {
			s.log.Warn("a webhook declared without secrets got a generated one, which is shown nowhere: set webhooks[].secrets, or PUT a secret over the API",
				"webhook", w.Name)
		}
		if err != nil {
			m.Close()
			var fe *webhook.FieldError
			if errors.As(err, &fe) {
				return fmt.Errorf("%s.%s: %s", key, fe.Field, fe.Msg)
			}
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	s.webhooks = m
	return nil
}

// webhookConfig returns a declared subscription's settings; unset
// ordered, enabled and retry_jitter take their defaults.
func webhookConfig(w *config.Webhook) webhook.Config {
	c := webhook.Config{
		Name: w.Name, URL: w.URL, Topics: w.Topics, Types: w.Types, Secrets: w.Secrets, Start: w.Start,
		Ordered: true, Concurrency: w.Concurrency, RateLimit: w.RateLimit, Enabled: true, Timeout: w.Timeout,
		ConnectTimeout: w.ConnectTimeout, Retry: w.Retry, Jitter: webhook.DefaultJitter, DisableAfter: w.DisableAfter,
	}
	if w.Ordered != nil {
		c.Ordered = *w.Ordered
	}
	if w.Enabled != nil {
		c.Enabled = *w.Enabled
	}
	if w.Jitter != nil {
		c.Jitter = *w.Jitter
	}
	return c
}

// fail releases what New built before err, and returns err.
func (s *Server) fail(err error) (*Server, error) {
	if s.sources != nil {
		s.sources.Close()
	}
	if s.webhooks != nil {
		s.webhooks.Close()
	}
	if s.groups != nil {
		s.groups.Close()
	}
	if s.auth != nil {
		s.auth.Close()
	}
	if s.ownEngine {
		s.eng.Close()
	}
	return nil, err
}

// routes builds the HTTP handler tree.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.rest.Register(mux)
	mux.Handle("/v1/sse", s.sse)
	mux.Handle("/v1/ws", s.ws)
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(api.OpenAPI)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.browserRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteErrorCode(w, reason.NotFound,
			fmt.Sprintf("no such path %s; the API is described at /v1/openapi.json", r.URL.Path))
	})
	return s.cors(uncleanPaths(mux))
}

// browserRoutes serves the browser side (package web): herald.js at
// /v1/client/, and the dashboard at /ui/ when config.UIServed says so.
func (s *Server) browserRoutes(mux *http.ServeMux) {
	// herald.js is public: any page may import it, as a module script
	// (which asks for CORS) from another origin.
	client := web.NewStatic("client", "/v1/client/", "public, max-age=600",
		map[string]string{"Access-Control-Allow-Origin": "*"})
	mux.Handle("GET /v1/client/", staticOr404(client))
	ok, why := s.cfg.UIServed()
	if !ok {
		mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
			wire.WriteErrorCode(w, reason.NotFound, why)
		})
		return
	}
	ui := web.NewStatic("ui", "/ui/", "no-cache", map[string]string{
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	})
	mux.Handle("GET /ui/", staticOr404(ui))
	// What the pages need to know before their first call (never a secret).
	uiConfig := fmt.Appendf(nil, `{"auth":%t}`+"\n", s.cfg.Auth.On())
	mux.HandleFunc("GET /ui/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(uiConfig)
	})
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

// staticOr404 serves the files of st, and the API's 404 for other paths.
func staticOr404(st *web.Static) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !st.Has(r.URL.Path) {
			wire.WriteErrorCode(w, reason.NotFound, fmt.Sprintf("no such file %s", r.URL.Path))
			return
		}
		st.ServeHTTP(w, r)
	})
}

// uncleanPaths answers paths with empty or dot segments itself, which
// ServeMux would redirect to their cleaned form (a POST to
// /v1/topics//events to /v1/topics/events): a topic's segment that is
// empty or a dot is a bad topic, any other such path does not exist.
func uncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || cleanPath(p) == p {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(p, "/v1/topics/") {
			wire.WriteErrorCode(w, reason.BadTopic, fmt.Sprintf(
				"invalid topic: the path %s has an empty or dot segment where the topic goes; a topic is one non-empty segment, such as /v1/topics/orders.eu/events", p))
			return
		}
		wire.WriteErrorCode(w, reason.NotFound, fmt.Sprintf(
			"no such path %s: it has an empty or dot segment; the API is described at /v1/openapi.json", p))
	})
}

// cleanPath is ServeMux's canonical form of a path: path.Clean, keeping a
// trailing slash.
func cleanPath(p string) string {
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin.
func (s *Server) allowOrigin(origin string) string {
	for _, o := range s.cfg.HTTP.CORSOrigins {
		if o == "*" {
			return "*"
		}
		if o == origin {
			return origin
		}
	}
	return ""
}

// cookieOrigin reports whether a page of origin, not the server's own,
// may have its requests authenticated by the visitor's cookie: only when
// http.cors_origins names it. "*" lets any page call the API with a token
// the page holds, never with the visitor's cookie (cross-site request
// forgery, cross-site WebSocket hijacking).
func (s *Server) cookieOrigin(origin string) bool {
	a := s.allowOrigin(origin)
	return a != "" && a != "*"
}

// cors adds CORS headers for allowed origins and answers preflights.
func (s *Server) cors(next http.Handler) http.Handler {
	if len(s.cfg.HTTP.CORSOrigins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allow := ""
		if origin != "" {
			allow = s.allowOrigin(origin)
		}
		if allow != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", allow)
			h.Add("Vary", "Origin")
			if allow != "*" {
				// A page of a listed origin may send the visitor's cookie
				// (EventSource withCredentials, fetch credentials:
				// "include"); "*" never lets it (cookieOrigin).
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, Herald-Event-Type, Last-Event-ID, Authorization")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (http.addr): %w", s.cfg.HTTP.Addr, err)
	}
	pln, err := s.proxied(ln, "http")
	if err != nil {
		ln.Close()
		return err
	}
	if s.grpc != nil {
		gln, err := net.Listen("tcp", s.cfg.GRPC.Addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (grpc.addr; grpc.enabled=false turns gRPC off): %w", s.cfg.GRPC.Addr, err)
		}
		pgln, err := s.proxied(gln, "grpc")
		if err != nil {
			ln.Close()
			gln.Close()
			return err
		}
		s.grpcLn = gln
		s.grpcCh = make(chan error, 1)
		lln := s.conns.Listen(pgln, refuseGRPC)
		go func() { s.grpcCh <- s.grpc.Serve(lln) }()
	}
	s.ln = ln
	s.serveCh = make(chan error, 1)
	// httpfast owns the listener either way: it screens what it hands to
	// net/http (request smuggling, heads over the limit) and closes those
	// connections with a lingering close. With CORS on, every answer needs
	// its headers: net/http serves all.
	// The connection limits come first: a connection over one is refused
	// before the fast path or net/http sees it. Before them, a trusted
	// proxy's PROXY protocol header is read (proxied), so they count the
	// client it names.
	s.fast = httpfast.New(s.conns.Listen(pln, s.refuseHTTP), s.rest, httpfast.Options{
		ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    s.cfg.HTTP.MaxHeaderBytes,
		HandOffAll:        !s.cfg.HTTP.FastPath || len(s.cfg.HTTP.CORSOrigins) > 0,
		HandOff:           s.fromTrustedProxy(),
		Linger:            s.linger,
	})
	go s.fast.Serve()
	go func() { s.serveCh <- s.http.Serve(s.fast.Listener()) }()
	s.ready.Store(true)
	if s.grpcLn != nil {
		s.log.Info("herald listening", "http", "http://"+ln.Addr().String(), "grpc", s.grpcLn.Addr().String(), "engine", s.cfg.Engine)
	} else {
		s.log.Info("herald listening", "http", "http://"+ln.Addr().String(), "engine", s.cfg.Engine)
	}
	return nil
}

// HTTPAddr returns the address the server listens on (host:port).
func (s *Server) HTTPAddr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// GRPCAddr returns the address the gRPC server listens on (host:port), or
// "" when gRPC is off or the server has not started.
func (s *Server) GRPCAddr() string {
	if s.grpcLn == nil {
		return ""
	}
	return s.grpcLn.Addr().String()
}

// Hub returns the server's hub.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Handler returns the server's HTTP handler, for tests that serve it
// themselves.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Run starts the server and serves until ctx is done, then drains it
// within the configured shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-s.serveCh:
		s.serveCh <- err
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Shutdown.Timeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown drains the server: it stops accepting connections, lets
// in-flight publishes finish, ends every stream with a reconnect hint and
// every long poll with its current cursor, then closes the engine it owns.
// Calling it again returns the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.log.Info("herald draining")
	if s.sources != nil {
		s.sources.Close() // no poll publishes into the closing hub
	}
	if s.webhooks != nil {
		s.webhooks.Close() // dispatchers stop fetching and hand their events back
	}
	if s.groups != nil {
		s.groups.Close() // long-polling fetches return now; no dead letter is published into the closing hub
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()
	fastDone := make(chan error, 1)
	if s.fast != nil {
		go func() { fastDone <- s.fast.Shutdown(ctx) }()
	} else {
		fastDone <- nil // never started
	}
	// gRPC: GOAWAY to every connection now; its streams end through
	// hub.Close below, with UNAVAILABLE and a resume hint.
	grpcDone := make(chan error, 1)
	if s.grpc != nil {
		go func() { grpcDone <- s.grpc.Drain(ctx) }()
	} else {
		grpcDone <- nil
	}
	s.closeNew()
	s.hub.Close()
	s.sse.Close()
	s.ws.Close()
	errs := []error{s.sse.Wait(ctx), s.ws.Wait(ctx), <-httpDone, <-fastDone}
	if s.serveCh != nil {
		if err := <-s.serveCh; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, <-grpcDone)
	if s.grpcCh != nil {
		errs = append(errs, <-s.grpcCh)
	}
	s.linger.Close() // what still lingers is closed now
	if s.auth != nil {
		errs = append(errs, s.auth.Close())
	}
	if s.ownEngine {
		errs = append(errs, s.eng.Close())
	}
	errs = slices.DeleteFunc(errs, func(e error) bool { return e == nil })
	if len(errs) > 0 {
		return fmt.Errorf("shutdown: %w", errors.Join(errs...))
	}
	s.log.Info("herald stopped")
	return nil
}
