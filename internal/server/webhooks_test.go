package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// TestWebhookDeclaredAndMetrics: a webhook in the config starts with the
// server and delivers; the metrics count it; a bad declared webhook stops
// the server from starting, naming its key.
func TestWebhookDeclaredAndMetrics(t *testing.T) {
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer recv.Close()
	ts := startServer(t, func(c *config.Config) {
		c.Outbound.AllowNetworks = []string{"127.0.0.1"}
		c.Webhooks = []config.Webhook{{Name: "shop", URL: recv.URL, Topics: []string{"orders.>"}, Start: "earliest"}}
	})
	ts.publishN("orders.eu", 0, 1)
	select {
	case b := <-got:
		if !strings.Contains(b, `"topic":"orders.eu"`) {
			t.Errorf("delivered %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered")
	}
	waitFor(t, "the delivery counter", 5*time.Second, func() bool {
		return ts.metric(`herald_webhook_delivered_total{webhook="shop"}`) == 1 && ts.metric(`herald_webhook_attempts_total{result="success",webhook="shop"}`) == 1
	})
	if v := ts.metric(`herald_webhook_disabled{webhook="shop"}`); v != 0 {
		t.Errorf("disabled gauge %v", v)
	}
	r := ts.get("/v1/webhooks")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"name":"shop"`) || strings.Contains(string(r.body), "whsec_") {
		t.Errorf("GET /v1/webhooks: %d %s", r.status, r.body)
	}
	if r := ts.do(http.MethodPut, "/v1/webhooks/x", []byte(`{"url":"http://127.0.0.1:1/","topics":["a"],"retry":["48h"]}`), "Content-Type", "application/json"); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "retry[0]") {
		t.Errorf("PUT with a bad retry: %d %s", r.status, r.body)
	}
	if r := ts.do(http.MethodPost, "/v1/webhooks/nope/test", nil); r.status != http.StatusNotFound {
		t.Errorf("test of a missing webhook: %d %s", r.status, r.body)
	}

	cfg := config.Default()
	cfg.HTTP.Addr, cfg.GRPC.Enabled = "127.0.0.1:0", false
	cfg.Webhooks = []config.Webhook{{Name: "meta", URL: "http://169.254.169.254/latest/meta-data/", Topics: []string{"t.>"}}}
	if _, err := server.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "config webhooks[0] (meta).url") || !strings.Contains(err.Error(), "cloud metadata") {
		t.Errorf("New with a metadata URL: %v", err)
	}
}
