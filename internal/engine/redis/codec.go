package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/heraldhq/herald/internal/event"
)

// A record is stored in its topic's stream, and sent to the other nodes, as
// one string:
//
//	version (1 byte, recordV1)
//	encoding (1 byte)
//	uvarint length, type
//	uvarint length, idempotency key
//	uvarint count of headers, then each as uvarint length, name, uvarint length, value
//	the data, to the end
const recordV1 = 1

// errCorrupt is wrapped by the errors of decodeRecord and decodeMessage.
var errCorrupt = errors.New("corrupt record")

// encodeRecord appends r's encoding to b.
func encodeRecord(b []byte, r *event.Record) []byte {
	b = append(b, recordV1, byte(r.Encoding))
	b = appendString(b, r.Type)
	b = appendString(b, r.Key)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for k, v := range r.Headers {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return append(b, r.Data...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord parses what encodeRecord made. The record's strings and
// data are copies: s may be reused.
func decodeRecord(s string) (event.Record, error) {
	var r event.Record
	if len(s) < 2 || s[0] != recordV1 {
		return r, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	r.Encoding = event.Encoding(s[1])
	rest := s[2:]
	var err error
	if r.Type, rest, err = readString(rest); err != nil {
		return r, err
	}
	if r.Key, rest, err = readString(rest); err != nil {
		return r, err
	}
	n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(rest)) {
		return r, fmt.Errorf("%w: header count", errCorrupt)
	}
	rest = rest[w:]
	if n > 0 {
		r.Headers = make(map[string]string, n)
		for i := uint64(0); i < n; i++ {
			var k, v string
			if k, rest, err = readString(rest); err != nil {
				return r, err
			}
			if v, rest, err = readString(rest); err != nil {
				return r, err
			}
			r.Headers[k] = v
		}
	}
	r.Data = []byte(rest)
	return r, nil
}

func readString(s string) (string, string, error) {
	n, w := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(s)-w) {
		return "", "", fmt.Errorf("%w: string length", errCorrupt)
	}
	end := w + int(n)
	return s[w:end], s[end:], nil
}

// A message on a topic's channel is an event as the publish script sends
// it: the topic's epoch as 16 hex digits, the offset, ':', the time in unix
// milliseconds, ':', and the record's encoding.

// decodeMessage parses a channel message of topic.
func decodeMessage(topic, msg string) (*event.Event, error) {
	if len(msg) < 16 {
		return nil, fmt.Errorf("%w: short message", errCorrupt)
	}
	epoch, err := event.ParseEpoch(msg[:16])
	if err != nil {
		return nil, fmt.Errorf("%w: epoch: %w", errCorrupt, err)
	}
	rest := msg[16:]
	off, rest, err := readUint(rest)
	if err != nil {
		return nil, err
	}
	ms, rest, err := readUint(rest)
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(rest)
	if err != nil {
		return nil, err
	}
	return &event.Event{Topic: topic, Offset: off, Epoch: epoch, Time: int64(ms), Record: r}, nil
}

// readUint parses the decimal number before the first ':' of s.
func readUint(s string) (uint64, string, error) {
	for i := 0; i < len(s) && i <= 20; i++ {
		if s[i] == ':' {
			v, err := strconv.ParseUint(s[:i], 10, 63)
			if err != nil {
				return 0, "", fmt.Errorf("%w: number: %w", errCorrupt, err)
			}
			return v, s[i+1:], nil
		}
	}
	return 0, "", fmt.Errorf("%w: number", errCorrupt)
}
