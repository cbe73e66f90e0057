package ws

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/reason"
)

// The WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload of a control frame.
const maxControlPayload = 125

// frameReader turns the bytes a client sends into messages. It checks
// everything RFC 6455 asks a server to check (masking, reserved bits and
// opcodes, control frame rules, fragmentation, the message size limit) and
// fails with a *closeError naming the close code. Bytes of a frame that has
// not fully arrived are carried over to the next feed; a connection with
// nothing in flight holds no buffer.
//
// It is used by one goroutine at a time (the connection's reader).
type frameReader struct {
	limit   int  // largest message payload; static
	deflate bool // permessage-deflate was negotiated: RSV1 marks a compressed message; static

	in []byte // an incomplete frame carried over from the last feed

	// The message being assembled from fragments.
	frag       []byte
	fragOp     byte
	fragZ      bool // the message is compressed
	inFragment bool
}

// message is one complete message, or one control frame, from the client.
// Payload is valid only until the handler returns.
type message struct {
	op         byte
	payload    []byte
	compressed bool
}

// feed parses the frames in p, after whatever was carried over, and calls
// on for each complete message and each control frame, in order. It stops
// at the first violation (returned) or when on returns false. The payload
// bytes of p are unmasked in place.
func (r *frameReader) feed(p []byte, on func(message) bool) error {
	data := p
	if len(r.in) > 0 {
		r.in = append(r.in, p...)
		data = r.in
	}
	for len(data) > 0 {
		h, n, err := parseHeader(data, r.limit)
		if err != nil {
			return err
		}
		if n == 0 || len(data) < n+int(h.length) {
			break // wait for the rest
		}
		payload := data[n : n+int(h.length)]
		data = data[n+int(h.length):]
		if h.masked {
			ws.Cipher(payload, h.mask, 0)
		}
		m, ok, err := r.assemble(h, payload)
		if err != nil {
			return err
		}
		if ok && !on(m) {
			return nil
		}
	}
	r.keep(data)
	return nil
}

// keep carries data, the unparsed rest of the last feed, over to the next.
func (r *frameReader) keep(data []byte) {
	switch {
	case len(data) == 0:
		r.in = nil // an idle connection holds no buffer
	case len(r.in) > 0 && &data[len(data)-1] == &r.in[len(r.in)-1]:
		r.in = r.in[:copy(r.in, data)] // data is the tail of r.in
	default:
		r.in = append(make([]byte, 0, max(len(data), 512)), data...)
	}
}

// header is a parsed frame header.
type header struct {
	fin    bool
	rsv    byte // RSV1..3 as bits 4..6 of the first byte, shifted down
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

// parseHeader parses the frame header at the start of b. It returns n == 0
// when b does not hold the whole header yet, and an error for a header
// that breaks the protocol or announces more than limit bytes.
func parseHeader(b []byte, limit int) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return h, 0, protocolError("frame length has its most significant bit set")
		}
		h.length = int64(v)
		n = 10
	default:
		h.length = int64(l)
	}
	switch {
	case h.op >= 3 && h.op <= 7, h.op >= 0xB:
		return h, 0, protocolError("reserved opcode")
	case !h.masked:
		return h, 0, protocolError("frames from a client must be masked")
	case h.op >= opClose && (!h.fin || h.length > maxControlPayload):
		return h, 0, protocolError("control frames must be final and at most 125 bytes")
	case h.length > int64(limit):
		return h, 0, tooLarge(h.length, limit)
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.mask[:], b[n:n+4])
	return h, n + 4, nil
}

// assemble takes one frame and returns a complete message (ok) when the
// frame ends one, or a control frame. The payload of a message made of one
// frame is the frame's own bytes; fragments are copied together.
func (r *frameReader) assemble(h header, payload []byte) (message, bool, error) {
	rsv1 := h.rsv&0x4 != 0
	if h.rsv&0x3 != 0 || (rsv1 && !r.deflate) {
		return message{}, false, protocolError("reserved bits set that no extension defines")
	}
	switch h.op {
	case opClose, opPing, opPong:
		if rsv1 {
			return message{}, false, protocolError("a control frame must not be compressed")
		}
		if h.op == opClose {
			if err := checkClosePayload(payload); err != nil {
				return message{}, false, err
			}
		}
		return message{op: h.op, payload: payload}, true, nil
	case opText, opBinary:
		if r.inFragment {
			return message{}, false, protocolError("a new message started before the fragmented one ended")
		}
		if h.fin {
			return message{op: h.op, payload: payload, compressed: rsv1}, true, nil
		}
		r.inFragment, r.fragOp, r.fragZ = true, h.op, rsv1
		r.frag = append(r.frag[:0], payload...)
		return message{}, false, nil
	default: // continuation
		if !r.inFragment {
			return message{}, false, protocolError("a continuation frame without a message to continue")
		}
		if rsv1 {
			return message{}, false, protocolError("only the first frame of a message may set RSV1")
		}
		if len(r.frag)+len(payload) > r.limit {
			return message{}, false, tooLarge(int64(len(r.frag)+len(payload)), r.limit)
		}
		r.frag = append(r.frag, payload...)
		if !h.fin {
			return message{}, false, nil
		}
		m := message{op: r.fragOp, payload: r.frag, compressed: r.fragZ}
		r.inFragment = false
		r.frag = r.frag[:0]
		if cap(r.frag) > 64<<10 {
			r.frag = nil // do not keep a large message's buffer
		}
		return m, true, nil
	}
}

// checkClosePayload checks a close frame's body: empty, or a valid status
// code followed by a UTF-8 reason.
func checkClosePayload(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return protocolError("a close frame body of one byte")
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if err := ws.CheckCloseFrameData(code, ""); err != nil || code >= 5000 {
		return protocolError("a close frame with an invalid status code")
	}
	if !utf8.Valid(p[2:]) {
		return closeFor(reason.InvalidPayload, "the close reason is not valid UTF-8")
	}
	return nil
}
