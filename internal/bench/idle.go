package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// IdleConfig configures the idle scenario: Conns subscribers that receive
// nothing, to measure what an idle connection costs the server in memory.
type IdleConfig struct {
	Server      string
	GRPCAddr    string        // the server's gRPC host:port, for TransportGRPC; empty: the server's host, port 9090
	Transport   string        // default TransportSSE
	Reader      string        // ReaderGoroutine (default) or ReaderEpoll
	Topic       string        // empty: bench.idle-<random>
	Conns       int           // connections to open
	Settle      time.Duration // wait after connecting before measuring; default 3s
	Hold        time.Duration // keep the connections open this long after measuring
	PID         int           // server process: RSS from /proc/PID/status
	MetricsURL  string        // server metrics: process_resident_memory_bytes
	ConnectConc int           // default 200
	ConnectWait time.Duration // default 2m
	SourceAddrs int
	Progress    io.Writer
}

// IdleResult is the summary of an idle run.
type IdleResult struct {
	Scenario   string  `json:"scenario"`
	Transport  string  `json:"transport"`
	Server     string  `json:"server"`
	Topic      string  `json:"topic"`
	Conns      int     `json:"conns"`
	ConnectSec float64 `json:"connect_s"`
	SettleSec  float64 `json:"settle_s"`

	PID           int      `json:"pid,omitempty"`
	RSSBefore     uint64   `json:"rss_before_bytes,omitempty"` // VmRSS before connecting
	RSSAfter      uint64   `json:"rss_after_bytes,omitempty"`  // VmRSS with every connection open
	RSSPerConn    float64  `json:"rss_per_conn_bytes,omitempty"`
	MetricsBefore uint64   `json:"metrics_rss_before_bytes,omitempty"` // process_resident_memory_bytes
	MetricsAfter  uint64   `json:"metrics_rss_after_bytes,omitempty"`
	MetricsPerCon float64  `json:"metrics_rss_per_conn_bytes,omitempty"`
	ServerCPUSec  float64  `json:"server_cpu_during_settle_s,omitempty"`
	Disconnected  int64    `json:"disconnected"` // streams the server ended while held
	Errors        []string `json:"errors,omitempty"`
}

// RunIdle runs the idle scenario.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Conns < 1 {
		return nil, errors.New("--conns must be at least 1")
	}
	if cfg.PID <= 0 && cfg.MetricsURL == "" {
		return nil, errors.New("give the server's --pid or --metrics URL, or there is nothing to measure")
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportSSE
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 3 * time.Second
	}
	if cfg.ConnectConc <= 0 {
		cfg.ConnectConc = 200
	}
	if cfg.ConnectWait <= 0 {
		cfg.ConnectWait = 2 * time.Minute
	}
	if err := checkFileLimit(cfg.Conns); err != nil {
		return nil, err
	}
	st, err := setupSubscribers(cfg.Server, cfg.GRPCAddr, 1, cfg.SourceAddrs, cfg.Transport, cfg.Reader, cfg.Topic, "bench.idle-")
	if err != nil {
		return nil, err
	}
	tr, epoll, runID := st.tr, st.epoll, st.runID
	cfg.Topic = st.topic
	res := &IdleResult{
		Scenario: "idle", Transport: cfg.Transport, Server: cfg.Server, Topic: cfg.Topic,
		Conns: cfg.Conns, SettleSec: cfg.Settle.Seconds(), PID: cfg.PID,
	}
	before, err := measureRSS(ctx, cfg.PID, cfg.MetricsURL)
	if err != nil {
		return nil, err
	}
	res.RSSBefore, res.MetricsBefore = before.proc, before.metrics

	start := time.Now()
	g, err := startSubGroup(subGroupConfig{
		Transport: tr, Topic: cfg.Topic, N: cfg.Conns, RunID: runID, Size: 1, Publishers: 1,
		Concurrency: cfg.ConnectConc, Attempts: 5, Epoll: epoll,
	})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		return fmt.Sprintf("connecting: %d/%d (%d failed)", g.connected.Load(), cfg.Conns, g.failed.Load())
	})
	err = g.waitConnected(ctx, cfg.ConnectWait)
	pr.stop()
	if err != nil {
		return nil, err
	}
	res.ConnectSec = time.Since(start).Seconds()

	cpu := startCPUWatch(cfg.PID)
	pr = startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		return fmt.Sprintf("settling: %.1fs/%s with %d connections", time.Since(cpu.start).Seconds(), cfg.Settle, cfg.Conns)
	})
	err = sleepCtx(ctx, cfg.Settle)
	pr.stop()
	if err != nil {
		return nil, err
	}
	after, err := measureRSS(ctx, cfg.PID, cfg.MetricsURL)
	if err != nil {
		return nil, err
	}
	if srv, _ := cpu.finish(0, perDelivery); srv != nil {
		res.ServerCPUSec = srv.CPUSeconds
	}
	res.RSSAfter, res.MetricsAfter = after.proc, after.metrics
	if res.RSSAfter > 0 {
		res.RSSPerConn = (float64(res.RSSAfter) - float64(res.RSSBefore)) / float64(cfg.Conns)
	}
	if res.MetricsAfter > 0 {
		res.MetricsPerCon = (float64(res.MetricsAfter) - float64(res.MetricsBefore)) / float64(cfg.Conns)
	}
	if cfg.Hold > 0 {
		holdStart := time.Now()
		pr = startProgress(cfg.Progress, 250*time.Millisecond, func() string {
			return fmt.Sprintf("holding %d connections: %.0fs/%s", cfg.Conns, time.Since(holdStart).Seconds(), cfg.Hold)
		})
		err = sleepCtx(ctx, cfg.Hold)
		pr.stop()
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	res.Disconnected = g.ended.Load()
	g.stop()
	res.Errors = g.errorList(5)
	return res, nil
}

type rssSample struct{ proc, metrics uint64 }

func measureRSS(ctx context.Context, pid int, metricsURL string) (rssSample, error) {
	var s rssSample
	var err error
	if pid > 0 {
		if s.proc, err = ProcessRSS(pid); err != nil {
			return s, err
		}
	}
	if metricsURL != "" {
		if s.metrics, err = ScrapeRSS(ctx, metricsURL); err != nil {
			return s, err
		}
	}
	return s, nil
}

// WriteText writes the human-readable summary.
func (r *IdleResult) WriteText(w io.Writer) error {
	s := &summaryWriter{w: w}
	s.line("idle", "%d %s connections on %s, measured after %gs", r.Conns, r.Transport, r.Topic, r.SettleSec)
	s.line("connect", "all %d in %.2fs", r.Conns, r.ConnectSec)
	if r.RSSAfter > 0 {
		s.line("server", "pid %d: VmRSS %s → %s: %s per connection",
			r.PID, fmtBytes(float64(r.RSSBefore)), fmtBytes(float64(r.RSSAfter)), fmtSignedBytes(r.RSSPerConn))
	}
	if r.MetricsAfter > 0 {
		s.line("metrics", "process_resident_memory_bytes %s → %s: %s per connection",
			fmtBytes(float64(r.MetricsBefore)), fmtBytes(float64(r.MetricsAfter)), fmtSignedBytes(r.MetricsPerCon))
	}
	if r.PID > 0 {
		s.line("cpu", "server used %.3fs of cpu while %d connections sat idle for %gs", r.ServerCPUSec, r.Conns, r.SettleSec)
	}
	if r.Disconnected > 0 {
		s.line("ended", "%d connections ended by the server while held", r.Disconnected)
	}
	for _, e := range r.Errors {
		s.line("error", "%s", e)
	}
	return s.err
}

func fmtSignedBytes(b float64) string {
	if b < 0 {
		return "-" + fmtBytes(-b)
	}
	return fmtBytes(b)
}
