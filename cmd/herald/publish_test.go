package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/server"
)

// cliServer is a real herald server for the client commands' tests, with a
// client of its own for checking what the commands did.
type cliServer struct {
	url  string
	grpc string // the gRPC API's host:port
	tr   *http.Transport
	c    *client.Client
}

func startCLIServer(t *testing.T, opts ...func(*config.Config)) *cliServer {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0" // never the fixed default port
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s := &cliServer{url: "http://" + srv.HTTPAddr(), grpc: srv.GRPCAddr(), tr: &http.Transport{}}
	s.c, err = client.New(s.url, client.WithHTTPClient(&http.Client{Transport: s.tr}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// pull returns every event of topic.
func (s *cliServer) pull(t *testing.T, topic string) []client.Event {
	t.Helper()
	res, err := s.c.Pull(hub.Internal(context.Background()), []string{topic}, client.WithFrom(client.FromEarliest), client.WithLimit(10000))
	if err != nil {
		t.Fatal(err)
	}
	return res.Events
}

// runCLI runs the herald command with args and stdin in-process, and
// returns its standard output and error.
func runCLI(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	cmd.SetIn(stdin)
	cmd.SetOut(stdout)
	cmd.SetErr(io.Discard)
	return cmd.ExecuteContext(ctx)
}

// acksOf decodes one JSON ack per line.
func acksOf(t *testing.T, out string) []client.Ack {
	t.Helper()
	var acks []client.Ack
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var a client.Ack
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		acks = append(acks, a)
	}
	return acks
}

func TestPublishCommand(t *testing.T) {
	s := startCLIServer(t)
	tests := []struct {
		name         string
		args         []string
		stdin        string
		wantEncoding string
		wantPayload  string
		wantType     string
		wantHeaders  map[string]string
	}{
		{name: "JSON literal", args: []string{`{"text":"hi"}`}, wantEncoding: "json", wantPayload: `{"text":"hi"}`},
		{name: "text literal", args: []string{"hello world"}, wantEncoding: "text", wantPayload: "hello world"},
		{name: "stdin", stdin: "from stdin\n", wantEncoding: "text", wantPayload: "from stdin\n"},
		{name: "stdin dash", args: []string{"-"}, stdin: "[1,2]", wantEncoding: "json", wantPayload: "[1,2]"},
		{name: "binary stdin", stdin: "\x00\x01\xff", wantEncoding: "binary", wantPayload: "\x00\x01\xff"},
		{name: "explicit type", args: []string{"--content-type", "text/plain", "42"}, wantEncoding: "text", wantPayload: "42"},
		{name: "type and headers", args: []string{"--type", "note", "--header", "source=cli", "--header", "x=a=b", "1"},
			wantEncoding: "json", wantPayload: "1", wantType: "note", wantHeaders: map[string]string{"source": "cli", "x": "a=b"}},
	}
	for i, tt := range tests {
		var out bytes.Buffer
		args := append([]string{"publish", "--server", s.url, "cli.pub"}, tt.args...)
		if err := runCLI(context.Background(), strings.NewReader(tt.stdin), &out, args...); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		acks := acksOf(t, out.String())
		if len(acks) != 1 || acks[0].Topic != "cli.pub" || acks[0].Offset != uint64(i+1) || acks[0].Cursor == "" {
			t.Fatalf("%s: output %q", tt.name, out.String())
		}
		ev := s.pull(t, "cli.pub")[i]
		p, err := ev.Payload()
		if err != nil || string(p) != tt.wantPayload || ev.Encoding != tt.wantEncoding || ev.Type != tt.wantType {
			t.Errorf("%s: stored %+v payload %q, want %s %q", tt.name, ev, p, tt.wantEncoding, tt.wantPayload)
		}
		for k, v := range tt.wantHeaders {
			if ev.Headers[k] != v {
				t.Errorf("%s: headers %v, want %s=%s", tt.name, ev.Headers, k, v)
			}
		}
	}
}

func TestPublishCommandKey(t *testing.T) {
	s := startCLIServer(t)
	var acks []client.Ack
	for range 2 {
		var out bytes.Buffer
		if err := runCLI(context.Background(), nil, &out, "publish", "--server", s.url, "--key", "k1", "cli.key", "1"); err != nil {
			t.Fatal(err)
		}
		acks = append(acks, acksOf(t, out.String())...)
	}
	if acks[0].Duplicate || !acks[1].Duplicate || acks[0].Offset != acks[1].Offset {
		t.Errorf("acks %+v", acks)
	}
}

func TestPublishCommandLines(t *testing.T) {
	s := startCLIServer(t)
	in := "{\"n\":1}\r\nplain text\n\n  \n[3]\nlast line without newline"
	var out bytes.Buffer
	if err := runCLI(context.Background(), strings.NewReader(in), &out, "publish", "--server", s.url, "--lines", "--key", "run", "cli.lines"); err != nil {
		t.Fatal(err)
	}
	acks := acksOf(t, out.String())
	evs := s.pull(t, "cli.lines")
	want := []struct{ encoding, payload string }{
		{"json", `{"n":1}`}, {"text", "plain text"}, {"json", "[3]"}, {"text", "last line without newline"},
	}
	if len(acks) != len(want) || len(evs) != len(want) {
		t.Fatalf("acks %+v, events %+v", acks, evs)
	}
	for i, w := range want {
		p, _ := evs[i].Payload()
		if evs[i].Encoding != w.encoding || string(p) != w.payload || acks[i].Offset != uint64(i+1) {
			t.Errorf("line event %d: %+v %q, want %s %q", i, evs[i], p, w.encoding, w.payload)
		}
	}
	// The same input again is deduplicated line by line (keys run-1, run-2, …).
	out.Reset()
	if err := runCLI(context.Background(), strings.NewReader(in), &out, "publish", "--server", s.url, "--lines", "--key", "run", "cli.lines"); err != nil {
		t.Fatal(err)
	}
	for _, a := range acksOf(t, out.String()) {
		if !a.Duplicate {
			t.Errorf("rerun ack %+v is not a duplicate", a)
		}
	}

	// More lines than one batch holds.
	var big strings.Builder
	for i := range 2500 {
		big.WriteString(`{"i":` + strings.Repeat("1", 1+i%3) + "}\n")
	}
	out.Reset()
	if err := runCLI(context.Background(), strings.NewReader(big.String()), &out, "publish", "--server", s.url, "--lines", "cli.many"); err != nil {
		t.Fatal(err)
	}
	if n := len(acksOf(t, out.String())); n != 2500 {
		t.Errorf("%d acks for 2500 lines", n)
	}
	if n := len(s.pull(t, "cli.many")); n != 2500 {
		t.Errorf("%d events stored for 2500 lines", n)
	}
}

func TestPublishCommandErrors(t *testing.T) {
	s := startCLIServer(t)
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"bad topic", []string{"publish", "--server", s.url, "a..b", "1"}, "", "bad_topic"},
		{"not JSON", []string{"publish", "--server", s.url, "--content-type", "application/json", "cli.err", "{"}, "", "bad_request"},
		{"reserved type", []string{"publish", "--server", s.url, "--type", "error", "cli.err", "1"}, "", "reserved"},
		{"bad header flag", []string{"publish", "--server", s.url, "--header", "novalue", "cli.err", "1"}, "", "name=value"},
		{"lines with data", []string{"publish", "--server", s.url, "--lines", "cli.err", "1"}, "", "--lines"},
		{"lines not JSON", []string{"publish", "--server", s.url, "--lines", "--content-type", "application/json", "cli.err"}, "1\n{\n", "line 2"},
		{"bad server", []string{"publish", "--server", "127.0.0.1:1", "cli.err", "1"}, "", "scheme"},
		{"no topic", []string{"publish", "--server", s.url}, "", "arg"},
	}
	for _, tt := range tests {
		err := runCLI(context.Background(), strings.NewReader(tt.stdin), io.Discard, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
	if evs := s.pull(t, "cli.err"); len(evs) != 0 {
		t.Errorf("failed publishes stored %+v", evs)
	}
}
