package sse

import (
	"bufio"
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
)

// TestPresenceEvents: on a topic with presence, streams get join and
// leave events (without an id, so Last-Event-ID does not move), and the
// presence query parameter is the stream's info.
func TestPresenceEvents(t *testing.T) {
	eng := memory.New(memory.Options{})
	h := hub.New(eng, hub.Options{Presence: func(topic string) bool { return strings.HasPrefix(topic, "room.") }})
	s := New(h, Options{Heartbeat: time.Second}) // a closed stream is noticed at its next heartbeat
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		h.Close()
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Wait(ctx)
		srv.Close()
		eng.Close()
	})
	open := func(query string) (*bufio.Reader, func()) {
		res, err := srv.Client().Get(srv.URL + "/v1/sse?" + query)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(res.Body)
		readBlock(t, br) // retry and id
		return br, func() { res.Body.Close() }
	}
	a, closeA := open("topic=room.1&presence=" + url.QueryEscape(`{"name":"ann"}`))
	defer closeA()
	if got := readBlock(t, a); !strings.HasPrefix(got, "event: join\ndata: {\"topic\":\"room.1\",\"client\":\"") ||
		!strings.Contains(got, `"info":{"name":"ann"}`) || strings.Contains(got, "id:") {
		t.Errorf("own join %q", got)
	}
	_, closeB := open("topic=room.1")
	if got := readBlock(t, a); !strings.HasPrefix(got, "event: join\n") || strings.Contains(got, `"info"`) {
		t.Errorf("second join %q", got)
	}
	closeB()
	got := readBlock(t, a)
	for got == ": hb\n\n" {
		got = readBlock(t, a)
	}
	if !strings.HasPrefix(got, "event: leave\n") {
		t.Errorf("leave %q", got)
	}
	// Bad info refuses the stream.
	res, err := srv.Client().Get(srv.URL + "/v1/sse?topic=room.2&presence=%5B1%5D")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Errorf("bad presence info: %d, want 400", res.StatusCode)
	}
}
