package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzFrameReader feeds arbitrary client bytes to the frame decoder, whole
// and cut in two at an arbitrary point: it must never panic, must give the
// same messages and the same verdict either way, and must never return a
// message over the limit.
func FuzzFrameReader(f *testing.F) {
	mask := func(op ws.OpCode, fin bool, p string) []byte {
		var b bytes.Buffer
		ws.WriteFrame(&b, ws.MaskFrameInPlaceWith(ws.NewFrame(op, fin, []byte(p)), [4]byte{1, 2, 3, 4}))
		return b.Bytes()
	}
	f.Add(mask(ws.OpText, true, `{"op":"subscribe","id":1,"topics":["a"]}`), uint16(3), false)
	f.Add(append(mask(ws.OpText, false, `{"op":`), mask(ws.OpContinuation, true, `"x"}`)...), uint16(7), false)
	f.Add(mask(ws.OpPing, true, "hi"), uint16(1), false)
	f.Add(mask(ws.OpClose, true, "\x03\xe8bye"), uint16(2), false)
	f.Add([]byte{0xc1, 0x80, 0, 0, 0, 0}, uint16(0), true) // RSV1, empty, deflate on
	f.Fuzz(func(t *testing.T, data []byte, split uint16, deflate bool) {
		const limit = 1 << 12
		run := func(parts ...[]byte) ([]string, error) {
			r := frameReader{limit: limit, deflate: deflate}
			var got []string
			for _, p := range parts {
				p = append([]byte(nil), p...) // feed unmasks in place
				err := r.feed(p, func(m message) bool {
					if len(m.payload) > limit {
						t.Fatalf("a message of %d bytes, over the limit", len(m.payload))
					}
					got = append(got, fmt.Sprintf("%d %v %q", m.op, m.compressed, m.payload))
					return true
				})
				if err != nil {
					var ce *closeError
					if !errors.As(err, &ce) || ce.code == 0 {
						t.Fatalf("error %v is not a close error", err)
					}
					return got, err
				}
			}
			return got, nil
		}
		whole, errW := run(data)
		cut := int(split) % (len(data) + 1)
		parts, errP := run(data[:cut], data[cut:])
		if (errW == nil) != (errP == nil) || fmt.Sprint(whole) != fmt.Sprint(parts) {
			t.Fatalf("whole: %q %v; cut at %d: %q %v", whole, errW, cut, parts, errP)
		}
	})
}

// FuzzCommand parses arbitrary messages as commands: it must never panic,
// an accepted command has a known op and an id that is JSON, and every
// error answer is one valid JSON object echoing the id.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		`{"op":"subscribe","id":1,"topics":["a","b"],"cursor":"AQFhAQE","from":"earliest","presence":{"n":1}}`,
		`{"op":"unsubscribe","id":"x","topics":["a"]}`,
		`{"op":"publish","id":2,"topic":"a","data":{"k":[1,2]},"type":"t","key":"k","headers":{"h":"v"}}`,
		`{"op":"publish","id":3,"topic":"a","data_base64":"AAEC"}`,
		`{"op":"presence","id":4,"topic":"a"}`,
		`{"op":"fetch","id":6,"group":"g","member":"w1","limit":10,"wait":"30s"}`,
		`{"op":"fetch","id":7,"group":"g","wait":2.5}`,
		`{"op":"ack","id":8,"group":"g","member":"w1","ids":["a","b"]}`,
		`{"op":"nak","id":9,"group":"g","ids":["a"],"delay":"1s"}`,
		`{"op":"in_progress","id":10,"group":"g","ids":["a"]}`,
		`{"op":"term","id":11,"group":"g","ids":["a"],"reason":"bad"}`,
		`{"id":5}`, `not json`, `{"op":"subscribe","id":{},"topics":["a"]}`, `[1]`, `{"id":"\u00e9","op":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		cmd, err := parseCommand(msg)
		if err != nil {
			var ce *commandError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a commandError", err)
			}
			frame := errorReply(ce.id, ce.err)
			var m map[string]any
			payload := frame[len(frame)-payloadLen(frame):]
			if err := json.Unmarshal(payload, &m); err != nil || m["op"] != "error" || m["code"] == "" {
				t.Fatalf("error frame %q: %v", payload, err)
			}
			if ce.id != nil && !json.Valid(ce.id) {
				t.Fatalf("id %q is not JSON", ce.id)
			}
			return
		}
		switch cmd.Op {
		case opSubscribe, opUnsubscribe, opPublish, opPresence, opRefresh:
		case opFetch, opAck, opNak, opInProgress, opTerm:
			if cmd.Group == "" || cmd.Op != opFetch && len(cmd.IDs) == 0 {
				t.Fatalf("accepted %s without group or ids", cmd.Op)
			}
			for _, raw := range []json.RawMessage{cmd.Wait, cmd.Delay} {
				if d, err := parseDuration("d", raw); err == nil && d < 0 {
					t.Fatalf("duration %s parsed as %v", raw, d)
				}
			}
		default:
			t.Fatalf("accepted op %q", cmd.Op)
		}
		if !json.Valid(cmd.ID) {
			t.Fatalf("id %q is not JSON", cmd.ID)
		}
		if cmd.Op == opPublish {
			if rec, err := cmd.Record(); err == nil && rec.Data == nil {
				t.Fatal("a record without data")
			}
		}
	})
}

// payloadLen returns the payload length of the server frame b.
func payloadLen(b []byte) int {
	switch l := int(b[1] & 0x7f); l {
	case 126:
		return frameLen(b) - 4
	case 127:
		return frameLen(b) - 10
	default:
		return l
	}
}
