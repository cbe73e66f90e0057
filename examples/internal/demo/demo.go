// Package demo runs herald's examples: each is one command (go run
// ./examples/NAME) that starts a herald node configured for it, serves the
// example's web page from another origin (as an application would, with
// CORS), and runs the example's own Go code, until interrupted.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// Example describes one example.
type Example struct {
	Name string
	// Pages are the example's static files (index.html first), served at
	// the page address; nil for an example without a page.
	Pages fs.FS
	// GRPC turns on herald's gRPC listener.
	GRPC bool
	// Config adjusts the node's settings (presence on a namespace, say).
	Config func(*config.Config)
	// Work is the example's Go side, run once the node and the page are
	// up; nil for none. It returns when ctx ends (or it is done).
	Work func(ctx context.Context, n Node, out io.Writer) error
}

// Node is where a running example is reached.
type Node struct {
	HTTP string // herald's base URL, http://host:port
	GRPC string // herald's gRPC address, host:port ("" when off)
	Page string // the page's URL ("" without a page)
	// Args are the command line's arguments after the flags, for the
	// example's work.
	Args []string
}

// Main runs ex as a program: flags from the command line, stopped by
// SIGINT or SIGTERM.
func Main(ex Example) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, ex, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ex.Name, err)
		os.Exit(1)
	}
}

// Run starts the example with the flags in args (-http, -grpc, -page), prints
// where it is reached to out (lines "herald: URL", "grpc: ADDR", "page:
// URL"), and runs until ctx ends or the example's work returns.
func Run(ctx context.Context, ex Example, args []string, out io.Writer) error {
	fl := flag.NewFlagSet(ex.Name, flag.ContinueOnError)
	fl.SetOutput(out)
	httpAddr := fl.String("http", "127.0.0.1:8080", "herald's HTTP address")
	grpcAddr := fl.String("grpc", "127.0.0.1:9090", "herald's gRPC address")
	pageAddr := fl.String("page", "127.0.0.1:8000", "the address the example's page is served on")
	if err := fl.Parse(args); err != nil {
		return err
	}

	n := Node{Args: fl.Args()}
	var pageLn net.Listener
	if ex.Pages != nil {
		ln, err := net.Listen("tcp", *pageAddr)
		if err != nil {
			return fmt.Errorf("listen for the page: %w", err)
		}
		pageLn = ln
		defer pageLn.Close()
		n.Page = "http://" + ln.Addr().String() + "/"
	}

	cfg := config.Default()
	cfg.HTTP.Addr = *httpAddr
	cfg.GRPC.Enabled = ex.GRPC
	cfg.GRPC.Addr = *grpcAddr
	cfg.Shutdown.Timeout = 2 * time.Second
	if n.Page != "" {
		cfg.HTTP.CORSOrigins = []string{"http://" + pageLn.Addr().String()}
	}
	if ex.Config != nil {
		ex.Config(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		return fmt.Errorf("herald: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("herald: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	n.HTTP = "http://" + srv.HTTPAddr()
	n.GRPC = srv.GRPCAddr()
	fmt.Fprintf(out, "herald: %s\n", n.HTTP)
	if ex.GRPC {
		fmt.Fprintf(out, "grpc: %s\n", n.GRPC)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	running := 0
	if pageLn != nil {
		page := &http.Server{Handler: pages(ex.Pages, n.HTTP), ReadHeaderTimeout: 10 * time.Second}
		running++
		go func() {
			err := page.Serve(pageLn)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
		defer page.Close()
		fmt.Fprintf(out, "page: %s\n", n.Page)
	}
	if ex.Work != nil {
		running++
		go func() { errc <- ex.Work(ctx, n, out) }()
	}
	fmt.Fprintf(out, "%s is running; stop it with Ctrl-C\n", ex.Name)
	select {
	case <-ctx.Done():
	case err = <-errc:
		running--
	}
	cancel()
	if pageLn != nil {
		pageLn.Close()
	}
	for ; running > 0; running-- {
		if e := <-errc; e != nil && err == nil && !errors.Is(e, context.Canceled) && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// pages serves the example's files and /config.json, which tells the page
// where herald is.
func pages(files fs.FS, herald string) http.Handler {
	cfg, _ := json.Marshal(map[string]string{"herald": herald})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(cfg)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle("GET /", http.FileServerFS(files))
	return mux
}
