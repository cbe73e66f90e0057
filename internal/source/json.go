package source

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// jsonConfig is a Config as JSON: the API's bodies and answers, the CLI,
// and the registry of stored sources. Durations are Go duration strings
// ("30s", "5m"); a missing jitter is DefaultJitter.
type jsonConfig struct {
	Name         string            `json:"name,omitempty"`
	URL          string            `json:"url"`
	Method       string            `json:"method,omitempty"`
	Headers      map[string]string `json:"headers,omitempty"`
	Body         string            `json:"body,omitempty"`
	Topic        string            `json:"topic"`
	Mode         Mode              `json:"mode,omitempty"`
	Type         string            `json:"type,omitempty"`
	Interval     string            `json:"interval,omitempty"`
	Jitter       *float64          `json:"jitter,omitempty"`
	Timeout      string            `json:"timeout,omitempty"`
	MaxBodyBytes int64             `json:"max_body_bytes,omitempty"`
	MaxBackoff   string            `json:"max_backoff,omitempty"`
	Items        string            `json:"items,omitempty"`
	ID           string            `json:"id,omitempty"`
	Version      string            `json:"version,omitempty"`
	Removals     bool              `json:"removals,omitempty"`
	Metrics      []string          `json:"metrics,omitempty"`
	// Status is what an Info shows beside the settings; a client may send
	// an answer back as it got it, and the status is ignored.
	Status json.RawMessage `json:"status,omitempty"`
}

// MarshalJSON encodes c in the API's form. It shows what c holds: call
// Redact first for anything a person or a log may see.
func (c Config) MarshalJSON() ([]byte, error) {
	j := jsonConfig{
		Name: c.Name, URL: c.URL, Method: c.Method, Headers: c.Headers, Body: c.Body, Topic: c.Topic, Mode: c.Mode,
		Type: c.Type, Jitter: &c.Jitter, MaxBodyBytes: c.MaxBodyBytes, Items: c.Items, ID: c.ID, Version: c.Version,
		Removals: c.Removals, Metrics: c.Metrics,
	}
	for _, d := range []struct {
		to *string
		v  time.Duration
	}{{&j.Interval, c.Interval}, {&j.Timeout, c.Timeout}, {&j.MaxBackoff, c.MaxBackoff}} {
		if d.v != 0 {
			*d.to = d.v.String()
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
		return fmt.Errorf("%w: a source is a JSON object of its settings: %v", hub.ErrBadInput, err)
	}
	out := Config{
		Name: j.Name, URL: j.URL, Method: j.Method, Headers: j.Headers, Body: j.Body, Topic: j.Topic, Mode: j.Mode,
		Type: j.Type, Jitter: DefaultJitter, MaxBodyBytes: j.MaxBodyBytes, Items: j.Items, ID: j.ID, Version: j.Version,
		Removals: j.Removals, Metrics: j.Metrics,
	}
	if j.Jitter != nil {
		out.Jitter = *j.Jitter
	}
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"interval", j.Interval, &out.Interval}, {"timeout", j.Timeout, &out.Timeout}, {"max_backoff", j.MaxBackoff, &out.MaxBackoff}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%w: %s: %q is not a duration such as 30s or 5m", hub.ErrBadInput, d.name, d.s)
		}
		*d.to = v
	}
	*c = out
	return nil
}
