package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/client"
)

// subscribeFlags are the flags of herald subscribe.
type subscribeFlags struct {
	server    string
	transport client.Transport
	cursor    string
	from      client.From
	count     int
	grpcAddr  string
}

func newSubscribeCmd() *cobra.Command {
	var f subscribeFlags
	cmd := &cobra.Command{
		Use:   "subscribe TOPIC...",
		Short: "Print the events of topics as they arrive, one JSON line each",
		Long: `Follow one or more topics and print one JSON line per event: the event object
of the HTTP API (topic, offset, epoch, time, type, encoding, data, headers)
plus "cursor", the position after that event. A gap in the history (events
trimmed or lost) is printed as {"gap":{…},"cursor":…}.

The subscription reconnects on its own after network errors and server
restarts and resumes where it left off, without losing or repeating events.
Reconnections are reported on standard error.

To resume later, pass the cursor of the last line printed with --cursor.

Over --transport sse (the default) an event carries no time and no headers,
and its encoding is inferred from the payload; --transport ws (WebSocket),
--transport poll (long polling) and --transport grpc (the gRPC API at
--grpc-addr) show every field.

SIGINT or SIGTERM stops it cleanly, as does reaching --count events.`,
		Example: `  herald subscribe chat.room-1
  herald subscribe chat.room-1 chat.room-2 --from earliest
  herald subscribe orders.eu --transport poll --count 10
  herald subscribe chat.room-1 --transport ws
  herald subscribe chat.room-1 --transport grpc --grpc-addr 127.0.0.1:9090
  herald subscribe orders.eu --cursor AQhvcmRlcnMuZXUB... | jq .data`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSubscribe(cmd, args, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	f.transport, f.from = client.TransportSSE, client.FromLatest
	fl.Var(textFlag{&f.transport}, "transport", "sse (Server-Sent Events), ws (WebSocket), poll (long polling) or grpc (the gRPC API at --grpc-addr)")
	fl.StringVar(&f.cursor, "cursor", "", "resume after this cursor (the cursor of a printed line)")
	fl.Var(textFlag{&f.from}, "from", "where topics without a cursor start: latest or earliest")
	fl.IntVar(&f.count, "count", 0, "exit after this many events (0: run until interrupted)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", defaultGRPCAddr, "the server's gRPC address, host:port, for --transport grpc")
	return cmd
}

// wireTimeLayout is the API's form of event times: RFC 3339, UTC,
// milliseconds.
const wireTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// eventLine is the JSON line printed for an event.
type eventLine struct {
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     string            `json:"time,omitempty"`
	Type     string            `json:"type,omitempty"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers,omitempty"`
	Cursor   string            `json:"cursor"`
}

// gapLine is the JSON line printed for a gap.
type gapLine struct {
	Gap    *client.Gap `json:"gap"`
	Cursor string      `json:"cursor"`
}

func runSubscribe(cmd *cobra.Command, topics []string, f *subscribeFlags) error {
	if f.count < 0 {
		return fmt.Errorf("--count %d: use 0 or more", f.count)
	}
	c, err := newTransportClient(f.server, f.transport == client.TransportGRPC, f.grpcAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sub, err := c.Subscribe(ctx, topics, client.WithTransport(f.transport), client.WithCursor(f.cursor), client.WithFrom(f.from))
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while connecting
		}
		return err
	}
	defer sub.Close()

	w := bufio.NewWriter(cmd.OutOrStdout())
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for n := 0; f.count == 0 || n < f.count; {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil // interrupted
			}
			return err
		}
		switch {
		case m.Event != nil:
			err = enc.Encode(newEventLine(m.Event, m.Cursor))
			n++
		case m.Gap != nil:
			err = enc.Encode(gapLine{Gap: m.Gap, Cursor: m.Cursor})
		case m.Err != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "herald: %v; reconnecting\n", m.Err)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}

func newEventLine(ev *client.Event, cursor string) eventLine {
	l := eventLine{
		Topic:    ev.Topic,
		Offset:   ev.Offset,
		Epoch:    ev.Epoch,
		Type:     ev.Type,
		Encoding: ev.Encoding,
		Data:     ev.Data,
		Headers:  ev.Headers,
		Cursor:   cursor,
	}
	if !ev.Time.IsZero() {
		l.Time = ev.Time.UTC().Format(wireTimeLayout)
	}
	return l
}
