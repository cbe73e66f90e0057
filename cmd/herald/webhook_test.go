package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/internal/config"
)

// The webhook commands over the API: add (a generated secret, printed
// once), the deliveries verifying with the reference library, ls, test,
// log, replay, get (redacted), rm.
func TestWebhookCommands(t *testing.T) {
	s := startCLIServer(t, func(c *config.Config) { c.Outbound.AllowNetworks = []string{"127.0.0.1/32"} })
	got := make(chan http.Header, 100)
	var verifier *standardwebhooks.Webhook
	ready := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			t.Errorf("signature: %v", err)
		}
		got <- r.Header
	}))
	defer recv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI(ctx, nil, &out, append(args, "--server", s.url)...)
		return out.String(), err
	}
	if _, err := s.c.Publish(ctx, "orders", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	out, err := run("webhook", "add", "shop", "--url", recv.URL, "--topic", "orders", "--start", "earliest")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Secrets   []string `json:"secrets"`
		Generated string   `json:"generated_secret"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Secrets[0] != "<redacted>" || !strings.HasPrefix(created.Generated, "whsec_") {
		t.Fatalf("webhook add printed %s (%v)", out, err)
	}
	verifier, _ = standardwebhooks.NewWebhook(created.Generated)
	close(ready)
	h := <-got
	if !strings.HasPrefix(h.Get("webhook-id"), "orders:") {
		t.Errorf("webhook-id %q", h.Get("webhook-id"))
	}
	if out, err = run("webhook", "test", "shop"); err != nil || !strings.Contains(out, `"result":"success"`) {
		t.Errorf("webhook test: %v\n%s", err, out)
	}
	<-got
	if out, err = run("webhook", "replay", "shop", "--from", "earliest"); err != nil || !strings.Contains(out, `"from":"earliest"`) {
		t.Errorf("webhook replay: %v\n%s", err, out)
	}
	if h2 := <-got; h2.Get("webhook-id") != h.Get("webhook-id") {
		t.Errorf("replayed %q, want %q", h2.Get("webhook-id"), h.Get("webhook-id"))
	}
	out, err = run("webhook", "ls")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "shop") || !strings.Contains(out, "active") {
		t.Errorf("webhook ls: %v\n%s", err, out)
	}
	if out, err = run("webhook", "log", "shop"); err != nil || strings.Count(out, `"result":"success"`) < 2 {
		t.Errorf("webhook log: %v\n%s", err, out)
	}
	if out, err = run("webhook", "get", "shop"); err != nil || strings.Contains(out, "whsec_") || !strings.Contains(out, `"status":{`) {
		t.Errorf("webhook get: %v\n%s", err, out)
	}
	if _, err = run("webhook", "add", "bad", "--url", "http://10.0.0.1/", "--topic", "orders"); err == nil || !strings.Contains(err.Error(), "400 bad_request") || !strings.Contains(err.Error(), "private") {
		t.Errorf("webhook add to a private address: %v", err)
	}
	if _, err = run("webhook", "add", "bad", "--url", recv.URL, "--topic", "orders", "--retry", "2d"); err == nil || !strings.Contains(err.Error(), "--retry") {
		t.Errorf("webhook add with a bad retry: %v", err)
	}
	if _, err = run("webhook", "rm", "shop"); err != nil {
		t.Errorf("webhook rm: %v", err)
	}
	if _, err = run("webhook", "rm", "shop"); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Errorf("webhook rm again: %v", err)
	}
}
