package httpfast

import (
	"bytes"
	"strconv"
)

// screen follows the HTTP/1.1 requests on a connection net/http serves,
// framing them as net/http does (a head up to its blank line, then a body
// of Content-Length bytes or chunked), to catch what net/http lets through
// or answers in a form that is not the API's:
//
//   - a head with both Content-Length and Transfer-Encoding, or an
//     HTTP/1.0 head with Transfer-Encoding: net/http takes it and keeps
//     the connection, where RFC 9112 §6.1 says to close it (request
//     smuggling);
//   - a folded header line (obs-fold), which net/http joins, where RFC
//     9112 §5.2 allows refusing it;
//   - a head over the size limit, which net/http answers in plain text
//     and follows with a reset.
//
// A head net/http refuses itself (it answers and closes the connection)
// turns the screen off. A malformed chunked body refuses the requests
// after it, so that the screen and net/http never disagree on where a
// request starts. After a head that may switch protocols (Upgrade,
// CONNECT) the bytes may not be HTTP any more: the screen goes on, since
// net/http may go on serving requests, but no longer answers a long head
// itself (Guard only ever acts on requests net/http parsed).
//
// The screen only reads; it changes no byte.
type screen struct {
	maxHead int // the head size limit (http.Server.MaxHeaderBytes)

	state   uint8
	buf     []byte // the head, chunk-size line or trailer read so far
	left    int64  // body or chunk bytes still to come
	bad     string // why requests on this connection are refused; "" if none
	curLine int    // start of the current line in buf (head, trailer)
	// A head asked to switch protocols: what follows may not be HTTP.
	switched bool
}

// The screen's states.
const (
	scanHead      = iota // a request's head
	scanBody             // left bytes of a Content-Length body
	scanChunkSize        // a chunk-size line
	scanChunkData        // left bytes of chunk data
	scanChunkCR          // the CR after chunk data
	scanChunkLF          // the LF after chunk data
	scanTrailer          // trailer lines up to a blank one
	scanOff              // not following: pass everything
)

// maxChunkLine is net/http's limit on a chunk-size line.
const maxChunkLine = 4096

// Why a request is refused (Guard's answers).
const (
	badSmuggle = "the request has both Content-Length and Transfer-Encoding, so its length is ambiguous (RFC 9112 §6.1); send one of them"
	badHTTP10  = "an HTTP/1.0 request may not use Transfer-Encoding (RFC 9112 §6.1); send Content-Length, or use HTTP/1.1"
	badFold    = "a header line is folded onto the next (obs-fold, RFC 9112 §5.2); send each header on one line"
	badChunked = "a request's chunked body is malformed (RFC 9112 §7.1); the connection cannot go on"
)

// scan follows p, the next bytes of the connection. It returns false when
// a request's head went over the limit: the connection must be answered
// 431 and closed.
func (s *screen) scan(p []byte) bool {
	for len(p) > 0 {
		switch s.state {
		case scanOff:
			return true
		case scanHead, scanTrailer:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				i = len(p) - 1
			}
			s.buf = append(s.buf, p[:i+1]...)
			p = p[i+1:]
			if s.state == scanHead && len(s.buf) > s.maxHead {
				s.off()
				return s.switched // after a switch: maybe not HTTP
			}
			if s.state == scanTrailer && len(s.buf) > s.maxHead {
				s.off() // net/http refuses a long trailer
				continue
			}
			if s.buf[len(s.buf)-1] == '\n' {
				s.line()
			}
		case scanBody, scanChunkData:
			n := int64(len(p))
			if n > s.left {
				n = s.left
			}
			p = p[n:]
			s.left -= n
			if s.left == 0 {
				if s.state == scanBody {
					s.state = scanHead
				} else {
					s.state = scanChunkCR
				}
			}
		case scanChunkCR, scanChunkLF:
			want := byte('\r')
			if s.state == scanChunkLF {
				want = '\n'
			}
			if p[0] != want {
				s.refuse(badChunked)
				continue
			}
			p = p[1:]
			if s.state == scanChunkCR {
				s.state = scanChunkLF
			} else {
				s.state = scanChunkSize
			}
		case scanChunkSize:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				i = len(p) - 1
			}
			s.buf = append(s.buf, p[:i+1]...)
			p = p[i+1:]
			if len(s.buf) >= maxChunkLine {
				s.refuse(badChunked)
				continue
			}
			if s.buf[len(s.buf)-1] == '\n' {
				s.chunkSize()
			}
		}
	}
	return true
}

// off stops following the connection.
func (s *screen) off() {
	s.state, s.buf = scanOff, nil
}

// line handles the complete line at the end of buf, in a head or trailer.
func (s *screen) line() {
	line := trimEOL(s.buf[s.curLine:])
	if len(line) > 0 {
		s.curLine = len(s.buf)
		return
	}
	if s.state == scanTrailer {
		s.state, s.buf, s.curLine = scanHead, s.buf[:0], 0
		return
	}
	if s.curLine == 0 {
		s.off() // an empty request line: net/http refuses it
		return
	}
	s.head(s.buf)
	if s.state != scanOff {
		// The head's buffer goes: the connection may live long without
		// another request (an SSE stream, an upgraded WebSocket), and
		// net/http allocates far more per request than this one buffer.
		s.buf, s.curLine = nil, 0
	}
}

// head frames the body of the complete head h, and judges it.
func (s *screen) head(h []byte) {
	eol := bytes.IndexByte(h, '\n')
	reqLine := trimEOL(h[:eol+1])
	h = h[eol+1:]
	method, rest, ok1 := bytes.Cut(reqLine, []byte(" "))
	_, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 {
		s.off() // net/http refuses it
		return
	}
	if string(method) == "CONNECT" {
		s.switched = true
	}
	http10 := string(proto) == "HTTP/1.0"
	var te, cl []byte
	nte, ncl := 0, 0
	upgrade := false
	for len(h) > 0 {
		eol := bytes.IndexByte(h, '\n')
		line := trimEOL(h[:eol+1])
		h = h[eol+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			s.refuse(badFold)
			return
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			s.off() // net/http refuses it
			return
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for _, c := range name {
			if !isToken(c) {
				s.off()
				return
			}
		}
		switch {
		case equalFold(name, "content-length"):
			if ncl > 0 && !bytes.Equal(cl, value) {
				s.off() // differing lengths: net/http refuses them
				return
			}
			cl = value
			ncl++
		case equalFold(name, "transfer-encoding"):
			te = value
			nte++
		case equalFold(name, "upgrade"):
			upgrade = true
		}
	}
	switch {
	case nte > 0 && ncl > 0:
		s.refuse(badSmuggle)
		return
	case nte > 0 && http10:
		s.refuse(badHTTP10)
		return
	case nte > 0:
		if nte > 1 || !equalFold(te, "chunked") {
			s.off() // net/http answers 501 and closes
			return
		}
		s.state = scanChunkSize
	case ncl > 0:
		n, ok := parseLength(cl)
		if !ok {
			s.off() // net/http answers 400 and closes
			return
		}
		s.state, s.left = scanBody, n
		if n == 0 {
			s.state = scanHead
		}
	}
	if upgrade {
		s.switched = true
	}
}

// chunkSize handles the complete chunk-size line in buf.
func (s *screen) chunkSize() {
	// As net/http: trailing white space goes, then a chunk extension.
	line := bytes.TrimRight(s.buf, " \t\r\n")
	line, _, _ = bytes.Cut(line, []byte(";"))
	s.buf = s.buf[:0]
	n, ok := parseHex(line)
	switch {
	case !ok:
		s.refuse(badChunked)
	case n == 0:
		s.state, s.curLine = scanTrailer, 0
	default:
		s.state, s.left = scanChunkData, n
	}
}

// refuse marks the connection's requests as refused (Guard answers them)
// and stops following it: the connection closes after the answer.
func (s *screen) refuse(why string) {
	if s.bad == "" {
		s.bad = why
	}
	s.off()
}

// trimEOL trims a line's LF or CRLF.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// parseLength parses a Content-Length value as net/http does.
func parseLength(b []byte) (int64, bool) {
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// parseHex parses a chunk size as net/http does (at most 16 hex digits).
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, true
}
