package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/client"
)

// exportPage is how many events one pull of export asks for.
const exportPage = 1000

func newExportCmd() *cobra.Command {
	var server, cursor string
	from := client.FromEarliest
	cmd := &cobra.Command{
		Use:   "export TOPIC",
		Short: "Write a topic's retained events as NDJSON (batch pull)",
		Long: `Read TOPIC from a cursor (or from the earliest retained event) up to its
newest event and write one JSON object per line: the event object of the HTTP
API (topic, offset, epoch, time, type, encoding, data, headers). The cursor to
continue from later is printed on standard error. A gap (events older than
retained history, or a history that was reset) is reported on standard error
and the export goes on from the earliest retained event.

herald import loads such a file into a server.`,
		Example: `  herald export orders.eu > orders.ndjson
  herald export orders.eu --cursor AQhvcmRlcnMuZXUB... >> orders.ndjson`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(server)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			n := 0
			for {
				res, err := c.Pull(cmd.Context(), []string{args[0]}, client.WithCursor(cursor), client.WithFrom(from), client.WithLimit(exportPage))
				if err != nil {
					return err
				}
				for _, g := range res.Gaps {
					fmt.Fprintf(cmd.ErrOrStderr(), "herald export: gap in %s (%s): continuing after offset %d\n", g.Topic, g.Reason, g.Resumed.Offset)
				}
				for i := range res.Events {
					if err := enc.Encode(&res.Events[i]); err != nil {
						return err
					}
				}
				n += len(res.Events)
				cursor = res.Cursor
				if len(res.Events) < exportPage {
					break
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "herald export: %d events; continue with --cursor %s\n", n, cursor)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	f.StringVar(&cursor, "cursor", "", "start after this cursor")
	f.Var(textFlag{&from}, "from", "where to start without a cursor: earliest or latest")
	return cmd
}

func newImportCmd() *cobra.Command {
	var server, topic string
	cmd := &cobra.Command{
		Use:   "import [FILE|-]",
		Short: "Publish the events of an NDJSON export",
		Long: `Read events written by herald export (one JSON event object per line; from
FILE, or standard input when FILE is - or absent) and publish them in batches,
keeping each event's payload, encoding, type and headers. The server gives
them new offsets. Each event is sent with an idempotency key made from its
original position, so running the same import again within the server's
dedupe window stores nothing twice.`,
		Example: `  herald import orders.ndjson
  herald export orders.eu --server http://old:8080 | herald import --server http://new:8080
  herald import --topic orders.archive orders.ndjson`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			c, err := newAPIClient(server)
			if err != nil {
				return err
			}
			batch := make([]client.BatchEvent, 0, exportPage)
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				if _, err := c.PublishBatch(cmd.Context(), batch); err != nil {
					return err
				}
				batch = batch[:0]
				return nil
			}
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 64<<10), 64<<20)
			n, line := 0, 0
			for sc.Scan() {
				line++
				if len(sc.Bytes()) == 0 {
					continue
				}
				be, err := importEvent(sc.Bytes(), topic)
				if err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				batch = append(batch, be)
				n++
				if len(batch) == exportPage {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if err := sc.Err(); err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "herald import: %d events\n", n)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	f.StringVar(&topic, "topic", "", "publish every event to this topic instead of its own")
	return cmd
}

// importEvent turns one exported line into a batch event.
func importEvent(line []byte, topic string) (client.BatchEvent, error) {
	var ev client.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return client.BatchEvent{}, fmt.Errorf("not an exported event: %w", err)
	}
	if ev.Topic == "" || len(ev.Data) == 0 {
		return client.BatchEvent{}, errors.New("not an exported event: topic and data are required")
	}
	be := client.BatchEvent{
		Topic:   ev.Topic,
		Type:    ev.Type,
		Headers: ev.Headers,
		Key:     fmt.Sprintf("import:%s:%s:%d", ev.Topic, ev.Epoch, ev.Offset),
	}
	if topic != "" {
		be.Topic = topic
	}
	switch ev.Encoding {
	case client.EncodingJSON:
		be.Data = ev.Data
	case client.EncodingText:
		if err := json.Unmarshal(ev.Data, &be.Text); err != nil {
			return be, fmt.Errorf("text data is not a string: %w", err)
		}
	case client.EncodingBinary:
		var s string
		if err := json.Unmarshal(ev.Data, &s); err != nil {
			return be, fmt.Errorf("binary data is not a string: %w", err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return be, fmt.Errorf("binary data is not base64: %w", err)
		}
		be.Binary = b
	default:
		return be, fmt.Errorf("unknown encoding %q", ev.Encoding)
	}
	return be, nil
}
