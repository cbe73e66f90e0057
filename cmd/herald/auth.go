package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
)

// grantFlags are the flags that build grants, shared by key new and token.
type grantFlags struct {
	publish, subscribe, history, presence, consume []string
	admin                                          bool
}

func (g *grantFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&g.publish, "publish", nil, "topic patterns it may publish to (repeat or comma-separate)")
	f.StringSliceVar(&g.subscribe, "subscribe", nil, "topic patterns it may subscribe to, live from now")
	f.StringSliceVar(&g.history, "history", nil, "topic patterns whose history it may read (pull, resume from a cursor)")
	f.StringSliceVar(&g.presence, "presence", nil, "topic patterns whose presence it may see and join")
	f.StringSliceVar(&g.consume, "consume", nil, "topic patterns it may consume as a group member")
	f.BoolVar(&g.admin, "admin", false, "may administer (the topics and sources APIs)")
}

// grants returns the flags' grants, after checking every pattern.
func (g *grantFlags) grants() (config.Grants, error) {
	c := config.Grants{Publish: g.publish, Subscribe: g.subscribe, History: g.history, Presence: g.presence, Consume: g.consume, Admin: g.admin}
	if _, err := auth.CompileGrants(c); err != nil {
		return config.Grants{}, fmt.Errorf("--%w", err)
	}
	return c, nil
}

const patternHelp = `Topic patterns: chat.room-1 (that topic), chat.* (one segment: chat.a, not
chat.a.b), chat.> (one or more segments: chat.a, chat.a.b), > (every topic).
Quote them in the shell: 'chat.>'.`

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage API keys",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newKeyNewCmd())
	return cmd
}

func newKeyNewCmd() *cobra.Command {
	var g grantFlags
	var name string
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Make a new API key: print the key, its hash and a config snippet",
		Long: `Make a new random API key for a service or an operator and print it, its
SHA-256 hash and the snippet of herald.yaml that grants it what the flags say.

The key is shown only this once: give it to the service, which sends it as
"Authorization: Bearer hk_…" (or gRPC metadata). The server keeps only the
hash, so a leaked config leaks no key. To revoke a key, remove its entry.

` + patternHelp + `

Nothing is sent anywhere: the command only prints.`,
		Example: `  herald key new --name billing --publish 'orders.>'
  herald key new --name ops --admin --subscribe '>' --history '>'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			grants, err := g.grants()
			if err != nil {
				return err
			}
			key, hash, err := auth.NewKey()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "key:  %s\nhash: %s\n\n", key, hash)
			fmt.Fprintf(w, "# The key is shown only this once: give it to the service (Authorization: Bearer <key>).\n")
			fmt.Fprintf(w, "# Add its hash to the server's config (herald.yaml):\n")
			writeKeySnippet(w, name, hash, grants)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "service", "the key's name: the caller's identity in logs and errors")
	g.register(cmd)
	return cmd
}

// writeKeySnippet writes the config of one API key as YAML. Patterns are
// quoted: * and > start other things in YAML.
func writeKeySnippet(w io.Writer, name, hash string, g config.Grants) {
	fmt.Fprintf(w, "auth:\n  api_keys:\n    - name: %s\n      hash: %s\n", strconv.Quote(name), hash)
	lists := []struct {
		key      string
		patterns []string
	}{{"publish", g.Publish}, {"subscribe", g.Subscribe}, {"history", g.History}, {"presence", g.Presence}, {"consume", g.Consume}}
	granted := g.Admin
	for _, l := range lists {
		granted = granted || len(l.patterns) > 0
	}
	if !granted {
		fmt.Fprintf(w, "      grants: {}   # grants nothing yet: add publish, subscribe, history, presence, consume or admin\n")
		return
	}
	fmt.Fprintf(w, "      grants:\n")
	for _, l := range lists {
		if len(l.patterns) == 0 {
			continue
		}
		quoted := make([]string, len(l.patterns))
		for i, p := range l.patterns {
			quoted[i] = strconv.Quote(p)
		}
		fmt.Fprintf(w, "        %s: [%s]\n", l.key, strings.Join(quoted, ", "))
	}
	if g.Admin {
		fmt.Fprintf(w, "        admin: true\n")
	}
}

func newTokenCmd() *cobra.Command {
	var g grantFlags
	var sub, configPath string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a development JWT (HS256) from the configured HMAC secret",
		Long: `Mint a JSON Web Token for --sub with the grants the flags say, valid for --ttl,
signed with HS256 by the server's HMAC secret (auth.jwt.hmac_secret or
auth.jwt.hmac_secret_file), and print it. The audience, issuer and grants
claim are taken from the same config, so the server accepts the token.

The config is read as herald serve reads it: --config FILE (or HERALD_CONFIG),
then HERALD_* variables (HERALD_AUTH_JWT_HMAC_SECRET).

This is for development and tests: in production, an application's backend or
an identity provider mints tokens (docs/security.md).

` + patternHelp,
		Example: `  herald token --sub alice --subscribe 'chat.>' --publish 'chat.room-1' --ttl 1h
  curl -N -H "Authorization: Bearer $(herald token --sub alice --subscribe 'chat.>')" \
       'http://127.0.0.1:8080/v1/sse?topic=chat.room-1'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			grants, err := g.grants()
			if err != nil {
				return err
			}
			if configPath == "" {
				configPath = os.Getenv("HERALD_CONFIG")
			}
			cfg, err := config.Load(configPath, os.Environ(), nil)
			if err != nil {
				return err
			}
			secret, err := auth.LoadHMACSecret(cfg.Auth.JWT)
			if err != nil {
				return err
			}
			if secret == nil {
				return errors.New("no HMAC secret is configured: set auth.jwt.hmac_secret or auth.jwt.hmac_secret_file in the config (--config, HERALD_CONFIG), or HERALD_AUTH_JWT_HMAC_SECRET; herald token mints HS256 tokens only")
			}
			if algs := cfg.Auth.JWT.Algorithms; len(algs) > 0 && !slices.Contains(algs, "HS256") {
				return fmt.Errorf("auth.jwt.algorithms (%s) does not accept HS256, so the server would refuse the token", strings.Join(algs, ", "))
			}
			tok, err := auth.MintHS256(secret, auth.TokenRequest{
				Subject: sub, TTL: ttl, Grants: grants,
				Audience: cfg.Auth.JWT.Audience, Issuer: cfg.Auth.JWT.Issuer, Claim: cfg.Auth.JWT.Claim,
			}, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "the token's subject: the user it names (required)")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	f.StringVarP(&configPath, "config", "c", "", "the server's YAML config file (env HERALD_CONFIG)")
	g.register(cmd)
	return cmd
}
