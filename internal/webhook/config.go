package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Bounds of a subscription's settings.
const (
	MaxNameLen        = 64
	MaxTopics         = 64
	MaxTypes          = 64
	MaxSecrets        = 5
	MinSecretBytes    = 24
	MaxSecretBytes    = 64
	MaxConcurrency    = 1000
	MaxTimeout        = 60 * time.Second
	MaxConnectTimeout = 10 * time.Second
	MaxRetries        = 20
	MaxRetryDelay     = 24 * time.Hour
	MaxJitter         = 0.5
)

// Defaults of a subscription's settings: Svix's (docs/decisions/0014).
const (
	DefaultConcurrency    = 10
	DefaultTimeout        = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultJitter         = 0.2
	DefaultDisableAfter   = 5 * 24 * time.Hour
	DefaultStart          = "latest"
)

// DefaultRetry is the default retry schedule: the waits before the second
// to the eighth attempt (Svix's retry_schedule).
var DefaultRetry = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// SecretPrefix starts every secret in its serialized form (Standard
// Webhooks): "whsec_" then the key's bytes in base64.
const SecretPrefix = "whsec_"

// Redacted replaces the secrets wherever a subscription is shown. A PUT
// that sends a secret as Redacted keeps the stored ones.
const Redacted = "<redacted>"

// Config is one webhook subscription: which events go to which URL, and
// how. Zero fields take the defaults (WithDefaults); Ordered, Enabled and
// Jitter are taken as given (the JSON and configuration forms default them
// to true, true and DefaultJitter).
type Config struct {
	Name string // one topic segment: letters, digits, '_', '-'; at most 64 bytes
	URL  string // http or https

	// Topics are topic names or patterns as auth grants write them
	// ("orders.*", "orders.>").
	Topics []string
	// Types, when set, keeps only events of these types; the others are
	// skipped (acknowledged without a request).
	Types []string
	// Secrets sign each request, the first the newest: during a rotation
	// every one signs, so the receiver may verify with either.
	Secrets []string
	// Start is where a new subscription starts: "latest" (default),
	// "earliest", a cursor, or an RFC 3339 time.
	Start string

	// Ordered sends one event at a time, the next waiting until the
	// current is delivered or failed for good. Unordered sends up to
	// Concurrency at once and retries each on its own.
	Ordered     bool
	Concurrency int     // unordered: requests in flight at most; default 10
	RateLimit   float64 // requests per second at most; 0 is no limit
	Enabled     bool

	Timeout        time.Duration   // of one request, the response's start included; default 30s
	ConnectTimeout time.Duration   // of one connection; default 10s
	Retry          []time.Duration // waits between attempts; default DefaultRetry
	Jitter         float64         // each wait is varied by up to this fraction
	DisableAfter   time.Duration   // failing this long with no success disables the subscription; default 5 days
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Start == "" {
		c.Start = DefaultStart
	}
	if c.Ordered {
		c.Concurrency = 1
	} else if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = min(DefaultConnectTimeout, c.Timeout)
	}
	if c.Retry == nil {
		c.Retry = slices.Clone(DefaultRetry)
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = DefaultDisableAfter
	}
	return c
}

// FieldError is the refusal of a subscription's setting: which field, and
// why. It wraps hub.ErrBadInput.
type FieldError struct {
	Webhook string
	Field   string // as the API and the configuration name it: url, topics, retry
	Msg     string
}

// Error names the subscription and the field.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: webhook %s: %s: %s", hub.ErrBadInput, e.Webhook, e.Field, e.Msg)
}

// Unwrap returns hub.ErrBadInput.
func (e *FieldError) Unwrap() error { return hub.ErrBadInput }

// Validate checks c (with its defaults) and returns a *FieldError naming
// the first bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Webhook: c.Name, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if err := ValidateName(c.Name); err != nil {
		return bad("name", "%v", strings.TrimPrefix(err.Error(), hub.ErrBadInput.Error()+": "))
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return bad("url", "%v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("url", "must be an http or https URL, got scheme %q", u.Scheme)
	case u.Hostname() == "":
		return bad("url", "has no host")
	case u.Fragment != "":
		return bad("url", "must not have a fragment (#…)")
	case u.User != nil:
		return bad("url", "must not carry credentials: receivers verify the signature")
	}
	if len(c.Topics) == 0 || len(c.Topics) > MaxTopics {
		return bad("topics", "give 1 to %d topics or patterns, got %d", MaxTopics, len(c.Topics))
	}
	for i, t := range c.Topics {
		if err := checkPattern(t); err != nil {
			return bad(fmt.Sprintf("topics[%d]", i), "%q is not a topic or a pattern such as orders.* or orders.>: %v", t, err)
		}
		if slices.Contains(c.Topics[:i], t) {
			return bad(fmt.Sprintf("topics[%d]", i), "%q is given twice", t)
		}
	}
	if len(c.Types) > MaxTypes {
		return bad("types", "%d types, the limit is %d", len(c.Types), MaxTypes)
	}
	for i, t := range c.Types {
		if t == "" || len(t) > hub.MaxTypeLen || strings.ContainsAny(t, "\r\n") {
			return bad(fmt.Sprintf("types[%d]", i), "an event type is 1 to %d bytes on one line", hub.MaxTypeLen)
		}
	}
	if len(c.Secrets) == 0 || len(c.Secrets) > MaxSecrets {
		return bad("secrets", "give 1 to %d secrets, got %d", MaxSecrets, len(c.Secrets))
	}
	for i, s := range c.Secrets {
		if _, err := DecodeSecret(s); err != nil {
			return bad(fmt.Sprintf("secrets[%d]", i), "%v", err)
		}
	}
	if err := checkStart(c.Start); err != nil {
		return bad("start", "%v", err)
	}
	switch {
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return bad("concurrency", "must be between 1 and %d, got %d", MaxConcurrency, c.Concurrency)
	case c.Ordered && c.Concurrency != 1:
		return bad("concurrency", "an ordered subscription sends one event at a time; set ordered: false for %d", c.Concurrency)
	case c.RateLimit < 0 || c.RateLimit > 1e6:
		return bad("rate_limit", "must be between 0 (no limit) and 1000000 requests per second, got %v", c.RateLimit)
	case c.Timeout < time.Second || c.Timeout > MaxTimeout:
		return bad("timeout", "must be between 1s and %v, got %v", MaxTimeout, c.Timeout)
	case c.ConnectTimeout <= 0 || c.ConnectTimeout > min(MaxConnectTimeout, c.Timeout):
		return bad("connect_timeout", "must be positive and at most %v and the timeout, got %v", MaxConnectTimeout, c.ConnectTimeout)
	case len(c.Retry) > MaxRetries:
		return bad("retry", "%d waits, the limit is %d", len(c.Retry), MaxRetries)
	case c.Jitter < 0 || c.Jitter > MaxJitter:
		return bad("retry_jitter", "must be between 0 and %v, got %v", MaxJitter, c.Jitter)
	case c.DisableAfter < time.Minute:
		return bad("disable_after", "must be at least 1m, got %v", c.DisableAfter)
	}
	for i, d := range c.Retry {
		if d < 0 || d > MaxRetryDelay {
			return bad(fmt.Sprintf("retry[%d]", i), "must be between 0 and %v, got %v", MaxRetryDelay, d)
		}
	}
	return nil
}

// checkStart checks a start position: latest, earliest, an RFC 3339 time,
// or a cursor.
func checkStart(s string) error {
	switch s {
	case "latest", "earliest":
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return nil
	}
	if _, err := cursor.Parse(s); err == nil && s != "" {
		return nil
	}
	return fmt.Errorf("%q is none of latest, earliest, an RFC 3339 time or a cursor", s)
}

// ValidateName checks a subscription's name: one topic segment (letters,
// digits, '_', '-') of 1 to MaxNameLen bytes, so that it names a group, a
// state space and a metric label as it is.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: a webhook name is 1 to %d bytes, got %d", hub.ErrBadInput, MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: webhook name %q has %q at byte %d; use letters, digits, '_' and '-'", hub.ErrBadInput, name, rune(c), i)
		}
	}
	return nil
}

// NewSecret returns a fresh random secret in its serialized form: 32
// random bytes, "whsec_" + base64.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// DecodeSecret returns a serialized secret's key bytes.
func DecodeSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a secret is %s followed by base64 (make one with: herald webhook add, or openssl rand -base64 32)", SecretPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("the part after %s is not standard base64", SecretPrefix)
	}
	if len(b) < MinSecretBytes || len(b) > MaxSecretBytes {
		return nil, fmt.Errorf("a secret's key is %d to %d bytes, this one %d", MinSecretBytes, MaxSecretBytes, len(b))
	}
	return b, nil
}

// Redact returns c as it may be shown: the secrets replaced with Redacted.
func (c Config) Redact() Config {
	s := make([]string, len(c.Secrets))
	for i := range s {
		s[i] = Redacted
	}
	c.Secrets = s
	c.Topics = slices.Clone(c.Topics)
	c.Types = slices.Clone(c.Types)
	c.Retry = slices.Clone(c.Retry)
	return c
}

// keepSecrets returns c with its secrets completed from old's: none given
// keeps old's (or makes one for a new subscription: generated reports
// it), and each given as Redacted takes the stored secret at its place.
func (c Config) keepSecrets(old *Config) (out Config, generated bool, err error) {
	if len(c.Secrets) == 0 {
		if old != nil {
			c.Secrets = slices.Clone(old.Secrets)
			return c, false, nil
		}
		c.Secrets = []string{NewSecret()}
		return c, true, nil
	}
	s := slices.Clone(c.Secrets)
	for i, v := range s {
		if v != Redacted {
			continue
		}
		if old == nil || i >= len(old.Secrets) {
			return c, false, &FieldError{Webhook: c.Name, Field: fmt.Sprintf("secrets[%d]", i), Msg: Redacted + " stands for a stored secret, and there is none at this place; give the secret"}
		}
		s[i] = old.Secrets[i]
	}
	c.Secrets = s
	return c, false, nil
}

// groupSettings are the settings a subscription's consumer group is made
// of: when they change, the group is made afresh (from Start).
func (c *Config) groupKey() string {
	return fmt.Sprintf("%q|%q|%v|%d|%v", c.Topics, c.Start, c.Ordered, c.Concurrency, c.Timeout)
}

// wants reports whether the subscription sends ev: its type passes the
// filter.
func (c *Config) wants(ev *event.Event) bool {
	return len(c.Types) == 0 || slices.Contains(c.Types, ev.Type)
}
