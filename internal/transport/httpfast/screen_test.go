package httpfast

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// screenAll scans in in pieces of size n (all at once when n <= 0).
func screenAll(in []byte, n int) *screen {
	s := &screen{maxHead: 1 << 10}
	if n <= 0 {
		n = len(in)
	}
	for len(in) > 0 {
		k := min(n, len(in))
		if !s.scan(in[:k]) {
			break
		}
		in = in[k:]
	}
	return s
}

// The catalogue of connections the screen judges (issue 15). ok streams
// are sequences of requests net/http serves on one connection; the screen
// must follow them to their end without a verdict.
var screenCases = []struct {
	name   string
	in     string
	bad    string // the verdict; "" for none
	tooBig bool   // a head over the limit (1 KiB here)
}{
	{name: "one GET", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "pipelined bodies", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "chunked with extension and trailer", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	{name: "bare LF lines", in: "GET / HTTP/1.1\nHost: x\n\nGET / HTTP/1.1\nHost: x\n\n"},
	{name: "body that looks like a smuggle", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 66\r\n\r\n" +
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "same length twice", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
	{name: "websocket upgrade, then frames", in: "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85abcd" + strings.Repeat("\x01", 2000)},

	{name: "length and chunked", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad: badSmuggle},
	{name: "chunked and length, any case", in: "POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n", bad: badSmuggle},
	{name: "smuggle behind a request", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", bad: badSmuggle},
	{name: "smuggle behind a chunked body", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" +
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", bad: badSmuggle},
	{name: "HTTP/1.0 chunked", in: "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", bad: badHTTP10},
	{name: "folded header", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n", bad: badFold},
	{name: "chunk size not hex", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", bad: badChunked},
	{name: "chunk without its CRLF", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n", bad: badChunked},
	{name: "space before extension", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\n", bad: badChunked},

	{name: "long head", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 2000) + "\r\n\r\n", tooBig: true},
	{name: "long head behind a request", in: "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX: " + strings.Repeat("a", 2000), tooBig: true},
	{name: "long head behind a body", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /" + strings.Repeat("a", 2000), tooBig: true},
}

func TestScreen(t *testing.T) {
	for _, tt := range screenCases {
		for _, n := range []int{0, 1, 7} {
			s := screenAll([]byte(tt.in), n)
			tooBig := s.state == scanOff && s.bad == "" && !s.switched && len(tt.in) > s.maxHead
			if s.bad != tt.bad || tooBig != tt.tooBig {
				t.Errorf("%s (pieces of %d): verdict %q, too big %v; want %q, %v", tt.name, n, s.bad, tooBig, tt.bad, tt.tooBig)
			}
			if tt.bad == "" && !tt.tooBig && !s.switched && (s.state != scanHead || len(s.buf) > 0) {
				t.Errorf("%s (pieces of %d): ends in state %d with %q, not between requests", tt.name, n, s.state, s.buf)
			}
		}
	}
}

// TestScreenFollowsNetHTTP writes requests with Go's own client encoder
// (Content-Length and chunked bodies, trailers) and checks the screen
// follows them to the end of each without a verdict: it frames requests
// as net/http does.
func TestScreenFollowsNetHTTP(t *testing.T) {
	var stream bytes.Buffer
	for i, body := range []string{"", "x", strings.Repeat("y", 5000), "z\r\n0\r\n\r\n"} {
		for _, chunked := range []bool{false, true} {
			r, _ := http.NewRequest(http.MethodPost, "http://x/v1/events", strings.NewReader(body))
			if chunked {
				r.ContentLength = -1
				r.TransferEncoding = []string{"chunked"}
				if i%2 == 0 {
					r.Trailer = http.Header{"X-Sum": {"1"}}
				}
			}
			if err := r.Write(&stream); err != nil {
				t.Fatal(err)
			}
		}
	}
	// net/http reads every request of the stream.
	br := bufio.NewReader(bytes.NewReader(stream.Bytes()))
	for n := 0; ; n++ {
		r, err := http.ReadRequest(br)
		if err != nil {
			if n != 8 {
				t.Fatalf("net/http read %d requests: %v", n, err)
			}
			break
		}
		r.Body.Close()
	}
	for _, n := range []int{0, 1, 3, 100} {
		s := screenAll(stream.Bytes(), n)
		if s.bad != "" || s.state != scanHead || len(s.buf) != 0 {
			t.Errorf("pieces of %d: state %d, buf %q, verdict %q", n, s.state, s.buf, s.bad)
		}
	}
}

// FuzzScreen checks that the screen's verdict does not depend on how the
// connection's bytes arrive (the same bytes in other reads), and that a
// stream net/http reads as requests followed by their bodies is not
// refused unless a request is one the screen must refuse.
func FuzzScreen(f *testing.F) {
	for _, tt := range screenCases {
		f.Add([]byte(tt.in), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		whole := screenAll(in, 0)
		split := screenAll(in, int(piece))
		if whole.bad != split.bad || whole.state != split.state || whole.left != split.left || whole.switched != split.switched {
			t.Fatalf("in one read: state %d left %d verdict %q; in reads of %d: state %d left %d verdict %q",
				whole.state, whole.left, whole.bad, piece, split.state, split.left, split.bad)
		}
	})
}
