package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// handshakeTimeout bounds connecting and reading the first frame when the
// context has no earlier deadline.
const handshakeTimeout = 15 * time.Second

// openStream dials a subscriber's connection and runs handshake on it,
// closing the connection when the handshake fails.
func openStream[S Stream](ctx context.Context, d *Dialer, transport, topic string, handshake func(context.Context, net.Conn, string) (S, error)) (Stream, error) {
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	s, err := handshake(ctx, conn, topic)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to %s over %s: %w", topic, transport, err)
	}
	return s, nil
}

// handshakeDeadline bounds a subscriber's handshake on conn by ctx's
// deadline, at most handshakeTimeout, and makes cancelling ctx interrupt
// it by expiring the deadline. The caller calls stop when the handshake is
// done.
func handshakeDeadline(ctx context.Context, conn net.Conn) (stop func() bool, err error) {
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > handshakeTimeout {
		deadline = time.Now().Add(handshakeTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }), nil
}

// sseReadBuffer is the read buffer of one SSE stream: enough for a frame of
// a few hundred bytes, small enough for tens of thousands of streams.
const sseReadBuffer = 2048

// SSE subscribes with GET /v1/sse on raw TCP connections: the request is
// written by hand and the stream is read with a FrameReader, so a delivery
// costs the load generator one buffered read and a copy.
type SSE struct {
	d *Dialer
}

// Open connects, sends the request, checks the response head and waits for
// the first frame (herald sends an id: frame with the starting cursor at
// once), which shows the subscription is in place.
func (t *SSE) Open(ctx context.Context, topic string) (Stream, error) {
	return openStream(ctx, t.d, "sse", topic, t.handshake)
}

func (t *SSE) handshake(ctx context.Context, conn net.Conn, topic string) (*sseStream, error) {
	stop, err := handshakeDeadline(ctx, conn)
	if err != nil {
		return nil, err
	}
	defer stop()

	req := "GET /v1/sse?topic=" + url.QueryEscape(topic) + " HTTP/1.1\r\nHost: " + t.d.host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: herald-bench\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReaderSize(conn, sseReadBuffer)
	h, err := readHead(br)
	if err != nil {
		return nil, err
	}
	if h.status != 200 {
		return nil, &errResponse{status: h.status, body: readSnippet(br, h)}
	}
	if !strings.HasPrefix(h.contentType, "text/event-stream") {
		return nil, fmt.Errorf("response Content-Type %q, want text/event-stream", h.contentType)
	}
	src := br
	if h.chunked {
		// net/http streams a response it does not hijack in chunks; the
		// chunked reader uses br as its source and adds no buffer.
		src = bufio.NewReaderSize(httputil.NewChunkedReader(br), sseReadBuffer)
	}
	s := &sseStream{conn: conn, br: br, chunked: h.chunked, fr: NewFrameReader(src)}
	f, err := s.fr.Next()
	if err != nil {
		return nil, fmt.Errorf("wait for first frame: %w", err)
	}
	if string(f.Event) == "error" {
		return nil, &ServerError{Data: string(f.Data)}
	}
	if f.HasData {
		s.pending = append([]byte(nil), f.Data...)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clear deadline: %w", err)
	}
	return s, nil
}

// readSnippet returns the start of an error response's body for a message.
func readSnippet(br *bufio.Reader, h responseHead) string {
	n := int64(512)
	if h.contentLength >= 0 {
		n = min(n, h.contentLength)
	}
	var r io.Reader = br
	if h.chunked {
		r = httputil.NewChunkedReader(br)
	}
	b, _ := io.ReadAll(io.LimitReader(r, n))
	return strings.TrimSpace(string(b))
}

// sseStream is one open SSE subscription. Next is called by one goroutine;
// Close by any.
type sseStream struct {
	conn      net.Conn      // static after Open
	br        *bufio.Reader // reads conn
	chunked   bool          // the body is in chunked encoding, decoded under fr
	fr        *FrameReader
	pending   []byte // a data frame that came first, returned by the first Next
	closeOnce sync.Once
}

// Next returns the payload of the next event frame.
func (s *sseStream) Next() ([]byte, error) {
	if s.pending != nil {
		p := s.pending
		s.pending = nil
		return p, nil
	}
	for {
		f, err := s.fr.Next()
		if err != nil {
			return nil, err
		}
		if p, err := framePayload(f); p != nil || err != nil {
			return p, err
		}
	}
}

// framePayload returns the payload of an event frame, an error for a gap
// or error frame, and neither for a frame without data.
func framePayload(f *Frame) ([]byte, error) {
	switch string(f.Event) {
	case "gap":
		return nil, fmt.Errorf("%w: %s", ErrGap, f.Data)
	case "error":
		return nil, &ServerError{Data: string(f.Data)}
	}
	if f.HasData {
		return f.Data, nil
	}
	return nil, nil
}

// Close closes the connection.
func (s *sseStream) Close() error {
	err := net.ErrClosed
	s.closeOnce.Do(func() { err = s.conn.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
