package grpcapi

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/reason"
)

// Publish and PublishStream are the ingest hot path: their requests are
// decoded and their answers encoded by hand (field numbers of
// api/herald/v1/herald.proto, checked against the generated code by
// publishwire_test.go), straight into event.Records, with every payload of
// a request in one allocation.
//
//	PublishRequest   1 topic, 2 events, 3 id
//	PublishEvent     1 topic, 2 data, 3 encoding, 4 type, 5 key, 6 headers
//	                 (map entry: 1 key, 2 value)
//	PublishResponse  1 acks, 2 id, 3 error
//	Ack              1 topic, 2 offset, 3 epoch, 4 duplicate, 5 cursor
//	Error            1 code, 2 message

// publishIn is a decoded PublishRequest.
type publishIn struct {
	topic  string
	id     uint64
	events []publishEvent
}

// publishEvent is one decoded PublishEvent.
type publishEvent struct {
	topic   string
	data    []byte
	enc     heraldv1.Encoding
	typ     string
	key     string
	headers map[string]string
}

// size is what in counts against PublishStream's lookahead: its payloads
// and a fixed overhead per event.
func (in *publishIn) size() int {
	n := 0
	for i := range in.events {
		n += len(in.events[i].data) + 64
	}
	return n
}

// reset empties in for reuse, keeping its storage.
func (in *publishIn) reset() {
	clear(in.events)
	in.topic, in.id, in.events = "", 0, in.events[:0]
}

// errMalformed reports a message that is not a valid PublishRequest.
func errMalformed(what string) error {
	return badRequest("malformed PublishRequest: %s", what)
}

// decodePublish decodes a PublishRequest from b into in (after reset).
// The payloads are copied into one new block, as the engine keeps them and
// b is gRPC's buffer.
func decodePublish(b []byte, in *publishIn) error {
	in.reset()
	// First pass: the size of all payloads, so they share one allocation.
	total := 0
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return errMalformed("bad tag")
		}
		rest = rest[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				return errMalformed("truncated event")
			}
			rest = rest[n:]
			if data, ok := bytesField(v, 2); ok {
				total += len(data)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, rest)
		if n < 0 {
			return errMalformed(fmt.Sprintf("bad field %d", num))
		}
		rest = rest[n:]
	}
	block := make([]byte, 0, total)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed("bad tag")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed("truncated topic")
			}
			in.topic, b = string(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed("truncated event")
			}
			b = b[n:]
			in.events = append(in.events, publishEvent{})
			if err := decodeEvent(v, &in.events[len(in.events)-1], &block); err != nil {
				return err
			}
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed("truncated id")
			}
			in.id, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errMalformed(fmt.Sprintf("bad field %d", num))
			}
			b = b[n:]
		}
	}
	return nil
}

// decodeEvent decodes a PublishEvent, copying its payload into block.
func decodeEvent(b []byte, e *publishEvent, block *[]byte) error {
	hasData := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed("bad tag in an event")
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 6 && num != 3 {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed("truncated field of an event")
			}
			b = b[n:]
			switch num {
			case 1:
				e.topic = string(v)
			case 2:
				start := len(*block)
				*block = append(*block, v...)
				e.data = (*block)[start:len(*block):len(*block)]
				hasData = true
			case 4:
				e.typ = string(v)
			case 5:
				e.key = string(v)
			case 6:
				k, _ := bytesField(v, 1)
				val, _ := bytesField(v, 2)
				if e.headers == nil {
					e.headers = make(map[string]string)
				}
				e.headers[string(k)] = string(val)
			}
			continue
		}
		if num == 3 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed("truncated encoding")
			}
			e.enc, b = heraldv1.Encoding(int32(v)), b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errMalformed(fmt.Sprintf("bad field %d of an event", num))
		}
		b = b[n:]
	}
	if !hasData {
		e.data = []byte{}
	}
	return nil
}

// bytesField returns the last length-delimited field num of message m.
func bytesField(m []byte, num protowire.Number) ([]byte, bool) {
	var out []byte
	found := false
	for len(m) > 0 {
		got, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return out, found
		}
		m = m[n:]
		if got == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(m)
			if n < 0 {
				return out, found
			}
			out, found, m = v, true, m[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(got, typ, m)
		if n < 0 {
			return out, found
		}
		m = m[n:]
	}
	return out, found
}

// fromProto converts a generated PublishRequest (a Connect command).
func fromProto(req *heraldv1.PublishRequest) *publishIn {
	in := &publishIn{topic: req.Topic, id: req.Id, events: make([]publishEvent, len(req.Events))}
	for i, e := range req.Events {
		data := e.Data
		if data == nil {
			data = []byte{}
		}
		in.events[i] = publishEvent{topic: e.Topic, data: data, enc: e.Encoding, typ: e.Type, key: e.Key, headers: e.Headers}
	}
	return in
}

// publishOut is the answer to a publishIn: the acks in the order of its
// events, and each ack's topic.
type publishOut struct {
	topics []string
	acks   []event.Ack
}

// ackSize is the size of one Ack message.
func ackSize(topic string, a event.Ack, cursorLen int) int {
	n := fieldSize(len(topic)) + fieldSize(epochLen) + fieldSize(cursorLen)
	if a.Offset != 0 {
		n += 1 + protowire.SizeVarint(a.Offset)
	}
	if a.Duplicate {
		n += 2
	}
	return n
}

// appendPublishResponse appends out's PublishResponse with id. scratch
// holds the cursors while they are measured.
func appendPublishResponse(b []byte, out *publishOut, id uint64, scratch []byte) ([]byte, []byte) {
	for i, a := range out.acks {
		t := out.topics[i]
		scratch = cursor.AppendSingle(scratch[:0], t, a.Position)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ackSize(t, a, len(scratch))))
		b = appendString(b, 1, t)
		if a.Offset != 0 {
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, a.Offset)
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, epochLen)
		b = a.Epoch.Append(b)
		if a.Duplicate {
			b = protowire.AppendTag(b, 4, protowire.VarintType)
			b = protowire.AppendVarint(b, 1)
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, scratch)
	}
	if id != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, id)
	}
	return b, scratch
}

// publishResponseSize bounds appendPublishResponse's output.
func publishResponseSize(out *publishOut) int {
	n := 11
	for i := range out.acks {
		// A cursor holds the topic and two varints, base64: at most
		// (1+2+len+20)·4/3+1 bytes.
		t := out.topics[i]
		n += 4 + ackSize(t, out.acks[i], (23+len(t))*4/3+1)
	}
	return n
}

// appendPublishError appends a PublishResponse refusing request id.
func appendPublishError(b []byte, id uint64, code reason.Code, msg string) []byte {
	if id != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, id)
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(fieldSize(len(code))+fieldSize(len(msg))))
	b = appendString(b, 1, string(code))
	return appendString(b, 2, msg)
}

// toProto returns out as a generated PublishResponse (a Connect reply).
func (out *publishOut) toProto(id uint64) *heraldv1.PublishResponse {
	resp := &heraldv1.PublishResponse{Id: id, Acks: make([]*heraldv1.Ack, len(out.acks))}
	for i, a := range out.acks {
		t := out.topics[i]
		resp.Acks[i] = &heraldv1.Ack{
			Topic: t, Offset: a.Offset, Epoch: a.Epoch.String(), Duplicate: a.Duplicate,
			Cursor: string(cursor.AppendSingle(nil, t, a.Position)),
		}
	}
	return resp
}
