//go:build linux

// Command fanout-floor measures the cheapest fan-out this machine can do
// over loopback TCP, with no server in the way: one process writes a small
// message to each of N sockets with raw write(2) calls from a few threads,
// and a second process (the same binary, started by the first) reads them
// with raw epoll loops and reports how long each message took from the
// start of its round to its read.
//
// It gives the floor under herald's fan-out figures (docs/benchmarks.md):
// a server that delivers one event to N subscribers cannot beat N bare
// writes, and on a small machine shared with its load generator the bare
// writes alone can exceed a latency target.
//
//	go run ./tools/fanout-floor -conns 10000 -writers 2
//
// The two processes are needed because one process may hold only 20,000
// open files on the machines herald is measured on. Linux only.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

type config struct {
	role     string
	addr     string
	conns    int
	writers  int
	readers  int
	rounds   int
	interval time.Duration
	size     int
}

func main() {
	var c config
	flag.StringVar(&c.role, "role", "writer", "writer (runs the measurement) or reader (started by the writer)")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:0", "address the writer listens on")
	flag.IntVar(&c.conns, "conns", 10000, "connections (subscribers)")
	flag.IntVar(&c.writers, "writers", runtime.NumCPU(), "writer threads")
	flag.IntVar(&c.readers, "readers", runtime.NumCPU(), "reader epoll threads")
	flag.IntVar(&c.rounds, "rounds", 20, "rounds (events): each writes one message to every connection")
	flag.DurationVar(&c.interval, "interval", 200*time.Millisecond, "pause between rounds")
	flag.IntVar(&c.size, "size", 64, "message size in bytes (at least 8)")
	flag.Parse()
	if c.size < 8 || c.conns < 1 || c.writers < 1 || c.readers < 1 || c.rounds < 1 {
		fmt.Fprintln(os.Stderr, "fanout-floor: -size must be at least 8, and -conns, -writers, -readers, -rounds at least 1")
		os.Exit(2)
	}
	raiseFileLimit()
	var err error
	if c.role == "reader" {
		err = reader(c)
	} else {
		err = writer(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout-floor:", err)
		os.Exit(1)
	}
}

func raiseFileLimit() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

// monotonic is CLOCK_MONOTONIC in nanoseconds, comparable across processes.
func monotonic() int64 {
	var ts syscall.Timespec
	_, _, _ = syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawFD turns an accepted or dialed connection into a blocking raw
// descriptor. The *os.File is returned so that the caller keeps it alive:
// a collected *os.File closes its descriptor.
func rawFD(nc net.Conn) (*os.File, error) {
	f, err := nc.(*net.TCPConn).File()
	nc.Close()
	if err != nil {
		return nil, fmt.Errorf("dup socket: %w", err)
	}
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		return nil, fmt.Errorf("set blocking: %w", err)
	}
	return f, nil
}

func writer(c config) error {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-role", "reader", "-addr", ln.Addr().String(),
		"-conns", strconv.Itoa(c.conns), "-readers", strconv.Itoa(c.readers),
		"-rounds", strconv.Itoa(c.rounds), "-size", strconv.Itoa(c.size))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the reader: %w", err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // gone already when all went well

	files := make([]*os.File, 0, c.conns)
	for len(files) < c.conns {
		nc, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		f, err := rawFD(nc)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		return errors.New("the reader did not get ready")
	}
	fmt.Printf("%d connections, %d writer threads, %d reader threads, %d rounds of %d-byte messages every %v, %d cores\n",
		c.conns, c.writers, c.readers, c.rounds, c.size, c.interval, runtime.NumCPU())

	cpu0 := cpuTime()
	var walls []time.Duration
	msg := make([]byte, c.size)
	for r := 0; r < c.rounds; r++ {
		start := monotonic()
		binary.LittleEndian.PutUint64(msg, uint64(start))
		var wg sync.WaitGroup
		errs := make([]error, c.writers)
		per := (len(files) + c.writers - 1) / c.writers
		for w := 0; w < c.writers; w++ {
			part := files[min(w*per, len(files)):min((w+1)*per, len(files))]
			wg.Go(func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				for _, f := range part {
					if _, err := syscall.Write(int(f.Fd()), msg); err != nil {
						errs[w] = fmt.Errorf("write: %w", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		walls = append(walls, time.Duration(monotonic()-start))
		time.Sleep(c.interval)
	}
	cpu := cpuTime() - cpu0
	slices.Sort(walls)
	fmt.Printf("writer  %v per round to write to every connection (median; min %v, max %v), %.2f µs CPU per write\n",
		walls[len(walls)/2].Round(10*time.Microsecond), walls[0].Round(10*time.Microsecond),
		walls[len(walls)-1].Round(10*time.Microsecond), float64(cpu.Nanoseconds())/1e3/float64(c.rounds*c.conns))
	for lines.Scan() {
		fmt.Println(lines.Text())
	}
	return cmd.Wait()
}

func reader(c config) error {
	files := make([]*os.File, 0, c.conns)
	for i := 0; i < c.conns; i++ {
		nc, err := net.Dial("tcp", c.addr)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		f, err := rawFD(nc)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	total := c.conns * c.rounds
	type result struct {
		lat []int64
		cpu time.Duration
		err error
	}
	results := make(chan result, c.readers)
	var eps []int
	for r := 0; r < c.readers; r++ {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("epoll_create: %w", err)
		}
		eps = append(eps, ep)
		for i := r; i < len(files); i += c.readers {
			fd := int(files[i].Fd())
			if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
				return fmt.Errorf("epoll_ctl: %w", err)
			}
		}
	}
	fmt.Println("ready")
	for _, ep := range eps {
		go func() {
			runtime.LockOSThread()
			var res result
			evs := make([]syscall.EpollEvent, 256)
			buf := make([]byte, 64<<10)
			for {
				// A blocking wait, as a real subscriber's event loop; two
				// idle seconds after the first message end the run.
				k, err := syscall.EpollWait(ep, evs, 2000)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil {
					res.err = fmt.Errorf("epoll_wait: %w", err)
					break
				}
				if k == 0 && len(res.lat) > 0 {
					break
				}
				for _, e := range evs[:k] {
					m, err := syscall.Read(int(e.Fd), buf)
					if m <= 0 || err != nil {
						_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, int(e.Fd), nil)
						continue
					}
					now := monotonic()
					for o := 0; o+c.size <= m; o += c.size {
						res.lat = append(res.lat, now-int64(binary.LittleEndian.Uint64(buf[o:])))
					}
				}
			}
			var ru syscall.Rusage
			_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
			res.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			results <- res
		}()
	}
	var lat []int64
	var cpu time.Duration
	var errs []error
	for range eps {
		r := <-results
		lat = append(lat, r.lat...)
		cpu += r.cpu
		errs = append(errs, r.err)
	}
	runtime.KeepAlive(files) // a collected *os.File closes its descriptor
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(lat) == 0 {
		return errors.New("read nothing")
	}
	slices.Sort(lat)
	q := func(p float64) string {
		return time.Duration(lat[int(p*float64(len(lat)-1))]).Round(10 * time.Microsecond).String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reader  %d of %d messages: start of round → read p50 %s  p90 %s  p99 %s  max %s, %.2f µs CPU per read",
		len(lat), total, q(.5), q(.9), q(.99), q(1), float64(cpu.Nanoseconds())/1e3/float64(len(lat)))
	fmt.Println(b.String())
	return nil
}
