package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// adminAPI makes one request of the management APIs (sources, groups,
// webhooks) with the CLI's credentials and returns the answer's body, or
// the API's error.
func adminAPI(ctx context.Context, server, method, path string, body []byte) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(server, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	req.Header.Set("User-Agent", "herald-cli/"+version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t := os.Getenv(tokenEnv); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("%s %s: %s (%d %s)", method, path, e.Error.Message, resp.StatusCode, e.Error.Code)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return out, nil
}

// newListCmd returns an `ls` command that lists what GET path answers: as
// a table printed by print, or as the server's JSON with --json.
func newListCmd(short, path string, print func(io.Writer, []byte) error) *cobra.Command {
	var server string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := adminAPI(cmd.Context(), server, http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			return print(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	return cmd
}
