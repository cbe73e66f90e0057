package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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
// Events received over SSE (SubscribeOptions.Transport "sse") carry less:
// an SSE frame holds only the type, the payload and the stream's cursor.
// The client recovers Topic, Offset and Epoch by comparing the cursor
// before and after the frame (the topic whose position moved is the
// event's); Time and Headers are not available (zero and nil); and
// Encoding is inferred from the payload: "json" when it is valid JSON, else
// "text", so text that happens to be valid JSON arrives as json, binary
// payloads arrive as their base64 text, and line breaks in text arrive as
// "\n" whatever they were (CR and CRLF included). Use the "poll" transport
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

// PullRequest is a read of one or more topics.
type PullRequest struct {
	// Topics to read; at least one.
	Topics []string
	// Cursor continues after the positions it holds; empty starts every
	// topic per From.
	Cursor string
	// From is where topics without a position in Cursor start: "earliest"
	// (the server's default for pulls) or "latest".
	From string
	// Limit is the most events returned, 1 to 10000; 0 takes the server's
	// default (100).
	Limit int
	// Wait makes the pull a long poll: the server answers as soon as an
	// event is there, or with no events (and the same cursor) when Wait has
	// passed. The server's maximum is 120s by default. The context must
	// allow at least this long.
	Wait time.Duration
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

// Pull reads events after req.Cursor. With req.Wait set it is a long poll.
func (c *Client) Pull(ctx context.Context, req PullRequest) (PullResult, error) {
	if len(req.Topics) == 0 {
		return PullResult{}, errors.New("pull: give at least one topic")
	}
	if c.grpc != nil {
		return c.pullGRPC(ctx, req)
	}
	q := url.Values{"topic": req.Topics}
	if req.Cursor != "" {
		q.Set("cursor", req.Cursor)
	}
	if req.From != "" {
		q.Set("from", req.From)
	}
	if req.Limit != 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	if req.Wait > 0 {
		q.Set("wait", req.Wait.String())
	}
	hreq, err := c.newRequest(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return PullResult{}, fmt.Errorf("pull %v: %w", req.Topics, err)
	}
	hreq.Header.Set("Accept", "application/json")
	var res PullResult
	if err := c.doJSON(hreq, &res); err != nil {
		return PullResult{}, fmt.Errorf("pull %v: %w", req.Topics, err)
	}
	return res, nil
}
