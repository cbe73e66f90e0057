package httpfast

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// head is the part of a request the fast path understands: a single-event
// publish, POST /v1/topics/{topic}/events over HTTP/1.1.
type head struct {
	topic         []byte // the path segment, not decoded (it has no '%')
	contentLength int    // 0 when absent
	contentType   []byte
	key           []byte // Idempotency-Key
	typ           []byte // Herald-Event-Type
	auth          []byte // Authorization
	headers       [][2][]byte
	close         bool // Connection: close
	size          int  // bytes of the head, through the blank line
}

// parseResult says what parseHead found.
type parseResult uint8

const (
	needMore parseResult = iota // the head is not complete yet
	fast                        // a request the fast path serves
	handoff                     // anything else: net/http serves it
)

const (
	pathPrefix   = "/v1/topics/"
	pathSuffix   = "/events"
	headerPrefix = "herald-header-"
)

// parseHead parses the request head at the start of b. It is deliberately
// narrow: whatever it does not fully understand, including every malformed
// request, is handed to net/http, which answers it as it would answer any
// other request. maxHead bounds the head's size; a longer head is handed
// off too (net/http answers 431).
func parseHead(b []byte, maxHead int, h *head) parseResult {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	scan := b
	if end >= 0 {
		scan = b[:end]
	}
	if bareLF(scan) {
		return handoff // net/http takes bare LF line ends; this parser does not
	}
	if end < 0 {
		if len(b) >= maxHead {
			return handoff
		}
		return needMore
	}
	if end+4 > maxHead {
		return handoff
	}
	*h = head{headers: h.headers[:0], size: end + 4}
	lines := b[:end+2] // every line with its CRLF

	// Request line: POST SP /v1/topics/{topic}/events SP HTTP/1.1
	eol := bytes.Index(lines, []byte("\r\n"))
	line := lines[:eol]
	lines = lines[eol+2:]
	rest, ok := bytes.CutPrefix(line, []byte("POST "))
	if !ok {
		return handoff
	}
	path, ok := bytes.CutSuffix(rest, []byte(" HTTP/1.1"))
	if !ok {
		return handoff
	}
	topic, ok := bytes.CutPrefix(path, []byte(pathPrefix))
	if !ok {
		return handoff
	}
	topic, ok = bytes.CutSuffix(topic, []byte(pathSuffix))
	if !ok || len(topic) == 0 || string(topic) == "." || string(topic) == ".." {
		return handoff // ".." and "." are paths net/http cleans
	}
	for _, c := range topic {
		// '/' would be another route, '%' needs decoding, '?' and '#' a
		// query or fragment, and anything outside visible ASCII is
		// net/http's to refuse.
		if c <= ' ' || c >= 0x7f || c == '/' || c == '%' || c == '?' || c == '#' {
			return handoff
		}
	}
	h.topic = topic

	hasHost, hasLength := false, false
	for len(lines) > 0 {
		eol := bytes.Index(lines, []byte("\r\n"))
		line := lines[:eol]
		lines = lines[eol+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return handoff // no name, or a folded line (starts with a space)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for _, c := range name {
			if !isToken(c) {
				return handoff
			}
		}
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return handoff
			}
		}
		switch {
		case equalFold(name, "host"):
			if hasHost || !httpguts.ValidHostHeader(string(value)) {
				return handoff
			}
			hasHost = true
		case equalFold(name, "content-length"):
			if hasLength || len(value) == 0 || len(value) > 10 {
				return handoff
			}
			hasLength = true
			n := 0
			for _, c := range value {
				if c < '0' || c > '9' {
					return handoff
				}
				n = n*10 + int(c-'0')
			}
			h.contentLength = n
		case equalFold(name, "content-type"):
			if h.contentType == nil {
				h.contentType = value
			}
		case equalFold(name, "idempotency-key"):
			if h.key == nil {
				h.key = value
			}
		case equalFold(name, "herald-event-type"):
			if h.typ == nil {
				h.typ = value
			}
		case equalFold(name, "authorization"):
			if h.auth != nil {
				return handoff // twice: net/http decides
			}
			h.auth = value
		case equalFold(name, "connection"):
			switch {
			case equalFold(value, "keep-alive"):
			case equalFold(value, "close"):
				h.close = true
			default:
				return handoff
			}
		case equalFold(name, "transfer-encoding"), equalFold(name, "content-encoding"), equalFold(name, "expect"), equalFold(name, "origin"),
			equalFold(name, "upgrade"), equalFold(name, "te"), equalFold(name, "trailer"),
			equalFold(name, "access-control-request-method"),
			// A cookie may carry credentials, which need the request's
			// Origin checked: net/http serves it (decision 0008).
			equalFold(name, "cookie"):
			return handoff
		case len(name) > len(headerPrefix) && equalFold(name[:len(headerPrefix)], headerPrefix):
			h.headers = append(h.headers, [2][]byte{name[len(headerPrefix):], value})
		}
	}
	if !hasHost {
		return handoff
	}
	return fast
}

// bareLF reports whether b has a line feed not preceded by a carriage
// return.
func bareLF(b []byte) bool {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// trimOWS trims the optional white space around a header value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// isToken reports whether c may appear in a header name (RFC 9110 tchar).
func isToken(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}
