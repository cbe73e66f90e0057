package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The payload encodings of Event.Encoding.
const (
	EncodingJSON   = "json"   // Data is the JSON value published
	EncodingText   = "text"   // Data is a JSON string of the text
	EncodingBinary = "binary" // Data is a JSON string of the bytes in standard, padded base64
)

// Event is one stored event, as the API shows it (docs/api.md, "Events on
// the wire").
//
// Events received over SSE (TransportSSE) carry less:
// an SSE frame holds only the type, the payload and the stream's cursor.
// The client recovers Topic, Offset and Epoch by comparing the cursor
// before and after the frame (the topic whose position moved is the
// event's); Time and Headers are not available (zero and nil); and
// Encoding is inferred from the payload: "json" when it is valid JSON, else
// "text", so text that happens to be valid JSON arrives as json, binary
// payloads arrive as their base64 text, and line breaks in text arrive as
// "\n" whatever they were (CR and CRLF included). Use another transport
// when those details matter.
type Event struct {
	Topic    string    `json:"topic"`
	Offset   uint64    `json:"offset"`
	Epoch    string    `json:"epoch"`
	Time     time.Time `json:"time"`           // when the server stored it
	Type     string    `json:"type,omitempty"` // optional, given by the publisher
	Encoding string    `json:"encoding"`       // one of the Encoding constants
	// Data is the payload as a raw JSON value, as on the wire: the JSON
	// published, or a string of text or of base64. Payload decodes it.
	Data    json.RawMessage   `json:"data"`
	Headers map[string]string `json:"headers,omitempty"`
}

// Payload returns the payload bytes: JSON as published, text as its UTF-8
// bytes, binary payloads decoded from base64.
func (e *Event) Payload() ([]byte, error) {
	switch e.Encoding {
	case EncodingJSON:
		return append([]byte(nil), e.Data...), nil
	case EncodingText, EncodingBinary:
		var s string
		if err := json.Unmarshal(e.Data, &s); err != nil {
			return nil, fmt.Errorf("payload of %s #%d: %s data is not a JSON string: %w", e.Topic, e.Offset, e.Encoding, err)
		}
		if e.Encoding == EncodingText {
			return []byte(s), nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("payload of %s #%d: bad base64: %w", e.Topic, e.Offset, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("payload of %s #%d: unknown encoding %q", e.Topic, e.Offset, e.Encoding)
	}
}

// Position is a place in a topic: the offset of the last event consumed
// within an epoch. Offset 0 is before the first event.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// The reasons of a Gap.
const (
	GapTrimmed      = "trimmed"       // the events asked for are older than retained history
	GapEpochChanged = "epoch_changed" // the topic's history was lost or reset
	GapAhead        = "ahead"         // the position is beyond the newest event
)

// Gap is the server's explicit signal that some events of a topic cannot be
// delivered. Delivery continues with the event after Resumed.
type Gap struct {
	Topic     string   `json:"topic"`
	Reason    string   `json:"reason"`    // one of the Gap constants
	Requested Position `json:"requested"` // the position the consumer presented
	Resumed   Position `json:"resumed"`   // delivery continues after this
	Earliest  uint64   `json:"earliest"`  // offset of the earliest retained event
}

// From is where a read starts in a topic it has no position for: the
// topic is not in the cursor given with WithCursor, or no cursor was
// given. It is the same for Pull and Subscribe, and the zero value means
// the default, FromLatest.
//
// FromLatest is the default because it is what a consumer that starts
// without a cursor expects of a live event hub: to follow what happens
// from now on, the way a NATS or centrifuge subscription does. Replaying
// the whole retained history is an explicit choice (FromEarliest), not a
// surprise flood when a consumer is first deployed. So a Pull without a
// cursor answers no events and a cursor at the end of each topic, a
// bookmark to pull on from, exactly where a Subscribe would have started.
// (The server's HTTP and gRPC pull endpoints default to earliest when
// asked without one; the client always sends its From, so the same call
// reads the same way over every transport.)
//
// A From reads and writes itself as text ("latest", "earliest"), so it can
// be a flag or a configuration field; other values are refused.
type From string

// Where reads start; see From.
const (
	FromLatest   From = "latest"   // after the newest event: only events published from now on (the default)
	FromEarliest From = "earliest" // at the earliest retained event: the topic's retained history first
)

// check refuses a value that is none of the From constants.
func (f From) check() error {
	switch f {
	case "", FromLatest, FromEarliest:
		return nil
	}
	return fmt.Errorf("from %q: use %q or %q", string(f), FromLatest, FromEarliest)
}

// MarshalText returns the name of f.
func (f From) MarshalText() ([]byte, error) { return []byte(f), nil }

// UnmarshalText sets f to the start named text ("" for the default),
// refusing unknown names.
func (f *From) UnmarshalText(text []byte) error {
	v := From(text)
	if err := v.check(); err != nil {
		return err
	}
	*f = v
	return nil
}

// readParams are the options Pull and Subscribe share.
type readParams struct {
	cursor string
	from   From // FromLatest or FromEarliest once checked
}

// check refuses a bad From and applies the default.
func (p *readParams) check() error {
	if err := p.from.check(); err != nil {
		return err
	}
	if p.from == "" {
		p.from = FromLatest
	}
	return nil
}

// ReadOption is an option of both Pull and Subscribe: WithCursor or
// WithFrom.
type ReadOption interface {
	PullOption
	SubscribeOption
}

// readOption is a ReadOption.
type readOption func(*readParams)

func (o readOption) applyPull(p *pullParams)           { o(&p.readParams) }
func (o readOption) applySubscribe(p *subscribeParams) { o(&p.readParams) }

// WithCursor continues a read after the positions cursor holds: a
// Message.Cursor, an Ack.Cursor or a PullResult.Cursor, of any transport.
// Topics the cursor does not name start per WithFrom. An empty cursor
// starts every topic per WithFrom.
func WithCursor(cursor string) ReadOption {
	return readOption(func(p *readParams) { p.cursor = cursor })
}

// WithFrom sets where topics without a position start; the default is
// FromLatest. See From.
func WithFrom(from From) ReadOption {
	return readOption(func(p *readParams) { p.from = from })
}

// pullParams are a pull's options.
type pullParams struct {
	readParams
	limit int
	wait  time.Duration
}

// PullOption is an option of Pull: WithLimit, WithWait, and the options
// of Subscribe and Pull (ReadOption): WithCursor and WithFrom.
type PullOption interface {
	applyPull(*pullParams)
}

// pullOption is a PullOption of Pull only.
type pullOption func(*pullParams)

func (o pullOption) applyPull(p *pullParams) { o(p) }

// WithLimit sets the most events a pull returns, 1 to 10000; 0 takes the
// server's default (100).
func WithLimit(n int) PullOption {
	return pullOption(func(p *pullParams) { p.limit = n })
}

// WithWait makes a pull a long poll: the server answers as soon as an
// event is there, or with no events (and the same cursor) when d has
// passed. The server's maximum is 120s by default. The context of the pull
// must allow at least this long.
func WithWait(d time.Duration) PullOption {
	return pullOption(func(p *pullParams) { p.wait = d })
}

// PullResult is the answer to a pull.
type PullResult struct {
	// Events are in offset order per topic, merged across topics by time.
	Events []Event `json:"events"`
	// Cursor continues after Events; pass it back unchanged.
	Cursor string `json:"cursor"`
	// Gaps signal events that cannot be delivered; see Gap.
	Gaps []Gap `json:"gaps,omitempty"`
}

// Pull reads events of topics: after the cursor given with WithCursor,
// else per WithFrom (by default FromLatest, which answers no events and a
// cursor to pull on from; see From). With WithWait it is a long poll.
func (c *Client) Pull(ctx context.Context, topics []string, opts ...PullOption) (PullResult, error) {
	if len(topics) == 0 {
		return PullResult{}, errors.New("pull: give at least one topic")
	}
	var p pullParams
	for _, o := range opts {
		o.applyPull(&p)
	}
	if err := p.check(); err != nil {
		return PullResult{}, fmt.Errorf("pull %v: %w", topics, err)
	}
	if p.limit < 0 {
		return PullResult{}, fmt.Errorf("pull %v: limit %d: use 0 (the server's default) to 10000", topics, p.limit)
	}
	res, err := c.api.pull(ctx, topics, &p)
	if err != nil {
		return PullResult{}, fmt.Errorf("pull %v: %w", topics, err)
	}
	return res, nil
}
