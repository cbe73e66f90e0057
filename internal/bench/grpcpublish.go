package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// grpcPublishLoad is a publish run over gRPC: Conns connections, each
// owned by one worker goroutine (started and waited for by
// runGRPCPublish) that keeps InFlight unary Publish calls in flight, or
// InFlight requests in flight on one PublishStream.
type grpcPublishLoad struct {
	cfg   PublishConfig // static
	d     *Dialer       // dials the gRPC address
	call  h2Call        // the method called
	runID uint64

	requests atomic.Uint64 // answered with success
	events   atomic.Uint64 // acks received
	errs     errTally
	seq      atomic.Uint64
	latency  *histogram.Histogram
}

// runGRPCPublish is RunPublish over gRPC.
func runGRPCPublish(ctx context.Context, cfg PublishConfig) (*PublishResult, error) {
	if cfg.InFlight <= 0 {
		cfg.InFlight = 16
	}
	d, err := NewDialer(cfg.Server, cfg.SourceAddrs, 0)
	if err != nil {
		return nil, err
	}
	if err := d.UseGRPC(cfg.GRPCAddr, 0); err != nil {
		return nil, err
	}
	gd := d.forGRPC()
	p := &grpcPublishLoad{cfg: cfg, d: gd, runID: newRunID(), latency: histogram.New()}
	if p.cfg.Topic == "" {
		p.cfg.Topic = "bench.publish-" + strconv.FormatUint(p.runID, 36)
	}
	path := grpcPublishPath
	if cfg.Stream {
		path = grpcPublishStreamPath
	}
	p.call = h2Call{authority: gd.host, path: path}

	// One call first, so a wrong address or topic fails fast and clearly.
	if err := p.probe(ctx); err != nil {
		return nil, err
	}

	cpu := startCPUWatch(cfg.PID)
	runCtx, cancel := context.WithDeadline(ctx, cpu.start.Add(cfg.Duration))
	defer cancel()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		el := time.Since(cpu.start).Seconds()
		n, e := p.requests.Load(), p.events.Load()
		return fmt.Sprintf("%5.1fs  %s requests (%s/s)  %s events/s  p99 %s  errors %d",
			el, fmtCount(float64(n)), fmtCount(float64(n)/el), fmtCount(float64(e)/el),
			fmtMillis(float64(p.latency.Quantile(0.99))/1e6), p.errs.count())
	})
	var wg sync.WaitGroup
	for range cfg.Conns {
		wg.Go(func() {
			for runCtx.Err() == nil {
				if err := p.worker(runCtx); err != nil && runCtx.Err() == nil {
					p.fail(err)
					sleepCtx(runCtx, 10*time.Millisecond) // do not spin on a dead server
				}
			}
		})
	}
	wg.Wait()
	pr.stop()
	window := time.Since(cpu.start)

	reqs, events := p.requests.Load(), p.events.Load()
	res := &PublishResult{
		Scenario: "publish", Server: cfg.Server, Transport: "grpc", InFlight: cfg.InFlight,
		Topic: p.cfg.Topic, Conns: cfg.Conns, Batch: cfg.Batch,
		PayloadBytes: cfg.Payload, WindowSec: window.Seconds(),
		Requests: reqs, Events: events, Errors: p.errs.count(),
		RequestsPS: float64(reqs) / window.Seconds(), EventsPS: float64(events) / window.Seconds(),
		Latency: latencyOf(p.latency),
	}
	if cfg.Stream {
		res.Transport = "grpc-stream"
	}
	res.ServerStats, res.Loadgen = cpu.finish(events, perEvent)
	res.ErrorList = p.errs.top(5)
	return res, ctx.Err()
}

func (p *grpcPublishLoad) fail(err error) { p.errs.add(err.Error()) }

// reqBuilder builds a worker's requests in buffers it reuses: the request
// is copied into the connection's write buffer when sent.
type reqBuilder struct {
	pbuf     []byte   // the payloads, back to back
	payloads [][]byte // slices of pbuf
	out      []byte   // the encoded request
}

// request builds one PublishRequest of Batch events, with id.
func (p *grpcPublishLoad) request(rb *reqBuilder, id uint64) []byte {
	now := time.Now().UnixNano()
	rb.pbuf, rb.payloads = rb.pbuf[:0], rb.payloads[:0]
	for range p.cfg.Batch {
		start := len(rb.pbuf)
		rb.pbuf = appendPayload(rb.pbuf, p.runID, 0, p.seq.Add(1), now, p.cfg.Payload)
		rb.payloads = append(rb.payloads, rb.pbuf[start:])
	}
	rb.out = appendPublishRequest(rb.out[:0], p.cfg.Topic, id, rb.payloads)
	return rb.out
}

// dial opens one HTTP/2 connection to the gRPC address.
func (p *grpcPublishLoad) dial(ctx context.Context) (net.Conn, *h2Conn, error) {
	conn, err := p.d.Dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	c, err := newH2Conn(conn, 32<<10)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("start http/2: %w", err)
	}
	return conn, c, nil
}

// probe makes one call and waits for its answer.
func (p *grpcPublishLoad) probe(ctx context.Context) error {
	conn, c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	st, err := c.open(p.call)
	if err != nil {
		return err
	}
	req := p.request(new(reqBuilder), 1)
	if err := c.send(st, req, !p.cfg.Stream); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	for {
		if _, err := c.readFrame(); err != nil {
			return fmt.Errorf("publish over grpc: %w", err)
		}
		if msg, ok, err := st.nextMessage(); err != nil || ok {
			if err != nil {
				return err
			}
			if _, refused := publishAnswer(msg); refused != "" {
				return fmt.Errorf("publish over grpc: refused: %s", refused)
			}
			if p.cfg.Stream {
				return nil
			}
		}
		if st.ended {
			if st.status != 0 {
				return fmt.Errorf("publish over grpc: %w", st.err())
			}
			return nil
		}
	}
}

// worker runs one connection until ctx ends or the connection fails.
func (p *grpcPublishLoad) worker(ctx context.Context) error {
	conn, c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if p.cfg.Stream {
		return p.streamWorker(ctx, c)
	}
	return p.unaryWorker(ctx, c)
}

// unaryWorker keeps InFlight Publish calls in flight on c.
func (p *grpcPublishLoad) unaryWorker(ctx context.Context, c *h2Conn) error {
	started := make(map[uint32]time.Time, p.cfg.InFlight)
	var rb reqBuilder
	for ctx.Err() == nil {
		sent := false
		for len(started) < p.cfg.InFlight {
			req := p.request(&rb, 0)
			if c.sendConn < int64(len(req)+5) {
				break // wait for the server's WINDOW_UPDATE
			}
			st, err := c.open(p.call)
			if err != nil {
				return err
			}
			if err := c.send(st, req, true); err != nil {
				return err
			}
			started[st.id] = time.Now()
			sent = true
		}
		if sent {
			if err := c.flush(); err != nil {
				return err
			}
		}
		// Take every answer that has arrived before writing again, so that
		// one write carries many new calls.
		for first := true; first || c.buffered(); first = false {
			st, err := c.readFrame()
			if err != nil {
				return err
			}
			if st == nil || !st.ended {
				continue
			}
			t0, ok := started[st.id]
			if !ok {
				continue
			}
			delete(started, st.id)
			if st.status != 0 {
				p.fail(st.err())
				continue
			}
			p.latency.RecordInt(int64(time.Since(t0)))
			p.requests.Add(1)
			p.events.Add(uint64(p.cfg.Batch))
		}
	}
	return nil
}

// streamWorker keeps InFlight requests in flight on one PublishStream.
func (p *grpcPublishLoad) streamWorker(ctx context.Context, c *h2Conn) error {
	st, err := c.open(p.call)
	if err != nil {
		return err
	}
	sentAt := make([]time.Time, 0, p.cfg.InFlight) // answers come in order
	var rb reqBuilder
	var id uint64
	for ctx.Err() == nil {
		sent := false
		for len(sentAt) < p.cfg.InFlight {
			req := p.request(&rb, id+1)
			if !c.canSend(st, len(req)) {
				break // wait for the server's WINDOW_UPDATE
			}
			if err := c.send(st, req, false); err != nil {
				return err
			}
			id++
			sentAt = append(sentAt, time.Now())
			sent = true
		}
		if sent {
			if err := c.flush(); err != nil {
				return err
			}
		}
		if _, err := c.readFrame(); err != nil {
			return err
		}
		for c.buffered() && !st.ended {
			if _, err := c.readFrame(); err != nil {
				return err
			}
		}
		for {
			msg, ok, err := st.nextMessage()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if len(sentAt) == 0 {
				return errors.New("publish stream: an answer to no request")
			}
			t0 := sentAt[0]
			sentAt = append(sentAt[:0], sentAt[1:]...)
			acks, refused := publishAnswer(msg)
			if refused != "" {
				p.fail(errors.New(refused))
				continue
			}
			p.latency.RecordInt(int64(time.Since(t0)))
			p.requests.Add(1)
			p.events.Add(uint64(acks))
		}
		if st.ended {
			return fmt.Errorf("publish stream: %w", st.err())
		}
	}
	return nil
}
