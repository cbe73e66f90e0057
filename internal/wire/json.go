// Package wire holds the JSON forms of herald's model shared by the
// text-based transports (pull, long polling, SSE signals, WebSocket), and
// the mapping of errors to HTTP statuses and stable error codes. The forms
// are written by hand with append-style functions: they sit on the hot path
// and must not use reflection.
package wire

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// EventJSON returns ev's JSON object, encoded once per event and cached on it.
func EventJSON(ev *event.Event) []byte { return ev.Frame(event.FrameJSON, encodeEvent) }

func encodeEvent(ev *event.Event) []byte {
	return AppendEvent(make([]byte, 0, 160+len(ev.Data)+len(ev.Topic)), ev)
}

// AppendEvent appends ev's JSON object (docs/api.md, "Events on the wire").
func AppendEvent(b []byte, ev *event.Event) []byte {
	b = append(b, `{"topic":`...)
	b = AppendString(b, ev.Topic)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, ev.Offset, 10)
	b = append(b, `,"epoch":"`...)
	b = ev.Epoch.Append(b)
	b = append(b, `","time":"`...)
	b = AppendTime(b, ev.Time)
	b = append(b, '"')
	if ev.Type != "" {
		b = append(b, `,"type":`...)
		b = AppendString(b, ev.Type)
	}
	b = append(b, `,"encoding":"`...)
	b = append(b, ev.Encoding.String()...)
	b = append(b, `","data":`...)
	b = AppendData(b, &ev.Record)
	if len(ev.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		first := true
		for k, v := range ev.Headers {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = AppendString(b, k)
			b = append(b, ':')
			b = AppendString(b, v)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendData appends a record's payload as a JSON value: JSON as is, text
// as a string, bytes as a base64 string.
func AppendData(b []byte, r *event.Record) []byte {
	switch r.Encoding {
	case event.EncodingJSON:
		return append(b, r.Data...)
	case event.EncodingText:
		return AppendString(b, string(r.Data))
	default:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, r.Data)
		return append(b, '"')
	}
}

// AppendTime appends unix milliseconds as RFC 3339 UTC with milliseconds.
func AppendTime(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
}

// AppendPosition appends {"epoch":"…","offset":N}.
func AppendPosition(b []byte, p event.Position) []byte {
	b = append(b, `{"epoch":"`...)
	b = p.Epoch.Append(b)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, p.Offset, 10)
	return append(b, '}')
}

// AppendGap appends a gap signal's JSON object.
func AppendGap(b []byte, g *hub.Gap) []byte {
	b = append(b, `{"topic":`...)
	b = AppendString(b, g.Topic)
	b = append(b, `,"reason":"`...)
	b = append(b, g.Reason.String()...)
	b = append(b, `","requested":`...)
	b = AppendPosition(b, g.Requested)
	b = append(b, `,"resumed":`...)
	b = AppendPosition(b, g.Resumed)
	b = append(b, `,"earliest":`...)
	b = strconv.AppendUint(b, g.Earliest, 10)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is also valid JavaScript.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
