package bench

import (
	"bytes"
	"strconv"
)

// The payload of every event the load generator publishes is one JSON
// object, padded with a "pad" string to the requested size:
//
//	{"run":4711,"p":2,"seq":42,"t":1764100200123456789,"pad":"xxxxxxxx"}
//
// run tells this run's events from anyone else's on the same topic, p is
// the publishing connection (each sends its next event only after the
// previous one was acknowledged, so the server must deliver a connection's
// events in its order), seq counts from 1 across all connections, and t is
// the publish send time in Unix nanoseconds.

// minPayloadBytes is the size of a payload with the largest numbers and no
// padding; smaller --payload values are rounded up to it.
const minPayloadBytes = len(`{"run":18446744073709551615,"p":65535,"seq":18446744073709551615,"t":9223372036854775807,"pad":""}`)

var (
	keyRun = []byte(`"run":`)
	keyPub = []byte(`"p":`)
	keySeq = []byte(`"seq":`)
	keyT   = []byte(`"t":`)
)

// appendPayload appends the payload of one event to dst, padded to size
// bytes when the numbers leave room.
func appendPayload(dst []byte, run uint64, pub int, seq uint64, sentUnixNano int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"run":`...)
	dst = strconv.AppendUint(dst, run, 10)
	dst = append(dst, `,"p":`...)
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, sentUnixNano, 10)
	dst = append(dst, `,"pad":"`...)
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// fields is what a subscriber reads from a payload.
type fields struct {
	run, seq uint64
	pub      int
	sent     int64 // Unix nanoseconds
}

// parsePayload extracts the fields of a payload made by appendPayload (in
// any key order, with optional spaces after colons). ok is false when a
// field is missing.
func parsePayload(b []byte) (f fields, ok bool) {
	run, ok1 := uintField(b, keyRun)
	pub, ok2 := uintField(b, keyPub)
	seq, ok3 := uintField(b, keySeq)
	t, ok4 := uintField(b, keyT)
	return fields{run: run, seq: seq, pub: int(min(pub, 1<<16)), sent: int64(t)}, ok1 && ok2 && ok3 && ok4
}

// uintField parses the unsigned integer after key in b.
func uintField(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	var v uint64
	n := 0
	for ; n < len(b) && n < 20 && b[n] >= '0' && b[n] <= '9'; n++ {
		v = v*10 + uint64(b[n]-'0')
	}
	return v, n > 0
}
