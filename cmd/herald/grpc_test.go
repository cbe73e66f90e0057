package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestGRPCTransport runs herald publish and herald subscribe with
// --transport grpc against a real server.
func TestGRPCTransport(t *testing.T) {
	s := startCLIServer(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runCLI(ctx, nil, &out, "publish", "--transport", "grpc", "--grpc-addr", s.grpc, "--type", "note",
		"--header", "k=v", "cli.grpc", `{"n":1}`); err != nil {
		t.Fatal(err)
	}
	if acks := acksOf(t, out.String()); len(acks) != 1 || acks[0].Offset != 1 || acks[0].Cursor == "" {
		t.Fatalf("publish output %q", out.String())
	}
	out.Reset()
	if err := runCLI(ctx, strings.NewReader("two\n\"three\"\n"), &out, "publish", "--transport", "grpc", "--grpc-addr", s.grpc,
		"--lines", "cli.grpc"); err != nil {
		t.Fatal(err)
	}
	if acks := acksOf(t, out.String()); len(acks) != 2 || acks[1].Offset != 3 {
		t.Fatalf("publish --lines output %q", out.String())
	}

	out.Reset()
	if err := runCLI(ctx, nil, &out, "subscribe", "--transport", "grpc", "--grpc-addr", s.grpc, "--from", "earliest",
		"--count", "3", "cli.grpc"); err != nil {
		t.Fatal(err)
	}
	lines := parseLines(t, out.String())
	if len(lines) != 3 {
		t.Fatalf("subscribe output %q", out.String())
	}
	want := []string{`{"n":1}`, `"two"`, `"three"`}
	for i, l := range lines {
		if string(l.Data) != want[i] || l.Offset != uint64(i+1) || l.Time == "" || l.Cursor == "" {
			t.Errorf("line %d: %+v", i, l)
		}
	}
	if lines[0].Type != "note" || lines[0].Headers["k"] != "v" {
		t.Errorf("line 0 lacks its type or headers: %+v", lines[0])
	}
	// The cursor printed over gRPC resumes over SSE.
	out.Reset()
	if err := runCLI(ctx, nil, &out, "subscribe", "--server", s.url, "--cursor", lines[0].Cursor, "--count", "2", "cli.grpc"); err != nil {
		t.Fatal(err)
	}
	if again := parseLines(t, out.String()); len(again) != 2 || again[0].Offset != 2 {
		t.Errorf("SSE from a gRPC cursor: %q", out.String())
	}

	if err := runCLI(ctx, nil, &out, "publish", "--transport", "carrier-pigeon", "cli.grpc", "1"); err == nil {
		t.Error("publish took an unknown transport")
	}
	if err := runCLI(ctx, nil, &out, "publish", "--transport", "grpc", "--grpc-addr", s.grpc, "bad topic", "1"); err == nil ||
		!strings.Contains(err.Error(), "bad_topic") {
		t.Errorf("publish to a bad topic over gRPC: %v", err)
	}
}
