package sse

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/event"
)

// dispatched is an event as an EventSource hands it to a page.
type dispatched struct {
	typ, data, lastEventID string
}

// parseEventStream interprets b as the WHATWG HTML "event stream
// interpretation" does: lines end at CRLF, LF or CR; a blank line
// dispatches; a block left unfinished at the end is discarded.
func parseEventStream(b []byte) []dispatched {
	var (
		out               []dispatched
		data, typ, lastID string
		haveData          bool
		s                 = string(b)
	)
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return out // an unterminated line: discarded with its block
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		switch {
		case line == "":
			if haveData {
				out = append(out, dispatched{typ: cmpOr(typ, "message"), data: strings.TrimSuffix(data, "\n"), lastEventID: lastID})
			}
			data, typ, haveData = "", "", false
			continue
		case line[0] == ':':
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
			haveData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				lastID = value
			}
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// normalizeBreaks turns CRLF and CR into LF, as an EventSource does.
func normalizeBreaks(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func TestEncodeFrame(t *testing.T) {
	tests := []struct {
		name string
		rec  event.Record
		want string
	}{
		{"json", event.Record{Data: []byte(`{"a":1}`)}, "data: {\"a\":1}\n\n"},
		{"typed", event.Record{Type: "note", Data: []byte(`1`)}, "event: note\ndata: 1\n\n"},
		{"LF", event.Record{Data: []byte("a\nb"), Encoding: event.EncodingText}, "data: a\ndata: b\n\n"},
		{"CR", event.Record{Data: []byte("a\rb"), Encoding: event.EncodingText}, "data: a\ndata: b\n\n"},
		{"CRLF", event.Record{Data: []byte("a\r\nb"), Encoding: event.EncodingText}, "data: a\ndata: b\n\n"},
		{"CR CRLF", event.Record{Data: []byte("a\r\r\nb"), Encoding: event.EncodingText}, "data: a\ndata: \ndata: b\n\n"},
		{"trailing LF", event.Record{Data: []byte("a\n"), Encoding: event.EncodingText}, "data: a\ndata: \n\n"},
		{"empty", event.Record{Data: []byte{}, Encoding: event.EncodingText}, "data: \n\n"},
		{"binary", event.Record{Data: []byte("\n\r\xff"), Encoding: event.EncodingBinary}, "data: Cg3/\n\n"},
		{"empty binary", event.Record{Encoding: event.EncodingBinary}, "data: \n\n"},
	}
	for _, tt := range tests {
		ev := &event.Event{Topic: "a", Offset: 1, Record: tt.rec}
		if got := string(encodeFrame(ev)); got != tt.want {
			t.Errorf("%s: encodeFrame = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzEncodeFrame checks that any payload, framed, is what a WHATWG
// parser dispatches: one event, with the type, the id, and the payload
// (base64 for binary) with its line breaks normalised to LF.
func FuzzEncodeFrame(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzEncodeFrame.
	f.Add([]byte("a\r\nb\rc\nd"), "note", uint8(event.EncodingText))
	f.Add([]byte("{\n}"), "", uint8(event.EncodingJSON))
	f.Add([]byte("\x00\xff\r"), "", uint8(event.EncodingBinary))
	f.Fuzz(func(t *testing.T, payload []byte, typ string, enc uint8) {
		if strings.ContainsAny(typ, "\r\n") {
			return // refused at publish: types are printable
		}
		ev := &event.Event{Topic: "a", Offset: 1, Record: event.Record{Type: typ, Data: payload, Encoding: event.Encoding(enc % 3)}}
		frame := encodeFrame(ev)
		const id = "AQFhAQE"
		stream := append([]byte("retry: 2000\nid: "+id+"\n\nid: "+id+"\n"), frame...)
		got := parseEventStream(stream)
		want := normalizeBreaks(string(payload))
		if ev.Encoding == event.EncodingBinary {
			want = base64.StdEncoding.EncodeToString(payload)
		}
		if len(got) != 1 {
			t.Fatalf("frame %q dispatches %d events: %+v", frame, len(got), got)
		}
		if got[0].data != want || got[0].typ != cmpOr(typ, "message") || got[0].lastEventID != id {
			t.Fatalf("frame %q dispatches %+v; want data %q type %q", frame, got[0], want, typ)
		}
		// A frame cut short is never dispatched.
		if cut := parseEventStream(stream[:len(stream)-1]); len(cut) != 0 {
			t.Fatalf("a frame without its last byte dispatched %+v", cut)
		}
	})
}

func TestParseEventStream(t *testing.T) {
	// The parser the fuzz target trusts, against the spec's examples.
	got := parseEventStream([]byte("data: YHOO\ndata: +2\ndata: 10\n\n: c\r\nevent: add\r\ndata:73857293\r\rdata\nid: 7\n\ndata:  x\ndata\n\nid\ndata: tail"))
	want := []dispatched{
		{"message", "YHOO\n+2\n10", ""},
		{"add", "73857293", ""},
		{"message", "", "7"},
		{"message", " x\n", "7"}, // the last event id persists
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFrameEnd(t *testing.T) {
	b := []byte("id: 1\ndata: a\n\nid: 2\ndata: bb\n\n: hb\n\n")
	rest := func(skip, n int) string { return string(b[n:frameEnd(b, skip, n)]) }
	tests := []struct {
		n    int
		want string
	}{
		{0, ""},
		{len(b), ""},
		{3, " 1\ndata: a\n\n"},
		{13, "\n\n"},
		{14, "\n"},
		{15, ""}, // a boundary
		{16, "d: 2\ndata: bb\n\n"},
		{31, ""}, // the boundary before the heartbeat
		{32, " hb\n\n"},
	}
	for _, tt := range tests {
		if got := rest(0, tt.n); got != tt.want {
			t.Errorf("cut at %d leaves %q, want %q", tt.n, got, tt.want)
		}
	}
	// Wherever a write stops, what was sent and the rest end together at
	// a frame boundary.
	for n := 1; n < len(b); n++ {
		whole := b[:frameEnd(b, 0, n)]
		if !bytes.HasSuffix(whole, []byte("\n\n")) {
			t.Errorf("cut at %d: %q", n, whole)
		}
	}
	// b starting inside a frame cut before (skip): a cut before skip ends
	// at skip, even a cut at 0.
	tail := []byte("a\n\nid: 2\ndata: bb\n\n")
	for _, tt := range []struct{ skip, n, want int }{
		{3, 0, 3}, {3, 1, 3}, {3, 3, 3}, {3, 4, len(tail)}, {3, len(tail), len(tail)},
	} {
		if got := frameEnd(tail, tt.skip, tt.n); got != tt.want {
			t.Errorf("frameEnd(skip %d, n %d) = %d, want %d", tt.skip, tt.n, got, tt.want)
		}
	}
}
