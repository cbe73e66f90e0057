package bench

import (
	"bytes"
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

// wsPublishLoad is a publish run over WebSocket (docs/protocol.md,
// publish): Conns connections, each owned by one worker goroutine
// (started and waited for by runWSPublish) that keeps InFlight publish
// commands in flight, one frame per write, while a reader goroutine of its
// own (ended by the worker closing the connection) takes the replies,
// which come in the order of the commands.
type wsPublishLoad struct {
	cfg   PublishConfig // static
	d     *Dialer
	runID uint64
	topic []byte // the topic as a JSON string

	requests atomic.Uint64 // acked
	errs     errTally
	seq      atomic.Uint64
	latency  *histogram.Histogram
}

// runWSPublish is RunPublish over WebSocket; single events only.
func runWSPublish(ctx context.Context, cfg PublishConfig) (*PublishResult, error) {
	if cfg.Batch > 1 {
		return nil, errors.New("--batch: a WebSocket publish command carries one event; leave --batch out")
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 16
	}
	d, err := NewDialer(cfg.Server, cfg.SourceAddrs, 0)
	if err != nil {
		return nil, err
	}
	p := &wsPublishLoad{cfg: cfg, d: d, runID: newRunID(), latency: histogram.New()}
	if p.cfg.Topic == "" {
		p.cfg.Topic = "bench.publish-" + strconv.FormatUint(p.runID, 36)
	}
	p.topic = strconv.AppendQuote(nil, p.cfg.Topic)

	// One publish first, so a wrong URL or topic fails fast and clearly.
	probe := p.cfg
	probe.InFlight = 1
	pp := &wsPublishLoad{cfg: probe, d: d, runID: p.runID, topic: p.topic, latency: histogram.New()}
	if err := pp.worker(ctx, 1); err != nil {
		return nil, err
	}
	if pp.errs.count() > 0 {
		return nil, errors.New(pp.errs.first())
	}

	cpu := startCPUWatch(cfg.PID)
	runCtx, cancel := context.WithDeadline(ctx, cpu.start.Add(cfg.Duration))
	defer cancel()
	pr := startProgress(cfg.Progress, 250*time.Millisecond, func() string {
		el := time.Since(cpu.start).Seconds()
		n := p.requests.Load()
		return fmt.Sprintf("%5.1fs  %s events (%s/s)  p99 %s  errors %d",
			el, fmtCount(float64(n)), fmtCount(float64(n)/el), fmtMillis(float64(p.latency.Quantile(0.99))/1e6), p.errs.count())
	})
	var wg sync.WaitGroup
	for range cfg.Conns {
		wg.Go(func() {
			for runCtx.Err() == nil {
				if err := p.worker(runCtx, -1); err != nil && runCtx.Err() == nil {
					p.fail(err.Error())
					sleepCtx(runCtx, 10*time.Millisecond) // do not spin on a dead server
				}
			}
		})
	}
	wg.Wait()
	pr.stop()
	window := time.Since(cpu.start)

	n := p.requests.Load()
	res := &PublishResult{
		Scenario: "publish", Server: cfg.Server, Transport: "ws", InFlight: cfg.InFlight,
		Topic: p.cfg.Topic, Conns: cfg.Conns, Batch: 1,
		PayloadBytes: cfg.Payload, WindowSec: window.Seconds(),
		Requests: n, Events: n, Errors: p.errs.count(),
		RequestsPS: float64(n) / window.Seconds(), EventsPS: float64(n) / window.Seconds(),
		Latency: latencyOf(p.latency),
	}
	res.ServerStats, res.Loadgen = cpu.finish(n, perEvent)
	res.ErrorList = p.errs.top(5)
	return res, ctx.Err()
}

func (p *wsPublishLoad) fail(e string) { p.errs.add(e) }

// worker opens a connection and publishes on it until ctx ends, or count
// publishes have been answered (count > 0), or the connection fails.
func (p *wsPublishLoad) worker(ctx context.Context, count int) error {
	conn, err := p.d.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop, err := handshakeDeadline(ctx, conn)
	if err != nil {
		return err
	}
	s, err := upgradeWS(conn, p.d.host, nil)
	if err == nil {
		err = s.await(conn, `{"op":"welcome"`, "the welcome")
	}
	stop()
	if err != nil {
		return err
	}
	// sent holds the send time of each command in flight: the reader
	// takes them in order, as the replies come.
	sent := make(chan time.Time, p.cfg.InFlight)
	readErr := make(chan error, 1)
	go func() { readErr <- p.read(s, sent) }()
	afterCtx := context.AfterFunc(ctx, func() { conn.Close() })
	defer afterCtx()
	var b []byte
	for i := 0; count < 0 || i < count; i++ {
		select {
		case sent <- time.Now():
		case err := <-readErr:
			return err
		}
		seq := p.seq.Add(1)
		msg := append(b[:0], `{"op":"publish","id":`...)
		msg = strconv.AppendUint(msg, seq, 10)
		msg = append(msg, `,"topic":`...)
		msg = append(msg, p.topic...)
		msg = append(msg, `,"data":`...)
		msg = appendPayload(msg, p.runID, 0, seq, time.Now().UnixNano(), p.cfg.Payload)
		msg = append(msg, '}')
		b = msg
		frame := appendClientFrame(nil, 0x1, msg)
		if _, err := conn.Write(frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("write publish: %w", err)
		}
	}
	// count publishes sent: wait for their replies.
	for len(sent) > 0 {
		select {
		case err := <-readErr:
			return err
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// read takes the replies of one connection: an ack or an error per
// publish, in order.
func (p *wsPublishLoad) read(s *wsStream, sent chan time.Time) error {
	for {
		op, msg, err := s.frame()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		switch op {
		case 0x1:
		case 0x8:
			return &ServerError{Data: "close " + string(msg)}
		case 0x9:
			if _, err := s.conn.Write(appendClientFrame(nil, 0xA, msg)); err != nil {
				return err
			}
			continue
		default:
			continue
		}
		switch {
		case bytes.HasPrefix(msg, []byte(`{"op":"ack"`)):
			p.latency.RecordInt(int64(time.Since(<-sent)))
			p.requests.Add(1)
		case bytes.HasPrefix(msg, []byte(`{"op":"error"`)):
			<-sent
			p.fail(string(msg))
		}
	}
}
