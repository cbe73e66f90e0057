package client

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"time"
)

// This file is an event-stream parser following the WHATWG HTML standard,
// "Server-sent events", section "Parsing an event stream"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html):
//
//	stream  = [ BOM ] *event
//	event   = *( comment / field ) end-of-line
//	comment = ":" *any-char end-of-line
//	field   = name [ ":" [ " " ] *any-char ] end-of-line
//	end-of-line = CRLF / LF / CR
//
// Fields: "event" sets the event type; "data" appends its value and a LF
// to the data buffer; "id" sets the last event ID (unless the value holds
// a NUL); "retry" sets the reconnection time in milliseconds when its value
// is ASCII digits only; other names are ignored. A blank line dispatches
// the event: the last event ID is committed, and when the data buffer is
// not empty its final LF is dropped and the event fires. A stream that ends
// in the middle of an event discards it. A line end may be split across
// reads (a CR at the end of one read, its LF at the start of the next).
// Unlike a browser, the parser keeps bytes that are not valid UTF-8 as they
// are instead of replacing them (herald's server sends only UTF-8).

// maxSSELine bounds one line and one event's data, so that a broken or
// hostile server cannot make the client buffer without limit. The largest
// payload a default server accepts (1 MiB) is 1.4 MiB in base64.
const maxSSELine = 16 << 20

// errSSETooLong is returned when a line or an event's data is over the limit.
var errSSETooLong = errors.New("event stream line or event over 16 MiB")

// sseFrame is one dispatch of an event stream: what a browser's
// EventSource would fire, and also the dispatches it would not fire (a
// frame without data lines), because their id still moves the last event ID.
type sseFrame struct {
	ID      string // the last event ID after this frame; it persists from earlier frames
	Event   string // the event field; "" when absent (a browser fires "message")
	Data    string // the data lines joined with "\n"
	HasData bool   // at least one data line: a browser fires the event
}

// sseParser reads frames from an event stream.
type sseParser struct {
	r   io.Reader
	max int // longest line and data; maxSSELine unless a test sets it

	buf     []byte
	start   int  // buf[start:end] is read and not yet parsed
	end     int  //
	scanned int  // bytes after start known to hold no line end
	skipLF  bool // the last line ended with CR: a LF right after belongs to it
	bomDone bool // the start of the stream was checked for a BOM
	err     error

	lastID string        // committed last event ID
	retry  time.Duration // the latest retry: value; 0 when none came

	// The frame being built.
	idBuf  string
	idSet  bool // an id field came since the last dispatch
	event  string
	data   []byte
	fields bool // a field line came since the last dispatch
}

func newSSEParser(r io.Reader) *sseParser {
	return &sseParser{r: r, max: maxSSELine, buf: make([]byte, 4096)}
}

// Retry returns the reconnection time last set by the stream, or 0.
func (p *sseParser) Retry() time.Duration { return p.retry }

// Next returns the next frame. It returns the reader's error (io.EOF for a
// clean end) once the stream ends; an incomplete last frame is discarded.
func (p *sseParser) Next() (sseFrame, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return sseFrame{}, err
		}
		if len(line) == 0 {
			if f, ok := p.dispatch(); ok {
				return f, nil
			}
			continue
		}
		if err := p.field(line); err != nil {
			return sseFrame{}, err
		}
	}
}

// field processes one non-blank line.
func (p *sseParser) field(line []byte) error {
	if line[0] == ':' {
		return nil // a comment
	}
	p.fields = true
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "event":
		p.event = string(value)
	case "data":
		if len(p.data)+len(value)+1 > p.max {
			return errSSETooLong
		}
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.idBuf = string(value)
			p.idSet = true
		}
	case "retry":
		if ms, ok := parseDigits(value); ok {
			p.retry = time.Duration(ms) * time.Millisecond
		}
	}
	return nil
}

// dispatch ends the frame at a blank line. It reports false when the
// block held no field (only comments, or nothing).
func (p *sseParser) dispatch() (sseFrame, bool) {
	if !p.fields {
		return sseFrame{}, false
	}
	if p.idSet {
		p.lastID = p.idBuf
	}
	f := sseFrame{ID: p.lastID}
	if len(p.data) > 0 {
		f.HasData = true
		f.Event = p.event
		f.Data = string(p.data[:len(p.data)-1])
	}
	p.fields, p.idSet, p.event, p.data = false, false, "", p.data[:0]
	return f, true
}

// parseDigits reads a retry value: ASCII digits only, at least one. Values
// too large for a duration are capped at a day.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	const limit = 24 * 60 * 60 * 1000
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < limit {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, limit), true
}

// readLine returns the next line without its end. The slice is valid until
// the next call.
func (p *sseParser) readLine() ([]byte, error) {
	for {
		if !p.bomDone {
			p.checkBOM()
		}
		if p.bomDone {
			if p.skipLF && p.start < p.end {
				if p.buf[p.start] == '\n' {
					p.start++
				}
				p.skipLF = false
			}
			if !p.skipLF {
				if i := indexLineEnd(p.buf[p.start+p.scanned : p.end]); i >= 0 {
					i += p.start + p.scanned
					if i-p.start > p.max {
						return nil, errSSETooLong
					}
					line := p.buf[p.start:i]
					p.skipLF = p.buf[i] == '\r'
					p.start = i + 1
					p.scanned = 0
					return line, nil
				}
				p.scanned = p.end - p.start
			}
		}
		if p.err != nil {
			return nil, p.err
		}
		if p.end-p.start > p.max {
			return nil, errSSETooLong
		}
		p.fill()
	}
}

// checkBOM drops a UTF-8 byte order mark at the start of the stream, once
// enough bytes have come to tell.
func (p *sseParser) checkBOM() {
	const bom = "\xEF\xBB\xBF"
	avail := string(p.buf[p.start:min(p.end, p.start+len(bom))])
	switch {
	case strings.HasPrefix(avail, bom):
		p.start += len(bom)
		p.bomDone = true
	case len(avail) >= len(bom) || p.err != nil || !strings.HasPrefix(bom, avail):
		p.bomDone = true
	}
}

// fill reads more of the stream into buf, making room first.
func (p *sseParser) fill() {
	if p.start > 0 && (p.end == len(p.buf) || p.start == p.end) {
		n := copy(p.buf, p.buf[p.start:p.end])
		p.start, p.end = 0, n
	}
	if p.end == len(p.buf) {
		nb := make([]byte, 2*len(p.buf))
		copy(nb, p.buf[:p.end])
		p.buf = nb
	}
	n, err := p.r.Read(p.buf[p.end:])
	p.end += n
	if err != nil {
		p.err = err
	}
}

// indexLineEnd returns the index of the first CR or LF in b, or -1.
func indexLineEnd(b []byte) int {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return i
		}
	}
	return -1
}
