package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// The subset of the SSE wire format (WHATWG HTML, "server-sent events")
// that the load generator reads:
//
//	retry: 2000          field: reconnection hint, ignored
//	: hb                 comment: heartbeat, ignored
//	id: AQxj…            field: the stream's cursor after this event
//	event: message       field: the event type
//	data: {"seq":1,…}    field: one line of payload; several lines join with "\n"
//	                     empty line: end of the frame
//
// Lines end in LF or CRLF; a lone CR as line ending (legal in SSE, never
// sent by herald) is not recognized. A field line without a colon is a
// field with an empty value; one space after the colon is dropped.

// maxLineBytes bounds one SSE line, so a broken server cannot make the load
// generator buffer without limit.
const maxLineBytes = 1 << 20

// errLineTooLong is returned for a line over maxLineBytes.
var errLineTooLong = errors.New("sse line longer than 1 MiB")

// Frame is one SSE frame: the fields seen between two empty lines. Its
// slices belong to the FrameReader and are valid until the next call to
// Next.
type Frame struct {
	ID       []byte
	Event    []byte
	Data     []byte
	HasID    bool // an id: field was present (possibly empty)
	HasEvent bool
	HasData  bool
}

// frameBuilder assembles frames line by line. FrameReader feeds it from a
// bufio.Reader, the epoll reader from its own buffer.
type frameBuilder struct {
	cur      Frame
	complete bool   // cur was returned: start afresh on the next line
	id       []byte // backing arrays of cur's fields, reused
	event    []byte
	data     []byte
}

// line takes one line without its line ending and returns the frame that
// it completes (when it is the empty line after an id:, event: or data:
// field), or nil. The frame is valid until the next call.
func (b *frameBuilder) line(line []byte) *Frame {
	f := &b.cur
	if b.complete {
		*f = Frame{}
		b.id, b.event, b.data = b.id[:0], b.event[:0], b.data[:0]
		b.complete = false
	}
	if len(line) == 0 {
		if !f.HasID && !f.HasEvent && !f.HasData {
			return nil
		}
		f.ID, f.Event, f.Data = b.id, b.event, b.data
		b.complete = true
		return f
	}
	if line[0] == ':' {
		return nil
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) { // no allocation: the compiler compares in place
	case "data":
		if f.HasData {
			b.data = append(b.data, '\n')
		}
		b.data = append(b.data, value...)
		f.HasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 { // the spec ignores ids containing NUL
			b.id = append(b.id[:0], value...)
			f.HasID = true
		}
	case "event":
		b.event = append(b.event[:0], value...)
		f.HasEvent = true
	}
	return nil
}

// FrameReader reads SSE frames from a buffered reader without allocating
// per frame once its buffers have grown to the frame size.
type FrameReader struct {
	r    *bufio.Reader
	long []byte // a line longer than r's buffer, assembled
	b    frameBuilder
}

// NewFrameReader returns a FrameReader reading from r.
func NewFrameReader(r *bufio.Reader) *FrameReader {
	return &FrameReader{r: r}
}

// Next returns the next frame that carries an id:, event: or data: field.
// Frames of only comments or retry: are skipped. At the end of the input,
// a frame without its closing empty line is dropped (as browsers do) and
// the reader's error (io.EOF for a clean end) is returned. The frame is
// valid until the next call.
func (fr *FrameReader) Next() (*Frame, error) {
	for {
		line, err := fr.readLine()
		if err != nil {
			return nil, err
		}
		if f := fr.b.line(line); f != nil {
			return f, nil
		}
	}
}

// readLine returns the next line without its line ending. The slice is
// valid until the next read.
func (fr *FrameReader) readLine() ([]byte, error) {
	line, err := fr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		fr.long = append(fr.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = fr.r.ReadSlice('\n')
			fr.long = append(fr.long, line...)
			if len(fr.long) > maxLineBytes {
				return nil, errLineTooLong
			}
		}
		line = fr.long
	}
	if err != nil {
		return nil, fmt.Errorf("read sse stream: %w", err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
