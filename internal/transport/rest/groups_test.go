package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

func newGroupsFixture(t *testing.T) (*fixture, *refuseGate) {
	t.Helper()
	gate := &refuseGate{}
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{Gate: gate})
	m, err := group.New(context.Background(), h, group.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(h, Options{Groups: m}).Register(mux)
	t.Cleanup(func() {
		m.Close()
		h.Close()
		eng.Close()
	})
	return &fixture{hub: h, mux: mux}, gate
}

type fetched struct {
	Messages []struct {
		ID       string
		Delivery int
		Deadline string
		Event    struct {
			Topic  string
			Offset uint64
			Data   json.RawMessage
		}
	}
}

func TestGroupsAPI(t *testing.T) {
	f, _ := newGroupsFixture(t)
	if _, err := f.hub.Publish(hub.Internal(context.Background()), "jobs.a", []event.Record{{Data: []byte(`1`)}, {Data: []byte(`2`)}, {Data: []byte(`3`)}}); err != nil {
		t.Fatal(err)
	}
	rec := f.do("PUT", "/v1/groups/workers", []byte(`{"topics":["jobs.a"],"start":"earliest","ack_wait":"1m","backoff":["1s","5s"]}`))
	if rec.Code != 201 {
		t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
	}
	var info struct {
		Name      string
		AckWait   string `json:"ack_wait"`
		Pending   uint64
		Positions []struct{ Topic string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || info.Name != "workers" || info.AckWait != "1m0s" || info.Pending != 3 || len(info.Positions) != 1 {
		t.Errorf("PUT answered %s (%v)", rec.Body, err)
	}
	if rec := f.do("PUT", "/v1/groups/workers", []byte(`{"topics":["jobs.a"],"start":"earliest","ack_wait":"1m","backoff":["1s","5s"]}`)); rec.Code != 200 {
		t.Errorf("the same PUT again: %d %s, want 200", rec.Code, rec.Body)
	}
	if rec := f.do("PUT", "/v1/groups/workers", []byte(`{"topics":["jobs.a"]}`)); rec.Code != 409 {
		t.Errorf("PUT with other settings: %d %s, want 409", rec.Code, rec.Body)
	} else if code, _ := errorCode(t, rec.Body.Bytes()); code != "conflict" {
		t.Errorf("PUT with other settings: code %s, want conflict", code)
	}

	rec = f.do("POST", "/v1/groups/workers/fetch", []byte(`{"member":"w1","limit":3}`))
	if rec.Code != 200 {
		t.Fatalf("fetch: %d %s", rec.Code, rec.Body)
	}
	var got fetched
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Messages) != 3 {
		t.Fatalf("fetch answered %s (%v)", rec.Body, err)
	}
	m0 := got.Messages[0]
	if m0.ID == "" || m0.Delivery != 1 || m0.Deadline == "" || m0.Event.Topic != "jobs.a" || m0.Event.Offset != 1 || string(m0.Event.Data) != "1" {
		t.Errorf("first message %+v", m0)
	}

	body := fmt.Sprintf(`{"member":"w1","ids":[%q,"nope",%q]}`, m0.ID, m0.ID)
	rec = f.do("POST", "/v1/groups/workers/ack", []byte(body))
	if rec.Code != 200 {
		t.Fatalf("ack: %d %s", rec.Code, rec.Body)
	}
	var acks struct {
		Acked   int
		Results []struct {
			ID    string
			Error *struct{ Code string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &acks); err != nil || acks.Acked != 1 || len(acks.Results) != 3 {
		t.Fatalf("ack answered %s (%v)", rec.Body, err)
	}
	if acks.Results[0].Error != nil || acks.Results[1].Error == nil || acks.Results[1].Error.Code != "not_found" || acks.Results[2].Error == nil {
		t.Errorf("ack results %s: want ok, not_found, not_found", rec.Body)
	}

	m1, m2 := got.Messages[1], got.Messages[2]
	if rec := f.do("POST", "/v1/groups/workers/in_progress", []byte(fmt.Sprintf(`{"member":"w1","id":%q}`, m1.ID))); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"deadline":"`) {
		t.Errorf("in_progress: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("POST", "/v1/groups/workers/nak", []byte(fmt.Sprintf(`{"member":"w1","id":%q,"delay":0}`, m1.ID))); rec.Code != 204 {
		t.Errorf("nak: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("POST", "/v1/groups/workers/term", []byte(fmt.Sprintf(`{"member":"w1","id":%q,"reason":"broken"}`, m2.ID))); rec.Code != 204 {
		t.Errorf("term: %d %s", rec.Code, rec.Body)
	}
	rec = f.do("POST", "/v1/groups/workers/fetch", []byte(`{"member":"w2","wait":"10s"}`))
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Messages) != 1 || got.Messages[0].Delivery != 2 || got.Messages[0].Event.Offset != 2 {
		t.Errorf("fetch after the nak: %s, want offset 2's second delivery", rec.Body)
	}

	rec = f.do("GET", "/v1/groups", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"dead_lettered":1`) || !strings.Contains(rec.Body.String(), `"in_flight":1`) {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("DELETE", "/v1/groups/workers", nil); rec.Code != 204 {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("GET", "/v1/groups/workers", nil); rec.Code != 404 {
		t.Errorf("get after delete: %d %s", rec.Code, rec.Body)
	}
}

func TestGroupsAPIErrors(t *testing.T) {
	f, gate := newGroupsFixture(t)
	if _, err := f.hub.Publish(hub.Internal(context.Background()), "jobs.a", []event.Record{{Data: []byte(`1`)}}); err != nil {
		t.Fatal(err)
	}
	if rec := f.do("PUT", "/v1/groups/g", []byte(`{"topics":["jobs.a"]}`)); rec.Code != 201 {
		t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
	}
	tests := []struct {
		name, method, target, body string
		status                     int
		code                       string
	}{
		{"missing topic", "PUT", "/v1/groups/h", `{"topics":["no.such"]}`, 404, "not_found"},
		{"bad ack_wait", "PUT", "/v1/groups/h", `{"topics":["jobs.a"],"ack_wait":"-1s"}`, 400, "bad_request"},
		{"unknown key", "PUT", "/v1/groups/h", `{"topics":["jobs.a"],"ackwait":"1s"}`, 400, "bad_request"},
		{"name mismatch", "PUT", "/v1/groups/h", `{"name":"x","topics":["jobs.a"]}`, 400, "bad_request"},
		{"fetch missing group", "POST", "/v1/groups/nope/fetch", `{"member":"w"}`, 404, "not_found"},
		{"fetch no member", "POST", "/v1/groups/g/fetch", `{}`, 400, "bad_request"},
		{"fetch bad limit", "POST", "/v1/groups/g/fetch", `{"member":"w","limit":0}`, 400, "bad_request"},
		{"fetch bad wait", "POST", "/v1/groups/g/fetch", `{"member":"w","wait":"soon"}`, 400, "bad_request"},
		{"fetch long wait", "POST", "/v1/groups/g/fetch", `{"member":"w","wait":"1h"}`, 400, "bad_request"},
		{"ack no ids", "POST", "/v1/groups/g/ack", `{"member":"w","ids":[]}`, 400, "bad_request"},
		{"nak no id", "POST", "/v1/groups/g/nak", `{"member":"w"}`, 400, "bad_request"},
		{"nak unknown", "POST", "/v1/groups/g/nak", `{"member":"w","id":"x"}`, 404, "not_found"},
		{"term unknown", "POST", "/v1/groups/g/term", `{"id":"x"}`, 404, "not_found"},
		{"fetch with GET", "GET", "/v1/groups/g/fetch", ``, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		rec := f.do(tt.method, tt.target, []byte(tt.body))
		if rec.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
			continue
		}
		if code, _ := errorCode(t, rec.Body.Bytes()); code != tt.code {
			t.Errorf("%s: code %s, want %s", tt.name, code, tt.code)
		}
	}
	gate.action.Store(int32(hub.ActionConsume))
	if rec := f.do("POST", "/v1/groups/g/fetch", []byte(`{"member":"w"}`)); rec.Code != 403 {
		t.Errorf("fetch without the consume grant: %d %s, want 403", rec.Code, rec.Body)
	}
	if rec := f.do("POST", "/v1/groups/g/ack", []byte(`{"ids":["x"]}`)); rec.Code != 403 {
		t.Errorf("ack without the consume grant: %d %s, want 403", rec.Code, rec.Body)
	}
	gate.action.Store(int32(hub.ActionAdmin))
	for _, req := range [][2]string{{"GET", "/v1/groups"}, {"GET", "/v1/groups/g"}, {"DELETE", "/v1/groups/g"}, {"PUT", "/v1/groups/g"}} {
		if rec := f.do(req[0], req[1], []byte(`{"topics":["jobs.a"]}`)); rec.Code != 403 {
			t.Errorf("%s %s without the admin grant: %d %s, want 403", req[0], req[1], rec.Code, rec.Body)
		}
	}
	if rec := f.do("POST", "/v1/groups/g/fetch", []byte(`{"member":"w"}`)); rec.Code != 200 {
		t.Errorf("fetch needs no admin grant: %d %s", rec.Code, rec.Body)
	}
}
