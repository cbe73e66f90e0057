package client

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Cursors are opaque to API users, but the client reads them to give SSE
// events their topic and offset and to give each event of a poll answer its
// own cursor. The format is herald's cursor version 1
// (internal/cursor/cursor.go), before base64url encoding without padding:
//
//	byte      version = 1
//	repeated, one per topic, topics in strictly increasing byte order:
//	  uvarint   length of the topic name
//	  bytes     topic name
//	  uvarint   epoch
//	  uvarint   offset of the last event consumed (0: none yet)
//
// The client must not import internal/cursor (it is a public package with
// its own users), hence this small copy. Where a token cannot be read (a
// future version), the client degrades as documented on Event and Message
// instead of failing.
const cursorVersion = 1

// maxCursorTopics bounds decoding, as the server does.
const maxCursorTopics = 256

var errCursor = errors.New("unreadable cursor")

// cursorEntry is one topic's position within a cursor.
type cursorEntry struct {
	topic  string
	epoch  uint64
	offset uint64
}

// decodeCursor reads a token; the empty token is the empty cursor.
func decodeCursor(token string) ([]cursorEntry, error) {
	if token == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCursor, err)
	}
	if len(raw) == 0 || raw[0] != cursorVersion {
		return nil, fmt.Errorf("%w: unknown version", errCursor)
	}
	raw = raw[1:]
	var out []cursorEntry
	for len(raw) > 0 {
		if len(out) == maxCursorTopics {
			return nil, fmt.Errorf("%w: too many topics", errCursor)
		}
		n, k := binary.Uvarint(raw)
		if k <= 0 || n > uint64(len(raw)-k) {
			return nil, fmt.Errorf("%w: truncated topic name", errCursor)
		}
		raw = raw[k:]
		e := cursorEntry{topic: string(raw[:n])}
		raw = raw[n:]
		if l := len(out); l > 0 && out[l-1].topic >= e.topic {
			return nil, fmt.Errorf("%w: topics out of order", errCursor)
		}
		if e.epoch, k = binary.Uvarint(raw); k <= 0 {
			return nil, fmt.Errorf("%w: truncated epoch", errCursor)
		}
		raw = raw[k:]
		if e.offset, k = binary.Uvarint(raw); k <= 0 {
			return nil, fmt.Errorf("%w: truncated offset", errCursor)
		}
		raw = raw[k:]
		out = append(out, e)
	}
	return out, nil
}

// encodeCursor writes entries, which must be sorted by topic and unique.
func encodeCursor(entries []cursorEntry) string {
	buf := []byte{cursorVersion}
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(len(e.topic)))
		buf = append(buf, e.topic...)
		buf = binary.AppendUvarint(buf, e.epoch)
		buf = binary.AppendUvarint(buf, e.offset)
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// lookup returns the index of topic in the sorted entries, or where it
// would go.
func lookup(entries []cursorEntry, topic string) (int, bool) {
	lo, hi := 0, len(entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if entries[m].topic < topic {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(entries) && entries[lo].topic == topic
}

// setPosition returns entries with topic's position set, keeping the order.
func setPosition(entries []cursorEntry, e cursorEntry) []cursorEntry {
	i, ok := lookup(entries, e.topic)
	if ok {
		entries[i] = e
		return entries
	}
	entries = append(entries, cursorEntry{})
	copy(entries[i+1:], entries[i:])
	entries[i] = e
	return entries
}

// advanced returns the one entry of next that differs from prev. It
// reports false when none or several differ, which is when the event of an
// SSE frame cannot be placed.
func advanced(prev, next []cursorEntry) (cursorEntry, bool) {
	var found cursorEntry
	n := 0
	for _, e := range next {
		i, ok := lookup(prev, e.topic)
		if ok && prev[i] == e {
			continue
		}
		found = e
		n++
	}
	return found, n == 1
}

// formatEpoch writes an epoch as on every wire: 16 lowercase hex digits.
func formatEpoch(e uint64) string {
	s := strconv.FormatUint(e, 16)
	const zeros = "0000000000000000"
	return zeros[:16-len(s)] + s
}

// parseEpoch reads the form of formatEpoch.
func parseEpoch(s string) (uint64, error) {
	return strconv.ParseUint(s, 16, 64)
}
