package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// fanout --procs P runs the subscribers in P child processes (the same
// binary, with FanoutConfig.WorkerArgs) while the parent publishes. Parent
// and worker speak JSON lines, one message per line:
//
//	parent → worker stdin    workerStart   the subscribers to open
//	worker → parent stdout   workerReady   all connected (or Error set)
//	parent → worker stdin    workerDone    publishing ended: acked sequence numbers
//	worker → parent stdout   workerResult  counts, latency histogram, CPU
//
// A worker whose stdin closes early stops and exits. Each worker takes its
// own block of source addresses when --source-addrs is set.

// workerStart tells a worker what to open.
type workerStart struct {
	Server         string  `json:"server"`
	GRPCAddr       string  `json:"grpc_addr,omitempty"`
	StreamsPerConn int     `json:"streams_per_conn,omitempty"`
	Transport      string  `json:"transport"`
	Topic          string  `json:"topic"`
	Subs           int     `json:"subs"`
	RunID          uint64  `json:"run_id"`
	Size           uint64  `json:"size"`
	Publishers     int     `json:"publishers"`
	ConnectConc    int     `json:"connect_concurrency"`
	ConnectWait    float64 `json:"connect_wait_s"`
	SourceAddrs    int     `json:"source_addrs"`
	FirstAddr      int     `json:"first_addr"`
	Epoll          bool    `json:"epoll"`
}

type workerReady struct {
	Connected int    `json:"connected"`
	Error     string `json:"error,omitempty"`
}

type workerDone struct {
	Acked []byte  `json:"acked"` // the seqSet's words, little endian
	Grace float64 `json:"grace_s"`
}

type workerResult struct {
	Counts    subCounts          `json:"counts"`
	Ended     int64              `json:"ended"`
	Histogram histogram.Snapshot `json:"histogram"`
	CPUSec    float64            `json:"cpu_s"` // from ready to result
	Errors    []string           `json:"errors,omitempty"`
}

func (s *seqSet) marshal() []byte {
	b := make([]byte, 8*len(s.words))
	for i := range s.words {
		binary.LittleEndian.PutUint64(b[8*i:], s.words[i].Load())
	}
	return b
}

func unmarshalSeqSet(b []byte) *seqSet {
	s := &seqSet{words: make([]atomic.Uint64, len(b)/8)}
	for i := range s.words {
		s.words[i].Store(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return s
}

// RunFanoutWorker is the child side of fanout --procs, reading the
// parent's messages from in and writing its own to out.
func RunFanoutWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	var st workerStart
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("read start message: %w", err)
	}
	d, err := NewDialer(st.Server, st.SourceAddrs, st.FirstAddr)
	if err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	if err := checkFileLimit(st.Subs); err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	if err := d.UseGRPC(st.GRPCAddr, st.StreamsPerConn); err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	tr, err := NewTransport(st.Transport, d)
	if err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	g, err := startSubGroup(subGroupConfig{
		Transport: tr, Topic: st.Topic, N: st.Subs, RunID: st.RunID, Size: st.Size,
		Publishers: st.Publishers, Concurrency: st.ConnectConc, Attempts: 5, Epoll: st.Epoll,
	})
	if err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	defer g.stop()
	if err := g.waitConnected(ctx, time.Duration(st.ConnectWait*float64(time.Second))); err != nil {
		enc.Encode(workerReady{Error: err.Error()})
		return err
	}
	cpu0 := SelfCPU()
	if err := enc.Encode(workerReady{Connected: int(g.connected.Load())}); err != nil {
		return fmt.Errorf("write ready message: %w", err)
	}
	var done workerDone
	if err := dec.Decode(&done); err != nil {
		return fmt.Errorf("read done message: %w", err)
	}
	acked := unmarshalSeqSet(done.Acked)
	g.waitDelivered(ctx, acked.Len()*uint64(st.Subs), time.Now().Add(time.Duration(done.Grace*float64(time.Second))))
	ended := g.ended.Load()
	g.stop()
	res := workerResult{
		Counts:    g.counts(acked),
		Ended:     ended,
		Histogram: g.latency.Snapshot(),
		CPUSec:    (SelfCPU() - cpu0).Seconds(),
		Errors:    g.errorList(5),
	}
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("write result message: %w", err)
	}
	return nil
}

// workerProc is one child process, owned by a procGroup.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	dec   *json.Decoder
}

// procGroup runs the worker processes of one fanout --procs run.
type procGroup struct {
	procs []*workerProc
}

// startProcGroup starts one worker per share of subscribers and sends each
// its start message.
func startProcGroup(ctx context.Context, args []string, shares []workerStart) (*procGroup, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for --procs: %w", err)
	}
	pg := &procGroup{}
	for i, st := range shares {
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = os.Stderr
		dieWithParent(cmd)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			pg.kill()
			return nil, fmt.Errorf("start bench worker %d: %w", i, err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			pg.kill()
			return nil, fmt.Errorf("start bench worker %d: %w", i, err)
		}
		if err := cmd.Start(); err != nil {
			pg.kill()
			return nil, fmt.Errorf("start bench worker %d: %w", i, err)
		}
		p := &workerProc{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), dec: json.NewDecoder(stdout)}
		pg.procs = append(pg.procs, p)
		if err := p.enc.Encode(st); err != nil {
			pg.kill()
			return nil, fmt.Errorf("start bench worker %d: %w", i, err)
		}
	}
	return pg, nil
}

// each runs f for every worker at once and returns the first error.
func (pg *procGroup) each(f func(i int, p *workerProc) error) error {
	errs := make([]error, len(pg.procs))
	var wg sync.WaitGroup
	for i, p := range pg.procs {
		wg.Go(func() { errs[i] = f(i, p) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReady waits for every worker's ready message.
func (pg *procGroup) waitReady() error {
	return pg.each(func(i int, p *workerProc) error {
		var r workerReady
		if err := p.dec.Decode(&r); err != nil {
			return fmt.Errorf("bench worker %d: %w", i, err)
		}
		if r.Error != "" {
			return fmt.Errorf("bench worker %d: %s", i, r.Error)
		}
		return nil
	})
}

// finish sends the done message and collects every worker's result.
func (pg *procGroup) finish(done workerDone) ([]workerResult, error) {
	results := make([]workerResult, len(pg.procs))
	err := pg.each(func(i int, p *workerProc) error {
		if err := p.enc.Encode(done); err != nil {
			return fmt.Errorf("bench worker %d: %w", i, err)
		}
		if err := p.dec.Decode(&results[i]); err != nil {
			return fmt.Errorf("bench worker %d: %w", i, err)
		}
		return nil
	})
	return results, err
}

// stop closes every worker's stdin (which ends it) and waits for it.
func (pg *procGroup) stop() {
	for _, p := range pg.procs {
		p.stdin.Close()
	}
	for _, p := range pg.procs {
		p.cmd.Wait()
	}
}

// kill ends every worker at once and waits for it.
func (pg *procGroup) kill() {
	for _, p := range pg.procs {
		p.cmd.Process.Kill()
	}
	pg.stop()
}
