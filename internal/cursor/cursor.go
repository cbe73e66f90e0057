// Package cursor encodes and decodes herald's cursor: an opaque, URL-safe
// token holding the position of every topic a consumer follows.
//
// SSE sends a cursor as each event's id, so a browser's Last-Event-ID resumes
// every topic of a stream at once; long polling, the pull API and the other
// push transports accept the same token.
//
// Wire format (version 1), before base64url encoding without padding:
//
//	byte      version = 1
//	repeated, one per topic, topics in strictly increasing byte order:
//	  uvarint   length of the topic name
//	  bytes     topic name
//	  uvarint   epoch
//	  uvarint   offset of the last event consumed (0: none yet)
//
// Sorting makes the encoding canonical: the same positions always give the
// same token. See docs/decisions/0002-cursor-encoding.md.
package cursor

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/heraldhq/herald/internal/event"
)

const version = 1

// Limits on what a cursor may hold, so that decoding is cheap and bounded.
// MaxEncoded fits MaxTopics positions of the longest topic names, so that
// every cursor the server can produce also parses (and fits an HTTP header).
const (
	MaxTopics  = 64
	MaxEncoded = 24 << 10 // bytes of the base64 token
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed cursor")

// Entry is one topic's position within a cursor.
type Entry struct {
	Topic string
	event.Position
}

// Cursor maps topics to positions. The zero value is an empty cursor.
type Cursor struct {
	entries []Entry // sorted by Topic, unique
}

// Len returns the number of topics in c.
func (c *Cursor) Len() int { return len(c.entries) }

// Entries returns c's entries sorted by topic. The slice must not be changed.
func (c *Cursor) Entries() []Entry { return c.entries }

// Get returns the position stored for topic.
func (c *Cursor) Get(topic string) (event.Position, bool) {
	i := c.search(topic)
	if i < len(c.entries) && c.entries[i].Topic == topic {
		return c.entries[i].Position, true
	}
	return event.Position{}, false
}

// Set stores p as topic's position.
func (c *Cursor) Set(topic string, p event.Position) {
	i := c.search(topic)
	if i < len(c.entries) && c.entries[i].Topic == topic {
		c.entries[i].Position = p
		return
	}
	c.entries = append(c.entries, Entry{})
	copy(c.entries[i+1:], c.entries[i:])
	c.entries[i] = Entry{Topic: topic, Position: p}
}

// Clone returns an independent copy of c.
func (c *Cursor) Clone() Cursor {
	return Cursor{entries: append([]Entry(nil), c.entries...)}
}

// Retain keeps only the entries whose topic keep approves.
func (c *Cursor) Retain(keep func(topic string) bool) {
	c.entries = slices.DeleteFunc(c.entries, func(e Entry) bool { return !keep(e.Topic) })
}

func (c *Cursor) search(topic string) int {
	return sort.Search(len(c.entries), func(i int) bool { return c.entries[i].Topic >= topic })
}

// String returns the encoded token.
func (c *Cursor) String() string { return string(c.AppendEncoded(nil)) }

// AppendEncoded appends the encoded token to dst. With a dst of enough
// capacity it does not allocate, which keeps per-delivery SSE ids cheap.
func (c *Cursor) AppendEncoded(dst []byte) []byte {
	n := len(dst)
	dst = append(dst, version)
	for _, e := range c.entries {
		dst = appendEntry(dst, e.Topic, e.Position)
	}
	return encodeTail(dst, n)
}

// AppendSingle appends the token of a cursor holding one topic's position,
// without building a Cursor.
func AppendSingle(dst []byte, topic string, p event.Position) []byte {
	n := len(dst)
	dst = append(dst, version)
	dst = appendEntry(dst, topic, p)
	return encodeTail(dst, n)
}

func appendEntry(dst []byte, topic string, p event.Position) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	dst = append(dst, topic...)
	dst = binary.AppendUvarint(dst, uint64(p.Epoch))
	return binary.AppendUvarint(dst, p.Offset)
}

// encodeTail replaces dst[n:], the raw token, by its base64 form. The raw
// bytes are built in dst itself so that no scratch buffer is needed.
func encodeTail(dst []byte, n int) []byte {
	rawLen := len(dst) - n
	encLen := base64.RawURLEncoding.EncodedLen(rawLen)
	dst = slices.Grow(dst, encLen)
	out := dst[len(dst) : len(dst)+encLen]
	base64.RawURLEncoding.Encode(out, dst[n:])
	copy(dst[n:n+encLen], out)
	return dst[:n+encLen]
}

// Parse decodes a token produced by String. An empty token is an empty
// cursor. Every error wraps ErrMalformed and says what is wrong.
func Parse(token string) (Cursor, error) {
	if token == "" {
		return Cursor{}, nil
	}
	if len(token) > MaxEncoded {
		return Cursor{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(token), MaxEncoded)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: not base64url: %v", ErrMalformed, err)
	}
	if len(raw) == 0 || raw[0] != version {
		return Cursor{}, fmt.Errorf("%w: unknown version", ErrMalformed)
	}
	raw = raw[1:]
	var c Cursor
	for len(raw) > 0 {
		if len(c.entries) == MaxTopics {
			return Cursor{}, fmt.Errorf("%w: more than %d topics", ErrMalformed, MaxTopics)
		}
		n, k := binary.Uvarint(raw)
		if k <= 0 || n > uint64(len(raw)-k) {
			return Cursor{}, fmt.Errorf("%w: truncated topic name", ErrMalformed)
		}
		raw = raw[k:]
		topic := string(raw[:n])
		raw = raw[n:]
		if err := event.ValidateTopic(topic); err != nil {
			return Cursor{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if l := len(c.entries); l > 0 && c.entries[l-1].Topic >= topic {
			return Cursor{}, fmt.Errorf("%w: topics out of order or repeated", ErrMalformed)
		}
		epoch, k := binary.Uvarint(raw)
		if k <= 0 {
			return Cursor{}, fmt.Errorf("%w: truncated epoch of %q", ErrMalformed, topic)
		}
		raw = raw[k:]
		off, k := binary.Uvarint(raw)
		if k <= 0 {
			return Cursor{}, fmt.Errorf("%w: truncated offset of %q", ErrMalformed, topic)
		}
		raw = raw[k:]
		c.entries = append(c.entries, Entry{Topic: topic, Position: event.Position{Epoch: event.Epoch(epoch), Offset: off}})
	}
	return c, nil
}
