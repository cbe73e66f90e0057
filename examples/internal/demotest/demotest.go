// Package demotest starts an example the way its README does, for its
// test: the same Run, with the README's flags and free ports.
package demotest

import (
	"bufio"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/examples/internal/demo"
)

// Output is what a running example printed. It is safe for concurrent use.
type Output struct {
	mu      sync.Mutex // guards the fields below
	text    strings.Builder
	changed chan struct{} // closed and replaced by each write
}

func newOutput() *Output { return &Output{changed: make(chan struct{})} }

// Write appends to the output and wakes its waiters.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.text.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything printed so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.text.String()
}

// Lines returns the complete lines printed so far.
func (o *Output) Lines() []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(o.String()))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// Wait waits until ok holds for the output, or fails t after timeout.
func (o *Output) Wait(t testing.TB, what string, timeout time.Duration, ok func(lines []string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		ch := o.changed
		o.mu.Unlock()
		if lines := o.Lines(); ok(lines) {
			return lines
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; the example printed:\n%s", timeout, what, o.String())
		}
	}
}

// Start runs ex with args (the README's command line) on free loopback
// ports, waits until it prints where it is reached, and stops it at the
// test's cleanup, failing the test if it ended with an error.
func Start(t *testing.T, ex demo.Example, args ...string) (demo.Node, *Output) {
	t.Helper()
	out := newOutput()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args = append([]string{"-http", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-page", "127.0.0.1:0"}, args...)
	go func() { done <- demo.Run(ctx, ex, args, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s ended with: %v\n%s", ex.Name, err, out.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15s of its context's end", ex.Name)
		}
	})
	var n demo.Node
	out.Wait(t, ex.Name+" to start", 20*time.Second, func(lines []string) bool {
		for _, l := range lines {
			k, v, _ := strings.Cut(l, ": ")
			switch k {
			case "herald":
				n.HTTP = v
			case "grpc":
				n.GRPC = v
			case "page":
				n.Page = v
			}
			if strings.HasSuffix(l, "is running; stop it with Ctrl-C") {
				return true
			}
		}
		select {
		case err := <-done:
			t.Fatalf("%s ended before it started: %v\n%s", ex.Name, err, out.String())
		default:
		}
		return false
	})
	return n, out
}
