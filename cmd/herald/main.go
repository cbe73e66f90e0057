// Command herald is a real-time event hub: one binary that delivers events
// from producers to consumers over HTTP pull, long polling, Server-Sent
// Events and more, over one model of topics, offsets, epochs and cursors.
//
// Run `herald --help` for the subcommands.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "herald",
		Short: "herald is a real-time event hub: publish once, consume over WebSocket, SSE, gRPC, long polling or pull",
		Long: `herald delivers events from producers to consumers in every push and pull
style: publish over HTTP, WebSocket or gRPC; consume over WebSocket,
Server-Sent Events, gRPC streams, long polling or a pull API with cursors,
all over one model of topics, offsets, epochs and cursors, so a consumer
can switch transport and lose nothing.

Start a server with the in-memory engine on 127.0.0.1:8080:

  herald serve

Publish and subscribe from another terminal:

  herald subscribe chat.room-1
  herald publish chat.room-1 '{"text":"hello"}'`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// The client commands' credentials: one flag for all of them, kept in
	// the environment variable they read (clientOptions).
	var token string
	root.PersistentFlags().StringVar(&token, "token", "", "credentials of the client commands: an API key or a JWT, sent as Authorization: Bearer (env "+tokenEnv+")")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if token != "" {
			return os.Setenv(tokenEnv, token)
		}
		return nil
	}
	root.AddCommand(newServeCmd(), newPublishCmd(), newSubscribeCmd(), newExportCmd(), newImportCmd(), newBenchCmd(), newKeyCmd(), newTokenCmd(), newSourceCmd(), newGroupCmd(), newConsumeCmd(), newWebhookCmd())
	return root
}
