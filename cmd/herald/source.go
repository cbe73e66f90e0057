package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/source"
)

func newSourceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "source",
		Short: "Manage source pollers: HTTP resources herald polls and publishes the changes of",
		Long: `A source is an HTTP resource herald polls, publishing what changed to a
topic: the whole body when it changed, each new or changed item of a JSON
array, or the changed samples of a Prometheus endpoint (docs/sources.md).
These commands use the API at --server (GET/PUT/DELETE /v1/sources), which
needs the admin grant.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSourceAddCmd(), newSourceLsCmd(), newSourceGetCmd(), newSourceRmCmd())
	return cmd
}

// sourceFlags are the flags of herald source add.
type sourceFlags struct {
	server, url, method, body, topic, mode, eventType string
	headers, headerEnv, metrics                       []string
	interval, timeout, maxBackoff                     time.Duration
	jitter                                            float64
	maxBody                                           int64
	items, id, version                                string
	removals                                          bool
}

func newSourceAddCmd() *cobra.Command {
	var f sourceFlags
	cmd := &cobra.Command{
		Use:   "add NAME --url URL --topic TOPIC [flags]",
		Short: "Create a source, or change it (the settings given replace all of its settings)",
		Long: `Create the source NAME, or change it: the settings given replace all of its
settings (those not given take their defaults). Prints the source as the
server answers it, with secret header values shown as <redacted>.

Header values are secrets: give them with --header-env NAME=ENVVAR to keep
them off the command line.`,
		Example: `  herald source add status --url https://status.example.com/api.json --topic status.example
  herald source add orders --url https://shop.example/api/orders --topic shop.orders \
      --mode json-items --items '$.data' --version updated_at --header-env Authorization=SHOP_AUTH
  herald source add self --url http://127.0.0.1:8080/metrics --topic metrics.herald \
      --mode prometheus --metric 'herald_*' --interval 5s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSourceAdd(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	fl.StringVar(&f.url, "url", "", "the URL to poll (http or https)")
	fl.StringVar(&f.topic, "topic", "", "the topic to publish to")
	fl.StringVar(&f.mode, "mode", "", "whole (default), json-items or prometheus")
	fl.StringVar(&f.method, "method", "", "GET (default) or POST")
	fl.StringVar(&f.body, "body", "", "the request body of a POST")
	fl.StringArrayVar(&f.headers, "header", nil, "request header name=value (repeatable)")
	fl.StringArrayVar(&f.headerEnv, "header-env", nil, "request header name=ENVVAR: the value is read from the environment variable ENVVAR (repeatable)")
	fl.StringVar(&f.eventType, "type", "", "the type of the published events")
	fl.DurationVar(&f.interval, "interval", 0, "time between polls (default 30s)")
	fl.Float64Var(&f.jitter, "jitter", source.DefaultJitter, "vary each wait by up to this fraction of it, 0 to 0.5")
	fl.DurationVar(&f.timeout, "timeout", 0, "timeout of one request (default 10s)")
	fl.Int64Var(&f.maxBody, "max-body-bytes", 0, "largest response body (default 1 MiB)")
	fl.DurationVar(&f.maxBackoff, "max-backoff", 0, "longest wait after errors (default 5m, or the interval when longer)")
	fl.StringVar(&f.items, "items", "", "json-items: the path of the array ($.data.items); default the body")
	fl.StringVar(&f.id, "id", "", "json-items: the path of an item's id (default id)")
	fl.StringVar(&f.version, "version", "", "json-items: the path of an item's version (default: its content's hash)")
	fl.BoolVar(&f.removals, "removals", false, "json-items: publish an event when an item disappears")
	fl.StringArrayVar(&f.metrics, "metric", nil, "prometheus: keep the metrics matching this glob (repeatable; default all)")
	return cmd
}

func runSourceAdd(cmd *cobra.Command, name string, f *sourceFlags) error {
	if f.url == "" || f.topic == "" {
		return errors.New("--url and --topic are required")
	}
	headers, err := parseHeaderFlags(f.headers)
	if err != nil {
		return err
	}
	for _, h := range f.headerEnv {
		hname, env, ok := strings.Cut(h, "=")
		if !ok || hname == "" || env == "" {
			return fmt.Errorf("--header-env %q: use name=ENVVAR", h)
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return fmt.Errorf("--header-env %s: the environment variable %s is not set", hname, env)
		}
		if headers == nil {
			headers = make(map[string]string)
		}
		headers[hname] = v
	}
	cfg := source.Config{
		Name: name, URL: f.url, Method: f.method, Headers: headers, Body: f.body, Topic: f.topic, Mode: source.Mode(f.mode),
		Type: f.eventType, Interval: f.interval, Jitter: f.jitter, Timeout: f.timeout, MaxBodyBytes: f.maxBody,
		MaxBackoff: f.maxBackoff, Items: f.items, ID: f.id, Version: f.version, Removals: f.removals, Metrics: f.metrics,
	}
	body, err := cfg.MarshalJSON()
	if err != nil {
		return err
	}
	out, err := adminAPI(cmd.Context(), f.server, http.MethodPut, "/v1/sources/"+url.PathEscape(name), body)
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(out)
	return err
}

func newSourceLsCmd() *cobra.Command {
	return newListCmd("List the sources and how their polls go", "/v1/sources", printSources)
}

// printSources prints GET /v1/sources as a table.
func printSources(w io.Writer, body []byte) error {
	var list struct {
		Sources []struct {
			Name, URL, Topic, Mode, Interval string
			Status                           struct {
				State     string `json:"state"`
				Polls     uint64 `json:"polls"`
				Published uint64 `json:"published"`
				LastError string `json:"last_error"`
			} `json:"status"`
		} `json:"sources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODE\tTOPIC\tINTERVAL\tSTATE\tPOLLS\tPUBLISHED\tURL\tLAST ERROR")
	for _, s := range list.Sources {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Name, s.Mode, s.Topic, s.Interval,
			s.Status.State, s.Status.Polls, s.Status.Published, s.URL, s.Status.LastError)
	}
	return tw.Flush()
}

func newSourceGetCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print one source, its settings and status, as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := adminAPI(cmd.Context(), server, http.MethodGet, "/v1/sources/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	return cmd
}

func newSourceRmCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a source (what it published stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := adminAPI(cmd.Context(), server, http.MethodDelete, "/v1/sources/"+url.PathEscape(args[0]), nil)
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	return cmd
}
