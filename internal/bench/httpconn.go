package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"slices"
	"strconv"
	"time"
)

// httpConn is a minimal HTTP/1.1 keep-alive client on one connection: one
// request at a time, the request written with one write, the response head
// parsed by hand. It costs the load generator far less than net/http, which
// matters when client and server share two cores. It is used by one
// goroutine at a time.
type httpConn struct {
	d       *Dialer
	conn    net.Conn // nil until dialled, and after an I/O error
	adopted bool     // conn was handed over by adopt: never dial another
	br      *bufio.Reader
	req     []byte // the request being written, reused
	body    []byte // the last response body, reused
	timeout time.Duration
}

// errResponse is an HTTP answer with an unexpected status.
type errResponse struct {
	status int
	body   string
}

// Error says what the server answered.
func (e *errResponse) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.status, e.body)
}

func newHTTPConn(d *Dialer) *httpConn {
	return &httpConn{d: d, timeout: 30 * time.Second}
}

// adopt makes c use conn, which its owner closes; c will not dial a new
// connection after conn fails.
func (c *httpConn) adopt(conn net.Conn) {
	c.conn, c.adopted = conn, true
	c.br = bufio.NewReaderSize(conn, 4096)
}

// Close closes the connection, if open.
func (c *httpConn) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.br = nil, nil
	return err
}

// Do sends one request and returns the response status and body (valid
// until the next call). On any I/O error the connection is closed and the
// next call dials again; the request is not retried.
func (c *httpConn) Do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	if c.conn == nil {
		if c.adopted {
			return 0, nil, net.ErrClosed
		}
		conn, err := c.d.Dial(ctx)
		if err != nil {
			return 0, nil, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 4096)
		} else {
			c.br.Reset(conn)
		}
	}
	c.req = appendRequest(c.req[:0], method, path, c.d.host, contentType, body)
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		c.Close()
		return 0, nil, fmt.Errorf("set deadline: %w", err)
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.Close()
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	status, err := c.readResponse()
	if err != nil {
		c.Close()
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return status, c.body, nil
}

// appendRequest appends an HTTP/1.1 request to dst.
func appendRequest(dst []byte, method, path, host, contentType string, body []byte) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUser-Agent: herald-bench\r\n"...)
	if contentType != "" {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, contentType...)
		dst = append(dst, "\r\n"...)
	}
	if body != nil || method == "POST" {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}

// responseHead is what the load generator needs from a response head.
type responseHead struct {
	status        int
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool
	contentType   string
}

// readHead parses a status line and headers from br.
func readHead(br *bufio.Reader) (responseHead, error) {
	h := responseHead{contentLength: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, fmt.Errorf("read status line: %w", err)
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return h, fmt.Errorf("malformed status line %q", line)
	}
	h.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return h, fmt.Errorf("malformed status line %q", line)
	}
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return h, fmt.Errorf("read response headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return h, nil
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		name, value := line[:i], bytes.TrimSpace(line[i+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			h.contentLength, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return h, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			h.close = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Content-Type")):
			h.contentType = string(value)
		}
	}
}

// maxResponseBytes bounds the response bodies the client keeps.
const maxResponseBytes = 16 << 20

// readResponse reads one response into c.body and returns its status.
func (c *httpConn) readResponse() (int, error) {
	h, err := readHead(c.br)
	if err != nil {
		return 0, err
	}
	switch {
	case h.contentLength > maxResponseBytes:
		return 0, fmt.Errorf("response body of %d bytes, over 16 MiB", h.contentLength)
	case h.contentLength >= 0:
		c.body = slices.Grow(c.body[:0], int(h.contentLength))[:h.contentLength]
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			return 0, fmt.Errorf("read response body: %w", err)
		}
	case h.chunked:
		c.body, err = readAllLimited(c.body[:0], httputil.NewChunkedReader(c.br), maxResponseBytes)
		if err != nil {
			return 0, fmt.Errorf("read response body: %w", err)
		}
	default:
		return 0, errors.New("response without Content-Length or chunked encoding")
	}
	if h.close {
		c.Close()
	}
	return h.status, nil
}

// readAllLimited appends all of r to dst, failing past limit bytes.
func readAllLimited(dst []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, 512)
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if errors.Is(err, io.EOF) {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
		if len(dst) > limit {
			return dst, fmt.Errorf("body over %d bytes", limit)
		}
	}
}
