package durable

import (
	"encoding/binary"
	"errors"

	"github.com/heraldhq/herald/internal/event"
)

// This file encodes the keys and values described in the package comment.

// topicKey returns kind, the length of name (uint16) and name.
func topicKey(kind byte, name string) []byte {
	k := make([]byte, 0, 3+len(name)+8)
	k = append(k, kind)
	k = binary.BigEndian.AppendUint16(k, uint16(len(name)))
	return append(k, name...)
}

// topicOf returns the topic name of a key made by topicKey (and anything
// appended to it).
func topicOf(key []byte) (string, bool) {
	if len(key) < 3 {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(key[1:]))
	if len(key) < 3+n {
		return "", false
	}
	return string(key[3 : 3+n]), true
}

// offsetKey returns prefix followed by offset, big-endian.
func offsetKey(prefix []byte, offset uint64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8)
	copy(k, prefix)
	return binary.BigEndian.AppendUint64(k, offset)
}

// prefixEnd returns the smallest key greater than every key starting with
// prefix. Prefixes made by topicKey never end in 0xff runs that overflow,
// since the kind byte is below 0xff.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// metaLen is the length of a topic meta value.
const metaLen = 48

func encodeMeta(st topicState) []byte {
	v := make([]byte, 0, metaLen)
	v = binary.BigEndian.AppendUint64(v, st.first)
	v = binary.BigEndian.AppendUint64(v, st.last)
	v = binary.BigEndian.AppendUint64(v, uint64(st.bytes))
	v = binary.BigEndian.AppendUint64(v, uint64(st.lastMs))
	v = binary.BigEndian.AppendUint64(v, st.keyHead)
	return binary.BigEndian.AppendUint64(v, st.keyTail)
}

func decodeMeta(v []byte) (topicState, bool) {
	if len(v) != metaLen {
		return topicState{}, false
	}
	return topicState{
		first:   binary.BigEndian.Uint64(v[0:]),
		last:    binary.BigEndian.Uint64(v[8:]),
		bytes:   int64(binary.BigEndian.Uint64(v[16:])),
		lastMs:  int64(binary.BigEndian.Uint64(v[24:])),
		keyHead: binary.BigEndian.Uint64(v[32:]),
		keyTail: binary.BigEndian.Uint64(v[40:]),
	}, true
}

// keyLogValue is the value of a key log entry: when the key was stored,
// the offset it was stored at, and the key.
func keyLogValue(atMs int64, offset uint64, key string) []byte {
	v := make([]byte, 0, 16+len(key))
	v = binary.BigEndian.AppendUint64(v, uint64(atMs))
	v = binary.BigEndian.AppendUint64(v, offset)
	return append(v, key...)
}

// keyValue is the value of an idempotency key: the offset it was stored at
// and when.
func keyValue(offset uint64, atMs int64) []byte {
	v := make([]byte, 0, 16)
	v = binary.BigEndian.AppendUint64(v, offset)
	return binary.BigEndian.AppendUint64(v, uint64(atMs))
}

// encodeEvent returns the stored form of ev. The first 12 bytes (time and
// size) are read by trims without decoding the rest.
func encodeEvent(ev *event.Event) []byte {
	r := &ev.Record
	n := 8 + 4 + 1 + 3*binary.MaxVarintLen32 + len(r.Type) + len(r.Key) + len(r.Data)
	for k, v := range r.Headers {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint64(b, uint64(ev.Time))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Size()))
	b = append(b, byte(r.Encoding))
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

var errMalformed = errors.New("malformed event")

// decodeEvent rebuilds an event from its stored form. v is copied: the
// iterator's buffer is reused.
func decodeEvent(topic string, epoch event.Epoch, offset uint64, v []byte) (*event.Event, error) {
	if len(v) < 13 {
		return nil, errMalformed
	}
	ev := &event.Event{Topic: topic, Offset: offset, Epoch: epoch, Time: int64(binary.BigEndian.Uint64(v))}
	ev.Encoding = event.Encoding(v[12])
	d := decoder{b: v[13:]}
	ev.Type = d.string()
	ev.Key = d.string()
	if nh := d.uvarint(); nh > 0 && !d.bad {
		if nh > uint64(len(d.b)) {
			return nil, errMalformed
		}
		ev.Headers = make(map[string]string, nh)
		for i := uint64(0); i < nh && !d.bad; i++ {
			k := d.string()
			ev.Headers[k] = d.string()
		}
	}
	if d.bad {
		return nil, errMalformed
	}
	ev.Data = append([]byte(nil), d.b...)
	return ev, nil
}

// decoder reads uvarint-prefixed fields; bad turns true at the first error.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	if d.bad {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
