package group

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Limits on a group's settings.
const (
	// MaxTopics is how many topics a group consumes: the names and
	// patterns of its settings, and the topics its patterns match (more
	// matches are left out, and counted in Info.TopicsLeftOut).
	MaxTopics = cursor.MaxTopics
	// MaxAckWait is the longest lease.
	MaxAckWait = 12 * time.Hour
	// MinAckWait is the shortest lease.
	MinAckWait = time.Millisecond
	// MaxMaxDeliveries caps MaxDeliveries.
	MaxMaxDeliveries = 1000
	// MaxInFlightLimit caps MaxInFlight and MemberMaxInFlight.
	MaxInFlightLimit = 1_000_000
	// MaxBackoff caps an entry of Backoff, and a nak's delay.
	MaxBackoff = 24 * time.Hour
	// MaxBackoffEntries caps the length of Backoff.
	MaxBackoffEntries = 100
	// MaxFetch is the largest limit of one Fetch.
	MaxFetch = hub.MaxPullLimit
	// MaxAckIDs is the most delivery ids one Ack takes.
	MaxAckIDs = 10_000
	// MaxMemberLen is the longest member name, in bytes.
	MaxMemberLen = 200

	// spacePrefix names a group's state space: "group.NAME".
	spacePrefix = "group."
	// MaxNameLen is the longest group name: the state space's name,
	// "group." and the name, must be a valid topic name.
	MaxNameLen = event.MaxTopicLen - len(spacePrefix)
)

// The start positions a Config names.
const (
	StartLatest   = "latest"
	StartEarliest = "earliest"
)

// The values of OrderingKey.
const (
	OrderByIdempotencyKey = "idempotency_key"
	OrderByHeaderPrefix   = "header:"
)

// WithDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) WithDefaults() Config {
	if cfg.Start == "" {
		cfg.Start = StartLatest
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.DeadLetter == "" && cfg.Name != "" {
		cfg.DeadLetter = cfg.Name + ".dead"
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MemberMaxInFlight == 0 {
		cfg.MemberMaxInFlight = DefaultMaxInFlight
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = nil
	}
	return cfg
}

// ValidateName reports whether name is a valid group name: a valid topic
// name of at most MaxNameLen bytes.
func ValidateName(name string) error {
	if err := event.ValidateTopic(name); err != nil {
		return fmt.Errorf("%w: group name: %w", hub.ErrBadInput, err)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: group name is %d bytes, the limit is %d", hub.ErrBadInput, len(name), MaxNameLen)
	}
	return nil
}

// Validate checks cfg, with defaults applied, and names the bad field.
// Errors wrap hub.ErrBadInput.
func (cfg *Config) Validate() error {
	if err := ValidateName(cfg.Name); err != nil {
		return err
	}
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: group %s: %s: %s", hub.ErrBadInput, cfg.Name, field, fmt.Sprintf(format, a...))
	}
	if len(cfg.Topics) == 0 {
		return bad("topics", "at least one topic or pattern is required")
	}
	if len(cfg.Topics) > MaxTopics {
		return bad("topics", "%d entries, the limit is %d", len(cfg.Topics), MaxTopics)
	}
	for i, t := range cfg.Topics {
		if _, err := parsePattern(t); err != nil {
			return bad("topics", "%v", err)
		}
		if slices.Contains(cfg.Topics[:i], t) {
			return bad("topics", "%q is listed twice", t)
		}
	}
	if _, err := parseStart(cfg.Start); err != nil {
		return bad("start", "%v", err)
	}
	if cfg.AckWait < MinAckWait || cfg.AckWait > MaxAckWait {
		return bad("ack_wait", "%v is out of range: %v to %v", cfg.AckWait, MinAckWait, MaxAckWait)
	}
	if cfg.MaxDeliveries < 1 || cfg.MaxDeliveries > MaxMaxDeliveries {
		return bad("max_deliveries", "%d is out of range: 1 to %d", cfg.MaxDeliveries, MaxMaxDeliveries)
	}
	if err := event.ValidateTopic(cfg.DeadLetter); err != nil {
		return bad("dead_letter", "%v", err)
	}
	for _, t := range cfg.Topics {
		if p, _ := parsePattern(t); p.match(cfg.DeadLetter) {
			return bad("dead_letter", "%q is one of the group's topics (%q): dead letters would be consumed again", cfg.DeadLetter, t)
		}
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxInFlightLimit {
		return bad("max_in_flight", "%d is out of range: 1 to %d", cfg.MaxInFlight, MaxInFlightLimit)
	}
	if cfg.MemberMaxInFlight < 1 || cfg.MemberMaxInFlight > MaxInFlightLimit {
		return bad("member_max_in_flight", "%d is out of range: 1 to %d", cfg.MemberMaxInFlight, MaxInFlightLimit)
	}
	if len(cfg.Backoff) > MaxBackoffEntries {
		return bad("backoff", "%d entries, the limit is %d", len(cfg.Backoff), MaxBackoffEntries)
	}
	for _, d := range cfg.Backoff {
		if d <= 0 || d > MaxBackoff {
			return bad("backoff", "%v is out of range: above 0, at most %v", d, MaxBackoff)
		}
	}
	switch k := cfg.OrderingKey; {
	case k == "", k == OrderByIdempotencyKey:
	case strings.HasPrefix(k, OrderByHeaderPrefix) && len(k) > len(OrderByHeaderPrefix):
	default:
		return bad("ordering_key", "%q: use %q or %q followed by a header's name", k, OrderByIdempotencyKey, OrderByHeaderPrefix)
	}
	return nil
}

// start is a parsed Config.Start.
type start struct {
	earliest bool
	cursor   *cursor.Cursor // topics it does not name start at the latest event
	time     time.Time      // the first event stored at or after it
}

func parseStart(s string) (start, error) {
	switch s {
	case StartLatest:
		return start{}, nil
	case StartEarliest:
		return start{earliest: true}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return start{time: t}, nil
	}
	c, err := cursor.Parse(s)
	if err != nil {
		return start{}, fmt.Errorf("%q is none of latest, earliest, an RFC 3339 time, or a cursor (%v)", s, err)
	}
	return start{cursor: &c}, nil
}

// orderingKey returns ev's ordering key under cfg, "" for none.
func (cfg *Config) orderingKey(ev *event.Event) string {
	switch k := cfg.OrderingKey; {
	case k == "":
		return ""
	case k == OrderByIdempotencyKey:
		return ev.Key
	default:
		return ev.Headers[k[len(OrderByHeaderPrefix):]]
	}
}

// backoff is the wait before the redelivery that follows the n-th
// delivery.
func (cfg *Config) backoff(n int) time.Duration {
	if len(cfg.Backoff) == 0 || n < 1 {
		return 0
	}
	return cfg.Backoff[min(n, len(cfg.Backoff))-1]
}

// same reports whether two configs with defaults applied are equal.
func (cfg *Config) same(o *Config) bool {
	return cfg.Name == o.Name && slices.Equal(cfg.Topics, o.Topics) && cfg.Start == o.Start &&
		cfg.AckWait == o.AckWait && cfg.MaxDeliveries == o.MaxDeliveries && cfg.DeadLetter == o.DeadLetter &&
		cfg.MaxInFlight == o.MaxInFlight && cfg.MemberMaxInFlight == o.MemberMaxInFlight &&
		slices.Equal(cfg.Backoff, o.Backoff) && cfg.OrderingKey == o.OrderingKey
}

// jsonConfig is Config as the API and the state store write it.
type jsonConfig struct {
	Name              string   `json:"name,omitempty"`
	Topics            []string `json:"topics"`
	Start             string   `json:"start,omitempty"`
	AckWait           string   `json:"ack_wait,omitempty"`
	MaxDeliveries     int      `json:"max_deliveries,omitempty"`
	DeadLetter        string   `json:"dead_letter,omitempty"`
	MaxInFlight       int      `json:"max_in_flight,omitempty"`
	MemberMaxInFlight int      `json:"member_max_in_flight,omitempty"`
	Backoff           []string `json:"backoff,omitempty"`
	OrderingKey       string   `json:"ordering_key,omitempty"`
}

// MarshalJSON encodes the settings with snake_case keys and durations as
// Go duration strings ("30s").
func (cfg Config) MarshalJSON() ([]byte, error) {
	j := jsonConfig{
		Name: cfg.Name, Topics: cfg.Topics, Start: cfg.Start, MaxDeliveries: cfg.MaxDeliveries, DeadLetter: cfg.DeadLetter,
		MaxInFlight: cfg.MaxInFlight, MemberMaxInFlight: cfg.MemberMaxInFlight, OrderingKey: cfg.OrderingKey,
	}
	if j.Topics == nil {
		j.Topics = []string{}
	}
	if cfg.AckWait != 0 {
		j.AckWait = cfg.AckWait.String()
	}
	for _, d := range cfg.Backoff {
		j.Backoff = append(j.Backoff, d.String())
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes; unknown keys are refused.
// Errors wrap hub.ErrBadInput.
func (cfg *Config) UnmarshalJSON(b []byte) error {
	var j jsonConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("%w: group settings: %v", hub.ErrBadInput, err)
	}
	out := Config{
		Name: j.Name, Topics: j.Topics, Start: j.Start, MaxDeliveries: j.MaxDeliveries, DeadLetter: j.DeadLetter,
		MaxInFlight: j.MaxInFlight, MemberMaxInFlight: j.MemberMaxInFlight, OrderingKey: j.OrderingKey,
	}
	if j.AckWait != "" {
		d, err := time.ParseDuration(j.AckWait)
		if err != nil {
			return fmt.Errorf("%w: group settings: ack_wait: %v", hub.ErrBadInput, err)
		}
		out.AckWait = d
	}
	for _, s := range j.Backoff {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%w: group settings: backoff: %v", hub.ErrBadInput, err)
		}
		out.Backoff = append(out.Backoff, d)
	}
	*cfg = out
	return nil
}
