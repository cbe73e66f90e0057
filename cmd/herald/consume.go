package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/client"
)

// consumeFlags are the flags of herald consume.
type consumeFlags struct {
	server, grpcAddr, transport, member, execCmd, input string
	concurrency, count, termExit                        int
	nakDelay, timeout                                   time.Duration
}

// The inputs of --exec.
const (
	inputPayload = "payload"
	inputJSON    = "json"
)

func newConsumeCmd() *cobra.Command {
	var f consumeFlags
	cmd := &cobra.Command{
		Use:   "consume GROUP",
		Short: "Be a member of a consumer group: print its events (or run a command per event), acking each when done",
		Long: `Join the consumer group GROUP as a member (create it with "herald group
create") and take its events, each handed to one member at a time.

Without --exec, each event is printed as one JSON line (the line of "herald
subscribe", plus "delivery", the event's delivery count, and "delivery_id")
and acked once printed: the group never delivers it again.

With --exec CMD, CMD runs (with sh -c) once per event: the event's payload
on its standard input (--input json gives the whole JSON line instead), and
its place in the environment:

  HERALD_GROUP, HERALD_MEMBER    the group and this member
  HERALD_TOPIC, HERALD_OFFSET, HERALD_EPOCH, HERALD_CURSOR, HERALD_TYPE
  HERALD_DELIVERY                1 on the first delivery; more means an
                                 earlier attempt did not finish
  HERALD_DELIVERY_ID             the delivery's id

Exit status 0 acks the event; any other naks it, so the group delivers it
again (after --nak-delay, or the group's backoff) until max-deliveries,
then parks it on the dead-letter topic; --term-exit-code N makes status N
dead-letter it at once. CMD's output goes to this command's output. While
CMD runs longer than half its lease, the lease is extended, so a command
may take as long as it needs (--timeout bounds it: then it is killed and
the event naked). Up to --concurrency commands run at once.

The group leases events to this process only while it runs: if it dies,
its events go to other members (at once over --transport grpc, after the
lease otherwise). Delivery is at least once: make commands idempotent.
SIGINT or SIGTERM stops it; running commands are killed and their events
naked.`,
		Example: `  herald consume mailer                                   # print and ack
  herald consume mailer --exec './send-mail.sh' --concurrency 4
  herald consume thumbs --exec 'convert - -resize 64x64 "out/$HERALD_OFFSET.png"'
  herald consume billing --exec 'curl -fsS -d @- https://billing.internal/hook' --input json
  herald consume mailer --transport grpc --grpc-addr 127.0.0.1:9090 --member worker-1
  herald consume mailer --count 10 | jq .data                  # take ten, then exit`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConsume(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	fl.StringVar(&f.transport, "transport", publishHTTP, "http (POST /v1/groups/GROUP/fetch) or grpc (the Consume stream at --grpc-addr)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", defaultGRPCAddr, "the server's gRPC address, host:port, for --transport grpc")
	fl.StringVar(&f.member, "member", "", "this member's name (default HOSTNAME-PID); give each worker a stable one")
	fl.StringVar(&f.execCmd, "exec", "", "run this shell command per event instead of printing it; exit 0 acks, other statuses nak")
	fl.StringVar(&f.input, "input", inputPayload, "--exec's standard input: payload (the event's data) or json (the whole event line)")
	fl.IntVar(&f.concurrency, "concurrency", 1, "events handled at once")
	fl.IntVar(&f.count, "count", 0, "exit after this many events were acked (0: run until interrupted)")
	fl.DurationVar(&f.nakDelay, "nak-delay", 0, "wait before a naked event is delivered again (default: the group's backoff)")
	fl.DurationVar(&f.timeout, "timeout", 0, "kill a command running this long, and nak its event (0: no limit)")
	fl.IntVar(&f.termExit, "term-exit-code", 0, "a command exiting with this status dead-letters its event at once (0: off)")
	return cmd
}

// consumeLine is the JSON line printed (or given to --input json) for an
// event.
type consumeLine struct {
	eventLine
	Delivery   int    `json:"delivery"`
	DeliveryID string `json:"delivery_id"`
}

func runConsume(cmd *cobra.Command, group string, f *consumeFlags) error {
	switch {
	case f.concurrency < 1:
		return fmt.Errorf("--concurrency %d: use 1 or more", f.concurrency)
	case f.count < 0:
		return fmt.Errorf("--count %d: use 0 or more", f.count)
	case f.transport != publishHTTP && f.transport != publishGRPC:
		return fmt.Errorf("--transport %q: use %s or %s", f.transport, publishHTTP, publishGRPC)
	case f.input != inputPayload && f.input != inputJSON:
		return fmt.Errorf("--input %q: use %s or %s", f.input, inputPayload, inputJSON)
	case f.termExit < 0 || f.termExit > 255:
		return fmt.Errorf("--term-exit-code %d: use 1 to 255 (0: off)", f.termExit)
	case f.execCmd == "" && (f.timeout != 0 || f.termExit != 0 || cmd.Flags().Changed("input")):
		return errors.New("--timeout, --term-exit-code and --input are for --exec")
	}
	if f.member == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "herald"
		}
		f.member = host + "-" + strconv.Itoa(os.Getpid())
	}
	c, err := newTransportClient(f.server, f.transport == publishGRPC, f.grpcAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	w := &consumeOutput{w: bufio.NewWriter(cmd.OutOrStdout())}
	var acked, taken atomic.Int64 // with --count: events acked, and those running or acked
	errOut := cmd.ErrOrStderr()
	handler := func(hctx context.Context, m *client.GroupMessage) error {
		if f.count > 0 && taken.Add(1) > int64(f.count) {
			return client.NakAfter(errors.New("--count reached"), 0) // handed back for another member
		}
		line := consumeLine{eventLine: newEventLine(&m.Event, m.Cursor), Delivery: m.Delivery, DeliveryID: m.ID}
		var err error
		if f.execCmd == "" {
			err = w.print(&line)
		} else {
			err = runExec(hctx, f, group, m, &line, w, errOut)
		}
		switch {
		case f.count == 0:
		case err != nil:
			taken.Add(-1) // it will come again: room for it
		case acked.Add(1) == int64(f.count):
			cancel() // the ack still goes out: Consume answers before it returns
		}
		return err
	}
	onErr := func(err error) { fmt.Fprintf(errOut, "herald: %v\n", err) }
	err = c.Consume(ctx, group, handler, client.WithMember(f.member), client.WithConcurrency(f.concurrency),
		client.WithNakDelay(f.nakDelay), client.WithConsumeErrors(onErr))
	if ferr := w.flush(); err == nil {
		err = ferr
	}
	return err
}

// consumeOutput is the command's standard output, shared by concurrent
// handlers: whole lines, flushed before the event is acked.
type consumeOutput struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *consumeOutput) print(l *consumeLine) error {
	b, err := marshalLine(l)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(b)
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// write copies a command's output through, in whole writes.
func (o *consumeOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.w.Write(p)
	if err == nil {
		err = o.w.Flush()
	}
	return n, err
}

func (o *consumeOutput) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Flush()
}

// marshalLine encodes l as one JSON line, without HTML escaping.
func marshalLine(l *consumeLine) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// runExec runs --exec for m and turns its exit status into m's answer.
func runExec(ctx context.Context, f *consumeFlags, group string, m *client.GroupMessage, line *consumeLine, stdout io.Writer, stderr io.Writer) error {
	var input []byte
	var err error
	if f.input == inputJSON {
		input, err = marshalLine(line)
	} else {
		input, err = m.Event.Payload()
	}
	if err != nil {
		return err
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", f.execCmd)
	c.Stdin = bytes.NewReader(input)
	c.Stdout, c.Stderr = stdout, stderr
	c.Env = append(os.Environ(),
		"HERALD_GROUP="+group,
		"HERALD_MEMBER="+f.member,
		"HERALD_TOPIC="+m.Event.Topic,
		"HERALD_OFFSET="+strconv.FormatUint(m.Event.Offset, 10),
		"HERALD_EPOCH="+m.Event.Epoch,
		"HERALD_CURSOR="+m.Cursor,
		"HERALD_TYPE="+m.Event.Type,
		"HERALD_DELIVERY="+strconv.Itoa(m.Delivery),
		"HERALD_DELIVERY_ID="+m.ID,
	)
	// A killed command's children must not keep its output open.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = time.Second
	err = c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && f.termExit != 0 && ee.ExitCode() == f.termExit:
		return client.Terminal(fmt.Errorf("--exec exited with status %d", f.termExit))
	case ctx.Err() != nil:
		return fmt.Errorf("--exec %s #%d: %w", m.Event.Topic, m.Event.Offset, ctx.Err())
	default:
		fmt.Fprintf(stderr, "herald: --exec for %s #%d: %v; naking it\n", m.Event.Topic, m.Event.Offset, err)
		return err
	}
}
