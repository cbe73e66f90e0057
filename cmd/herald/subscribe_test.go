package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// outLine is a line printed by herald subscribe: an event or a gap.
type outLine struct {
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     string            `json:"time"`
	Type     string            `json:"type"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers"`
	Cursor   string            `json:"cursor"`
	Gap      *client.Gap       `json:"gap"`
}

func parseLines(t *testing.T, out string) []outLine {
	t.Helper()
	var lines []outLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var o outLine
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, o)
	}
	return lines
}

func TestSubscribeCommand(t *testing.T) {
	s := startCLIServer(t)
	ctx := context.Background()
	pubs := []struct {
		data string
		typ  string
		opts []client.PublishOption
	}{
		{`{"n":1}`, "", []client.PublishOption{client.WithHeader("k", "v")}},
		{"some text", "note", []client.PublishOption{client.WithContentType("text/plain"), client.WithType("note")}},
		{`[3]`, "", nil},
	}
	var acks []client.Ack
	for _, p := range pubs {
		ack, err := s.c.Publish(ctx, "cli.sub", []byte(p.data), p.opts...)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	for _, tr := range []string{"sse", "poll", "ws"} {
		t.Run(tr, func(t *testing.T) {
			var out bytes.Buffer
			err := runCLI(ctx, nil, &out, "subscribe", "--server", s.url, "--transport", tr, "--from", "earliest", "--count", "3", "cli.sub")
			if err != nil {
				t.Fatal(err)
			}
			lines := parseLines(t, out.String())
			if len(lines) != 3 {
				t.Fatalf("output %q", out.String())
			}
			wantData := []string{`{"n":1}`, `"some text"`, `[3]`}
			for i, l := range lines {
				if l.Topic != "cli.sub" || l.Offset != acks[i].Offset || l.Epoch != acks[i].Epoch || string(l.Data) != wantData[i] ||
					l.Type != pubs[i].typ || l.Cursor == "" {
					t.Errorf("line %d: %+v", i, l)
				}
				if tr != "sse" && (l.Time == "" || l.Encoding == "") {
					t.Errorf("%s line %d lacks time or encoding: %+v", tr, i, l)
				}
			}
			if tr != "sse" && lines[0].Headers["k"] != "v" {
				t.Errorf("%s line 0 lacks headers: %+v", tr, lines[0])
			}

			// A printed cursor resumes after its line.
			out.Reset()
			err = runCLI(ctx, nil, &out, "subscribe", "--server", s.url, "--transport", tr, "--cursor", lines[0].Cursor, "--count", "2", "cli.sub")
			if err != nil {
				t.Fatal(err)
			}
			if again := parseLines(t, out.String()); len(again) != 2 || again[0].Offset != 2 || again[1].Offset != 3 {
				t.Errorf("resumed output %q", out.String())
			}
		})
	}
}

func TestSubscribeCommandGap(t *testing.T) {
	s := startCLIServer(t, func(c *config.Config) {
		c.Namespaces = map[string]config.Namespace{"tiny": {History: config.Retention{MaxEvents: 2}}}
	})
	var first client.Ack
	for i := range 5 {
		ack, err := s.c.Publish(hub.Internal(context.Background()), "tiny.a", []byte("1"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = ack
		}
	}
	for _, tr := range []string{"sse", "poll"} {
		var out bytes.Buffer
		err := runCLI(context.Background(), nil, &out, "subscribe", "--server", s.url, "--transport", tr, "--cursor", first.Cursor, "--count", "2", "tiny.a")
		if err != nil {
			t.Fatal(err)
		}
		lines := parseLines(t, out.String())
		if len(lines) != 3 || lines[0].Gap == nil || lines[0].Gap.Reason != "trimmed" || lines[0].Cursor == "" ||
			lines[1].Offset != 4 || lines[2].Offset != 5 {
			t.Errorf("%s: output %q", tr, out.String())
		}
	}
}

// TestSubscribeCommandInterrupt checks that SIGINT ends a subscription
// cleanly (exit status 0), as does canceling its context.
func TestSubscribeCommandInterrupt(t *testing.T) {
	s := startCLIServer(t)
	if _, err := s.c.Publish(hub.Internal(context.Background()), "cli.int", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"signal", "context"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- runCLI(ctx, nil, pw, "subscribe", "--server", s.url, "--from", "earliest", "cli.int")
				pw.Close()
			}()
			// The first line shows that the command runs, with its signal
			// handler in place.
			r := bufio.NewReader(pr)
			if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, `"offset":1`) {
				t.Fatalf("first line %q, %v", line, err)
			}
			go io.Copy(io.Discard, r)
			if how == "signal" {
				p, err := os.FindProcess(os.Getpid())
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Signal(os.Interrupt); err != nil {
					cancel()
					<-done
					t.Skipf("cannot signal this process: %v", err)
				}
			} else {
				cancel()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("subscribe ended with %v, want success", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("subscribe did not stop")
			}
		})
	}
}

func TestSubscribeCommandErrors(t *testing.T) {
	s := startCLIServer(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad topic", []string{"a..b"}, "bad_topic"},
		{"bad cursor", []string{"--cursor", "nope!", "cli.err"}, "bad_cursor"},
		{"bad transport", []string{"--transport", "smoke", "cli.err"}, "transport"},
		{"bad from", []string{"--from", "middle", "cli.err"}, "from"},
		{"negative count", []string{"--count", "-1", "cli.err"}, "count"},
		{"no topic", nil, "arg"},
	}
	for _, tt := range tests {
		args := append([]string{"subscribe", "--server", s.url}, tt.args...)
		err := runCLI(context.Background(), nil, io.Discard, args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
}
