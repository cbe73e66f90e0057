package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a version 2 header: command, family and transport byte, the
// address block and TLVs as given.
func v2(cmd, famProto byte, body []byte) []byte {
	b := append([]byte(nil), v2Signature...)
	b = append(b, 0x20|cmd, famProto, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

// v2Inet is a version 2 PROXY header for src → dst (both IPv4 or both
// IPv6), followed by tlv.
func v2Inet(src, dst netip.AddrPort, tlv ...byte) []byte {
	var body []byte
	fam := byte(0x11)
	if src.Addr().Is6() {
		fam = 0x21
	}
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	body = append(body, s...)
	body = append(body, d...)
	body = binary.BigEndian.AppendUint16(body, src.Port())
	body = binary.BigEndian.AppendUint16(body, dst.Port())
	return v2(1, fam, append(body, tlv...))
}

var (
	src4 = netip.MustParseAddrPort("203.0.113.7:51234")
	dst4 = netip.MustParseAddrPort("10.0.0.1:443")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:51234")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Header
		err  error // nil: a header
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"), Header{Version: 1, Source: src4, Dest: dst4}, nil},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n"), Header{Version: 1, Source: src6, Dest: dst6}, nil},
		{"v1 shortest TCP4", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n"), Header{Version: 1,
			Source: netip.MustParseAddrPort("1.2.3.4:0"), Dest: netip.MustParseAddrPort("5.6.7.8:0")}, nil},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Dest: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, nil},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}, nil},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"), Header{Version: 1, Local: true}, nil},
		{"v2 INET", v2Inet(src4, dst4), Header{Version: 2, Source: src4, Dest: dst4}, nil},
		{"v2 INET6", v2Inet(src6, dst6), Header{Version: 2, Source: src6, Dest: dst6}, nil},
		{"v2 INET with TLVs", v2Inet(src4, dst4, 0xea, 0, 4, 'v', 'p', 'c', 'e'), Header{Version: 2, Source: src4, Dest: dst4}, nil},
		{"v2 LOCAL", v2(0, 0, nil), Header{Version: 2, Local: true}, nil},
		{"v2 UNSPEC", v2(1, 0, nil), Header{Version: 2, Local: true}, nil},
		{"v2 UNIX", v2(1, 0x31, make([]byte, 216)), Header{Version: 2, Local: true}, nil},

		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Header{}, ErrNoHeader},
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Header{}, ErrNoHeader},
		{"v1 lower case", []byte("proxy TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"), Header{}, ErrNoHeader},
		{"v1 unknown protocol", []byte("PROXY UDP4 203.0.113.7 10.0.0.1 51234 443\r\n"), Header{}, ErrMalformed},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::1 10.0.0.1 51234 443\r\n"), Header{}, ErrMalformed},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 203.0.113.7 10.0.0.1 51234 443\r\n"), Header{}, ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::2 51234 443\r\n"), Header{}, ErrMalformed},
		{"v1 port too big", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n"), Header{}, ErrMalformed},
		{"v1 port sign", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 +1 443\r\n"), Header{}, ErrMalformed},
		{"v1 leading zero", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 080 443\r\n"), Header{}, ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4 203.0.113.7  10.0.0.1 51234 443\r\n"), Header{}, ErrMalformed},
		{"v1 too many fields", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443 1\r\n"), Header{}, ErrMalformed},
		{"v1 LF alone", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\n"), Header{}, ErrMalformed},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), Header{}, ErrMalformed},
		{"v2 version 1", append(append([]byte(nil), v2Signature...), 0x11, 0x11, 0, 0), Header{}, ErrMalformed},
		{"v2 unknown command", v2(2, 0x11, make([]byte, 12)), Header{}, ErrMalformed},
		{"v2 short INET", v2(1, 0x11, make([]byte, 11)), Header{}, ErrMalformed},
		{"v2 short INET6", v2(1, 0x21, make([]byte, 35)), Header{}, ErrMalformed},
		{"v2 DGRAM", v2(1, 0x12, make([]byte, 12)), Header{}, ErrMalformed},
		{"v2 INET UNSPEC transport", v2(1, 0x10, make([]byte, 12)), Header{}, ErrMalformed},
		{"v2 unknown family", v2(1, 0x41, make([]byte, 12)), Header{}, ErrMalformed},
		{"v2 over the bound", v2(1, 0x11, make([]byte, MaxV2Bytes-15)), Header{}, ErrMalformed},
		{"v1 cut short", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5"), Header{}, io.ErrUnexpectedEOF},
		{"v2 cut short", v2Inet(src4, dst4)[:20], Header{}, io.ErrUnexpectedEOF},
		{"nothing", nil, Header{}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A request follows the header: ReadHeader must leave it.
			after := "GET / HTTP/1.1\r\n\r\n"
			if tt.err != nil {
				after = ""
			}
			r := bytes.NewReader(append(append([]byte(nil), tt.in...), after...))
			got, err := ReadHeader(r)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ReadHeader = %+v, %v; want an error %v", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadHeader = %+v, %v; want %+v", got, err, tt.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != after {
				t.Errorf("left %q after the header, want %q: read past it", rest, after)
			}
		})
	}
}

// FuzzReadHeader checks that ReadHeader neither panics nor reads past a
// header it accepts, and that what it accepts is consistent.
func FuzzReadHeader(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET /"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2Inet(src4, dst4),
		v2Inet(src6, dst6, 0xea, 0, 1, 'x'),
		v2(0, 0, nil),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := ReadHeader(r)
		if err != nil {
			return
		}
		n := len(in) - r.Len()
		switch h.Version {
		case 1:
			if n > MaxV1Bytes || !bytes.HasSuffix(in[:n], []byte("\r\n")) || bytes.Count(in[:n], []byte("\n")) != 1 {
				t.Fatalf("v1 header of %d bytes %q", n, in[:n])
			}
			if h2, err := ParseV1(in[:n]); err != nil || h2 != h {
				t.Fatalf("ParseV1 of what ReadHeader read = %+v, %v; want %+v", h2, err, h)
			}
		case 2:
			if n > MaxV2Bytes || n != 16+int(binary.BigEndian.Uint16(in[14:16])) {
				t.Fatalf("v2 header of %d bytes, Length %d", n, binary.BigEndian.Uint16(in[14:16]))
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
		if !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid() || h.Source.Addr().Zone() != "") {
			t.Fatalf("PROXY header with addresses %v → %v", h.Source, h.Dest)
		}
	})
}
