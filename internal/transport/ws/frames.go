package ws

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// Close codes are the reason table's (package reason, docs/protocol.md
// "Close codes"): 1001 shutting_down, 1002 protocol_error, 1007
// invalid_payload, 1009 too_large, 1011 internal_error, 1013 unavailable,
// 4000 idle_timeout, 4001 token_expired, 4008 slow_consumer, 4029
// limit_reached. The close reason starts with the code's name, then ": "
// and a sentence for people.
const (
	closeNormal         = 1000 // the client closed; echoed
	maxCloseReasonBytes = 123
)

// closeError ends a connection with a close code.
type closeError struct {
	code uint16
	text string // "name: explanation"
}

func (e *closeError) Error() string { return e.text }

// closeFor returns the close of why, with detail (a sentence for people)
// after the code's name.
func closeFor(why reason.Code, detail string) *closeError {
	return &closeError{code: reason.MustOf(why).WSClose, text: string(why) + ": " + detail}
}

func protocolError(what string) error { return closeFor(reason.ProtocolError, what) }

func tooLarge(n int64, limit int) error {
	return closeFor(reason.TooLarge, "a message of "+strconv.FormatInt(n, 10)+
		" bytes, over the limit of "+strconv.Itoa(limit)+" (ws.max_message_bytes)")
}

// appendHeader appends a server frame header (FIN set, unmasked).
func appendHeader(b []byte, op byte, rsv1 bool, n int) []byte {
	b0 := 0x80 | op
	if rsv1 {
		b0 |= 0x40
	}
	switch {
	case n < 126:
		return append(b, b0, byte(n))
	case n <= 0xffff:
		return append(b, b0, 126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

// headerRoom is what appendFrame reserves for a header before it knows the
// payload's length.
const headerRoom = 10

// appendFrame appends a text frame whose payload build appends. The header
// is written once the length is known; the payload is moved down over the
// unused part of the reserved room.
func appendFrame(b []byte, build func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, headerRoom)...)
	b = build(b)
	n := len(b) - start - headerRoom
	hdr := appendHeader(b[start:start], opText, false, n) // writes into the room
	hl := len(hdr)
	copy(b[start+hl:], b[start+headerRoom:])
	return b[:start+hl+n]
}

// frameLen returns the length of the server frame at the start of b,
// header included.
func frameLen(b []byte) int {
	switch l := int(b[1] & 0x7f); l {
	case 126:
		return 4 + int(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		return 10 + int(binary.BigEndian.Uint64(b[2:10]))
	default:
		return 2 + l
	}
}

// frameEnd returns where the frame holding byte n of b ends, given that
// b[:skip] is the end of a frame begun before b and frames start at skip.
// It returns n when n is at a frame boundary.
func frameEnd(b []byte, skip, n int) int {
	if n < skip {
		return skip
	}
	for at := skip; at < len(b); {
		if n == at {
			return n
		}
		end := at + frameLen(b[at:])
		if n < end {
			return end
		}
		at = end
	}
	return n
}

// closeFrame appends a close frame with code and reason, the reason cut to
// what a control frame holds (at a rune boundary).
func appendClose(b []byte, code uint16, reason string) []byte {
	if len(reason) > maxCloseReasonBytes {
		cut := maxCloseReasonBytes
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	b = appendHeader(b, opClose, false, 2+len(reason))
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, reason...)
}

// pingFrame is the server's ping; a client answers with a pong.
var pingFrame = []byte{0x80 | opPing, 0}

// encodeEventFrame builds an event's shared WebSocket message:
// {"op":"event", the event's JSON fields, "cursor":"<one-topic cursor>"}.
// The cursor is that of the event's topic alone, so the frame is the same
// for every subscriber.
func encodeEventFrame(ev *event.Event) []byte {
	return appendEventFrame(make([]byte, 0, 2*headerRoom+len(ev.Data)+len(ev.Topic)*2+256), ev, false)
}

// appendEventFrame appends the event frame, compressed when z is set (the
// payload is compressed on its own, so that every connection can share it).
func appendEventFrame(b []byte, ev *event.Event, z bool) []byte {
	js := wire.EventJSON(ev) // {"topic":…}, cached on the event
	payload := make([]byte, 0, len(js)+len(ev.Topic)+48)
	payload = append(payload, `{"op":"event",`...)
	payload = append(payload, js[1:len(js)-1]...)
	payload = append(payload, `,"cursor":"`...)
	payload = cursor.AppendSingle(payload, ev.Topic, ev.Position())
	payload = append(payload, `"}`...)
	if z {
		if c := compress(payload); len(c) < len(payload) {
			return append(appendHeader(b, opText, true, len(c)), c...)
		}
	}
	return append(appendHeader(b, opText, false, len(payload)), payload...)
}

// encodeEventFrameDeflate is encodeEventFrame for connections that
// negotiated permessage-deflate.
func encodeEventFrameDeflate(ev *event.Event) []byte {
	return appendEventFrame(nil, ev, true)
}

// appendGapFrame appends a gap signal: the gap's JSON fields plus the
// one-topic cursor at the position delivery resumes after.
func appendGapFrame(b []byte, g *hub.Gap) []byte {
	return appendFrame(b, func(b []byte) []byte {
		b = append(b, `{"op":"gap",`...)
		b = appendInner(b, func(b []byte) []byte { return wire.AppendGap(b, g) })
		b = append(b, `,"cursor":"`...)
		b = cursor.AppendSingle(b, g.Topic, g.Resumed)
		return append(b, `"}`...)
	})
}

// appendPresenceFrame appends a join or leave notice.
func appendPresenceFrame(b []byte, p *hub.PresenceChange) []byte {
	return appendFrame(b, func(b []byte) []byte {
		if p.Leave {
			b = append(b, `{"op":"leave","topic":`...)
		} else {
			b = append(b, `{"op":"join","topic":`...)
		}
		b = wire.AppendString(b, p.Topic)
		b = append(b, ',')
		b = wire.AppendMember(b, &p.Member)
		return append(b, '}')
	})
}

// appendInner appends the fields of the JSON object obj appends, without
// its braces.
func appendInner(b []byte, obj func([]byte) []byte) []byte {
	start := len(b)
	b = obj(b)
	copy(b[start:], b[start+1:len(b)-1])
	return b[:len(b)-2]
}

// reply builds a reply frame: {"op":op,"id":id, fields…}.
func reply(op string, id []byte, fields func([]byte) []byte) []byte {
	return appendFrame(make([]byte, 0, 128), func(b []byte) []byte {
		b = append(b, `{"op":"`...)
		b = append(b, op...)
		b = append(b, '"')
		if len(id) > 0 {
			b = append(b, `,"id":`...)
			b = append(b, id...)
		}
		if fields != nil {
			b = fields(b)
		}
		return append(b, '}')
	})
}

// errorReply builds an error frame with the API's error code for err.
func errorReply(id []byte, err error) []byte {
	r, msg := wire.Describe(err)
	return errorFrame(id, r.Code, msg)
}

// errorFrame builds an error frame.
func errorFrame(id []byte, code reason.Code, msg string) []byte {
	return reply("error", id, func(b []byte) []byte {
		b = append(b, `,"code":"`...)
		b = append(b, code...)
		b = append(b, `","message":`...)
		return wire.AppendString(b, msg)
	})
}

// appendPosition appends "epoch":"…","offset":N.
func appendPosition(b []byte, p event.Position) []byte {
	b = append(b, `"epoch":"`...)
	b = p.Epoch.Append(b)
	b = append(b, `","offset":`...)
	return strconv.AppendUint(b, p.Offset, 10)
}
