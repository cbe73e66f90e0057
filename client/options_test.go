package client_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald/client"
)

// TestFromDefault checks the one default of Pull and Subscribe: without a
// cursor they start after the newest event, over every transport and both
// APIs, and FromEarliest reads the history first.
func TestFromDefault(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	for _, api := range []struct {
		name       string
		c          *client.Client
		transports []client.Transport
	}{
		{"http", ts.c, transports},
		{"grpc", ts.grpcClient(), []client.Transport{client.TransportGRPC}},
	} {
		t.Run(api.name, func(t *testing.T) {
			topic := "from." + api.name
			ts.publish(topic, "1")
			ts.publish(topic, "2")
			res, err := api.c.Pull(ctx, []string{topic})
			if err != nil || len(res.Events) != 0 || res.Cursor == "" {
				t.Fatalf("pull without a cursor: %+v, %v; want no events and a cursor", res, err)
			}
			all, err := api.c.Pull(ctx, []string{topic}, client.WithFrom(client.FromEarliest))
			if err != nil || len(all.Events) != 2 {
				t.Fatalf("pull from earliest: %+v, %v", all, err)
			}
			var subs []*client.Subscription
			for _, tr := range api.transports {
				sub, err := api.c.Subscribe(ctx, []string{topic}, client.WithTransport(tr))
				if err != nil {
					t.Fatalf("subscribe over %s: %v", tr, err)
				}
				defer sub.Close()
				subs = append(subs, sub)
			}
			ack := ts.publish(topic, "3")
			for i, sub := range subs {
				if ev := nextEvent(t, sub).Event; ev.Offset != ack.Offset {
					t.Errorf("subscription over %s starts with #%d, want the new #%d", api.transports[i], ev.Offset, ack.Offset)
				}
			}
			res, err = api.c.Pull(ctx, []string{topic}, client.WithCursor(res.Cursor))
			if err != nil || len(res.Events) != 1 || res.Events[0].Offset != ack.Offset {
				t.Errorf("pull from the bookmark: %+v, %v; want #%d only", res, err, ack.Offset)
			}
		})
	}
}

// TestTextValues checks that Transport and From read the names of their
// constants, and the empty default, as text (a flag, a configuration
// field) and refuse others.
func TestTextValues(t *testing.T) {
	tests := []struct {
		text        string
		transportOK bool
		fromOK      bool
	}{
		{"", true, true},
		{"sse", true, false}, {"poll", true, false}, {"ws", true, false}, {"grpc", true, false},
		{"latest", false, true}, {"earliest", false, true},
		{"SSE", false, false}, {"http", false, false}, {"middle", false, false},
	}
	for _, tt := range tests {
		var tr client.Transport
		var from client.From
		errT, errF := tr.UnmarshalText([]byte(tt.text)), from.UnmarshalText([]byte(tt.text))
		if (errT == nil) != tt.transportOK || (errF == nil) != tt.fromOK {
			t.Errorf("%q: transport error %v, from error %v; want ok %t, %t", tt.text, errT, errF, tt.transportOK, tt.fromOK)
		}
		// A refused value leaves the variable as it was (empty).
		if tt.transportOK && string(tr) != tt.text || tt.fromOK && string(from) != tt.text || !tt.transportOK && tr != "" || !tt.fromOK && from != "" {
			t.Errorf("%q read as %q and %q", tt.text, tr, from)
		}
	}
	var cfg struct {
		Transport client.Transport `json:"transport"`
		From      client.From      `json:"from"`
	}
	if err := json.Unmarshal([]byte(`{"transport":"ws","from":"earliest"}`), &cfg); err != nil ||
		cfg.Transport != client.TransportWS || cfg.From != client.FromEarliest {
		t.Errorf("JSON: %+v, %v", cfg, err)
	}
	if err := json.Unmarshal([]byte(`{"transport":"pigeon"}`), &cfg); err == nil {
		t.Error("JSON took an unknown transport")
	}
	if b, err := json.Marshal(client.TransportPoll); err != nil || string(b) != `"poll"` {
		t.Errorf("marshal: %s, %v", b, err)
	}
}
