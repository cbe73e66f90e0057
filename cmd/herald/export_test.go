package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/heraldhq/herald/client"
)

// TestExportImport exports a topic with every payload encoding from one
// server and imports it into another: payloads, encodings, types and
// headers arrive intact, in order, and importing twice stores nothing twice.
func TestExportImport(t *testing.T) {
	src, dst := startCLIServer(t), startCLIServer(t)
	ctx := context.Background()
	if _, err := src.c.PublishBatch(ctx, []client.BatchEvent{
		{Topic: "x.a", Data: []byte(`{"n":1}`), Type: "t1", Headers: map[string]string{"h": "v"}},
		{Topic: "x.a", Text: "line 1\nline 2"},
		{Topic: "x.a", Binary: []byte{0, 1, 2, 255}},
	}); err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	if err := runCLI(ctx, nil, &dump, "export", "--server", src.url, "x.a"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(dump.String(), "\n"); n != 3 {
		t.Fatalf("export wrote %d lines, want 3:\n%s", n, dump.String())
	}
	for i := 0; i < 2; i++ {
		if err := runCLI(ctx, strings.NewReader(dump.String()), &bytes.Buffer{}, "import", "--server", dst.url); err != nil {
			t.Fatalf("import %d: %v", i+1, err)
		}
	}
	want, got := src.pull(t, "x.a"), dst.pull(t, "x.a")
	if len(got) != len(want) {
		t.Fatalf("imported %d events, want %d (a second import must store nothing)", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		wp, _ := w.Payload()
		gp, _ := g.Payload()
		if g.Encoding != w.Encoding || g.Type != w.Type || !bytes.Equal(gp, wp) || len(g.Headers) != len(w.Headers) || g.Headers["h"] != w.Headers["h"] {
			t.Errorf("event %d: imported %+v, exported %+v", i, g, w)
		}
	}
	// --topic sends everything elsewhere.
	if err := runCLI(ctx, strings.NewReader(dump.String()), &bytes.Buffer{}, "import", "--server", dst.url, "--topic", "x.copy"); err != nil {
		t.Fatal(err)
	}
	if n := len(dst.pull(t, "x.copy")); n != 3 {
		t.Errorf("--topic imported %d events, want 3", n)
	}
	// A line that is not an event is an error that names the line.
	err := runCLI(ctx, strings.NewReader(dump.String()+"{}\n"), &bytes.Buffer{}, "import", "--server", dst.url)
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("bad line: err = %v, want it to name line 4", err)
	}
}
