package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGroupAndConsumeCommands(t *testing.T) {
	s := startCLIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI(ctx, nil, &out, append(args, "--server", s.url)...)
		return out.String(), err
	}
	for i := 1; i <= 3; i++ {
		if _, err := run("publish", "jobs", `{"n":`+strconv.Itoa(i)+`}`); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run("group", "create", "workers", "--topic", "jobs", "--start", "earliest", "--ack-wait", "1m", "--backoff", "1s,10s")
	if err != nil || !strings.Contains(out, `"ack_wait":"1m0s"`) || !strings.Contains(out, `"backoff":["1s","10s"]`) {
		t.Fatalf("group create: %v %s", err, out)
	}
	if _, err := run("group", "create", "workers", "--topic", "jobs", "--ack-wait", "2m"); err == nil || !strings.Contains(err.Error(), "409 conflict") {
		t.Errorf("group create with other settings: %v", err)
	}
	if _, err := run("group", "create", "x"); err == nil || !strings.Contains(err.Error(), "--topic") {
		t.Errorf("group create without --topic: %v", err)
	}

	// Print and ack: the three events, one line each.
	out, err = run("consume", "workers", "--count", "3", "--member", "printer")
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	var ns []int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			Data       struct{ N int }
			Delivery   int    `json:"delivery"`
			DeliveryID string `json:"delivery_id"`
			Cursor     string `json:"cursor"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Delivery != 1 || l.DeliveryID == "" || l.Cursor == "" {
			t.Errorf("line %q: %v", line, err)
		}
		ns = append(ns, l.Data.N)
	}
	if len(ns) != 3 {
		t.Fatalf("printed %q", out)
	}
	out, err = run("group", "info", "workers")
	if err != nil || !strings.Contains(out, `"in_flight":0`) || !strings.Contains(out, `"pending":0`) {
		t.Errorf("group info after consume: %v %s", err, out)
	}

	// --exec over gRPC: exit 0 acks, another status naks (the event comes
	// again, delivery 2); the environment and stdin carry the event.
	for i := 4; i <= 5; i++ {
		if _, err := run("publish", "jobs", `{"n":`+strconv.Itoa(i)+`}`); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `printf '%s %s %s %s\n' "$HERALD_OFFSET" "$HERALD_DELIVERY" "$(cat)" "$HERALD_GROUP" >> ` + log + `
test "$HERALD_OFFSET" != 4 -o "$HERALD_DELIVERY" != 1`
	if _, err := runCLIArgs(ctx, "consume", "workers", "--transport", "grpc", "--grpc-addr", s.grpc, "--exec", script,
		"--count", "2", "--concurrency", "2"); err != nil {
		t.Fatalf("consume --exec: %v", err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	want := []string{`4 1 {"n":4} workers`, `4 2 {"n":4} workers`, `5 1 {"n":5} workers`}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("--exec ran %q, want %q", lines, want)
	}

	out, err = run("group", "ls")
	if err != nil || !strings.Contains(out, "REDELIVERED") || !strings.Contains(out, "workers") {
		t.Errorf("group ls: %v %s", err, out)
	}
	if _, err := run("group", "rm", "workers"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("consume", "workers"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("consume of a deleted group: %v", err)
	}
	if _, err := run("consume", "workers", "--concurrency", "0"); err == nil || !strings.Contains(err.Error(), "--concurrency") {
		t.Errorf("consume --concurrency 0: %v", err)
	}
	if _, err := run("consume", "workers", "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "--exec") {
		t.Errorf("consume --timeout without --exec: %v", err)
	}
}

// runCLIArgs runs the command with args, without --server.
func runCLIArgs(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	err := runCLI(ctx, nil, &out, args...)
	return out.String(), err
}
