package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

func validConfig() Config {
	return Config{Name: "shop", URL: "https://example.com/hook", Topics: []string{"orders", "billing.>"}, Secrets: []string{NewSecret()}, Ordered: true, Enabled: true, Jitter: DefaultJitter}.WithDefaults()
}

func TestValidate(t *testing.T) {
	tests := []struct {
		field string
		edit  func(c *Config)
	}{
		{"", func(c *Config) {}},
		{"name", func(c *Config) { c.Name = "a.b" }},
		{"url", func(c *Config) { c.URL = "ftp://example.com" }},
		{"url", func(c *Config) { c.URL = "https://u:p@example.com" }},
		{"url", func(c *Config) { c.URL = "https://example.com/#x" }},
		{"topics", func(c *Config) { c.Topics = nil }},
		{"topics[1]", func(c *Config) { c.Topics = []string{"a", "a..b"} }},
		{"topics[1]", func(c *Config) { c.Topics = []string{"a", "a"} }},
		{"types[0]", func(c *Config) { c.Types = []string{""} }},
		{"secrets", func(c *Config) { c.Secrets = nil }},
		{"secrets[0]", func(c *Config) { c.Secrets = []string{"hunter2"} }},
		{"secrets[0]", func(c *Config) { c.Secrets = []string{"whsec_c2hvcnQ="} }},
		{"start", func(c *Config) { c.Start = "yesterday" }},
		{"", func(c *Config) { c.Start = "2030-01-02T03:04:05Z" }},
		{"concurrency", func(c *Config) { c.Concurrency = 5 }},
		{"", func(c *Config) { c.Ordered, c.Concurrency = false, 5 }},
		{"concurrency", func(c *Config) { c.Ordered, c.Concurrency = false, 5000 }},
		{"rate_limit", func(c *Config) { c.RateLimit = -1 }},
		{"timeout", func(c *Config) { c.Timeout = 2 * time.Minute }},
		{"connect_timeout", func(c *Config) { c.ConnectTimeout = 20 * time.Second }},
		{"retry[1]", func(c *Config) { c.Retry = []time.Duration{time.Second, 48 * time.Hour} }},
		{"", func(c *Config) { c.Retry = []time.Duration{} }},
		{"retry_jitter", func(c *Config) { c.Jitter = 0.9 }},
		{"disable_after", func(c *Config) { c.DisableAfter = time.Second }},
	}
	for _, tt := range tests {
		c := validConfig()
		tt.edit(&c)
		err := c.Validate()
		var fe *FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%+v: %v", c, err)
		case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, hub.ErrBadInput)):
			t.Errorf("want a refusal of %s, got %v", tt.field, err)
		}
	}
}

func TestJSONRoundTripAndDefaults(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(`{"url":"https://example.com","topics":["a"]}`), &c); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if !c.Ordered || !c.Enabled || c.Jitter != DefaultJitter || c.Timeout != DefaultTimeout || len(c.Retry) != 7 || c.DisableAfter != 120*time.Hour || c.Start != "latest" || c.Concurrency != 1 {
		t.Errorf("defaults: %+v", c)
	}
	in := validConfig()
	in.Ordered, in.Concurrency, in.Retry, in.Types, in.RateLimit = false, 7, []time.Duration{}, []string{"x"}, 2.5
	b, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out Config
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out = out.WithDefaults()
	if out.Concurrency != 7 || out.Ordered || len(out.Retry) != 0 || out.Retry == nil || out.RateLimit != 2.5 || out.Secrets[0] != in.Secrets[0] {
		t.Errorf("round trip: %s → %+v", b, out)
	}
	for _, bad := range []string{`{"url":1}`, `{"nope":1}`, `{"timeout":"soon"}`, `{"retry":["1x"]}`} {
		if err := json.Unmarshal([]byte(bad), &c); !errors.Is(err, hub.ErrBadInput) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestRedactAndKeepSecrets(t *testing.T) {
	c := validConfig()
	b, _ := c.Redact().MarshalJSON()
	if strings.Contains(string(b), "whsec_") || !strings.Contains(string(b), Redacted) {
		t.Errorf("redacted: %s", b)
	}
	next := c.Redact()
	kept, gen, err := next.keepSecrets(&c)
	if err != nil || gen || kept.Secrets[0] != c.Secrets[0] {
		t.Errorf("keep: %v %v %v", kept.Secrets, gen, err)
	}
	rotated := Config{Name: "shop", Secrets: []string{NewSecret(), Redacted}}
	if _, _, err := rotated.keepSecrets(&c); err == nil {
		t.Error("a redacted secret with nothing stored at its place is accepted")
	}
	rotated.Secrets = []string{Redacted, "whsec_new"}
	if _, _, err := rotated.keepSecrets(&c); err != nil {
		t.Error(err)
	}
	fresh, gen, _ := Config{Name: "new"}.keepSecrets(nil)
	if !gen || len(fresh.Secrets) != 1 {
		t.Errorf("generated: %v %v", fresh.Secrets, gen)
	}
	if k, err := DecodeSecret(fresh.Secrets[0]); err != nil || len(k) != 32 {
		t.Errorf("generated secret: %v", err)
	}
}

// FuzzConfigJSON: any body decodes to a config or a bad-input error, and
// a valid config survives a round trip.
func FuzzConfigJSON(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://example.com/h","topics":["orders","billing.>"],"secrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}`,
		`{"url":"http://h","topics":["a"],"ordered":false,"concurrency":50,"rate_limit":10,"retry":["1s","1m"],"retry_jitter":0,"timeout":"5s","connect_timeout":"1s","disable_after":"1h","enabled":false,"types":["x"],"start":"earliest"}`,
		`{"url":"","topics":null,"status":{"state":"active"},"generated_secret":"x"}`,
		`[]`, `{"retry":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if err := c.UnmarshalJSON(b); err != nil {
			if !errors.Is(err, hub.ErrBadInput) {
				t.Fatalf("%q: %v", b, err)
			}
			return
		}
		c.Name = "n"
		c = c.WithDefaults()
		if len(c.Secrets) == 0 {
			c.Secrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
		}
		if c.Validate() != nil {
			return
		}
		out, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := back.UnmarshalJSON(out); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		back.Name = "n"
		if back = back.WithDefaults(); back.Validate() != nil {
			t.Fatalf("%s does not validate after a round trip", out)
		}
	})
}

func TestPatterns(t *testing.T) {
	tests := []struct {
		p, topic  string
		ok, match bool
	}{
		{"a.b", "a.b", true, true},
		{"a.*", "a.b", true, true},
		{"a.*", "a.b.c", true, false},
		{"a.>", "a.b.c", true, true},
		{"a.>", "a", true, false},
		{"*.b", "x.b", true, true},
		{"a.b*", "", false, false},
		{"a.>.c", "", false, false},
		{"a..b", "", false, false},
	}
	for _, tt := range tests {
		err := checkPattern(tt.p)
		if (err == nil) != tt.ok {
			t.Errorf("checkPattern(%q) = %v", tt.p, err)
		}
		if tt.ok && matchPattern(tt.p, tt.topic) != tt.match {
			t.Errorf("matchPattern(%q, %q) = %v", tt.p, tt.topic, !tt.match)
		}
	}
}
