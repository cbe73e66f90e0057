package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/bench"
)

// benchOptions are the flags every bench scenario takes.
type benchOptions struct {
	server      string
	jsonOut     bool
	sourceAddrs int
}

func (o *benchOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	def := os.Getenv("HERALD_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	f.StringVar(&o.server, "server", def, "server base URL (env HERALD_SERVER)")
	f.BoolVar(&o.jsonOut, "json", false, "print the summary as one JSON object")
	f.IntVar(&o.sourceAddrs, "source-addrs", 0,
		"spread connections over source addresses 127.0.0.1…127.0.0.N (each gives ~28k ports); 0: the kernel's choice")
}

// progress returns where the live progress line goes: stdout when it is a
// terminal and the summary is text.
func (o *benchOptions) progress() io.Writer {
	if o.jsonOut || !bench.IsTerminal(os.Stdout) {
		return nil
	}
	return os.Stdout
}

// report prints a summary as text or JSON.
func (o *benchOptions) report(w io.Writer, r interface{ WriteText(io.Writer) error }) error {
	if o.jsonOut {
		return json.NewEncoder(w).Encode(r)
	}
	return r.WriteText(w)
}

// benchContext is cancelled by SIGINT or SIGTERM, and raises the open file
// limit so that one process can hold as many connections as allowed.
func benchContext(cmd *cobra.Command) (context.Context, context.CancelFunc, error) {
	if _, err := bench.RaiseFileLimit(); err != nil {
		return nil, nil, err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	return ctx, stop, nil
}

// interrupted turns a run ended by a signal into an error after its
// partial summary has been printed.
func interrupted(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted: the summary covers the run so far")
	}
	return err
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a herald server: fan-out latency, idle connections, publish throughput",
		Long: `Load-test a running herald server end to end, the way nats bench does.

  fanout   N subscribers on one topic, R events/s published for D: counts every
           delivery (lost, duplicate, out of order) and the publish→deliver
           latency histogram; with --pid, the server's CPU time per delivery
  idle     N idle connections (SSE or WebSocket): the server's memory per connection
  publish  publish throughput over HTTP or gRPC (unary Publish, PublishStream),
           single events or batches

The load generator is cheap per message (raw TCP, a hand-written SSE reader,
no allocation per delivery) so that it measures the server, not itself, but
on a small machine it shares the cores with the server: compare its own CPU
line with the server's.

One process holds at most RLIMIT_NOFILE connections (raised to the hard
limit at start; about 19,900 where the hard limit is 20,000), and one source
address gives about 28,000 ports towards one server address. For larger
loads run several bench processes (fanout --procs P does it for you) and
spread them over source addresses with --source-addrs.

Several nodes sharing topics (--engine redis): fanout --subscribe URL,URL…
spreads the subscribers' worker processes over the nodes while the events
are published to --server, and --node-pid measures the other nodes too.`,
		Example: `  herald bench fanout --subs 1000 --rate 100 --duration 10s --pid $(pgrep -f 'herald serve')
  herald bench fanout --subs 10000 --rate 20 --duration 30s --transport sse --json
  herald bench fanout --subs 10000 --rate 5 --duration 20s --transport ws --pid $(pgrep -f 'herald serve')
  herald bench idle --conns 10000 --pid $(pgrep -f 'herald serve')
  herald bench publish --conns 32 --duration 10s
  herald bench publish --conns 8 --duration 10s --batch 100
  herald bench fanout --subs 1000 --rate 100 --duration 10s --transport grpc --grpc-addr 127.0.0.1:9090
  herald bench fanout --subs 45000 --rate 2 --duration 30s --procs 6 --transport sse,ws \
    --server http://127.0.0.1:8081 --subscribe http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083
  herald bench publish --transport grpc --conns 4 --in-flight 32 --duration 10s
  herald bench publish --transport grpc --stream --batch 100 --conns 2 --duration 10s`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchFanoutCmd(), newBenchIdleCmd(), newBenchPublishCmd(), newBenchFanoutWorkerCmd())
	return cmd
}

func newBenchFanoutCmd() *cobra.Command {
	var (
		o          benchOptions
		cfg        bench.FanoutConfig
		allowLoss  bool
		transports []string
	)
	cmd := &cobra.Command{
		Use:   "fanout",
		Short: "Subscribers on one topic, a paced publisher: delivery counts and latency",
		Long: `Open --subs subscribers to one topic and wait until every one is connected
(herald's SSE stream starts with an id: frame; a long poll's first answer
carries the starting cursor). Then publish --rate events per second for
--duration over a few keep-alive connections, paced by a ticker that catches
up when late. Each payload is a JSON object with a sequence number and the
send time in Unix nanoseconds, padded to --payload bytes.

Every subscriber counts lost, duplicate and out-of-order events from the
sequence numbers and records publish→deliver latency in a log-linear
histogram (1% precision). After the last publish it waits up to --grace for
stragglers, then prints the summary. With --pid, the server's CPU time over
the run (utime+stime from /proc/PID/stat) is divided by the deliveries.

The exit status is non-zero when an event was lost or a publish failed
(unless --allow-loss) and whenever an event arrived twice or out of order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop, err := benchContext(cmd)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Server, cfg.SourceAddrs, cfg.Progress = o.server, o.sourceAddrs, o.progress()
			cfg.WorkerArgs = []string{"bench", "fanout-worker"}
			if len(transports) > 1 {
				cfg.Transports = transports
			} else if len(transports) == 1 {
				cfg.Transport = transports[0]
			}
			res, runErr := bench.RunFanout(ctx, cfg)
			if res == nil {
				return runErr
			}
			if err := o.report(cmd.OutOrStdout(), res); err != nil {
				return err
			}
			if runErr != nil {
				return interrupted(runErr)
			}
			return res.Failed(allowLoss)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.IntVar(&cfg.Subs, "subs", 100, "subscribers")
	f.Float64Var(&cfg.Rate, "rate", 100, "events published per second")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish")
	f.StringVar(&cfg.Topic, "topic", "", "topic (default bench.fanout-<random>)")
	f.IntVar(&cfg.Payload, "payload", 128, "payload size in bytes")
	f.StringSliceVar(&transports, "transport", []string{bench.TransportSSE},
		"subscriber transport: sse, ws, poll or grpc (Subscribe streams at --grpc-addr); several (sse,ws) mix them over the --procs worker processes")
	f.StringSliceVar(&cfg.SubscribeServers, "subscribe", nil,
		"base URLs of the nodes the subscribers connect to (default: --server), spread over the --procs worker processes; events are published to --server")
	f.IntSliceVar(&cfg.NodePIDs, "node-pid", nil, "process ids of the other nodes (with --subscribe), to measure their CPU time and RSS beside --pid's")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "", "the server's gRPC address for --transport grpc (default: the --server host, port 9090)")
	f.IntVar(&cfg.StreamsPerConn, "streams-per-conn", 1, "--transport grpc: subscribers sharing one HTTP/2 connection (1: a connection each, as SSE)")
	f.StringVar(&cfg.Reader, "reader", "", "how SSE streams are read: goroutine (one per stream) or epoll (a few epoll loops, no goroutine per stream; Linux)")
	f.IntVar(&cfg.PID, "pid", 0, "server process id, to measure its CPU time and RSS")
	f.IntVar(&cfg.Publishers, "publishers", 32, "most publish connections, opened when all are busy")
	f.DurationVar(&cfg.Grace, "grace", 5*time.Second, "after the last publish, wait this long at most for deliveries")
	f.IntVar(&cfg.ConnectConc, "connect-concurrency", 200, "connections being opened at once")
	f.DurationVar(&cfg.ConnectWait, "connect-timeout", 2*time.Minute, "longest wait for every subscriber to connect")
	f.IntVar(&cfg.Procs, "procs", 1, "spread the subscribers over this many bench processes (for more than one process can hold)")
	f.BoolVar(&allowLoss, "allow-loss", false, "exit 0 even when events were lost or publishes failed")
	return cmd
}

// newBenchFanoutWorkerCmd is the child process of fanout --procs: it holds
// its share of the subscribers and speaks JSON lines with its parent.
func newBenchFanoutWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "fanout-worker",
		Short:  "Internal: one process of bench fanout --procs",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := bench.RaiseFileLimit(); err != nil {
				return err
			}
			// The parent's SIGINT reaches the whole process group; the
			// parent tells the worker to stop by closing its stdin.
			signal.Ignore(os.Interrupt)
			return bench.RunFanoutWorker(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}

func newBenchIdleCmd() *cobra.Command {
	var (
		o   benchOptions
		cfg bench.IdleConfig
	)
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Idle connections: the server's memory per connection",
		Long: `Open --conns idle subscriber connections, wait --settle, and compare the
server's resident memory before and after: VmRSS from /proc/PID/status with
--pid, process_resident_memory_bytes from the server's metrics with --metrics
(default: the server's /metrics when --pid is not given). The connections are
then held for --hold before closing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop, err := benchContext(cmd)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Server, cfg.SourceAddrs, cfg.Progress = o.server, o.sourceAddrs, o.progress()
			if cfg.PID == 0 && cfg.MetricsURL == "" {
				cfg.MetricsURL = o.server + "/metrics"
			}
			res, err := bench.RunIdle(ctx, cfg)
			if err != nil {
				return err
			}
			return o.report(cmd.OutOrStdout(), res)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.IntVar(&cfg.Conns, "conns", 1000, "connections")
	f.StringVar(&cfg.Transport, "transport", bench.TransportSSE, "transport: sse, ws, poll or grpc")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "", "the server's gRPC address for --transport grpc (default: the --server host, port 9090)")
	f.StringVar(&cfg.Reader, "reader", "", "how SSE streams are read: goroutine (one per stream) or epoll (no goroutine per stream; Linux)")
	f.StringVar(&cfg.Topic, "topic", "", "topic (default bench.idle-<random>)")
	f.IntVar(&cfg.PID, "pid", 0, "server process id: read VmRSS from /proc/PID/status")
	f.StringVar(&cfg.MetricsURL, "metrics", "", "server metrics URL: read process_resident_memory_bytes")
	f.DurationVar(&cfg.Settle, "settle", 3*time.Second, "wait this long after connecting before measuring")
	f.DurationVar(&cfg.Hold, "hold", 0, "keep the connections open this long after measuring")
	f.IntVar(&cfg.ConnectConc, "connect-concurrency", 200, "connections being opened at once")
	f.DurationVar(&cfg.ConnectWait, "connect-timeout", 2*time.Minute, "longest wait for every connection")
	return cmd
}

func newBenchPublishCmd() *cobra.Command {
	var (
		o   benchOptions
		cfg bench.PublishConfig
	)
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish throughput over HTTP, gRPC or WebSocket: requests and events per second",
		Long: `Publish as fast as the server answers over --conns keep-alive connections for
--duration: single events (POST /v1/topics/{topic}/events) or, with --batch B,
B events per POST /v1/events. Reports requests/s, events/s and request
latency; with --pid, the server's CPU time per event.

With --transport grpc the requests are gRPC Publish calls (B events each),
--in-flight of them at once on each connection (HTTP/2 multiplexes them);
with --stream too, each connection holds one PublishStream with --in-flight
requests awaiting their answer. The gRPC client is raw HTTP/2 with
hand-encoded messages, cheap enough not to measure itself.

With --transport ws each connection is a WebSocket (GET /v1/ws) sending
publish commands, one event each, --in-flight of them awaiting their ack.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop, err := benchContext(cmd)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Server, cfg.SourceAddrs, cfg.Progress = o.server, o.sourceAddrs, o.progress()
			res, runErr := bench.RunPublish(ctx, cfg)
			if res == nil {
				return runErr
			}
			if err := o.report(cmd.OutOrStdout(), res); err != nil {
				return err
			}
			return interrupted(runErr)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.IntVar(&cfg.Conns, "conns", 16, "connections")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish")
	f.IntVar(&cfg.Batch, "batch", 1, "events per request (more than 1 uses POST /v1/events)")
	f.IntVar(&cfg.Payload, "payload", 128, "payload size in bytes")
	f.StringVar(&cfg.Topic, "topic", "", "topic (default bench.publish-<random>)")
	f.IntVar(&cfg.PID, "pid", 0, "server process id, to measure its CPU time")
	f.StringVar(&cfg.Transport, "transport", "http", "http, grpc (the gRPC API at --grpc-addr) or ws")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "", "the server's gRPC address (default: the --server host, port 9090)")
	f.BoolVar(&cfg.Stream, "stream", false, "gRPC: publish on PublishStream instead of unary calls")
	f.IntVar(&cfg.InFlight, "in-flight", 16, "gRPC and ws: requests in flight per connection")
	return cmd
}
