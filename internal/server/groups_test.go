package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// TestGroupDeclared: a group in the config starts with the server; members
// fetch and ack over REST; /metrics shows the group's state and counters.
func TestGroupDeclared(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.Groups = []config.Group{{Name: "billing", Topics: []string{"orders.eu"}, Start: "earliest", AckWait: time.Minute}}
	})
	ts.publishN("orders.eu", 0, 3)
	r := ts.do(http.MethodPost, "/v1/groups/billing/fetch", []byte(`{"member":"w1","limit":10,"wait":"10s"}`), "Content-Type", "application/json")
	if r.status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.status, r.body)
	}
	var got struct{ Messages []struct{ ID string } }
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Messages) == 0 {
		t.Fatalf("fetch answered %s (%v)", r.body, err)
	}
	if v := ts.metric(`herald_group_in_flight{group="billing"}`); v != float64(len(got.Messages)) {
		t.Errorf("herald_group_in_flight %v, want %d", v, len(got.Messages))
	}
	ids, _ := json.Marshal(struct {
		IDs []string `json:"ids"`
	}{[]string{got.Messages[0].ID}})
	if r := ts.do(http.MethodPost, "/v1/groups/billing/ack", ids, "Content-Type", "application/json"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"acked":1`) {
		t.Errorf("ack: %d %s", r.status, r.body)
	}
	if v := ts.metric(`herald_group_acks_total{group="billing"}`); v != 1 {
		t.Errorf("herald_group_acks_total %v, want 1", v)
	}
	if r := ts.get("/v1/groups/billing"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"positions":[{"topic":"orders.eu"`) {
		t.Errorf("GET: %d %s", r.status, r.body)
	}
}
