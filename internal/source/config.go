package source

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Mode says how a source's responses become events.
type Mode string

// The modes.
const (
	// ModeWhole publishes the body as one event whenever it changed.
	ModeWhole Mode = "whole"
	// ModeJSONItems reads a JSON array (the body, or the array at Items)
	// and publishes each item that is new or changed, told apart by its
	// ID field.
	ModeJSONItems Mode = "json-items"
	// ModePrometheus scrapes a Prometheus text endpoint and publishes the
	// samples whose values changed.
	ModePrometheus Mode = "prometheus"
)

// Modes lists the modes, for messages.
var Modes = []Mode{ModeWhole, ModeJSONItems, ModePrometheus}

// Bounds of a source's settings.
const (
	MaxNameLen       = 64
	MinInterval      = time.Second
	MaxInterval      = 24 * time.Hour
	MaxJitter        = 0.5
	MaxTimeout       = 5 * time.Minute
	MaxBodyBytes     = 64 << 20
	MaxHeaders       = 32
	MaxRequestBody   = 64 << 10
	MaxMetricFilters = 64
)

// Defaults of a source's settings.
const (
	DefaultInterval     = 30 * time.Second
	DefaultJitter       = 0.1
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultIDField      = "id"
)

// Redacted replaces secret values (header values, secret query parameters,
// a URL's password) wherever a source's settings are shown: API answers,
// logs. A header given as Redacted in a change keeps its stored value.
const Redacted = "<redacted>"

// Config is one source: where to poll, how often, and what to publish
// where. Zero fields take the defaults (WithDefaults); Jitter is taken as
// given, so that 0 can turn it off.
type Config struct {
	Name string // one topic segment: letters, digits, '_', '-'; at most 64 bytes

	URL     string            // http or https
	Method  string            // GET (default) or POST
	Headers map[string]string // request headers; their values are secrets (see Redact)
	Body    string            // the request body of a POST

	Topic string // where events go
	Mode  Mode
	Type  string // the published events' type; "" for none

	Interval     time.Duration // between polls; default 30s
	Jitter       float64       // each wait is varied by up to this fraction of it, 0 to 0.5
	Timeout      time.Duration // of one request, body included; default 10s
	MaxBodyBytes int64         // responses over it are an error; default 1 MiB
	MaxBackoff   time.Duration // the longest wait after errors (Retry-After aside); default 5m, or the interval when longer

	// json-items: the path to the array ("" or "$": the body itself;
	// "data.items", "$.data.items", "$['data'][0]"), the path of an
	// item's id within it (default "id"), and optionally of its version
	// (an updated_at, a revision): when set an item counts as changed
	// when its version does, else when its content does.
	Items   string
	ID      string
	Version string
	// Removals publishes an event when an item disappears from the array.
	Removals bool

	// prometheus: the metric names to keep, as globs (herald_*); empty
	// keeps every metric.
	Metrics []string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	c.Method = strings.ToUpper(c.Method)
	if c.Mode == "" {
		c.Mode = ModeWhole
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.Interval)
	}
	if c.Mode == ModeJSONItems && c.ID == "" {
		c.ID = DefaultIDField
	}
	return c
}

// FieldError is the refusal of a source's setting: which field, and why.
// It wraps hub.ErrBadInput, or event.ErrBadTopic for a bad topic.
type FieldError struct {
	Source string
	Field  string // as the API and the configuration name it: url, interval, max_body_bytes
	Msg    string
	Kind   error
}

// Error names the source and the field.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: source %s: %s: %s", e.Kind, e.Source, e.Field, e.Msg)
}

// Unwrap returns hub.ErrBadInput or event.ErrBadTopic.
func (e *FieldError) Unwrap() error { return e.Kind }

// Validate checks c (with its defaults) and returns a *FieldError naming
// the first bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Source: c.Name, Field: field, Msg: fmt.Sprintf(format, a...), Kind: hub.ErrBadInput}
	}
	if err := ValidateName(c.Name); err != nil {
		return bad("name", "%v", strings.TrimPrefix(err.Error(), hub.ErrBadInput.Error()+": "))
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return bad("url", "%v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("url", "must be an http or https URL, got %q", redactURL(c.URL))
	case u.Host == "" || u.Hostname() == "":
		return bad("url", "has no host")
	case u.Fragment != "":
		return bad("url", "must not have a fragment (#…)")
	}
	switch c.Method {
	case http.MethodGet:
		if c.Body != "" {
			return bad("body", "a GET sends no body; use method POST")
		}
	case http.MethodPost:
		if len(c.Body) > MaxRequestBody {
			return bad("body", "is %d bytes, the limit is %d", len(c.Body), MaxRequestBody)
		}
	default:
		return bad("method", "must be GET or POST, got %q", c.Method)
	}
	if len(c.Headers) > MaxHeaders {
		return bad("headers", "%d headers, the limit is %d", len(c.Headers), MaxHeaders)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
		if err := checkHeader(k, c.Headers[k]); err != nil {
			return bad("headers", "%v", err)
		}
	}
	if err := event.ValidateTopic(c.Topic); err != nil {
		return &FieldError{Source: c.Name, Field: "topic", Msg: strings.TrimPrefix(err.Error(), event.ErrBadTopic.Error()+": "), Kind: event.ErrBadTopic}
	}
	if len(c.Type) > hub.MaxTypeLen || slices.Contains(hub.ReservedTypes, c.Type) || strings.ContainsAny(c.Type, "\r\n") {
		return bad("type", "must be at most %d bytes on one line and none of %s", hub.MaxTypeLen, strings.Join(hub.ReservedTypes, ", "))
	}
	switch {
	case c.Interval < MinInterval || c.Interval > MaxInterval:
		return bad("interval", "must be between %v and %v, got %v", MinInterval, MaxInterval, c.Interval)
	case c.Jitter < 0 || c.Jitter > MaxJitter:
		return bad("jitter", "must be between 0 and %v, got %v", MaxJitter, c.Jitter)
	case c.Timeout <= 0 || c.Timeout > MaxTimeout:
		return bad("timeout", "must be positive and at most %v, got %v", MaxTimeout, c.Timeout)
	case c.MaxBodyBytes <= 0 || c.MaxBodyBytes > MaxBodyBytes:
		return bad("max_body_bytes", "must be between 1 and %d, got %d", MaxBodyBytes, c.MaxBodyBytes)
	case c.MaxBackoff < c.Interval || c.MaxBackoff > MaxInterval:
		return bad("max_backoff", "must be at least the interval (%v) and at most %v, got %v", c.Interval, MaxInterval, c.MaxBackoff)
	}
	itemsOnly := map[string]bool{"items": c.Items != "", "id": c.ID != "", "version": c.Version != "", "removals": c.Removals}
	switch c.Mode {
	case ModeWhole, ModePrometheus:
		for _, f := range slices.Sorted(maps.Keys(itemsOnly)) {
			if itemsOnly[f] {
				return bad(f, "is a setting of mode %s", ModeJSONItems)
			}
		}
	case ModeJSONItems:
		for f, p := range map[string]string{"items": c.Items, "id": c.ID, "version": c.Version} {
			if _, err := ParsePath(p); err != nil {
				return bad(f, "%v", err)
			}
		}
		if p, _ := ParsePath(c.ID); len(p) == 0 {
			return bad("id", "must name a field of the items")
		}
	default:
		return bad("mode", "unknown mode %q; the modes are %s", c.Mode, joinModes())
	}
	if len(c.Metrics) > 0 && c.Mode != ModePrometheus {
		return bad("metrics", "is a setting of mode %s", ModePrometheus)
	}
	if len(c.Metrics) > MaxMetricFilters {
		return bad("metrics", "%d patterns, the limit is %d", len(c.Metrics), MaxMetricFilters)
	}
	for _, m := range c.Metrics {
		if _, err := path.Match(m, ""); err != nil || m == "" {
			return bad("metrics", "%q is not a glob such as herald_* or go_goroutines", m)
		}
	}
	return nil
}

func joinModes() string {
	s := make([]string, len(Modes))
	for i, m := range Modes {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

// ValidateName checks a source's name: one topic segment (letters,
// digits, '_', '-') of 1 to MaxNameLen bytes, so that it names a state
// space and a metric label as it is.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: a source name is 1 to %d bytes, got %d", hub.ErrBadInput, MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: source name %q has %q at byte %d; use letters, digits, '_' and '-'", hub.ErrBadInput, name, rune(c), i)
		}
	}
	return nil
}

// forbiddenHeaders are set by the poller or the HTTP stack, never by a
// source's settings.
var forbiddenHeaders = []string{
	"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "Te", "Trailer",
	"Proxy-Connection", "If-None-Match", "If-Modified-Since", "Accept-Encoding",
}

func checkHeader(name, value string) error {
	if name == "" || !validToken(name) {
		return fmt.Errorf("%q is not a header name", name)
	}
	if slices.Contains(forbiddenHeaders, http.CanonicalHeaderKey(name)) {
		return fmt.Errorf("%s is set by herald, not by a source", http.CanonicalHeaderKey(name))
	}
	if strings.ContainsAny(value, "\r\n\x00") || len(value) > 8<<10 {
		return fmt.Errorf("the value of %s must be one line of at most 8 KiB", name)
	}
	return nil
}

// validToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// publicHeaders are the request headers whose values are shown in clear:
// they carry no credentials. Every other header's value is a secret.
var publicHeaders = []string{"Accept", "Accept-Language", "Cache-Control", "Content-Type", "User-Agent", "Pragma"}

// secretParams are words that make a URL query parameter's value secret.
var secretParams = []string{"key", "token", "secret", "password", "passwd", "pwd", "auth", "sig", "session", "credential", "code"}

// Redact returns c as it may be shown: every header value but those of
// publicHeaders, the URL's password, and the values of query parameters
// whose names look like credentials are replaced with Redacted.
func (c Config) Redact() Config {
	if len(c.Headers) > 0 {
		h := make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			if slices.Contains(publicHeaders, http.CanonicalHeaderKey(k)) {
				h[k] = v
			} else {
				h[k] = Redacted
			}
		}
		c.Headers = h
	}
	c.URL = redactURL(c.URL)
	c.Metrics = slices.Clone(c.Metrics)
	return c
}

// redactURL hides a URL's password and the values of its secret-looking
// query parameters.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), Redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for name := range q {
			if secretParam(name) {
				q[name] = []string{Redacted}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretParams {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// KeepSecrets returns c with every header whose value is Redacted given
// the value old has for it, and a URL equal to old's redacted URL given
// old's, so that a client may send back the settings it was shown. A
// Redacted value that old does not have is an error.
func (c Config) KeepSecrets(old *Config) (Config, error) {
	if old != nil && c.URL != old.URL && c.URL == redactURL(old.URL) {
		c.URL = old.URL
	} else if strings.Contains(c.URL, Redacted) || strings.Contains(c.URL, url.QueryEscape(Redacted)) {
		return c, &FieldError{Source: c.Name, Field: "url", Msg: "has " + Redacted + " in it, and is not the stored URL as shown; give the URL in full", Kind: hub.ErrBadInput}
	}
	var h map[string]string
	for k, v := range c.Headers {
		if v != Redacted {
			continue
		}
		prev, ok := "", false
		if old != nil {
			prev, ok = lookupHeader(old.Headers, k)
		}
		if !ok {
			return c, &FieldError{Source: c.Name, Field: "headers", Msg: fmt.Sprintf("%s is %s but the source has no stored value for it; give the value", k, Redacted), Kind: hub.ErrBadInput}
		}
		if h == nil {
			h = maps.Clone(c.Headers)
		}
		h[k] = prev
	}
	if h != nil {
		c.Headers = h
	}
	return c, nil
}

func lookupHeader(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// fingerprint identifies what a source's change detection depends on:
// where it fetches, how it reads, and where it publishes. When it
// changes, the source's state (validators, items seen) is discarded and
// everything is published afresh; changing the interval, the timeout or a
// header's credentials keeps it.
func (c *Config) fingerprint() string {
	h := sha256.New()
	for _, s := range []string{c.URL, c.Method, c.Body, c.Topic, string(c.Mode), c.Items, c.ID, c.Version, strings.Join(c.Metrics, "\x00")} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
