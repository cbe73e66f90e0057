// Package proxyproto reads the PROXY protocol header (HAProxy's
// specification, versions 1 and 2) that a load balancer or reverse proxy
// (HAProxy send-proxy, AWS NLB, nginx proxy_protocol, Envoy) puts at the
// start of each connection it opens to herald, to say which client the
// connection is for. Listener reads it from trusted peers only, before the
// connection limits count the connection, so that the limits count the
// real client and not the proxy.
//
// The two versions of the header, as ReadHeader accepts them:
//
// Version 1, one line of text of at most 107 bytes, fields separated by
// single spaces:
//
//	PROXY TCP4 <src IPv4> <dst IPv4> <src port> <dst port>\r\n
//	PROXY TCP6 <src IPv6> <dst IPv6> <src port> <dst port>\r\n
//	PROXY UNKNOWN[ anything]\r\n      (the proxy's own connection: a health check)
//
// Version 2, binary, 16 bytes and then Length bytes:
//
//	bytes 0-11   signature \r\n\r\n\0\r\nQUIT\n
//	byte  12     version (high nibble, 2) and command (low nibble):
//	             0 LOCAL (the proxy's own connection), 1 PROXY
//	byte  13     address family (high nibble: 0 UNSPEC, 1 INET, 2 INET6,
//	             3 UNIX) and transport (low nibble: 0 UNSPEC, 1 STREAM,
//	             2 DGRAM)
//	bytes 14-15  Length, big-endian: the bytes that follow
//	then         INET: src and dst IPv4 (4 bytes each), src and dst port
//	             (2 bytes each), 12 bytes; INET6: the same with 16-byte
//	             addresses, 36 bytes; UNIX: two 108-byte paths; then TLVs
//	             (ignored)
//
// ReadHeader reads exactly the header's bytes and never a byte of what
// follows: the transports work on the socket itself (the WebSocket poller
// waits on its descriptor), so bytes read ahead into a buffer would be
// lost to them.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// The sizes of the header.
const (
	// MaxV1Bytes is the longest version 1 header, its CRLF included.
	MaxV1Bytes = 107
	// MaxV2Bytes bounds a version 2 header, its 16 fixed bytes included.
	// The specification allows 65,551; the addresses take at most 232 and
	// the TLVs proxies send (AWS's VPC endpoint, TLS details) a few
	// hundred more.
	MaxV2Bytes = 16 + 4096
	// minBytes is the shortest header of either version ("PROXY
	// UNKNOWN\r\n"): ReadHeader reads this much at first.
	minBytes = 15
)

// v2Signature starts every version 2 header.
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// The version 2 commands, address families and transports.
const (
	v2Version    = 0x20
	v2CmdLocal   = 0x0
	v2CmdProxy   = 0x1
	v2FamUnspec  = 0x0
	v2FamInet    = 0x1
	v2FamInet6   = 0x2
	v2FamUnix    = 0x3
	v2ProtoUnspc = 0x0
	v2ProtoStrm  = 0x1
	v2LenInet    = 12
	v2LenInet6   = 36
	v2LenUnix    = 216
)

// ErrNoHeader is returned when a connection does not start with a PROXY
// protocol header of either version.
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// ErrMalformed is wrapped by the errors of a header that starts as one but
// breaks the specification.
var ErrMalformed = errors.New("proxyproto: malformed PROXY protocol header")

// Header is what a PROXY protocol header says.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local says the connection is the proxy's own (version 1 UNKNOWN,
	// version 2 LOCAL, or an address family herald cannot use): the
	// connection's own addresses stand, Source and Dest are not set.
	Local bool
	// Source is the client's address and port, Dest the address and port
	// it connected to on the proxy.
	Source, Dest netip.AddrPort
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// ReadHeader reads a PROXY protocol header of either version from r, and
// not a byte more. A read error (a deadline passed, the peer gone) is
// returned wrapped; a start that is no header is ErrNoHeader; a header
// that breaks the specification wraps ErrMalformed.
func ReadHeader(r io.Reader) (Header, error) {
	var buf [MaxV1Bytes]byte
	b := buf[:minBytes]
	if _, err := io.ReadFull(r, b); err != nil {
		return Header{}, readErr(err)
	}
	switch {
	case bytes.HasPrefix(b, []byte("PROXY ")):
		line, err := readV1(r, buf[:])
		if err != nil {
			return Header{}, err
		}
		return ParseV1(line)
	case bytes.HasPrefix(b, v2Signature):
		return readV2(r, b)
	}
	return Header{}, ErrNoHeader
}

// readErr wraps a read error: the peer gone (io.EOF,
// io.ErrUnexpectedEOF), a deadline passed (os.ErrDeadlineExceeded).
func readErr(err error) error {
	return fmt.Errorf("proxyproto: reading the header: %w", err)
}

// readV1 reads the rest of a version 1 line whose first minBytes bytes are
// in buf, and returns the whole line, CRLF included. It reads as much at
// once as the line must still hold, so a line of 50 bytes takes a handful
// of reads and none goes past the CRLF.
func readV1(r io.Reader, buf []byte) ([]byte, error) {
	n := minBytes
	fields := -1 // spaces a TCP4 or TCP6 line has; -1 while unknown (UNKNOWN: any)
	switch {
	case bytes.HasPrefix(buf[:n], []byte("PROXY TCP4 ")), bytes.HasPrefix(buf[:n], []byte("PROXY TCP6 ")):
		fields = 5
	case bytes.HasPrefix(buf[:n], []byte("PROXY UNKNOWN")):
	default:
		return nil, malformed("version 1: protocol %q is none of TCP4, TCP6, UNKNOWN", printable(buf[6:n]))
	}
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			if i != n-1 || buf[n-2] != '\r' {
				return nil, malformed("version 1: a line feed without a carriage return before it")
			}
			return buf[:n], nil
		}
		// What the line still holds at the least: CRLF, or LF after a CR;
		// on a TCP line, a field and a space per space still to come, and
		// a field after a last space.
		need := 2
		if buf[n-1] == '\r' {
			need = 1
		} else if fields > 0 {
			left := fields - bytes.Count(buf[:n], []byte(" "))
			if left < 0 {
				return nil, malformed("version 1: more than %d fields", fields+1)
			}
			need += 2 * left
			if buf[n-1] == ' ' {
				need++
			}
		}
		if n+need > len(buf) {
			return nil, malformed("version 1: no CRLF within %d bytes", MaxV1Bytes)
		}
		if _, err := io.ReadFull(r, buf[n:n+need]); err != nil {
			return nil, readErr(err)
		}
		n += need
	}
}

// ParseV1 parses a whole version 1 line, CRLF included.
func ParseV1(line []byte) (Header, error) {
	h := Header{Version: 1}
	if len(line) > MaxV1Bytes {
		return h, malformed("version 1: longer than %d bytes", MaxV1Bytes)
	}
	rest, ok := bytes.CutPrefix(line, []byte("PROXY "))
	if !ok {
		return h, ErrNoHeader
	}
	rest, ok = bytes.CutSuffix(rest, []byte("\r\n"))
	if !ok || bytes.ContainsAny(rest, "\r\n") {
		return h, malformed("version 1: the line does not end with its only CRLF")
	}
	if proto, _, _ := bytes.Cut(rest, []byte(" ")); string(proto) == "UNKNOWN" {
		h.Local = true // the rest of the line is to be ignored
		return h, nil
	}
	f := bytes.Split(rest, []byte(" "))
	if len(f) != 5 {
		return h, malformed("version 1: %d fields, want 5 after PROXY", len(f))
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, malformed("version 1: protocol %q is none of TCP4, TCP6, UNKNOWN", printable(f[0]))
	}
	src, err1 := parseAddr(f[1], want4)
	dst, err2 := parseAddr(f[2], want4)
	sport, err3 := parsePort(f[3])
	dport, err4 := parsePort(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return h, malformed("version 1: %v", err)
	}
	h.Source, h.Dest = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, nil
}

func parseAddr(b []byte, want4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	switch {
	case err != nil:
		return a, fmt.Errorf("address %q: %w", printable(b), err)
	case a.Zone() != "":
		return a, fmt.Errorf("address %q has a zone", printable(b))
	case want4 != a.Is4():
		return a, fmt.Errorf("address %q is not of the line's family", printable(b))
	}
	return a, nil
}

func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535 without leading zeros", printable(b))
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", printable(b))
		}
	}
	p, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is over 65535", printable(b))
	}
	return uint16(p), nil
}

// printable quotes at most 40 bytes of what a peer sent, for an error.
func printable(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// readV2 reads the rest of a version 2 header whose first minBytes bytes
// are start.
func readV2(r io.Reader, start []byte) (Header, error) {
	var fixed [16]byte
	copy(fixed[:], start)
	if _, err := io.ReadFull(r, fixed[minBytes:]); err != nil {
		return Header{}, readErr(err)
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if 16+n > MaxV2Bytes {
		return Header{}, malformed("version 2: %d bytes, over the %d herald takes", 16+n, MaxV2Bytes)
	}
	b := make([]byte, 16+n)
	copy(b, fixed[:])
	if _, err := io.ReadFull(r, b[16:]); err != nil {
		return Header{}, readErr(err)
	}
	return ParseV2(b)
}

// ParseV2 parses a whole version 2 header: its 16 fixed bytes and the
// Length bytes after them.
func ParseV2(b []byte) (Header, error) {
	h := Header{Version: 2}
	if len(b) < 16 || !bytes.HasPrefix(b, v2Signature) {
		return h, ErrNoHeader
	}
	if n := int(binary.BigEndian.Uint16(b[14:16])); len(b) != 16+n {
		return h, malformed("version 2: %d bytes after the fixed 16, Length says %d", len(b)-16, n)
	}
	if b[12]&0xf0 != v2Version {
		return h, malformed("version 2: version nibble %#x, want 2", b[12]>>4)
	}
	fam, proto, body := b[13]>>4, b[13]&0x0f, b[16:]
	switch b[12] & 0x0f {
	case v2CmdLocal:
		h.Local = true // the addresses, if any, are to be ignored
		return h, nil
	case v2CmdProxy:
	default:
		return h, malformed("version 2: unknown command %#x", b[12]&0x0f)
	}
	if proto > v2ProtoStrm {
		return h, malformed("version 2: transport %#x on a stream listener", proto)
	}
	switch fam {
	case v2FamInet:
		if len(body) < v2LenInet {
			return h, malformed("version 2: %d address bytes for INET, want %d", len(body), v2LenInet)
		}
		src, dst := netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case v2FamInet6:
		if len(body) < v2LenInet6 {
			return h, malformed("version 2: %d address bytes for INET6, want %d", len(body), v2LenInet6)
		}
		src, dst := netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	case v2FamUnspec, v2FamUnix:
		// No IP address to use: the connection's own stands, as the
		// specification asks.
		h.Local = true
	default:
		return h, malformed("version 2: unknown address family %#x", fam)
	}
	if !h.Local && proto != v2ProtoStrm {
		return h, malformed("version 2: an INET or INET6 address without the STREAM transport")
	}
	return h, nil
}
