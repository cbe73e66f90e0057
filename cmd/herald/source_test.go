package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

func TestSourceCommands(t *testing.T) {
	s := startCLIServer(t, func(c *config.Config) { c.Outbound.AllowNetworks = []string{"127.0.0.1/32"} })
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer from-env" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"items":[{"id":1},{"id":2}]}`)
	}))
	defer origin.Close()
	t.Setenv("ORIGIN_AUTH", "Bearer from-env")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI(ctx, nil, &out, append(args, "--server", s.url)...)
		return out.String(), err
	}

	out, err := run("source", "add", "feed", "--url", origin.URL, "--topic", "mirror.feed", "--mode", "json-items",
		"--items", "items", "--interval", "1s", "--jitter", "0", "--header-env", "Authorization=ORIGIN_AUTH")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "from-env") || !strings.Contains(out, `"Authorization":"<redacted>"`) {
		t.Errorf("source add printed %s", out)
	}
	// A long poll returns once the source has published (both items come
	// in one publish).
	resp, err := (&http.Client{Transport: s.tr}).Get(s.url + "/v1/topics/mirror.feed/events?from=earliest&wait=10s")
	if err != nil {
		t.Fatal(err)
	}
	var pulled struct {
		Events []struct{ Data json.RawMessage }
	}
	err = json.NewDecoder(resp.Body).Decode(&pulled)
	resp.Body.Close()
	if err != nil || len(pulled.Events) != 2 || string(pulled.Events[1].Data) != `{"id":2}` {
		t.Fatalf("the source published %+v (%v), want the two items", pulled, err)
	}
	out, err = run("source", "ls")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "feed") || !strings.Contains(out, "json-items") || !strings.Contains(out, "mirror.feed") {
		t.Errorf("source ls: %v\n%s", err, out)
	}
	if out, err = run("source", "get", "feed"); err != nil || !strings.Contains(out, `"status":{`) {
		t.Errorf("source get: %v\n%s", err, out)
	}
	if _, err = run("source", "add", "bad", "--url", origin.URL, "--topic", "t", "--interval", "1ms"); err == nil || !strings.Contains(err.Error(), "interval") || !strings.Contains(err.Error(), "400 bad_request") {
		t.Errorf("source add with a bad interval: %v", err)
	}
	if _, err = run("source", "add", "x", "--topic", "t"); err == nil || !strings.Contains(err.Error(), "--url") {
		t.Errorf("source add without --url: %v", err)
	}
	if _, err = run("source", "add", "x", "--url", origin.URL, "--topic", "t", "--header-env", "A=HERALD_NO_SUCH_VAR"); err == nil || !strings.Contains(err.Error(), "HERALD_NO_SUCH_VAR") {
		t.Errorf("source add with a missing variable: %v", err)
	}
	if _, err = run("source", "rm", "feed"); err != nil {
		t.Errorf("source rm: %v", err)
	}
	if _, err = run("source", "rm", "feed"); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Errorf("source rm again: %v", err)
	}
	if out, err = run("source", "ls", "--json"); err != nil || strings.TrimSpace(out) != `{"sources":[]}` {
		t.Errorf("source ls --json after rm: %v %s", err, out)
	}
}
