package source

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// whole returns a whole-mode source of o, polled every second, no jitter.
func whole(name string, o *origin) Config {
	return Config{Name: name, URL: o.URL + "/feed", Topic: "feeds." + name, Mode: ModeWhole, Interval: time.Second}
}

func TestWholeETag(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body, o.etag = `{"v":1}`, `"v1"` })
	f := newFixture(t)
	f.put(t, whole("w", o))
	tm := f.clock.next(t)
	if got, want := f.datas(t, "feeds.w"), []string{`{"v":1}`}; !slices.Equal(got, want) {
		t.Fatalf("after the first poll: %q, want %q", got, want)
	}
	ev := f.events(t, "feeds.w")[0]
	if ev.Encoding != event.EncodingJSON || ev.Headers["source"] != "w" || ev.Headers["content_type"] != "application/json" {
		t.Errorf("event %+v, want JSON with headers source and content_type", ev.Record)
	}
	// Unchanged: the origin answers 304 to the ETag, nothing is published.
	for range 3 {
		tm = f.clock.poll(t, tm)
		if got := f.polls.last(); got != string(ResultNotModified) {
			t.Fatalf("poll result %s, want not_modified", got)
		}
	}
	reqs := o.requests()
	if got := reqs[len(reqs)-1].Get("If-None-Match"); got != `"v1"` {
		t.Errorf("If-None-Match %q, want the ETag", got)
	}
	if reqs[0].Get("If-None-Match") != "" {
		t.Errorf("the first request sent If-None-Match %q", reqs[0].Get("If-None-Match"))
	}
	o.set(func(o *origin) { o.body, o.etag = `{"v":2}`, `"v2"` })
	tm = f.clock.poll(t, tm)
	if got, want := f.datas(t, "feeds.w"), []string{`{"v":1}`, `{"v":2}`}; !slices.Equal(got, want) {
		t.Fatalf("after a change: %q, want %q", got, want)
	}
	// A body that goes back to an earlier version is a change too.
	o.set(func(o *origin) { o.body, o.etag = `{"v":1}`, `"v3"` })
	f.clock.poll(t, tm)
	if got := len(f.events(t, "feeds.w")); got != 3 {
		t.Fatalf("%d events after going back to v1, want 3", got)
	}
	if got := f.polls.published; got != 3 {
		t.Errorf("observer counted %d published, want 3", got)
	}
}

func TestWholeLastModified(t *testing.T) {
	o := newOrigin(t)
	lm := "Wed, 21 Oct 2015 07:28:00 GMT"
	o.set(func(o *origin) { o.body, o.ctype, o.modified = "hello", "text/plain", lm })
	f := newFixture(t)
	f.put(t, whole("lm", o))
	tm := f.clock.next(t)
	tm = f.clock.poll(t, tm)
	if got := f.polls.last(); got != string(ResultNotModified) {
		t.Fatalf("poll result %s, want not_modified", got)
	}
	reqs := o.requests()
	if got := reqs[1].Get("If-Modified-Since"); got != lm {
		t.Errorf("If-Modified-Since %q, want %q", got, lm)
	}
	// Without validators, an unchanged body publishes nothing either.
	o.set(func(o *origin) { o.modified = "" })
	tm = f.clock.poll(t, tm)
	f.clock.poll(t, tm)
	if got := f.polls.last(); got != string(ResultUnchanged) {
		t.Fatalf("poll result %s, want unchanged", got)
	}
	evs := f.events(t, "feeds.lm")
	if len(evs) != 1 || evs[0].Encoding != event.EncodingText || string(evs[0].Data) != "hello" {
		t.Fatalf("events %v, want one text event", evs)
	}
}

// items returns a json-items source of o.
func items(name string, o *origin, path string) Config {
	return Config{Name: name, URL: o.URL + "/items", Topic: "items." + name, Mode: ModeJSONItems, Items: path, Interval: time.Second}
}

func TestJSONItems(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) {
		o.body = `{"data":{"orders":[{"id":1,"s":"new"},{"id":"b","s":"new"},{"s":"no id"},{"id":1,"s":"duplicate"}]}}`
	})
	f := newFixture(t)
	cfg := items("orders", o, "$.data.orders")
	cfg.Removals = true
	f.put(t, cfg)
	tm := f.clock.next(t)
	want := []string{`{"id":1,"s":"new"}`, `{"id":"b","s":"new"}`}
	if got := f.datas(t, "items.orders"); !slices.Equal(got, want) {
		t.Fatalf("first poll: %q, want %q", got, want)
	}
	// Key order and spacing do not make a change; a field does.
	o.set(func(o *origin) {
		o.body = `{"data":{"orders":[{"s":"new", "id":1},{"id":"b","s":"paid"},{"id":3,"s":"new"}]}}`
	})
	tm = f.clock.poll(t, tm)
	want = append(want, `{"id":"b","s":"paid"}`, `{"id":3,"s":"new"}`)
	if got := f.datas(t, "items.orders"); !slices.Equal(got, want) {
		t.Fatalf("second poll: %q, want %q", got, want)
	}
	evs := f.events(t, "items.orders")
	if h := evs[2].Headers; h["id"] != "b" || h["change"] != "changed" {
		t.Errorf("headers of the changed item: %v", h)
	}
	if h := evs[3].Headers; h["id"] != "3" || h["change"] != "new" {
		t.Errorf("headers of the new item: %v", h)
	}
	// Item 1 goes: a removal. It comes back unchanged: new again.
	o.set(func(o *origin) { o.body = `{"data":{"orders":[{"id":"b","s":"paid"},{"id":3,"s":"new"}]}}` })
	tm = f.clock.poll(t, tm)
	o.set(func(o *origin) {
		o.body = `{"data":{"orders":[{"id":1,"s":"new"},{"id":"b","s":"paid"},{"id":3,"s":"new"}]}}`
	})
	tm = f.clock.poll(t, tm)
	want = append(want, `{"id":"1"}`, `{"id":1,"s":"new"}`)
	if got := f.datas(t, "items.orders"); !slices.Equal(got, want) {
		t.Fatalf("after a removal and a return: %q, want %q", got, want)
	}
	if h := f.events(t, "items.orders")[4].Headers; h["change"] != "removed" {
		t.Errorf("headers of the removal: %v", h)
	}
	// A body that is not what the mode reads is an error, and changes
	// nothing.
	o.set(func(o *origin) { o.body = `{"data":{"orders":{"id":1}}}` })
	f.clock.poll(t, tm)
	if got := f.polls.last(); got != "error:parse" {
		t.Fatalf("poll result %s, want error:parse", got)
	}
	st, _ := f.m.Get("orders")
	if !strings.Contains(st.Status.LastError, "$.data.orders is an object, not an array") {
		t.Errorf("last error %q", st.Status.LastError)
	}
	if got := len(f.events(t, "items.orders")); got != len(want) {
		t.Errorf("%d events after a bad body, want %d", got, len(want))
	}
}

// TestJSONItemsNoIDs: an array none of whose items has an id is a
// misconfigured id path, not an empty list.
func TestJSONItemsNoIDs(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `[{"ID":1},{"ID":2}]` })
	f := newFixture(t)
	f.put(t, items("noid", o, ""))
	f.clock.next(t)
	in, _ := f.m.Get("noid")
	if f.polls.last() != "error:parse" || !strings.Contains(in.Status.LastError, "none of the 2 items has an id at $.id") {
		t.Errorf("poll %s, last error %q", f.polls.last(), in.Status.LastError)
	}
}

func TestJSONItemsVersion(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `[{"id":1,"rev":1,"x":"a"}]` })
	f := newFixture(t)
	cfg := items("rev", o, "")
	cfg.Version = "rev"
	f.put(t, cfg)
	tm := f.clock.next(t)
	// The version did not change: the item counts as unchanged.
	o.set(func(o *origin) { o.body = `[{"id":1,"rev":1,"x":"b"}]` })
	tm = f.clock.poll(t, tm)
	o.set(func(o *origin) { o.body = `[{"id":1,"rev":2,"x":"c"}]` })
	f.clock.poll(t, tm)
	evs := f.events(t, "items.rev")
	if len(evs) != 2 || string(evs[1].Data) != `{"id":1,"rev":2,"x":"c"}` {
		t.Fatalf("events %q, want versions 1 and 2", f.datas(t, "items.rev"))
	}
	if !strings.HasSuffix(evs[1].Key, ":1:v2") {
		t.Errorf("idempotency key %q, want it to end with the id and the version", evs[1].Key)
	}
}

const promText = `# HELP req_total Requests.
# TYPE req_total counter
req_total{code="200",path="/a"} 10
req_total{code="500",path="/a"} 1
# TYPE temp gauge
temp NaN
# TYPE lat histogram
lat_bucket{le="0.1"} 1
lat_bucket{le="+Inf"} 2
lat_sum 0.3
lat_count 2
`

func TestPrometheus(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body, o.ctype = promText, "text/plain; version=0.0.4" })
	f := newFixture(t)
	f.put(t, Config{Name: "prom", URL: o.URL + "/metrics", Topic: "metrics.prom", Mode: ModePrometheus, Interval: time.Second, Metrics: []string{"req_*", "temp"}})
	tm := f.clock.next(t)
	evs := f.events(t, "metrics.prom")
	if len(evs) != 1 {
		t.Fatalf("%d events after the first scrape, want 1", len(evs))
	}
	for _, s := range []string{`{"metric":"req_total","labels":{"code":"200","path":"/a"},"value":10}`, `{"metric":"temp","labels":{},"value":"NaN"}`} {
		if !strings.Contains(string(evs[0].Data), s) {
			t.Errorf("first event %s has no %s", evs[0].Data, s)
		}
	}
	if strings.Contains(string(evs[0].Data), "lat_") {
		t.Errorf("first event %s has the histogram, which the filter leaves out", evs[0].Data)
	}
	if got := o.requests()[0].Get("Accept"); !strings.HasPrefix(got, "text/plain;version=0.0.4") {
		t.Errorf("Accept %q, want the text format", got)
	}
	tm = f.clock.poll(t, tm) // the same text: no change
	o.set(func(o *origin) { o.body = strings.Replace(promText, "} 10", "} 11", 1) })
	f.clock.poll(t, tm)
	evs = f.events(t, "metrics.prom")
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if want := `{"samples":[{"metric":"req_total","labels":{"code":"200","path":"/a"},"value":11}]}`; string(evs[1].Data) != want {
		t.Errorf("the change: %s, want %s", evs[1].Data, want)
	}
}

func TestBodyCap(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `"` + strings.Repeat("x", 2000) + `"` })
	f := newFixture(t)
	cfg := whole("big", o)
	cfg.MaxBodyBytes = 1000
	f.put(t, cfg)
	f.clock.next(t)
	if got := f.polls.last(); got != "error:too_large" {
		t.Fatalf("poll result %s, want error:too_large", got)
	}
	if n := len(f.events(t, "feeds.big")); n != 0 {
		t.Errorf("%d events published from a body over the cap", n)
	}
	// The same without a Content-Length (chunked).
	o2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 20 {
			fmt.Fprint(w, strings.Repeat("y", 100))
			w.(http.Flusher).Flush()
		}
	}))
	defer o2.Close()
	cfg = Config{Name: "chunked", URL: o2.URL, Topic: "feeds.chunked", Interval: time.Second, MaxBodyBytes: 1000}
	f.put(t, cfg)
	f.clock.next(t)
	if got := f.polls.last(); got != "error:too_large" {
		t.Fatalf("poll result %s, want error:too_large", got)
	}
}

// TestBackoff checks the waits after errors with the fake clock: doubling
// from the interval, capped at max_backoff, at least a Retry-After, back to
// the interval after a success.
func TestBackoff(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.status = http.StatusInternalServerError })
	f := newFixture(t)
	cfg := whole("flaky", o)
	cfg.MaxBackoff = 10 * time.Second
	f.put(t, cfg)
	tm := f.clock.next(t)
	var waits []time.Duration
	for range 5 {
		waits = append(waits, tm.D)
		tm = f.clock.poll(t, tm)
	}
	if want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("waits after 500s: %v, want %v", waits, want)
	}
	if got := f.polls.last(); got != "error:status" {
		t.Errorf("poll result %s, want error:status", got)
	}
	in, _ := f.m.Get("flaky")
	if in.Status.State() != "failing" || in.Status.Failures != 6 || !strings.Contains(in.Status.LastError, "500") {
		t.Errorf("status %+v", in.Status)
	}
	if !in.Status.NextPoll.Equal(f.clock.Now().Add(tm.D)) {
		t.Errorf("next poll %v, want %v", in.Status.NextPoll, f.clock.Now().Add(tm.D))
	}
	// 429 with Retry-After: 120 waits 120s, over max_backoff.
	o.set(func(o *origin) { o.status, o.header = http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}} })
	tm = f.clock.poll(t, tm)
	if tm.D != 120*time.Second || f.polls.last() != "error:rate_limited" {
		t.Errorf("after 429 Retry-After: 120: wait %v (%s), want 2m0s", tm.D, f.polls.last())
	}
	// 503 with an HTTP date 30 minutes on.
	o.set(func(o *origin) {
		o.status = http.StatusServiceUnavailable
		o.header = http.Header{"Retry-After": {f.clock.Now().Add(120*time.Second + 30*time.Minute).Format(http.TimeFormat)}}
	})
	tm = f.clock.poll(t, tm)
	if tm.D != 30*time.Minute {
		t.Errorf("after 503 with a date: wait %v, want 30m0s", tm.D)
	}
	// 429 without Retry-After: backoff.
	o.set(func(o *origin) { o.header = nil; o.status = http.StatusTooManyRequests })
	tm = f.clock.poll(t, tm)
	if tm.D != 10*time.Second {
		t.Errorf("after 429 without Retry-After: wait %v, want max_backoff", tm.D)
	}
	o.set(func(o *origin) { o.status, o.body = 0, "{}" })
	tm = f.clock.poll(t, tm)
	if tm.D != time.Second {
		t.Errorf("after a success: wait %v, want the interval", tm.D)
	}
	if in, _ := f.m.Get("flaky"); in.Status.State() != "ok" || in.Status.LastError != "" || in.Status.Failures != 0 {
		t.Errorf("status after a success %+v", in.Status)
	}
}

func TestNextDelay(t *testing.T) {
	cfg := Config{Interval: 10 * time.Second, MaxBackoff: 5 * time.Minute, Jitter: 0.1}
	cases := []struct {
		failures   int
		retryAfter time.Duration
		r          float64
		want       time.Duration
	}{
		{0, 0, 0.5, 10 * time.Second},
		{0, 0, 0, 9 * time.Second},  // -10%
		{0, 0, 1, 11 * time.Second}, // +10%
		{1, 0, 0.5, 20 * time.Second},
		{3, 0, 0.5, 80 * time.Second},
		{5, 0, 0.5, 5 * time.Minute},
		{62, 0, 0.5, 5 * time.Minute},
		{100, 0, 0.5, 5 * time.Minute},
		{1, 2 * time.Minute, 0, 2 * time.Minute},   // Retry-After is never shortened
		{1, 2 * time.Minute, 1, 132 * time.Second}, // but lengthened by the jitter
		{1, time.Second, 0.5, 20 * time.Second},    // a short Retry-After does not hurry the backoff
		{1, 1000 * time.Hour, 0, MaxInterval},      // capped
		{2, 3 * time.Minute, 0.5, time.Duration(3.15 * float64(time.Minute))},
	}
	for _, c := range cases {
		if got := nextDelay(&cfg, c.failures, c.retryAfter, c.r); got != c.want {
			t.Errorf("nextDelay(failures %d, retry-after %v, r %v) = %v, want %v", c.failures, c.retryAfter, c.r, got, c.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"120", 2 * time.Minute}, {" 7 ", 7 * time.Second},
		{"99999999999", MaxInterval}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(c.v, now); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestRefused: a source whose URL resolves to a refused address fails at
// connection time, and says why.
func TestRefused(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = "{}" })
	f := newFixture(t)
	port := o.Listener.Addr().String()[strings.LastIndexByte(o.Listener.Addr().String(), ':'):]
	// An address literal in a refused range is refused at once.
	if _, _, err := f.m.Put(bg, Config{Name: "lo2", URL: "http://127.0.0.2" + port + "/", Topic: "t.lo2"}); !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Put with a loopback URL: %v, want bad input naming the range", err)
	}
	// A name is refused when it is dialled: localhost resolves to
	// loopback, which this guard does not allow.
	strict := newFixture(t, func(o *Options) { o.Guard = netguard.New(netguard.Options{}) })
	strict.put(t, Config{Name: "lo", URL: "http://localhost" + port + "/", Topic: "t.lo", Interval: time.Second})
	strict.clock.next(t)
	if got := strict.polls.last(); got != "error:refused" {
		t.Fatalf("poll result %s, want error:refused", got)
	}
	in, _ := strict.m.Get("lo")
	if !strings.Contains(in.Status.LastError, "loopback") || !strings.Contains(in.Status.LastError, "http://localhost"+port+"/") {
		t.Errorf("last error %q, want it to name the range and the URL", in.Status.LastError)
	}
	if n := len(o.requests()); n != 0 {
		t.Errorf("the origin got %d requests", n)
	}
	// A redirect to another host (another port counts) is not followed.
	o2 := httptest.NewServer(http.RedirectHandler(o.URL+"/x", http.StatusFound))
	defer o2.Close()
	f.put(t, Config{Name: "redir", URL: o2.URL, Topic: "t.redir", Interval: time.Second})
	f.clock.next(t)
	in, _ = f.m.Get("redir")
	if !strings.Contains(in.Status.LastError, "redirect to "+o.URL+" refused") || f.polls.last() != "error:request" {
		t.Errorf("last error %q (%s), want a refused redirect", in.Status.LastError, f.polls.last())
	}
	if n := len(o.requests()); n != 0 {
		t.Errorf("the redirect was followed: %d requests", n)
	}
}
