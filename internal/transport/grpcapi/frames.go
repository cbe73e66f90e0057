package grpcapi

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// The messages on the delivery path are encoded by hand, with the field
// numbers of api/herald/v1/herald.proto (frames_test.go decodes them with
// the generated code and compares). An event's Event message is encoded
// once and cached on the event (event.FrameGRPCSolo), so a delivery to a
// thousand streams copies the same bytes a thousand times and marshals
// nothing.
//
// Field numbers used here:
//
//	Event            1 topic, 2 offset, 3 epoch, 4 time (Timestamp: 1 seconds,
//	                 2 nanos), 5 type, 6 encoding, 7 data, 8 headers (map entry:
//	                 1 key, 2 value)
//	Position         1 epoch, 2 offset
//	Gap              1 topic, 2 reason, 3 requested, 4 resumed, 5 earliest
//	Delivery         1 gaps, 2 events, 3 cursor
//	ConnectResponse  1 id, 2 delivery
const (
	fieldEventTopic    = 1
	fieldEventOffset   = 2
	fieldEventEpoch    = 3
	fieldEventTime     = 4
	fieldEventType     = 5
	fieldEventEncoding = 6
	fieldEventData     = 7
	fieldEventHeaders  = 8

	fieldTimestampSeconds = 1
	fieldTimestampNanos   = 2

	fieldPositionEpoch  = 1
	fieldPositionOffset = 2

	fieldGapTopic     = 1
	fieldGapReason    = 2
	fieldGapRequested = 3
	fieldGapResumed   = 4
	fieldGapEarliest  = 5

	fieldDeliveryGaps   = 1
	fieldDeliveryEvents = 2
	fieldDeliveryCursor = 3

	fieldConnectID       = 1
	fieldConnectDelivery = 2
)

// epochLen is the length of an epoch's wire form (16 hex digits).
const epochLen = 16

// soloFrame returns the Delivery of ev alone on a one-topic Subscribe
// stream: the event and the cursor after it, the same bytes for every such
// stream, so the stream sends them as they are (the common case of a
// fan-out). It is encoded once and cached on the event; the event's Event
// message is a slice of it (eventFrame).
func soloFrame(ev *event.Event) []byte { return ev.Frame(event.FrameGRPCSolo, encodeSolo) }

// eventFrame returns ev's Event message: the events field of its soloFrame.
func eventFrame(ev *event.Event) []byte {
	f := soloFrame(ev)
	_, _, n := protowire.ConsumeTag(f)
	m, _ := protowire.ConsumeBytes(f[n:])
	return m
}

// encodeSolo encodes ev's soloFrame.
func encodeSolo(ev *event.Event) []byte {
	size := 64 + len(ev.Topic) + len(ev.Type) + len(ev.Data) + headersSize(ev.Headers)
	msg := appendEvent(make([]byte, 0, size), ev)
	token := cursor.AppendSingle(make([]byte, 0, 48+2*len(ev.Topic)), ev.Topic, ev.Position())
	b := make([]byte, 0, fieldSize(len(msg))+fieldSize(len(token)))
	b = protowire.AppendTag(b, fieldDeliveryEvents, protowire.BytesType)
	b = protowire.AppendBytes(b, msg)
	b = protowire.AppendTag(b, fieldDeliveryCursor, protowire.BytesType)
	return protowire.AppendBytes(b, token)
}

// appendEvent appends ev's Event message (without a length prefix).
func appendEvent(b []byte, ev *event.Event) []byte {
	b = appendString(b, fieldEventTopic, ev.Topic)
	if ev.Offset != 0 {
		b = protowire.AppendTag(b, fieldEventOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, ev.Offset)
	}
	b = protowire.AppendTag(b, fieldEventEpoch, protowire.BytesType)
	b = protowire.AppendVarint(b, epochLen)
	b = ev.Epoch.Append(b)
	secs, nanos := ev.Time/1000, (ev.Time%1000)*1e6
	if nanos < 0 {
		secs, nanos = secs-1, nanos+1e9
	}
	b = protowire.AppendTag(b, fieldEventTime, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(secs, nanos)))
	if secs != 0 {
		b = protowire.AppendTag(b, fieldTimestampSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(secs))
	}
	if nanos != 0 {
		b = protowire.AppendTag(b, fieldTimestampNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nanos))
	}
	if ev.Type != "" {
		b = appendString(b, fieldEventType, ev.Type)
	}
	b = protowire.AppendTag(b, fieldEventEncoding, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(wireEncoding(ev.Encoding)))
	if len(ev.Data) > 0 {
		b = protowire.AppendTag(b, fieldEventData, protowire.BytesType)
		b = protowire.AppendBytes(b, ev.Data)
	}
	if len(ev.Headers) > 0 {
		keys := make([]string, 0, len(ev.Headers))
		for k := range ev.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys) // one canonical encoding
		for _, k := range keys {
			v := ev.Headers[k]
			b = protowire.AppendTag(b, fieldEventHeaders, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(mapEntrySize(k, v)))
			b = appendString(b, 1, k)
			b = appendString(b, 2, v)
		}
	}
	return b
}

// wireEncoding is the proto Encoding value of e.
func wireEncoding(e event.Encoding) int {
	switch e {
	case event.EncodingJSON:
		return 1
	case event.EncodingText:
		return 2
	default:
		return 3
	}
}

func timestampSize(secs, nanos int64) int {
	n := 0
	if secs != 0 {
		n += 1 + protowire.SizeVarint(uint64(secs))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(nanos))
	}
	return n
}

// mapEntrySize is the size of a map<string,string> entry message.
func mapEntrySize(k, v string) int {
	return 1 + protowire.SizeBytes(len(k)) + 1 + protowire.SizeBytes(len(v))
}

func headersSize(h map[string]string) int {
	n := 0
	for k, v := range h {
		n += 2 + protowire.SizeBytes(mapEntrySize(k, v))
	}
	return n
}

// appendString appends a string field (always, even when empty).
func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// fieldSize is the encoded size of a length-delimited field of n bytes
// with a field number below 16.
func fieldSize(n int) int { return 1 + protowire.SizeBytes(n) }

// positionSize is the size of a Position message.
func positionSize(p event.Position) int {
	n := fieldSize(epochLen)
	if p.Offset != 0 {
		n += 1 + protowire.SizeVarint(p.Offset)
	}
	return n
}

func appendPosition(b []byte, num protowire.Number, p event.Position) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(positionSize(p)))
	b = protowire.AppendTag(b, fieldPositionEpoch, protowire.BytesType)
	b = protowire.AppendVarint(b, epochLen)
	b = p.Epoch.Append(b)
	if p.Offset != 0 {
		b = protowire.AppendTag(b, fieldPositionOffset, protowire.VarintType)
		b = protowire.AppendVarint(b, p.Offset)
	}
	return b
}

// gapReason is the proto GapReason value of r.
func gapReason(r hub.GapReason) uint64 {
	switch r {
	case hub.GapTrimmed:
		return 1
	case hub.GapEpoch:
		return 2
	default:
		return 3
	}
}

// gapSize is the size of g's Gap message.
func gapSize(g *hub.Gap) int {
	n := fieldSize(len(g.Topic)) + 2 +
		fieldSize(positionSize(g.Requested)) + fieldSize(positionSize(g.Resumed))
	if g.Earliest != 0 {
		n += 1 + protowire.SizeVarint(g.Earliest)
	}
	return n
}

// appendGap appends g's Gap message (without a length prefix).
func appendGap(b []byte, g *hub.Gap) []byte {
	b = appendString(b, fieldGapTopic, g.Topic)
	b = protowire.AppendTag(b, fieldGapReason, protowire.VarintType)
	b = protowire.AppendVarint(b, gapReason(g.Reason))
	b = appendPosition(b, fieldGapRequested, g.Requested)
	b = appendPosition(b, fieldGapResumed, g.Resumed)
	if g.Earliest != 0 {
		b = protowire.AppendTag(b, fieldGapEarliest, protowire.VarintType)
		b = protowire.AppendVarint(b, g.Earliest)
	}
	return b
}

// delivery is one Delivery message being assembled by a stream's writer:
// the items it carries, and its size. Gaps go first on the wire, so a
// gap that follows events of the delivery starts a new one (an event
// after a gap of its topic must not come before it).
type delivery struct {
	items []hub.Item // gaps and events, in queue order
	size  int        // encoded gaps and events fields, without the cursor
	evs   int        // events among items
}

func (d *delivery) reset() {
	clear(d.items)
	d.items, d.size, d.evs = d.items[:0], 0, 0
}

// fits reports whether it can join d without d going over limit bytes; an
// empty delivery takes anything. A gap does not fit after events.
func (d *delivery) fits(it hub.Item, limit int) bool {
	if len(d.items) == 0 {
		return true
	}
	if it.Gap != nil && d.evs > 0 {
		return false
	}
	return d.size+itemSize(it) <= limit
}

func (d *delivery) add(it hub.Item) {
	d.items = append(d.items, it)
	d.size += itemSize(it)
	if it.Event != nil {
		d.evs++
	}
}

// itemSize is the encoded size of an item's field in a Delivery.
func itemSize(it hub.Item) int {
	if it.Event != nil {
		return fieldSize(len(eventFrame(it.Event)))
	}
	return fieldSize(gapSize(it.Gap))
}

// appendDelivery appends d's Delivery message, its cursor field taken from
// token. For a Connect stream (conn) it is wrapped in a ConnectResponse.
func appendDelivery(b []byte, d *delivery, token []byte, conn bool) []byte {
	size := d.size + fieldSize(len(token))
	if conn {
		b = protowire.AppendTag(b, fieldConnectDelivery, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
	}
	for _, it := range d.items {
		if g := it.Gap; g != nil {
			b = protowire.AppendTag(b, fieldDeliveryGaps, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(gapSize(g)))
			b = appendGap(b, g)
		}
	}
	for _, it := range d.items {
		if ev := it.Event; ev != nil {
			b = protowire.AppendTag(b, fieldDeliveryEvents, protowire.BytesType)
			b = protowire.AppendBytes(b, eventFrame(ev))
		}
	}
	b = protowire.AppendTag(b, fieldDeliveryCursor, protowire.BytesType)
	return protowire.AppendBytes(b, token)
}

// deliverySize is the size of appendDelivery's output.
func deliverySize(d *delivery, token []byte, conn bool) int {
	size := d.size + fieldSize(len(token))
	if conn {
		return fieldSize(size)
	}
	return size
}

// advance moves cur past d's items.
func advance(cur *cursor.Cursor, d *delivery) {
	for _, it := range d.items {
		if ev := it.Event; ev != nil {
			cur.Set(ev.Topic, ev.Position())
		} else {
			cur.Set(it.Gap.Topic, it.Gap.Resumed)
		}
	}
}
