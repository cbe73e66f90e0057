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

	"github.com/heraldhq/herald/internal/webhook"
)

func newWebhookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Manage outbound webhooks: HTTP endpoints herald sends topics' events to, signed",
		Long: `A webhook subscription sends each event of its topics to a URL, signed per
Standard Webhooks, retried on a schedule, in order unless told otherwise
(docs/webhooks.md). These commands use the API at --server
(/v1/webhooks), which needs the admin grant.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newWebhookAddCmd(), newWebhookLsCmd(), newWebhookGetCmd(), newWebhookRmCmd(), newWebhookTestCmd(),
		newWebhookReplayCmd(), newWebhookLogCmd())
	return cmd
}

// webhookFlags are the flags of herald webhook add.
type webhookFlags struct {
	server, url, start                 string
	topics, types, secretEnv, retry    []string
	unordered, disabled                bool
	concurrency                        int
	rateLimit, jitter                  float64
	timeout, connectTimeout, disableAt time.Duration
}

func newWebhookAddCmd() *cobra.Command {
	var f webhookFlags
	cmd := &cobra.Command{
		Use:   "add NAME --url URL --topic TOPIC [flags]",
		Short: "Create a webhook, or change it (the settings given replace all of its settings but the secrets)",
		Long: `Create the webhook NAME, or change it: the settings given replace all of its
settings (those not given take their defaults), except the secrets, which
are kept unless --secret-env is given. A new webhook without a secret gets
one, printed once in "generated_secret": give it to the receiver.

Secrets are whsec_ followed by base64; give them with --secret-env ENVVAR
to keep them off the command line, twice (the new first) during a rotation.`,
		Example: `  herald webhook add shop --url https://shop.example/hooks/herald --topic orders --topic 'billing.>'
  herald webhook add audit --url https://audit.example/in --topic 'audit.>' --unordered --concurrency 20 \
      --secret-env AUDIT_SECRET --retry 10s --retry 1m --retry 10m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWebhookAdd(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	fl.StringVar(&f.url, "url", "", "the endpoint (http or https)")
	fl.StringArrayVar(&f.topics, "topic", nil, "a topic or pattern (orders.*, orders.>) to send (repeatable)")
	fl.StringArrayVar(&f.types, "type", nil, "send only events of this type (repeatable; default all)")
	fl.StringArrayVar(&f.secretEnv, "secret-env", nil, "read a secret (whsec_…) from this environment variable (repeatable: the newest first)")
	fl.StringVar(&f.start, "start", "", "where a new webhook starts: latest (default), earliest, a cursor or an RFC 3339 time")
	fl.BoolVar(&f.unordered, "unordered", false, "send up to --concurrency events at once, each retried on its own")
	fl.IntVar(&f.concurrency, "concurrency", 0, "unordered: requests in flight at most (default 10)")
	fl.Float64Var(&f.rateLimit, "rate-limit", 0, "requests per second at most (default no limit)")
	fl.BoolVar(&f.disabled, "disabled", false, "create it paused (enabled: false)")
	fl.DurationVar(&f.timeout, "timeout", 0, "timeout of one request (default 30s)")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", 0, "timeout of one connection (default 10s)")
	fl.StringArrayVar(&f.retry, "retry", nil, "a wait of the retry schedule (repeatable; default 5s 5m 30m 2h 5h 10h 10h)")
	fl.Float64Var(&f.jitter, "retry-jitter", webhook.DefaultJitter, "vary each wait by up to this fraction of it, 0 to 0.5")
	fl.DurationVar(&f.disableAt, "disable-after", 0, "disable the webhook after failing only for this long (default 120h)")
	return cmd
}

func runWebhookAdd(cmd *cobra.Command, name string, f *webhookFlags) error {
	if f.url == "" || len(f.topics) == 0 {
		return errors.New("--url and --topic are required")
	}
	cfg := webhook.Config{
		Name: name, URL: f.url, Topics: f.topics, Types: f.types, Start: f.start, Ordered: !f.unordered,
		Concurrency: f.concurrency, RateLimit: f.rateLimit, Enabled: !f.disabled, Timeout: f.timeout,
		ConnectTimeout: f.connectTimeout, Jitter: f.jitter, DisableAfter: f.disableAt,
	}
	for _, env := range f.secretEnv {
		v, ok := os.LookupEnv(env)
		if !ok {
			return fmt.Errorf("--secret-env: the environment variable %s is not set", env)
		}
		cfg.Secrets = append(cfg.Secrets, v)
	}
	for _, s := range f.retry {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("--retry %q: not a duration such as 5s or 2h", s)
		}
		cfg.Retry = append(cfg.Retry, d)
	}
	body, err := cfg.MarshalJSON()
	if err != nil {
		return err
	}
	out, err := adminAPI(cmd.Context(), f.server, http.MethodPut, "/v1/webhooks/"+url.PathEscape(name), body)
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(out)
	return err
}

func newWebhookLsCmd() *cobra.Command {
	return newListCmd("List the webhooks and how their deliveries go", "/v1/webhooks", printWebhooks)
}

// printWebhooks prints GET /v1/webhooks as a table.
func printWebhooks(w io.Writer, body []byte) error {
	var list struct {
		Webhooks []struct {
			Name    string   `json:"name"`
			URL     string   `json:"url"`
			Topics  []string `json:"topics"`
			Ordered bool     `json:"ordered"`
			Status  struct {
				State     string `json:"state"`
				Delivered uint64 `json:"delivered"`
				Failed    uint64 `json:"failed"`
				Pending   int    `json:"retries_pending"`
				Last      *struct {
					Result string `json:"result"`
					Status int    `json:"status"`
					Error  string `json:"error"`
				} `json:"last_attempt"`
			} `json:"status"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tORDERED\tTOPICS\tDELIVERED\tFAILED\tRETRYING\tLAST\tURL")
	for _, s := range list.Webhooks {
		last := "-"
		if l := s.Status.Last; l != nil {
			last = l.Result
			if l.Status != 0 {
				last += fmt.Sprintf(" %d", l.Status)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Status.State, s.Ordered, strings.Join(s.Topics, ","),
			s.Status.Delivered, s.Status.Failed, s.Status.Pending, last, s.URL)
	}
	return tw.Flush()
}

// webhookCall is a command NAME that makes one request of the webhooks
// API and prints the answer.
func webhookCall(use, short, method, suffix string, body func() ([]byte, error)) *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			if body != nil {
				var err error
				if b, err = body(); err != nil {
					return err
				}
			}
			out, err := adminAPI(cmd.Context(), server, method, "/v1/webhooks/"+url.PathEscape(args[0])+suffix, b)
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

func newWebhookGetCmd() *cobra.Command {
	return webhookCall("get NAME", "Print one webhook, its settings and status, as JSON", http.MethodGet, "", nil)
}

func newWebhookRmCmd() *cobra.Command {
	return webhookCall("rm NAME", "Delete a webhook and its position (its dead-letter topic stays)", http.MethodDelete, "", nil)
}

func newWebhookTestCmd() *cobra.Command {
	return webhookCall("test NAME", "Send a signed test event now and print the attempt", http.MethodPost, "/test", func() ([]byte, error) { return nil, nil })
}

func newWebhookLogCmd() *cobra.Command {
	return webhookCall("log NAME", "Print a webhook's last attempts, the newest first", http.MethodGet, "/log", nil)
}

func newWebhookReplayCmd() *cobra.Command {
	var from, until string
	var limit int
	cmd := webhookCall("replay NAME --from CURSOR|TIME|earliest", "Send a range of events again, in the background", http.MethodPost, "/replay",
		func() ([]byte, error) {
			if from == "" {
				return nil, errors.New("--from is required: a cursor, an RFC 3339 time, or earliest")
			}
			return json.Marshal(map[string]any{"from": from, "until": until, "limit": limit})
		})
	cmd.Flags().StringVar(&from, "from", "", "replay the events after this cursor, or stored at or after this RFC 3339 time, or earliest")
	cmd.Flags().StringVar(&until, "until", "", "up to this RFC 3339 time (default: the newest)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (default 10000)")
	return cmd
}
