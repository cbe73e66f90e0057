package ws

import (
	"bytes"
	"compress/flate"
	"io"
	"strconv"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"

	"github.com/heraldhq/herald/internal/reason"
)

// permessage-deflate (RFC 7692), when ws.compression is on and the client
// offers it. The server always answers with server_no_context_takeover and
// client_no_context_takeover:
//
//   - every message is compressed on its own, so an event's compressed
//     frame is built once and shared by every connection (FrameWSDeflate),
//     like the plain one;
//   - a connection keeps no compression window between messages: an idle
//     connection holds no inflater or deflater state (about 40 KiB each
//     otherwise). Messages are inflated with pooled readers.
//
// Offers that ask for a smaller server window (server_max_window_bits) are
// declined: Go's compressor always uses a 32 KiB window.

// negotiator returns the Negotiate function of one upgrade.
func negotiator() (*wsflate.Extension, func(httphead.Option) (httphead.Option, error)) {
	ext := &wsflate.Extension{Parameters: wsflate.Parameters{
		ServerNoContextTakeover: true,
		ClientNoContextTakeover: true,
	}}
	return ext, ext.Negotiate
}

// minCompress is the smallest payload worth compressing.
const minCompress = 64

// deflaters are pooled compressors (about 600 KiB each at level 1, so few
// are kept).
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// compress returns p compressed as one permessage-deflate message, or p
// itself when it is too short to gain.
func compress(p []byte) []byte {
	if len(p) < minCompress {
		return p
	}
	var buf bytes.Buffer
	buf.Grow(len(p)/2 + 16)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	w.Write(p)
	w.Flush()
	deflaters.Put(w)
	out := buf.Bytes()
	// A sync flush ends with an empty stored block, 00 00 ff ff, which the
	// extension leaves off the wire (RFC 7692, section 7.2.1).
	return bytes.TrimSuffix(out, []byte{0, 0, 0xff, 0xff})
}

// inflateTail ends a message's deflate data: the 4 bytes the sender left
// off, then an empty final block so the reader ends cleanly.
var inflateTail = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// inflater is a pooled decompressor.
type inflater struct {
	fr io.ReadCloser
}

var inflaters = sync.Pool{New: func() any {
	return &inflater{fr: flate.NewReader(bytes.NewReader(inflateTail))}
}}

// inflate decompresses one message into dst (reused), failing with a
// too_large close when the result would pass limit: the limit bounds what
// the server inflates, not just what it receives.
func inflate(dst, p []byte, limit int) ([]byte, error) {
	in := inflaters.Get().(*inflater)
	defer inflaters.Put(in)
	src := io.MultiReader(bytes.NewReader(p), bytes.NewReader(inflateTail))
	if err := in.fr.(flate.Resetter).Reset(src, nil); err != nil {
		return dst, err
	}
	dst = dst[:0]
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := in.fr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, closeFor(reason.TooLarge, "a compressed message inflates to more than "+
				strconv.Itoa(limit)+" bytes (ws.max_message_bytes)")
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, closeFor(reason.InvalidPayload, "corrupt permessage-deflate data")
		}
	}
}
