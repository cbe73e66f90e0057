package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// FanoutConfig configures the fanout scenario: Subs subscribers on one
// topic, and a publisher sending Rate events per second for Duration.
type FanoutConfig struct {
	Server   string // base URL, http://host:port
	GRPCAddr string // the server's gRPC host:port, for TransportGRPC; empty: the server's host, port 9090
	// StreamsPerConn is how many TransportGRPC subscribers share a
	// connection (HTTP/2 multiplexes them); 0 or 1: a connection each.
	StreamsPerConn int
	Transport      string        // TransportSSE, TransportPoll, TransportWS or TransportGRPC
	Reader         string        // ReaderGoroutine (default) or ReaderEpoll
	Topic          string        // empty: bench.fanout-<random>
	Subs           int           // subscribers
	Rate           float64       // events per second
	Duration       time.Duration // how long to publish
	Payload        int           // payload bytes
	Publishers     int           // most publish connections, opened as needed; default 32
	Grace          time.Duration // wait for stragglers after the last publish; default 5s
	ConnectConc    int           // connections opened at once; default 200
	ConnectWait    time.Duration // longest wait for all subscribers; default 2m
	SourceAddrs    int           // spread connections over 127.0.0.1…N; 0: let the kernel choose
	PID            int           // server process for CPU and RSS; 0: not measured
	Progress       io.Writer     // live progress line; nil: none
	KeepSnapshot   bool          // put the latency histogram in the result (for merging)
	// Procs > 1 runs the subscribers in that many child processes of this
	// binary, started with WorkerArgs (which must lead to RunFanoutWorker),
	// so that one run can hold more connections than one process may open.
	Procs      int
	WorkerArgs []string
	// SubscribeServers, when set, are the base URLs the subscribers connect
	// to instead of Server (the nodes of one deployment; events are still
	// published to Server): worker process i takes SubscribeServers[i % n].
	// It runs the subscribers in worker processes even when Procs is 1.
	SubscribeServers []string
	// Transports, when more than one, mix subscriber transports over the
	// worker processes: worker i takes Transports[(i / n) % len], n being
	// the number of subscribe servers (so that each server gets each one).
	// Transport is then Transports[0].
	Transports []string
	// NodePIDs are more server processes (the other nodes) whose CPU time
	// and RSS are measured beside PID's.
	NodePIDs []int
}

func (c *FanoutConfig) setDefaults() error {
	if c.Subs < 1 {
		return errors.New("--subs must be at least 1")
	}
	if c.Rate <= 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		return errors.New("--rate must be a positive number of events per second")
	}
	if c.Duration <= 0 {
		return errors.New("--duration must be positive")
	}
	if c.Publishers <= 0 {
		c.Publishers = 32
	}
	if c.Grace <= 0 {
		c.Grace = 5 * time.Second
	}
	if c.ConnectConc <= 0 {
		c.ConnectConc = 200
	}
	if c.ConnectWait <= 0 {
		c.ConnectWait = 2 * time.Minute
	}
	if len(c.Transports) > 0 {
		c.Transport = c.Transports[0]
	}
	if c.Transport == "" {
		c.Transport = TransportSSE
	}
	if len(c.Transports) > 1 || len(c.SubscribeServers) > 0 {
		n := max(len(c.SubscribeServers), 1) * max(len(c.Transports), 1)
		if c.Procs < n {
			return fmt.Errorf("%d subscribe servers × %d transports need --procs %d at least (one worker process each)",
				max(len(c.SubscribeServers), 1), max(len(c.Transports), 1), n)
		}
	}
	if c.Procs > 1 && len(c.WorkerArgs) == 0 {
		return errors.New("--procs needs the worker command (FanoutConfig.WorkerArgs)")
	}
	c.Procs = min(max(c.Procs, 1), c.Subs)
	return nil
}

// FanoutResult is the summary of a fanout run.
type FanoutResult struct {
	Scenario       string  `json:"scenario"`
	Transport      string  `json:"transport"`
	StreamsPerConn int     `json:"streams_per_conn,omitempty"` // gRPC streams sharing a connection
	Server         string  `json:"server"`
	Topic          string  `json:"topic"`
	Subscribers    int     `json:"subscribers"`
	Rate           float64 `json:"rate"`
	DurationSec    float64 `json:"duration_s"`
	PayloadBytes   int     `json:"payload_bytes"`
	ConnectSec     float64 `json:"connect_s"` // time to connect every subscriber
	Sent           uint64  `json:"sent"`      // events the server acknowledged
	PublishErrors  uint64  `json:"publish_errors"`
	Expected       uint64  `json:"expected"`  // sent × subscribers
	Delivered      uint64  `json:"delivered"` // distinct events received, all subscribers
	Lost           uint64  `json:"lost"`
	Duplicates     uint64  `json:"duplicates"`
	OutOfOrder     uint64  `json:"out_of_order"`
	Gaps           uint64  `json:"gaps"`         // gap signals received
	Disconnected   int64   `json:"disconnected"` // streams the server ended early
	Foreign        uint64  `json:"foreign"`      // events on the topic not from this run
	WindowSec      float64 `json:"window_s"`     // first publish → last delivery (or grace end)
	DeliveriesPS   float64 `json:"deliveries_per_s"`
	Latency        Latency `json:"latency"` // publish → deliver
	Publish        Latency `json:"publish_latency"`
	PublishBehind  float64 `json:"publish_behind_ms"` // most a publish started after its scheduled time
	PublishConns   int64   `json:"publish_conns"`     // connections the publisher needed

	ServerStats *ServerStats        `json:"server_process,omitempty"`
	Nodes       []ServerStats       `json:"node_processes,omitempty"` // FanoutConfig.NodePIDs
	Subscribe   []string            `json:"subscribe_servers,omitempty"`
	Loadgen     CPUStats            `json:"loadgen"`
	Errors      []string            `json:"errors,omitempty"`
	Histogram   *histogram.Snapshot `json:"histogram,omitempty"`
}

// Failed reports whether the run saw duplicates, reordering, or loss (loss
// only when allowLoss is false).
func (r *FanoutResult) Failed(allowLoss bool) error {
	switch {
	case r.Duplicates > 0 || r.OutOfOrder > 0:
		return fmt.Errorf("%d duplicate and %d out-of-order deliveries", r.Duplicates, r.OutOfOrder)
	case !allowLoss && r.Lost > 0:
		return fmt.Errorf("%d of %d deliveries lost (--allow-loss accepts loss)", r.Lost, r.Expected)
	case !allowLoss && r.PublishErrors > 0:
		return fmt.Errorf("%d publishes failed (--allow-loss accepts this)", r.PublishErrors)
	}
	return nil
}

// newRunID returns a random id that marks this run's payloads; it stays
// below 2^53 so that it survives a JSON round trip through a float.
func newRunID() uint64 { return rand.Uint64N(1 << 53) }

// RunFanout runs the fanout scenario: connect every subscriber, publish at
// the configured rate, wait up to the grace period for stragglers, and
// summarize.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	st, err := setupSubscribers(cfg.Server, cfg.GRPCAddr, cfg.StreamsPerConn, cfg.SourceAddrs, cfg.Transport, cfg.Reader, cfg.Topic, "bench.fanout-")
	if err != nil {
		return nil, err
	}
	d, tr, epoll, runID := st.d, st.tr, st.epoll, st.runID
	cfg.Topic = st.topic
	total := uint64(math.Round(cfg.Rate * cfg.Duration.Seconds()))
	total = max(total, 1)

	res := &FanoutResult{
		Scenario: "fanout", Transport: cfg.Transport, Subscribe: cfg.SubscribeServers, Server: cfg.Server, Topic: cfg.Topic,
		StreamsPerConn: btoi(cfg.Transport == TransportGRPC) * max(cfg.StreamsPerConn, 1),
		Subscribers:    cfg.Subs, Rate: cfg.Rate, DurationSec: cfg.Duration.Seconds(),
		// The size asked for, or more when the fields do not fit in it.
		PayloadBytes: len(appendPayload(nil, runID, 0, total, time.Now().UnixNano(), cfg.Payload)),
	}

	if len(cfg.Transports) > 1 {
		res.Transport = strings.Join(cfg.Transports, "+")
	}
	if cfg.Procs > 1 || len(cfg.SubscribeServers) > 0 {
		return runFanoutProcs(ctx, cfg, d, res, runID, total, epoll)
	}
	if err := checkFileLimit(cfg.Subs + cfg.Publishers); err != nil {
		return nil, err
	}

	// Connect.
	connectStart := time.Now()
	g, err := startSubGroup(subGroupConfig{
		Transport: tr, Topic: cfg.Topic, N: cfg.Subs, RunID: runID, Size: total,
		Publishers: cfg.Publishers, Concurrency: cfg.ConnectConc, Attempts: 5, Epoll: epoll,
	})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		return fmt.Sprintf("connecting: %d/%d subscribers (%d failed)", g.connected.Load(), cfg.Subs, g.failed.Load())
	})
	err = g.waitConnected(ctx, cfg.ConnectWait)
	pr.stop()
	if err != nil {
		return nil, err
	}
	res.ConnectSec = time.Since(connectStart).Seconds()

	// Publish, then wait for stragglers.
	pub := newPacedPublisher(d, cfg.Topic, runID, total, cfg.Rate, cfg.Payload, cfg.Publishers)
	cpu := startCPUWatch(cfg.PID)
	nodes := startNodeWatch(cfg.NodePIDs)
	pr = startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		el := time.Since(cpu.start).Seconds()
		n := g.latency.Count()
		return fmt.Sprintf("%5.1fs  sent %d/%d  delivered %s (%s/s)  p99 %s  errors %d  disconnected %d",
			el, pub.issued.Load(), total, fmtCount(float64(n)), fmtCount(float64(n)/el),
			fmtMillis(float64(g.latency.Quantile(0.99))/1e6), pub.errs.Load(), g.ended.Load())
	})
	pub.run(ctx)
	g.waitDelivered(ctx, pub.acked.Len()*uint64(cfg.Subs), time.Now().Add(cfg.Grace))
	pr.stop()
	window := time.Since(cpu.start)
	res.ServerStats, res.Loadgen = cpu.finish(g.latency.Count(), perDelivery)
	res.Nodes = nodes.finish(g.latency.Count())
	ended := g.ended.Load()
	g.stop()

	res.fill(pub, g.counts(pub.acked), ended, g.latency, window)
	res.Errors = append(g.errorList(5), res.Errors...)
	if cfg.KeepSnapshot {
		s := g.latency.Snapshot()
		res.Histogram = &s
	}
	return res, ctx.Err()
}

// fill sets the counts and figures of a finished run.
func (r *FanoutResult) fill(pub *pacedPublisher, c subCounts, ended int64, lat *histogram.Histogram, window time.Duration) {
	r.Sent = pub.acked.Len()
	r.PublishErrors = pub.errs.Load()
	r.Expected = r.Sent * uint64(r.Subscribers)
	r.Delivered = c.Received
	r.Lost, r.Duplicates, r.OutOfOrder = c.Lost, c.Duplicates, c.OutOfOrder
	r.Gaps, r.Foreign = c.Gaps, c.Foreign+c.Invalid
	r.Disconnected = ended
	r.WindowSec = window.Seconds()
	r.DeliveriesPS = float64(c.Received) / window.Seconds()
	r.Latency = latencyOf(lat)
	r.Publish = latencyOf(pub.latency)
	r.PublishBehind = float64(pub.behindNs.Load()) / 1e6
	r.PublishConns = pub.workers.Load()
	if err := pub.err(); err != nil {
		r.Errors = append(r.Errors, "first publish error: "+err.Error())
	}
}

// runFanoutProcs is RunFanout with the subscribers in child processes.
func runFanoutProcs(ctx context.Context, cfg FanoutConfig, d *Dialer, res *FanoutResult, runID, total uint64, epoll bool) (*FanoutResult, error) {
	addrs := cfg.SourceAddrs
	if addrs == 0 && cfg.Subs > 25_000 && len(d.loopbackV4()) > 0 {
		addrs = 1 // one source address per worker: ~28k ports each
	}
	shares := make([]workerStart, cfg.Procs)
	for i := range shares {
		server, transport := cfg.Server, cfg.Transport
		if n := len(cfg.SubscribeServers); n > 0 {
			server = cfg.SubscribeServers[i%n]
		}
		if n := len(cfg.Transports); n > 1 {
			transport = cfg.Transports[(i/max(len(cfg.SubscribeServers), 1))%n]
		}
		shares[i] = workerStart{
			Server: server, GRPCAddr: cfg.GRPCAddr, StreamsPerConn: cfg.StreamsPerConn, Transport: transport, Topic: cfg.Topic,
			Subs:  cfg.Subs/cfg.Procs + btoi(i < cfg.Subs%cfg.Procs),
			RunID: runID, Size: total, Publishers: cfg.Publishers, ConnectConc: max(cfg.ConnectConc/cfg.Procs, 1),
			ConnectWait: cfg.ConnectWait.Seconds(), SourceAddrs: addrs, FirstAddr: i * addrs, Epoll: epoll,
		}
	}
	connectStart := time.Now()
	pg, err := startProcGroup(ctx, cfg.WorkerArgs, shares)
	if err != nil {
		return nil, err
	}
	defer pg.stop()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		return fmt.Sprintf("connecting %d subscribers in %d processes: %.0fs", cfg.Subs, cfg.Procs, time.Since(connectStart).Seconds())
	})
	err = pg.waitReady()
	pr.stop()
	if err != nil {
		pg.kill()
		return nil, err
	}
	res.ConnectSec = time.Since(connectStart).Seconds()

	pub := newPacedPublisher(d, cfg.Topic, runID, total, cfg.Rate, cfg.Payload, cfg.Publishers)
	cpu := startCPUWatch(cfg.PID)
	nodes := startNodeWatch(cfg.NodePIDs)
	pr = startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		return fmt.Sprintf("%5.1fs  sent %d/%d  errors %d  (deliveries are counted in the worker processes)",
			time.Since(cpu.start).Seconds(), pub.issued.Load(), total, pub.errs.Load())
	})
	pub.run(ctx)
	pr.stop()
	results, err := pg.finish(workerDone{Acked: pub.acked.marshal(), Grace: cfg.Grace.Seconds()})
	if err != nil {
		pg.kill()
		return nil, err
	}
	window := time.Since(cpu.start)

	lat := histogram.New()
	var c subCounts
	var ended int64
	var workersCPU float64
	for _, w := range results {
		lat.MergeSnapshot(w.Histogram)
		c.Received += w.Counts.Received
		c.Lost += w.Counts.Lost
		c.Duplicates += w.Counts.Duplicates
		c.OutOfOrder += w.Counts.OutOfOrder
		c.Invalid += w.Counts.Invalid
		c.Gaps += w.Counts.Gaps
		c.Foreign += w.Counts.Foreign
		ended += w.Ended
		workersCPU += w.CPUSec
		res.Errors = append(res.Errors, w.Errors...)
	}
	res.ServerStats, res.Loadgen = cpu.finish(lat.Count(), perDelivery)
	res.Nodes = nodes.finish(lat.Count())
	// The parent's own CPU time plus its workers'.
	res.Loadgen = cpuStats(time.Duration((res.Loadgen.CPUSeconds+workersCPU)*float64(time.Second)), window, lat.Count(), perDelivery)
	res.fill(pub, c, ended, lat, window)
	if cfg.KeepSnapshot {
		s := lat.Snapshot()
		res.Histogram = &s
	}
	return res, ctx.Err()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// WriteText writes the human-readable summary.
func (r *FanoutResult) WriteText(w io.Writer) error {
	s := &summaryWriter{w: w}
	s.line("fanout", "%d %s subscribers on %s, %g events/s for %s, %d-byte payloads",
		r.Subscribers, r.Transport, r.Topic, r.Rate, time.Duration(r.DurationSec*float64(time.Second)), r.PayloadBytes)
	if r.StreamsPerConn > 1 {
		s.line("", "%d gRPC streams per connection", r.StreamsPerConn)
	}
	if len(r.Subscribe) > 0 {
		s.line("", "subscribers spread over %s; events published to %s", strings.Join(r.Subscribe, " "), r.Server)
	}
	s.line("connect", "all %d subscribers in %.2fs", r.Subscribers, r.ConnectSec)
	s.line("sent", "%d events acknowledged, %d publish errors, %d publish connections, at most %s behind schedule",
		r.Sent, r.PublishErrors, r.PublishConns, fmtMillis(r.PublishBehind))
	if behind := r.PublishBehind / 1e3; behind > 0.1*r.DurationSec && behind > 0.1 {
		s.line("warning", "the publisher fell behind: the offered rate was lower than --rate (the server acknowledged too slowly; raise --publishers)")
	}
	pct := 0.0
	if r.Expected > 0 {
		pct = 100 * float64(r.Delivered) / float64(r.Expected)
	}
	s.line("delivered", "%d of %d expected (%.3f%%): lost %d, duplicate %d, out-of-order %d",
		r.Delivered, r.Expected, pct, r.Lost, r.Duplicates, r.OutOfOrder)
	if r.Lost > 0 && r.Disconnected == 0 && r.Gaps == 0 {
		s.line("", "lost = not delivered by the end of the grace period; no stream ended early and no gap was signalled,")
		s.line("", "so the server may still have been delivering them (latency near the run's length says so: raise --grace)")
	}
	if r.Gaps > 0 || r.Disconnected > 0 || r.Foreign > 0 {
		s.line("", "gap signals %d, streams ended by the server %d, foreign events %d", r.Gaps, r.Disconnected, r.Foreign)
	}
	s.line("rate", "%s deliveries/s over %.2fs", fmtCount(r.DeliveriesPS), r.WindowSec)
	s.line("latency", "%s  publish→deliver", r.Latency)
	s.line("publish", "%s  POST round trip", r.Publish)
	writeCPU(s, r.ServerStats, r.Loadgen)
	writeNodes(s, r.ServerStats, r.Nodes)
	for _, e := range r.Errors {
		s.line("error", "%s", e)
	}
	return s.err
}

func writeCPU(s *summaryWriter, srv *ServerStats, lg CPUStats) {
	if srv != nil {
		line := fmt.Sprintf("pid %d: cpu %.2fs (%.2f cores)", srv.PID, srv.CPUSeconds, srv.CPUCores)
		if srv.MicrosPerDelivery > 0 {
			line += fmt.Sprintf(", %.2f µs per delivery", srv.MicrosPerDelivery)
		}
		if srv.MicrosPerEvent > 0 {
			line += fmt.Sprintf(", %.2f µs per event", srv.MicrosPerEvent)
		}
		if srv.RSSBytes > 0 {
			line += ", rss " + fmtBytes(float64(srv.RSSBytes))
		}
		s.line("server", "%s", line)
	}
	line := fmt.Sprintf("cpu %.2fs (%.2f cores)", lg.CPUSeconds, lg.CPUCores)
	if lg.MicrosPerDelivery > 0 {
		line += fmt.Sprintf(", %.2f µs per delivery", lg.MicrosPerDelivery)
	}
	if lg.MicrosPerEvent > 0 {
		line += fmt.Sprintf(", %.2f µs per event", lg.MicrosPerEvent)
	}
	s.line("loadgen", "%s", line)
}

// cpuWatch measures the CPU time of the server (when its pid is known) and
// of this process over a window.
type cpuWatch struct {
	pid       int
	start     time.Time
	serverCPU time.Duration
	selfCPU   time.Duration
	serverErr error
}

func startCPUWatch(pid int) *cpuWatch {
	w := &cpuWatch{pid: pid, selfCPU: SelfCPU()}
	if pid > 0 {
		w.serverCPU, w.serverErr = ProcessCPU(pid)
	}
	w.start = time.Now()
	return w
}

// finish ends the window; n units is what the CPU time is divided by.
func (w *cpuWatch) finish(n uint64, unit perUnit) (*ServerStats, CPUStats) {
	window := time.Since(w.start)
	self := cpuStats(SelfCPU()-w.selfCPU, window, n, unit)
	if w.pid <= 0 || w.serverErr != nil {
		return nil, self
	}
	cpu, err := ProcessCPU(w.pid)
	if err != nil {
		return nil, self
	}
	c := cpuStats(cpu-w.serverCPU, window, n, unit)
	st := &ServerStats{
		PID: w.pid, CPUSeconds: c.CPUSeconds, CPUCores: c.CPUCores,
		MicrosPerDelivery: c.MicrosPerDelivery, MicrosPerEvent: c.MicrosPerEvent,
	}
	st.RSSBytes, _ = ProcessRSS(w.pid)
	return st, self
}

// nodeWatch measures the CPU time of the other nodes of a deployment.
type nodeWatch []*cpuWatch

func startNodeWatch(pids []int) nodeWatch {
	w := make(nodeWatch, 0, len(pids))
	for _, pid := range pids {
		w = append(w, startCPUWatch(pid))
	}
	return w
}

// finish ends the window of every node; n deliveries is what their CPU
// time is divided by.
func (w nodeWatch) finish(n uint64) []ServerStats {
	var out []ServerStats
	for _, c := range w {
		if st, _ := c.finish(n, perDelivery); st != nil {
			out = append(out, *st)
		}
	}
	return out
}

// writeNodes writes a line per other node, and the total of every server
// process, when there are other nodes.
func writeNodes(s *summaryWriter, first *ServerStats, nodes []ServerStats) {
	if len(nodes) == 0 {
		return
	}
	var cpu, cores, us float64
	var rss uint64
	all := nodes
	if first != nil {
		all = append([]ServerStats{*first}, nodes...)
	}
	for _, n := range nodes {
		s.line("node", "pid %d: cpu %.2fs (%.2f cores), %.2f µs per delivery, rss %s",
			n.PID, n.CPUSeconds, n.CPUCores, n.MicrosPerDelivery, fmtBytes(float64(n.RSSBytes)))
	}
	for _, n := range all {
		cpu, cores, us, rss = cpu+n.CPUSeconds, cores+n.CPUCores, us+n.MicrosPerDelivery, rss+n.RSSBytes
	}
	s.line("nodes", "%d server processes: cpu %.2fs (%.2f cores), %.2f µs per delivery, rss %s",
		len(all), cpu, cores, us, fmtBytes(float64(rss)))
}
