package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// serveFlags maps each serve flag to the config key it sets.
var serveFlags = map[string]string{
	"addr":                   "http.addr",
	"grpc-addr":              "grpc.addr",
	"engine":                 "engine",
	"data-dir":               "data_dir",
	"redis-url":              "redis.url",
	"log-level":              "log.level",
	"log-format":             "log.format",
	"insecure-open":          "auth.insecure_open",
	"proxy-protocol-trusted": "proxy_protocol.trusted",
}

func newServeCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the herald server",
		Long: `Run the herald server: the HTTP API (publish, pull, long polling), Server-Sent
Events, /metrics, /healthz and /readyz, on one listener; the gRPC API
(docs/grpc.md) on its own, 127.0.0.1:9090 by default (--grpc-addr; set
HERALD_GRPC_ENABLED=false to turn it off).

Settings come from, in rising precedence: the defaults, a YAML file (--config
or HERALD_CONFIG), HERALD_* environment variables (the key upper-cased with
dots as underscores: http.addr is HERALD_HTTP_ADDR), and the flags below.
Unknown keys and bad values stop the server with an error naming the key.
docs/configuration.md lists every key.

Without auth configured (docs/security.md), herald serves everyone, so it then
refuses to listen on an address other machines can reach (0.0.0.0, a LAN
address) unless --insecure-open (auth.insecure_open) says that is intended.

Behind a load balancer, the per-client limits count the load balancer unless
it tells herald the client's address: list its addresses in
--proxy-protocol-trusted (proxy_protocol.trusted) and turn the PROXY protocol
on there (HAProxy send-proxy or send-proxy-v2, AWS NLB, nginx proxy_protocol,
Envoy); its connections must then start with the header (docs/security.md,
"Client addresses").

SIGINT or SIGTERM drains the server: it stops accepting connections, lets
in-flight publishes finish, ends streams with a reconnect hint, then exits.`,
		Example: `  herald serve
  herald serve --config herald.yaml --addr 0.0.0.0:8080 --log-format json   # herald.yaml configures auth
  herald serve --addr 0.0.0.0:8080 --insecure-open                         # open to everyone: a trusted network only
  HERALD_HISTORY_MAX_EVENTS=1000 herald serve --config herald.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				configPath = os.Getenv("HERALD_CONFIG")
			}
			flags := map[string]string{}
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if key, ok := serveFlags[f.Name]; ok {
					flags[key] = f.Value.String()
				}
			})
			cfg, err := config.Load(configPath, os.Environ(), flags)
			if err != nil {
				return err
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx)
		},
	}
	def := config.Default()
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "YAML config file (env HERALD_CONFIG)")
	f.String("addr", def.HTTP.Addr, "HTTP listen address, host:port (http.addr)")
	f.String("grpc-addr", def.GRPC.Addr, "gRPC listen address, host:port (grpc.addr; HERALD_GRPC_ENABLED=false turns gRPC off)")
	f.String("engine", def.Engine, "storage engine: memory, durable (history on disk in --data-dir), or redis (nodes sharing topics through --redis-url) (engine)")
	f.String("data-dir", "", "directory of the durable engine's data (data_dir)")
	f.String("redis-url", "", "the redis engine's Redis: redis://[user:pass@]host:port[/db], rediss:// for TLS, ?addr=host:port for more Cluster seeds, ?master_set=NAME for Sentinel (redis.url)")
	f.String("log-level", def.Log.Level, "log level: debug, info, warn, error (log.level)")
	f.String("log-format", def.Log.Format, "log format: text or json (log.format)")
	f.String("proxy-protocol-trusted", "", "comma-separated addresses or CIDR prefixes of load balancers that send a PROXY protocol header (v1 or v2), on both listeners (proxy_protocol.trusted)")
	f.Bool("insecure-open", false, "serve without auth on a non-loopback address: anyone who reaches it may publish and read (auth.insecure_open)")
	return cmd
}

// newLogger builds the server's logger on stderr.
func newLogger(c config.Log) (*slog.Logger, error) {
	level, err := config.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("config log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}
