package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/server"
)

// grpcClient dials the server's gRPC listener; the connection closes when
// the test ends.
func (ts *testServer) grpcClient() heraldv1.HeraldClient {
	ts.t.Helper()
	addr := ts.srv.GRPCAddr()
	if addr == "" {
		ts.t.Fatal("the server has no gRPC listener")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { conn.Close() })
	return heraldv1.NewHeraldClient(conn)
}

func grpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestGRPCResumeFromSSE: the id of an SSE event resumes a gRPC Subscribe,
// and the cursor of a gRPC Delivery resumes an SSE stream: one cursor for
// every transport.
func TestGRPCResumeFromSSE(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	ctx := grpcCtx(t)
	ts.publishN("x.sse", 1, 2)
	s := ts.openSSE("topic=x.sse&topic=x.other&from=earliest")
	s.next() // the starting id
	first := s.nextEvent()
	if evN(t, first) != 1 {
		t.Fatalf("first SSE event %v", first)
	}
	ts.publishN("x.sse", 3, 2)

	// Resume over gRPC from the id of the first event: events 2, 3, 4.
	sub, err := c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"x.sse", "x.other"}, Cursor: first.id})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if d.Cursor != first.id {
		t.Errorf("gRPC stream starts at %q, want the SSE id %q", d.Cursor, first.id)
	}
	var got []int
	var last string // the cursor of the delivery that carried event 4
	for len(got) < 3 {
		d, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range d.Events {
			var v struct{ N int }
			if err := json.Unmarshal(ev.Data, &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v.N)
		}
		last = d.Cursor
	}
	if got[0] != 2 || got[1] != 3 || got[2] != 4 {
		t.Fatalf("gRPC resumed with %v, want [2 3 4]", got)
	}

	// And back: a gRPC Delivery's cursor resumes SSE.
	ts.publishN("x.sse", 5, 1)
	s2 := ts.openSSE("topic=x.sse&topic=x.other", "Last-Event-ID", last)
	if b := s2.next(); b.id != last {
		t.Errorf("SSE starts at %q, want the gRPC cursor %q", b.id, last)
	}
	if b := s2.nextEvent(); evN(t, b) != 5 {
		t.Errorf("SSE resumed with %v, want event 5", b)
	}
}

// TestGRPCShutdown: SIGTERM's drain ends gRPC streams with UNAVAILABLE
// shutting_down and a resume hint, and the listener closes.
func TestGRPCShutdown(t *testing.T) {
	ts := startServer(t)
	c := ts.grpcClient()
	ctx := grpcCtx(t)
	sub, err := c.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"sd"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gRPC stream in the connections gauge", 5*time.Second, func() bool {
		return ts.metric(`herald_connections{transport="grpc"}`) == 1
	})
	done := make(chan struct{})
	go func() { ts.shutdown(); close(done) }()
	_, err = sub.Recv()
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("stream ended with %v, want UNAVAILABLE", err)
	}
	var reason string
	var hint bool
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.Reason
		case *errdetails.RetryInfo:
			hint = d.RetryDelay.AsDuration() > 0
		}
	}
	if reason != "shutting_down" || !hint {
		t.Errorf("end status %v: reason %q, resume hint %v", st, reason, hint)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hangs")
	}
}

func TestGRPCDisabled(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.GRPC.Enabled = false })
	if a := ts.srv.GRPCAddr(); a != "" {
		t.Errorf("GRPCAddr = %q with grpc.enabled=false", a)
	}
	ts.publishN("x", 1, 1) // HTTP still serves
}

func TestGRPCListenError(t *testing.T) {
	busy := startServer(t)
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = busy.srv.GRPCAddr() // taken
	s, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "grpc.addr") {
		t.Errorf("Start on a taken gRPC address: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}
}

// grpcurlBinary returns the grpcurl binary, or skips the test (fails it
// when HERALD_REQUIRE_INTEGRATION=1, as CI sets; .ci/run installs it).
func grpcurlBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	if p := filepath.Join(build.Default.GOPATH, "bin", "grpcurl"); fileExists(p) {
		return p
	}
	const msg = "SKIPPING THE GRPCURL TEST: grpcurl not found: install with go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 (.ci/run does)"
	if os.Getenv("HERALD_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg + " (HERALD_REQUIRE_INTEGRATION=1 makes a missing grpcurl a failure)")
	}
	t.Skip(msg)
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// TestGRPCurl drives the server with the real grpcurl, without the proto
// file (server reflection): list services, publish, read a Subscribe stream.
func TestGRPCurl(t *testing.T) {
	bin := grpcurlBinary(t)
	ts := startServer(t)
	addr := ts.srv.GRPCAddr()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run(addr, "list")
	for _, svc := range []string{"herald.v1.Herald", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(list, svc) {
			t.Errorf("grpcurl list does not show %s:\n%s", svc, list)
		}
	}
	if out := run(addr, "grpc.health.v1.Health/Check"); !strings.Contains(out, "SERVING") {
		t.Errorf("health check: %s", out)
	}

	// Publish: {"n":1} is eyJuIjoxfQ== in base64 (bytes fields in JSON).
	var ack struct {
		Acks []struct {
			Topic  string `json:"topic"`
			Offset string `json:"offset"` // a uint64 is a JSON string
			Cursor string `json:"cursor"`
		} `json:"acks"`
	}
	out := run("-d", `{"topic":"cli.t","events":[{"data":"eyJuIjoxfQ=="}]}`, addr, "herald.v1.Herald/Publish")
	if err := json.Unmarshal([]byte(out), &ack); err != nil || len(ack.Acks) != 1 || ack.Acks[0].Offset != "1" {
		t.Fatalf("publish answer %s (%v)", out, err)
	}

	// Subscribe from the earliest event; publish one more over HTTP while
	// the stream is open.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-plaintext", "-d", `{"topics":["cli.t"],"from":"FROM_EARLIEST"}`, addr, "herald.v1.Herald/Subscribe")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	dec := json.NewDecoder(stdout)
	type delivery struct {
		Events []struct {
			Offset   string `json:"offset"`
			Encoding string `json:"encoding"`
			Data     string `json:"data"`
		} `json:"events"`
		Cursor string `json:"cursor"`
	}
	next := func() delivery {
		t.Helper()
		var d delivery
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("read grpcurl's stream: %v (stderr: %s)", err, stderr.String())
		}
		return d
	}
	if d := next(); d.Cursor == "" || len(d.Events) != 0 {
		t.Fatalf("first delivery %+v, want the starting cursor alone", d)
	}
	var offsets []string
	for len(offsets) < 2 {
		d := next()
		for _, ev := range d.Events {
			offsets = append(offsets, ev.Offset)
			if ev.Encoding != "ENCODING_JSON" {
				t.Errorf("event %+v", ev)
			}
		}
		if len(offsets) == 1 {
			ts.publishN("cli.t", 2, 1)
		}
	}
	if offsets[0] != "1" || offsets[1] != "2" {
		t.Errorf("grpcurl's Subscribe read offsets %v, want [1 2]", offsets)
	}
	cancel()
	io.Copy(io.Discard, stdout)
}

// TestGRPCHandshakeTimeout: a connection to the gRPC listener that never
// completes its handshake is closed after http.read_header_timeout, so it
// does not hold a connection slot (slowloris).
func TestGRPCHandshakeTimeout(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.HTTP.ReadHeaderTimeout = 300 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the silent connection was kept open")
			}
			break
		}
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the timeout", d)
	}
}

// TestGRPCurlConsume is a consumer group member driven by the real grpcurl:
// open, grant credit, read a message, ack it by its id, half-close.
func TestGRPCurlConsume(t *testing.T) {
	bin := grpcurlBinary(t)
	ts := startServer(t)
	ts.publishN("jobs", 1, 1)
	if _, _, err := ts.srv.Groups().Put(context.Background(), group.Config{Name: "workers", Topics: []string{"jobs"}, Start: "earliest"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-plaintext", "-d", "@", ts.srv.GRPCAddr(), "herald.v1.Herald/Consume")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cancel()
			cmd.Wait()
		}
	}()
	dec := json.NewDecoder(stdout)
	type response struct {
		ID     string `json:"id"`
		Opened *struct {
			Member string `json:"member"`
		} `json:"opened"`
		Messages *struct {
			Messages []struct {
				ID       string `json:"id"`
				Delivery int    `json:"delivery"`
				Event    struct {
					Offset string `json:"offset"`
				} `json:"event"`
			} `json:"messages"`
		} `json:"messages"`
		Answered *struct {
			Results []struct {
				ID    string          `json:"id"`
				Error json.RawMessage `json:"error"`
			} `json:"results"`
		} `json:"answered"`
	}
	next := func() response {
		t.Helper()
		var r response
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("read grpcurl's stream: %v (stderr: %s)", err, stderr.String())
		}
		return r
	}
	fmt.Fprintln(stdin, `{"id":1,"open":{"group":"workers","member":"curl"}}`)
	if r := next(); r.Opened == nil || r.Opened.Member != "curl" {
		t.Fatalf("open answered %+v", r)
	}
	fmt.Fprintln(stdin, `{"grant":{"events":5}}`)
	r := next()
	if r.Messages == nil || len(r.Messages.Messages) != 1 || r.Messages.Messages[0].Event.Offset != "1" || r.Messages.Messages[0].Delivery != 1 {
		t.Fatalf("messages %+v", r)
	}
	id := r.Messages.Messages[0].ID
	fmt.Fprintf(stdin, `{"id":2,"ack":{"ids":[%q]}}`+"\n", id)
	if r := next(); r.ID != "2" || r.Answered == nil || len(r.Answered.Results) != 1 || r.Answered.Results[0].ID != id || r.Answered.Results[0].Error != nil {
		t.Fatalf("ack answered %+v", r)
	}
	stdin.Close() // half-close: the stream ends OK
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("grpcurl: %v (stderr: %s)", err, stderr.String())
	}
	in, err := ts.srv.Groups().Get(context.Background(), "workers")
	if err != nil || in.InFlight != 0 || in.Pending != 0 {
		t.Errorf("group after the ack: %+v (%v)", in, err)
	}
}
