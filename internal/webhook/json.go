package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// jsonConfig is a Config as JSON: the API's bodies and answers, the CLI,
// and the registry of stored subscriptions. Durations are Go duration
// strings ("30s", "5m"); missing ordered and enabled are true, a missing
// retry_jitter DefaultJitter.
type jsonConfig struct {
	Name           string   `json:"name,omitempty"`
	URL            string   `json:"url"`
	Topics         []string `json:"topics"`
	Types          []string `json:"types,omitempty"`
	Secrets        []string `json:"secrets,omitempty"`
	Start          string   `json:"start,omitempty"`
	Ordered        *bool    `json:"ordered,omitempty"`
	Concurrency    int      `json:"concurrency,omitempty"`
	RateLimit      float64  `json:"rate_limit,omitempty"`
	Enabled        *bool    `json:"enabled,omitempty"`
	Timeout        string   `json:"timeout,omitempty"`
	ConnectTimeout string   `json:"connect_timeout,omitempty"`
	Retry          []string `json:"retry"`
	Jitter         *float64 `json:"retry_jitter,omitempty"`
	DisableAfter   string   `json:"disable_after,omitempty"`
	// Status and GeneratedSecret are what an Info shows beside the
	// settings; a client may send an answer back as it got it, and they
	// are ignored.
	Status          json.RawMessage `json:"status,omitempty"`
	GeneratedSecret string          `json:"generated_secret,omitempty"`
}

// MarshalJSON encodes c in the API's form. It shows what c holds: call
// Redact first for anything a person or a log may see.
func (c Config) MarshalJSON() ([]byte, error) {
	j := jsonConfig{
		Name: c.Name, URL: c.URL, Topics: c.Topics, Types: c.Types, Secrets: c.Secrets, Start: c.Start,
		Ordered: &c.Ordered, Concurrency: c.Concurrency, RateLimit: c.RateLimit, Enabled: &c.Enabled, Jitter: &c.Jitter,
	}
	for _, d := range []struct {
		to *string
		v  time.Duration
	}{{&j.Timeout, c.Timeout}, {&j.ConnectTimeout, c.ConnectTimeout}, {&j.DisableAfter, c.DisableAfter}} {
		if d.v != 0 {
			*d.to = d.v.String()
		}
	}
	if c.Retry != nil {
		j.Retry = make([]string, len(c.Retry))
		for i, d := range c.Retry {
			j.Retry[i] = d.String()
		}
	}
	return marshal(j)
}

// marshal encodes v as JSON without escaping <, > and & (Redacted has
// two of them), and without a final newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON decodes the API's form, refusing unknown fields, with
// errors wrapping hub.ErrBadInput that name the field.
func (c *Config) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var j jsonConfig
	if err := d.Decode(&j); err != nil {
		return fmt.Errorf("%w: a webhook is a JSON object of its settings: %v", hub.ErrBadInput, err)
	}
	out := Config{
		Name: j.Name, URL: j.URL, Topics: j.Topics, Types: j.Types, Secrets: j.Secrets, Start: j.Start,
		Ordered: true, Concurrency: j.Concurrency, RateLimit: j.RateLimit, Enabled: true, Jitter: DefaultJitter,
	}
	if j.Ordered != nil {
		out.Ordered = *j.Ordered
	}
	if j.Enabled != nil {
		out.Enabled = *j.Enabled
	}
	if j.Jitter != nil {
		out.Jitter = *j.Jitter
	}
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"timeout", j.Timeout, &out.Timeout}, {"connect_timeout", j.ConnectTimeout, &out.ConnectTimeout}, {"disable_after", j.DisableAfter, &out.DisableAfter}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%w: %s: %q is not a duration such as 30s or 5m", hub.ErrBadInput, d.name, d.s)
		}
		*d.to = v
	}
	if j.Retry != nil {
		out.Retry = make([]time.Duration, len(j.Retry))
		for i, s := range j.Retry {
			v, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%w: retry[%d]: %q is not a duration such as 5s or 2h", hub.ErrBadInput, i, s)
			}
			out.Retry[i] = v
		}
	}
	*c = out
	return nil
}
