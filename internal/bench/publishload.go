package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// PublishConfig configures the publish scenario: Conns connections
// publishing as fast as the server answers for Duration, one event per
// request or Batch events per POST /v1/events.
type PublishConfig struct {
	Server      string
	Topic       string // empty: bench.publish-<random>
	Conns       int    // default 16
	Duration    time.Duration
	Batch       int // events per request; 0 or 1: single-event publish
	Payload     int
	PID         int
	SourceAddrs int
	Progress    io.Writer
	// Transport is "http" (the default), TransportGRPC: unary Publish
	// calls, or with Stream, PublishStream (grpc.go), or TransportWS:
	// publish commands on WebSocket connections (wspublish.go).
	Transport string
	GRPCAddr  string // the server's gRPC host:port; empty: the server's host, port 9090
	Stream    bool   // gRPC: requests on one PublishStream per connection
	InFlight  int    // gRPC and WebSocket: requests in flight per connection; default 16
}

// PublishResult is the summary of a publish run.
type PublishResult struct {
	Scenario     string  `json:"scenario"`
	Server       string  `json:"server"`
	Transport    string  `json:"transport,omitempty"` // "grpc", "grpc-stream" or "ws"; empty for HTTP
	InFlight     int     `json:"in_flight,omitempty"` // gRPC or WebSocket requests in flight per connection
	Topic        string  `json:"topic"`
	Conns        int     `json:"conns"`
	Batch        int     `json:"batch"`
	PayloadBytes int     `json:"payload_bytes"`
	WindowSec    float64 `json:"window_s"`
	Requests     uint64  `json:"requests"` // answered with success
	Events       uint64  `json:"events"`   // stored
	Errors       uint64  `json:"errors"`   // failed or refused requests
	RequestsPS   float64 `json:"requests_per_s"`
	EventsPS     float64 `json:"events_per_s"`
	Latency      Latency `json:"latency"` // request round trip

	ServerStats *ServerStats `json:"server_process,omitempty"`
	Loadgen     CPUStats     `json:"loadgen"`
	ErrorList   []string     `json:"error_list,omitempty"`
}

// publishLoad is one publish run; its workers are owned by RunPublish.
type publishLoad struct {
	cfg      PublishConfig // static
	d        *Dialer
	path     string
	single   bool
	topicEsc []byte // the topic as a JSON string, for batch bodies

	requests atomic.Uint64
	errs     errTally
	latency  *histogram.Histogram

	runID    uint64
	seq      atomic.Uint64
	deadline time.Time
}

// RunPublish runs the publish scenario.
func RunPublish(ctx context.Context, cfg PublishConfig) (*PublishResult, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 16
	}
	cfg.Batch = max(cfg.Batch, 1)
	switch cfg.Transport {
	case "", "http":
	case TransportGRPC:
		return runGRPCPublish(ctx, cfg)
	case TransportWS:
		return runWSPublish(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown transport %q: use http, %s or %s", cfg.Transport, TransportGRPC, TransportWS)
	}
	d, err := NewDialer(cfg.Server, cfg.SourceAddrs, 0)
	if err != nil {
		return nil, err
	}
	p := &publishLoad{
		cfg: cfg, d: d, single: cfg.Batch == 1, latency: histogram.New(),
		runID: newRunID(),
	}
	if cfg.Topic == "" {
		p.cfg.Topic = "bench.publish-" + strconv.FormatUint(p.runID, 36)
	}
	p.topicEsc = strconv.AppendQuote(nil, p.cfg.Topic)
	if p.single {
		p.path = "/v1/topics/" + url.PathEscape(p.cfg.Topic) + "/events"
	} else {
		p.path = "/v1/events"
	}

	// One request first, so a wrong URL or topic fails fast and clearly.
	probe := newHTTPConn(d)
	err = p.request(ctx, probe, nil)
	probe.Close()
	if err != nil {
		return nil, err
	}

	cpu := startCPUWatch(cfg.PID)
	p.deadline = cpu.start.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, p.deadline)
	defer cancel()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		el := time.Since(cpu.start).Seconds()
		n := p.requests.Load()
		return fmt.Sprintf("%5.1fs  %s requests (%s/s)  %s events/s  p99 %s  errors %d",
			el, fmtCount(float64(n)), fmtCount(float64(n)/el), fmtCount(float64(n)*float64(cfg.Batch)/el),
			fmtMillis(float64(p.latency.Quantile(0.99))/1e6), p.errs.count())
	})
	var wg sync.WaitGroup
	for range cfg.Conns {
		wg.Go(func() { p.worker(runCtx) })
	}
	wg.Wait()
	pr.stop()
	window := time.Since(cpu.start)

	reqs := p.requests.Load()
	events := reqs * uint64(cfg.Batch)
	res := &PublishResult{
		Scenario: "publish", Server: cfg.Server, Topic: p.cfg.Topic, Conns: cfg.Conns, Batch: cfg.Batch,
		PayloadBytes: cfg.Payload, WindowSec: window.Seconds(),
		Requests: reqs, Events: events, Errors: p.errs.count(),
		RequestsPS: float64(reqs) / window.Seconds(), EventsPS: float64(events) / window.Seconds(),
		Latency: latencyOf(p.latency),
	}
	res.ServerStats, res.Loadgen = cpu.finish(events, perEvent)
	res.ErrorList = p.errs.top(5)
	return res, ctx.Err()
}

func (p *publishLoad) worker(ctx context.Context) {
	hc := newHTTPConn(p.d)
	defer hc.Close()
	var body []byte
	for ctx.Err() == nil {
		t0 := time.Now()
		if err := p.request(ctx, hc, &body); err != nil {
			p.errs.add(err.Error())
			if hc.conn == nil && sleepCtx(ctx, 10*time.Millisecond) != nil { // connection failed: do not spin
				return
			}
			continue
		}
		p.latency.RecordInt(int64(time.Since(t0)))
		p.requests.Add(1)
	}
}

// request sends one publish request; body is a reusable buffer.
func (p *publishLoad) request(ctx context.Context, hc *httpConn, body *[]byte) error {
	if body == nil {
		body = new([]byte)
	}
	b := (*body)[:0]
	now := time.Now().UnixNano()
	if p.single {
		b = appendPayload(b, p.runID, 0, p.seq.Add(1), now, p.cfg.Payload)
	} else {
		b = append(b, `{"events":[`...)
		for i := range p.cfg.Batch {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"topic":`...)
			b = append(b, p.topicEsc...)
			b = append(b, `,"data":`...)
			b = appendPayload(b, p.runID, 0, p.seq.Add(1), now, p.cfg.Payload)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	*body = b
	status, resp, err := hc.Do(ctx, "POST", p.path, "application/json", b)
	if err != nil {
		return err
	}
	if status != 201 && status != 200 {
		return &errResponse{status: status, body: string(resp)}
	}
	return nil
}

// WriteText writes the human-readable summary.
func (r *PublishResult) WriteText(w io.Writer) error {
	s := &summaryWriter{w: w}
	what := "single events"
	if r.Batch > 1 {
		what = fmt.Sprintf("batches of %d events", r.Batch)
	}
	switch r.Transport {
	case "grpc":
		what += fmt.Sprintf(" (gRPC Publish, %d calls in flight per connection)", r.InFlight)
	case "grpc-stream":
		what += fmt.Sprintf(" (gRPC PublishStream, %d requests in flight per stream)", r.InFlight)
	case "ws":
		what += fmt.Sprintf(" (WebSocket publish commands, %d in flight per connection)", r.InFlight)
	}
	s.line("publish", "%s to %s over %d connections, %d-byte payloads, %.2fs", what, r.Topic, r.Conns, r.PayloadBytes, r.WindowSec)
	s.line("requests", "%d ok, %d errors: %s req/s", r.Requests, r.Errors, fmtCount(r.RequestsPS))
	s.line("events", "%d stored: %s events/s", r.Events, fmtCount(r.EventsPS))
	s.line("latency", "%s  request round trip", r.Latency)
	writeCPU(s, r.ServerStats, r.Loadgen)
	for _, e := range r.ErrorList {
		s.line("error", "%s", e)
	}
	return s.err
}

// errTally counts a run's failed requests, by message.
type errTally struct {
	n  atomic.Uint64
	mu sync.Mutex     // guards m
	m  map[string]int // failures by message
}

// add counts one failure.
func (e *errTally) add(msg string) {
	e.n.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = make(map[string]int)
	}
	e.m[msg]++
}

// count returns the failures counted.
func (e *errTally) count() uint64 { return e.n.Load() }

// top returns at most k messages, each with its count: "N× message".
func (e *errTally) top(k int) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for msg, n := range e.m {
		if len(out) == k {
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", n, msg))
	}
	return out
}

// first returns one failure's message, or "" when there was none.
func (e *errTally) first() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for msg := range e.m {
		return msg
	}
	return ""
}
