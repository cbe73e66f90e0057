package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// TestSourceOwnMetrics points a prometheus source at the server's own
// /metrics, over a real socket through the SSRF guard (127.0.0.1 allowed),
// and reads the sample events it publishes with a long poll.
func TestSourceOwnMetrics(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.Outbound.AllowNetworks = []string{"127.0.0.1/32"} })
	body := `{"url":"` + ts.base + `/metrics","topic":"metrics.self","mode":"prometheus","interval":"1s","jitter":0,"metrics":["go_goroutines","herald_http_*"]}`
	r := ts.do(http.MethodPut, "/v1/sources/self", []byte(body), "Content-Type", "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("PUT /v1/sources/self: %d %s", r.status, r.body)
	}
	got := ts.pull("/v1/topics/metrics.self/events?from=earliest&wait=10s")
	if len(got.Events) == 0 {
		t.Fatalf("no sample events: %s", got.raw)
	}
	var data struct {
		Samples []struct {
			Metric string            `json:"metric"`
			Labels map[string]string `json:"labels"`
			Value  float64           `json:"value"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(got.Events[0].Data, &data); err != nil {
		t.Fatalf("event %s: %v", got.Events[0].Data, err)
	}
	if len(data.Samples) != 1 || data.Samples[0].Metric != "go_goroutines" || data.Samples[0].Value <= 0 {
		t.Errorf("first scrape %s, want go_goroutines alone (the filter)", got.Events[0].Data)
	}
	if got.Events[0].Headers["source"] != "self" {
		t.Errorf("headers %v", got.Events[0].Headers)
	}
	waitFor(t, "the poll counter", 5*time.Second, func() bool {
		return ts.metric(`herald_source_polls_total{result="changed",source="self"}`) >= 1
	})
	r = ts.get("/v1/sources/self")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"mode":"prometheus"`) || !strings.Contains(string(r.body), `"published":`) {
		t.Errorf("GET /v1/sources/self: %d %s", r.status, r.body)
	}
	if r := ts.do(http.MethodDelete, "/v1/sources/self", nil); r.status != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
	if v := ts.metric(`herald_source_polls_total{result="changed",source="self"}`); v != -1 {
		t.Errorf("a deleted source's series stays: %v", v)
	}
}

// TestSourceDeclared: a source in the config starts with the server; one
// the guard refuses stops the server from starting, naming it.
func TestSourceDeclared(t *testing.T) {
	origin := startServer(t)
	origin.publishN("feed.x", 0, 1)
	ts := startServer(t, func(c *config.Config) {
		c.Outbound.AllowNetworks = []string{"127.0.0.1"}
		c.Sources = []config.Source{{Name: "topics", URL: origin.base + "/v1/topics", Topic: "mirror.topics", Interval: time.Second}}
	})
	got := ts.pull("/v1/topics/mirror.topics/events?from=earliest&wait=10s")
	if len(got.Events) == 0 || !strings.Contains(string(got.Events[0].Data), `"feed.x"`) {
		t.Fatalf("the declared source published %s", got.raw)
	}

	cfg := config.Default()
	cfg.HTTP.Addr, cfg.GRPC.Enabled = "127.0.0.1:0", false
	cfg.Sources = []config.Source{{Name: "meta", URL: "http://169.254.169.254/latest/meta-data/", Topic: "t.x"}}
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "config sources[0] (meta)") || !strings.Contains(err.Error(), "cloud metadata") {
		t.Errorf("New with a metadata URL: %v", err)
	}
}
