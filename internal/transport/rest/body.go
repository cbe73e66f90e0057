package rest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// Request bodies: their content coding, and the answer to one too large.

// codingUnsupported is the answer to a Content-Encoding herald does not
// decode: a body it cannot read is refused, never stored as it came.
const codingUnsupported = "Content-Encoding %q is not supported; send the body uncompressed, or compressed with gzip (Content-Encoding: gzip)"

// gzipped reports whether the request's body is gzip-compressed: its
// Content-Encoding is gzip (or x-gzip), alone or with identity. Any other
// coding, or several, is an error the caller answers 415 with.
func gzipped(h http.Header) (bool, error) {
	vals := h.Values("Content-Encoding")
	if len(vals) == 0 {
		return false, nil
	}
	gz := false
	for _, v := range vals {
		for _, c := range strings.Split(v, ",") {
			switch c = strings.TrimSpace(c); {
			case c == "" || strings.EqualFold(c, "identity"):
			case (strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip")) && !gz:
				gz = true
			default:
				return false, fmt.Errorf(codingUnsupported, strings.Join(vals, ", "))
			}
		}
	}
	return gz, nil
}

// gunzip decodes the gzip stream src into dst. The decoded bytes are held
// to limit, like an uncompressed body (a small body that inflates past it,
// a decompression bomb, is too large); key names the limit's setting.
func gunzip(dst *bytes.Buffer, src []byte, limit int64, key string) error {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return badRequest("the body is not valid gzip (Content-Encoding: gzip): %v", err)
	}
	defer zr.Close()
	n, err := dst.ReadFrom(io.LimitReader(zr, limit+1))
	switch {
	case n > limit:
		return fmt.Errorf("%w: the body decompresses to over %d bytes (%s)", hub.ErrTooLarge, limit, key)
	case err != nil:
		return badRequest("the body is not valid gzip (Content-Encoding: gzip): %v", err)
	}
	return nil
}

// maxDiscard is the most of an unread body net/http reads and discards
// after the answer to keep the connection (its maxPostHandlerReadBytes);
// over it, it closes the connection.
const maxDiscard = 256 << 10

// writeErrorAndClose answers err and closes the connection, for an answer
// given before the request's body was read (a body over the limit): the
// client may still be sending megabytes. The answer carries its length
// and Connection: close and is flushed; then the connection is taken from
// net/http and closed. The server's connections (package httpfast) close
// with a lingering close: what the client still sends is read and
// discarded for a while, so that the client can read the answer instead of
// a reset (net/http's own close waits 500 ms without reading, not enough
// for a client that sends everything before it reads).
func writeErrorAndClose(w http.ResponseWriter, err error) {
	r, msg := wire.Describe(err)
	b := wire.AppendError(nil, r.Code, msg)
	hd := w.Header()
	hd.Set("Connection", "close")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(reason.MustOf(r.Code).HTTP)
	w.Write(b)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return // net/http closes the connection after the answer
	}
	if nc, _, err := rc.Hijack(); err == nil {
		nc.Close()
	}
}
