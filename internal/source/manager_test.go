package source

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

func TestValidate(t *testing.T) {
	good := Config{Name: "s", URL: "https://api.example.com/x", Topic: "t.x"}
	cases := []struct {
		name string
		f    func(c *Config)
		want string // part of the error; "" for valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"items", func(c *Config) { c.Mode, c.Items, c.Version = ModeJSONItems, "$.data", "rev" }, ""},
		{"prometheus", func(c *Config) { c.Mode, c.Metrics = ModePrometheus, []string{"go_*"} }, ""},
		{"post", func(c *Config) { c.Method, c.Body = "post", `{"q":1}` }, ""},
		{"bad name", func(c *Config) { c.Name = "a.b" }, "source name"},
		{"long name", func(c *Config) { c.Name = strings.Repeat("n", 65) }, "1 to 64 bytes"},
		{"scheme", func(c *Config) { c.URL = "ftp://x/y" }, "url: must be an http or https URL"},
		{"no host", func(c *Config) { c.URL = "http:///x" }, "url: has no host"},
		{"fragment", func(c *Config) { c.URL = "http://x/#y" }, "fragment"},
		{"method", func(c *Config) { c.Method = "DELETE" }, "method: must be GET or POST"},
		{"get body", func(c *Config) { c.Body = "x" }, "body: a GET sends no body"},
		{"header name", func(c *Config) { c.Headers = map[string]string{"a b": "x"} }, "is not a header name"},
		{"header value", func(c *Config) { c.Headers = map[string]string{"X": "a\r\nb"} }, "one line"},
		{"forbidden header", func(c *Config) { c.Headers = map[string]string{"if-none-match": "x"} }, "If-None-Match is set by herald"},
		{"topic", func(c *Config) { c.Topic = "a..b" }, `topic: "a..b" has an empty segment`},
		{"type", func(c *Config) { c.Type = "gap" }, "type:"},
		{"interval", func(c *Config) { c.Interval = time.Millisecond }, "interval: must be between 1s and 24h0m0s"},
		{"jitter", func(c *Config) { c.Jitter = 0.9 }, "jitter"},
		{"timeout", func(c *Config) { c.Timeout = time.Hour }, "timeout"},
		{"max body", func(c *Config) { c.MaxBodyBytes = -1 }, "max_body_bytes"},
		{"max backoff", func(c *Config) { c.Interval, c.MaxBackoff = time.Minute, time.Second }, "max_backoff: must be at least the interval"},
		{"mode", func(c *Config) { c.Mode = "rss" }, `unknown mode "rss"; the modes are whole, json-items, prometheus`},
		{"items in whole", func(c *Config) { c.Items = "x" }, "items: is a setting of mode json-items"},
		{"bad items path", func(c *Config) { c.Mode, c.Items = ModeJSONItems, "$..x" }, "items: bad path"},
		{"empty id", func(c *Config) { c.Mode, c.ID = ModeJSONItems, "$" }, "id: must name a field"},
		{"metrics in items", func(c *Config) { c.Mode, c.Metrics = ModeJSONItems, []string{"x"} }, "metrics: is a setting of mode prometheus"},
		{"bad glob", func(c *Config) { c.Mode, c.Metrics = ModePrometheus, []string{"[x"} }, "metrics:"},
	}
	for _, c := range cases {
		cfg := good
		c.f(&cfg)
		cfg = cfg.WithDefaults()
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		case err != nil && !errors.Is(err, hub.ErrBadInput) && !errors.Is(err, event.ErrBadTopic):
			t.Errorf("%s: %v wraps neither ErrBadInput nor ErrBadTopic", c.name, err)
		}
	}
}

func TestRedact(t *testing.T) {
	c := Config{
		URL:     "https://user:pw@api.example.com/x?page=2&api_key=k1&Token=k2",
		Headers: map[string]string{"Authorization": "Bearer s1", "X-Custom": "s2", "accept": "application/json"},
	}
	r := c.Redact()
	if r.Headers["Authorization"] != Redacted || r.Headers["X-Custom"] != Redacted || r.Headers["accept"] != "application/json" {
		t.Errorf("headers %v", r.Headers)
	}
	for _, secret := range []string{"pw", "k1", "k2"} {
		if strings.Contains(r.URL, secret) {
			t.Errorf("redacted URL %s shows %s", r.URL, secret)
		}
	}
	if !strings.Contains(r.URL, "page=2") || !strings.Contains(r.URL, "user:") {
		t.Errorf("redacted URL %s hides too much", r.URL)
	}
	if c.Headers["Authorization"] != "Bearer s1" {
		t.Error("Redact changed the original")
	}
	// Sent back as shown, the secrets are kept.
	kept, err := r.KeepSecrets(&c)
	if err != nil || kept.Headers["Authorization"] != "Bearer s1" || kept.Headers["X-Custom"] != "s2" || kept.URL != c.URL {
		t.Errorf("KeepSecrets: %v %s, %v", kept.Headers, kept.URL, err)
	}
	other := r
	other.URL = strings.Replace(r.URL, "page=2", "page=3", 1)
	if _, err := other.KeepSecrets(&c); !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), "url: has <redacted>") {
		t.Errorf("KeepSecrets of a changed URL with a redacted part: %v", err)
	}
	if _, err := r.KeepSecrets(nil); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("KeepSecrets without a stored source: %v", err)
	}
}

func TestConfigJSON(t *testing.T) {
	var c Config
	err := json.Unmarshal([]byte(`{"url":"http://x","topic":"t","mode":"json-items","items":"data","interval":"2m","max_backoff":"1h","jitter":0,"headers":{"A":"b"},"removals":true}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != 2*time.Minute || c.MaxBackoff != time.Hour || c.Jitter != 0 || !c.Removals || c.Headers["A"] != "b" {
		t.Errorf("decoded %+v", c)
	}
	b, _ := json.Marshal(c)
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s does not decode: %v", b, err)
	}
	if back.Interval != c.Interval || back.Items != c.Items || back.Jitter != 0 {
		t.Errorf("round trip: %+v, want %+v", back, c)
	}
	if json.Unmarshal([]byte(`{"url":"http://x"}`), &c); c.Jitter != DefaultJitter {
		t.Errorf("jitter %v without one given, want %v", c.Jitter, DefaultJitter)
	}
	for _, bad := range []string{`{"urll":"x"}`, `{"interval":"often"}`, `{"interval":30}`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &c); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("Unmarshal(%s) = %v, want bad input", bad, err)
		}
	}
}

func TestManagerPutGetDelete(t *testing.T) {
	o := newOrigin(t)
	o.set(func(o *origin) { o.body = `[{"id":1}]` })
	f := newFixture(t)
	cfg := items("crud", o, "")
	cfg.Headers = map[string]string{"Authorization": "Bearer secret"}
	in, created, err := f.m.Put(bg, cfg)
	if err != nil || !created {
		t.Fatalf("Put: %v, created %v", err, created)
	}
	if in.Config.Headers["Authorization"] != Redacted || in.Config.Interval != time.Second || in.Config.ID != "id" {
		t.Errorf("Put answered %+v", in.Config)
	}
	tm := f.clock.next(t)
	if got := o.requests()[0].Get("Authorization"); got != "Bearer secret" {
		t.Errorf("the request carried Authorization %q", got)
	}
	b, _ := json.Marshal(in)
	if strings.Contains(string(b), "secret") || !strings.Contains(string(b), `"status":{"state":"starting"`) {
		t.Errorf("Info JSON %s", b)
	}
	if in, _ := f.m.Get("crud"); in.Status.Polls != 1 || in.Status.Published != 1 || in.Status.LastResult != ResultChanged {
		t.Errorf("status %+v", in.Status)
	}
	// The same settings again (shown, redacted): nothing changes, the
	// poller keeps running.
	shown, _ := f.m.Get("crud")
	again := shown.Config
	again.Name = "crud"
	if _, created, err := f.m.Put(bg, again); err != nil || created {
		t.Fatalf("Put the same: %v, created %v", err, created)
	}
	if in, _ := f.m.Get("crud"); in.Status.Polls != 1 {
		t.Errorf("an unchanged Put restarted the poller: %+v", in.Status)
	}
	// Bad settings change nothing.
	bad := cfg
	bad.Interval = time.Millisecond
	if _, _, err := f.m.Put(bg, bad); !errors.Is(err, hub.ErrBadInput) {
		t.Errorf("Put with a bad interval: %v", err)
	}
	if in, _ := f.m.Get("crud"); in.Config.Interval != time.Second || in.Status.Polls != 1 {
		t.Errorf("a refused Put changed the source: %+v", in)
	}
	// A new interval restarts the poller and keeps the state: its first
	// poll publishes nothing.
	_ = tm
	slower := cfg
	slower.Interval = 2 * time.Second
	if _, created, err := f.m.Put(bg, slower); err != nil || created {
		t.Fatalf("Put a new interval: %v, created %v", err, created)
	}
	f.clock.next(t)
	if got := f.polls.last(); got != string(ResultUnchanged) {
		t.Errorf("first poll after a new interval: %s, want unchanged", got)
	}
	// A new topic discards it: everything goes to the new topic.
	moved := slower
	moved.Topic = "items.moved"
	if _, _, err := f.m.Put(bg, moved); err != nil {
		t.Fatal(err)
	}
	f.clock.next(t)
	if got := f.datas(t, "items.moved"); len(got) != 1 {
		t.Errorf("the new topic got %q, want the item", got)
	}
	if got := f.m.List(); len(got) != 1 || got[0].Config.Name != "crud" {
		t.Errorf("List = %+v", got)
	}
	if err := f.m.Delete(bg, "crud"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Get("crud"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := f.m.Delete(bg, "crud"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete again: %v", err)
	}
	store, _ := f.hub.State()
	for _, space := range []string{spaceOf("crud"), registrySpace} {
		n := 0
		store.ScanState(bg, space, "", func(string, []byte) bool { n++; return true })
		if n != 0 {
			t.Errorf("space %s keeps %d keys after Delete", space, n)
		}
	}
	if len(f.polls.removed) != 1 {
		t.Errorf("observer told of removals %v", f.polls.removed)
	}
	if got := len(f.datas(t, "items.crud")); got != 1 {
		t.Errorf("Delete removed published events: %d left", got)
	}
}

func TestManagerLimits(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxSources = 1 })
	f.put(t, Config{Name: "a", URL: "http://example.com/", Topic: "t.a", Interval: time.Hour, Jitter: 0.5})
	if _, _, err := f.m.Put(bg, Config{Name: "b", URL: "http://example.com/", Topic: "t.b"}); !errors.Is(err, hub.ErrBadInput) || !strings.Contains(err.Error(), "1 sources already") {
		t.Errorf("Put over MaxSources: %v", err)
	}
	f.m.Close()
	if _, _, err := f.m.Put(bg, Config{Name: "a", URL: "http://example.com/", Topic: "t.a"}); !errors.Is(err, hub.ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := f.m.Delete(bg, "a"); !errors.Is(err, hub.ErrClosed) {
		t.Errorf("Delete after Close: %v", err)
	}
	f.m.Close() // again: nothing
}

// TestUnsupported: an engine without a StateStore has no sources.
func TestUnsupported(t *testing.T) {
	h := hub.New(noState{}, hub.Options{})
	defer h.Close()
	if _, err := New(bg, h, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("New over an engine without state: %v", err)
	}
}

// noState is an engine that keeps no consumer state.
type noState struct{ hub.Engine }

func (noState) Attach(func(*event.Event)) {}
