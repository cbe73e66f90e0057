// Package event defines herald's shared model: topics, events and positions.
//
// Every transport, the hub and every engine speak in these types, which is
// what lets a consumer switch transport and lose nothing: an offset read over
// the pull API means the same thing on an SSE stream or a WebSocket.
//
// A topic is a named, ordered stream. Each event in it has an offset that
// grows by exactly one, starting at 1, and an epoch that identifies one
// continuous history of the topic. When history is lost (a memory engine
// restarts, a backing store is wiped), the epoch changes, so a consumer can
// tell "nothing happened" from "history is gone".
package event

import (
	"strconv"
	"sync/atomic"
	"time"
)

// Encoding says how an event's Data is to be read.
type Encoding uint8

// The payload encodings. JSON payloads are validated on publish; text
// payloads are valid UTF-8; anything else is kept as opaque bytes and shown
// as base64 by the text-based transports.
const (
	EncodingJSON Encoding = iota
	EncodingText
	EncodingBinary
)

// String returns the encoding's wire name.
func (e Encoding) String() string {
	switch e {
	case EncodingJSON:
		return "json"
	case EncodingText:
		return "text"
	default:
		return "binary"
	}
}

// Record is an event as a producer submits it, before the engine has given
// it a position.
type Record struct {
	Type     string            // optional, e.g. the SSE "event:" name
	Data     []byte            // the payload
	Encoding Encoding          // how Data is to be read
	Headers  map[string]string // optional metadata
	Key      string            // optional idempotency key
}

// Size is the number of bytes a record accounts for in history limits.
func (r *Record) Size() int {
	n := len(r.Type) + len(r.Data) + len(r.Key)
	for k, v := range r.Headers {
		n += len(k) + len(v)
	}
	return n
}

// Event is a stored event. Events are immutable once an engine returns them
// and are shared by every subscriber, so their encoded frames are cached on
// them: each wire format is encoded once per event, not once per delivery.
type Event struct {
	Topic  string
	Offset uint64
	Epoch  Epoch
	Time   int64 // unix milliseconds at which the engine stored it
	Record

	frames [numFrames]atomic.Pointer[[]byte]
}

// FrameKind names a cached wire encoding of an event. The set is fixed and
// small on purpose: each kind costs one pointer per stored event.
type FrameKind uint8

// The frame kinds transports may cache on an event.
const (
	FrameSSE       FrameKind = iota // SSE "event:" and "data:" lines (no id)
	FrameSSESolo                    // the same preceded by the "id:" of a one-topic stream
	FrameJSON                       // the JSON object used by pull, long poll and WebSocket
	FrameGRPCSolo                   // a gRPC Delivery of the event alone on a one-topic Subscribe stream
	FrameWS                         // a WebSocket event message, frame header included
	FrameWSDeflate                  // the same message compressed with permessage-deflate
	numFrames
)

// Frame returns the event's cached encoding of kind k, building it with
// encode the first time. Concurrent first calls may both encode; one result
// wins and both are equal, so callers never wait on each other.
func (e *Event) Frame(k FrameKind, encode func(*Event) []byte) []byte {
	if p := e.frames[k].Load(); p != nil {
		return *p
	}
	b := encode(e)
	if e.frames[k].CompareAndSwap(nil, &b) {
		return b
	}
	return *e.frames[k].Load()
}

// Position returns the event's place in its topic.
func (e *Event) Position() Position { return Position{Epoch: e.Epoch, Offset: e.Offset} }

// Epoch identifies one continuous history of a topic. Zero means unknown.
type Epoch uint64

// String returns the epoch as 16 lowercase hex digits, the form used on
// every wire: JSON numbers above 2^53 do not survive JavaScript.
func (e Epoch) String() string { return string(e.Append(nil)) }

// Append appends the String form to b without allocating when b has room.
func (e Epoch) Append(b []byte) []byte {
	const hex = "0123456789abcdef"
	var d [16]byte
	for i := 15; i >= 0; i-- {
		d[i] = hex[e&0xf]
		e >>= 4
	}
	return append(b, d[:]...)
}

// ParseEpoch parses the form produced by Epoch.String.
func ParseEpoch(s string) (Epoch, error) {
	v, err := strconv.ParseUint(s, 16, 64)
	return Epoch(v), err
}

// Position is a place in a topic: the offset of the last event consumed
// within an epoch. Offset 0 means "before the first event".
type Position struct {
	Epoch  Epoch
	Offset uint64
}

// Ack is the engine's answer for one appended record.
type Ack struct {
	Position
	Duplicate bool // the idempotency key was seen: nothing new was stored
}

// TopicInfo describes a topic's retained history.
type TopicInfo struct {
	Name     string
	Epoch    Epoch
	First    uint64 // offset of the earliest retained event; Last+1 when none is retained
	Last     uint64 // offset of the newest event; 0 when nothing was ever published
	Retained int    // number of retained events
	Bytes    int64  // bytes of retained events
	// Presence is set by the hub for a topic with presence on: the clients
	// present on this node. Nil when presence is off (engines leave it nil).
	Presence *Presence
}

// Presence is who is on a topic: its push subscribers on this node, for a
// topic whose namespace has presence on. It is never stored in history.
type Presence struct {
	Count   int      // clients present
	Members []Member // the first of them to join, at most the hub's list limit
}

// Member is one client present on a topic.
type Member struct {
	Client string // the connection's id, random and unique per connection
	Info   []byte // the JSON object the client gave when subscribing; nil if none
	Since  int64  // unix milliseconds at which it joined
}

// Retention bounds a topic's history. A zero field means no bound of that
// kind; at least one bound should be set.
type Retention struct {
	MaxEvents int           // events kept per topic
	MaxAge    time.Duration // events older than this are dropped
	MaxBytes  int64         // payload bytes kept per topic
}

// The defaults of topic history and idempotency, shared by every engine
// and by the configuration, so that a topic behaves the same whichever
// engine keeps it and whether or not the operator set a bound.
const (
	// DefaultDedupeWindow is how long an engine remembers an idempotency
	// key.
	DefaultDedupeWindow = 5 * time.Minute
	// DefaultMaxKeysPerTopic caps the idempotency keys an engine remembers
	// per topic; past it the oldest are forgotten first.
	DefaultMaxKeysPerTopic = 100000
)

// DefaultRetention returns the history bounds of a topic when none are
// configured: 10,000 events, 24 hours, 64 MiB.
func DefaultRetention() Retention {
	return Retention{MaxEvents: 10000, MaxAge: 24 * time.Hour, MaxBytes: 64 << 20}
}

// Batch is an engine's answer to a history read: the events and the
// topic's state at the time of the read.
type Batch struct {
	Info   TopicInfo
	Events []*Event
}
