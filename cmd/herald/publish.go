package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/client"
)

// Limits of publish --lines.
const (
	linesBatchEvents = 1000    // events per batch request
	linesBatchBytes  = 4 << 20 // payload bytes per batch request, well under the server's 16 MiB body cap
	maxLineBytes     = 16 << 20
)

// publishFlags are the flags of herald publish.
type publishFlags struct {
	server      string
	eventType   string
	key         string
	contentType string
	headers     []string
	lines       bool
	transport   string
	grpcAddr    string
}

func newPublishCmd() *cobra.Command {
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish TOPIC [DATA|-]",
		Short: "Publish an event to a topic",
		Long: `Publish DATA as one event of TOPIC and print the server's acknowledgement as
one JSON line: {"topic":…,"offset":…,"epoch":…,"cursor":…,"duplicate":…}.

Without DATA, or with DATA "-", the payload is read from standard input, byte
for byte (a trailing newline is part of it).

Without --content-type the payload is sent as application/json when it is
valid JSON, as text/plain when it is UTF-8 text, and as
application/octet-stream otherwise.

With --lines, standard input is read line by line (NDJSON or plain lines) and
each non-blank line is published as its own event, in batches of up to 1000
(what has arrived is sent whenever input pauses, so "tail -f" works); one
acknowledgement line is printed per event. With --key K, line N gets the
idempotency key K-N, so running the same input again stores nothing twice.

With --transport grpc the event (or the batches of --lines) goes over the gRPC
API (docs/grpc.md) at --grpc-addr instead of HTTP; the acknowledgement is the
same.`,
		Example: `  herald publish chat.room-1 '{"text":"hello"}'
  herald publish chat.room-1 --type note --content-type text/plain 'plain words'
  herald publish orders.eu --key order-1234 --header source=shop '{"id":1234}'
  cat image.png | herald publish files.uploads --content-type image/png
  tail -f app.log | herald publish logs.app --lines
  herald publish chat.room-1 --transport grpc '{"text":"over gRPC"}'
  HERALD_SERVER=http://events:8080 herald publish prices.BTC-USD 64000.5`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd, args, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	fl.StringVar(&f.eventType, "type", "", "event type (the SSE event: name)")
	fl.StringVar(&f.key, "key", "", "idempotency key: a retry with the same key stores nothing new")
	fl.StringVar(&f.contentType, "content-type", "", "payload content type (default application/json for JSON, else text/plain for UTF-8, else application/octet-stream)")
	fl.StringArrayVar(&f.headers, "header", nil, "event header name=value (repeatable)")
	fl.BoolVar(&f.lines, "lines", false, "publish each line of standard input as its own event")
	fl.StringVar(&f.transport, "transport", publishHTTP, "http (the HTTP API at --server) or grpc (the gRPC API at --grpc-addr)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", defaultGRPCAddr, "the server's gRPC address, host:port, for --transport grpc")
	return cmd
}

// defaultServerURL is where the CLI finds a server when neither --server
// nor HERALD_SERVER says otherwise.
const defaultServerURL = "http://127.0.0.1:8080"

// heraldServerDefault is the default of the client commands' --server flag.
func heraldServerDefault() string {
	if s := os.Getenv("HERALD_SERVER"); s != "" {
		return s
	}
	return defaultServerURL
}

// newAPIClient returns a client of the server given with --server.
func newAPIClient(server string) (*client.Client, error) {
	return client.New(server, clientOptions()...)
}

// clientOptions are the options of every client the commands make: the
// CLI's user agent, and the token of --token or HERALD_TOKEN (an API key
// or a JWT) when one is given.
func clientOptions() []client.Option {
	opts := []client.Option{client.WithUserAgent("herald-cli/" + version)}
	if t := os.Getenv(tokenEnv); t != "" {
		opts = append(opts, client.WithStaticToken(t))
	}
	return opts
}

// tokenEnv is the environment variable of the client commands' token.
const tokenEnv = "HERALD_TOKEN"

func runPublish(cmd *cobra.Command, args []string, f *publishFlags) error {
	topic := args[0]
	headers, err := parseHeaderFlags(f.headers)
	if err != nil {
		return err
	}
	if f.transport != publishHTTP && f.transport != publishGRPC {
		return fmt.Errorf("--transport %q: use %s or %s", f.transport, publishHTTP, publishGRPC)
	}
	c, err := newTransportClient(f.server, f.transport == publishGRPC, f.grpcAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	contentType := f.contentType
	out := json.NewEncoder(cmd.OutOrStdout())
	out.SetEscapeHTML(false)
	if f.lines {
		if len(args) == 2 && args[1] != "-" {
			return errors.New("--lines reads standard input; give no DATA")
		}
		return publishLines(cmd, c, topic, contentType, headers, f, out)
	}

	var data []byte
	if len(args) == 2 && args[1] != "-" {
		data = []byte(args[1])
	} else if data, err = io.ReadAll(cmd.InOrStdin()); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	if contentType == "" {
		contentType = detectContentType(data)
	}
	ack, err := c.Publish(cmd.Context(), topic, data,
		client.WithContentType(contentType), client.WithType(f.eventType), client.WithKey(f.key), client.WithHeaders(headers))
	if err != nil {
		return err
	}
	return out.Encode(ack)
}

// parseHeaderFlags reads --header name=value flags.
func parseHeaderFlags(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(flags))
	for _, h := range flags {
		name, value, ok := strings.Cut(h, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--header %q: use name=value", h)
		}
		m[name] = value
	}
	return m, nil
}

// detectContentType picks the content type of a payload given without one.
func detectContentType(data []byte) string {
	switch {
	case json.Valid(data):
		return "application/json"
	case utf8.Valid(data):
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// publishLines publishes each non-blank line of standard input as an
// event, in batches, printing one ack per event.
func publishLines(cmd *cobra.Command, c *client.Client, topic, contentType string, headers map[string]string, f *publishFlags, out *json.Encoder) error {
	var (
		batch     []client.BatchEvent
		lineNos   []int
		batchSize int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		acks, err := c.PublishBatch(cmd.Context(), batch)
		if err != nil {
			return fmt.Errorf("lines %d to %d: %w", lineNos[0], lineNos[len(lineNos)-1], err)
		}
		for _, a := range acks {
			if err := out.Encode(a); err != nil {
				return err
			}
		}
		batch, lineNos, batchSize = batch[:0], lineNos[:0], 0
		return nil
	}
	r := bufio.NewReaderSize(cmd.InOrStdin(), 1<<20)
	for n := 1; ; n++ {
		line, err := readLine(r)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read standard input, line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			ev, perr := lineEvent(topic, line, contentType)
			if perr != nil {
				return fmt.Errorf("line %d: %w", n, perr)
			}
			ev.Type, ev.Headers = f.eventType, headers
			if f.key != "" {
				ev.Key = f.key + "-" + strconv.Itoa(n)
			}
			if len(batch) == linesBatchEvents || batchSize+len(line) > linesBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			batch, lineNos = append(batch, ev), append(lineNos, n)
			batchSize += len(line)
		}
		if errors.Is(err, io.EOF) {
			return flush()
		}
		// Send what there is when no more input is waiting, so that a slow
		// producer (tail -f) sees its events published as it writes them.
		if r.Buffered() == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// readLine returns the next line without its line end; io.EOF comes with
// the last line (which may be empty).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("the line is over %d bytes", maxLineBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		return line, err
	}
}

// lineEvent makes the batch event of one input line, which it keeps.
func lineEvent(topic string, line []byte, contentType string) (client.BatchEvent, error) {
	ev := client.BatchEvent{Topic: topic}
	isJSON, isText := json.Valid(line), utf8.Valid(line)
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return ev, fmt.Errorf("--content-type %q: %w", contentType, err)
		}
		switch {
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			if !isJSON {
				return ev, errors.New("not valid JSON (--content-type says JSON)")
			}
			isText = false
		case strings.HasPrefix(mt, "text/"):
			if !isText {
				return ev, errors.New("not valid UTF-8 text (--content-type says text)")
			}
			isJSON = false
		default:
			isJSON, isText = false, false
		}
	}
	switch {
	case isJSON:
		ev.Data = json.RawMessage(line)
	case isText:
		ev.Text = string(line)
	default:
		ev.Binary = line
	}
	return ev, nil
}
