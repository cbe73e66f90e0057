package httpfast

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

func TestParseHead(t *testing.T) {
	const ok = "POST /v1/topics/a.b/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	for _, tt := range []struct {
		name string
		in   string
		want parseResult
	}{
		{"publish", ok, fast},
		{"incomplete", ok[:30], needMore},
		{"no body header", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\n\r\n", fast},
		{"GET", "GET /v1/topics/a/events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"HTTP/1.0", "POST /v1/topics/a/events HTTP/1.0\r\nHost: x\r\n\r\n", handoff},
		{"query", "POST /v1/topics/a/events?type=x HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"escaped", "POST /v1/topics/%61/events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"dot dot", "POST /v1/topics/../events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"two segments", "POST /v1/topics/a/b/events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"batch path", "POST /v1/events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"no host", "POST /v1/topics/a/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n", handoff},
		{"two hosts", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", handoff},
		{"bad host", "POST /v1/topics/a/events HTTP/1.1\r\nHost: a b\r\n\r\n", handoff},
		{"chunked", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", handoff},
		{"length and chunked", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", handoff},
		{"gzip", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n", handoff},
		{"empty topic", "POST /v1/topics//events HTTP/1.1\r\nHost: x\r\n\r\n", handoff},
		{"expect", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", handoff},
		{"origin", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\n\r\n", handoff},
		{"two lengths", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", handoff},
		{"signed length", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n", handoff},
		{"folded header", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", handoff},
		{"bare LF", "POST /v1/topics/a/events HTTP/1.1\nHost: x\n\n", handoff},
		{"bare LF incomplete", "POST /v1/topics/a/events HTTP/1.1\nHost: x\n", handoff},
		{"space in name", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n", handoff},
		{"control in value", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nX-A: 1\x01\r\n\r\n", handoff},
		{"upgrade", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", handoff},
		{"connection close", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", fast},
		{"huge head", "POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 70000), handoff},
	} {
		var h head
		if got := parseHead([]byte(tt.in), 64<<10, &h); got != tt.want {
			t.Errorf("%s: parseHead = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestParseHeadFields(t *testing.T) {
	in := "POST /v1/topics/t-1/events HTTP/1.1\r\nhost: x\r\ncontent-type:  text/plain \r\nIDEMPOTENCY-KEY: k\r\nHerald-Event-Type: ty\r\nHerald-Header-A: 1\r\nherald-header-b:\t2\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
	var h head
	if parseHead([]byte(in), 64<<10, &h) != fast {
		t.Fatal("not fast")
	}
	if string(h.topic) != "t-1" || h.contentLength != 5 || string(h.contentType) != "text/plain" || string(h.key) != "k" ||
		string(h.typ) != "ty" || !h.close || h.size != len(in)-5 || len(h.headers) != 2 ||
		string(h.headers[0][0]) != "A" || string(h.headers[1][1]) != "2" {
		t.Errorf("parsed %+v", h)
	}
}

// FuzzParseHead checks the fast path against net/http: a head it serves
// must be one net/http's server would serve, with the same meaning.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: k\r\nHerald-Header-X: 1\r\nContent-Length: 0\r\n\r\n",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nHerald-Event-Type: t\r\n\r\n",
		"GET /v1/topics/a/events HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hk_abc\r\nContent-Length: 0\r\n\r\n",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nAuthorization: a\r\nauthorization: b\r\n\r\n",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nCookie: herald_token=t\r\n\r\n",
		// Issue 15's malformed requests: each is handed off.
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/topics//events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("a", 70000) + "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h head
		if parseHead(b, 64<<10, &h) != fast {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("fast path took %q; net/http refuses it: %v", b, err)
		}
		// What net/http's server checks beyond ReadRequest.
		if hosts := r.Header["Host"]; len(hosts) > 1 || !httpguts.ValidHostHeader(r.Host) {
			t.Fatalf("fast path took %q with Host %q %q", b, r.Host, hosts)
		}
		for k, vv := range r.Header {
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("fast path took %q with header %q: %q", b, k, v)
				}
			}
		}
		if r.Method != "POST" || r.URL.Path != "/v1/topics/"+string(h.topic)+"/events" || r.URL.RawQuery != "" || r.URL.RawPath != "" {
			t.Fatalf("fast path took %q: net/http sees %s %s", b, r.Method, r.URL)
		}
		if r.Header.Get("Content-Encoding") != "" {
			t.Fatalf("fast path took %q, a coded body it cannot decode", b)
		}
		if len(r.TransferEncoding) > 0 || r.ContentLength != int64(h.contentLength) || r.Close != h.close {
			t.Fatalf("fast path took %q: length %d close %v; net/http: %d %v %v", b, h.contentLength, h.close, r.ContentLength, r.Close, r.TransferEncoding)
		}
		if vals := r.Header.Values("Authorization"); len(vals) > 1 {
			t.Fatalf("fast path took %q with %d Authorization headers", b, len(vals))
		}
		for name, got := range map[string][]byte{"Content-Type": h.contentType, "Idempotency-Key": h.key, "Herald-Event-Type": h.typ, "Authorization": h.auth} {
			if r.Header.Get(name) != string(got) {
				t.Fatalf("fast path took %q: %s %q, net/http %q", b, name, got, r.Header.Get(name))
			}
		}
		for _, kv := range h.headers {
			if vals := r.Header.Values("Herald-Header-" + string(kv[0])); !containsString(vals, string(kv[1])) {
				t.Fatalf("fast path took %q: header %s=%q, net/http %q", b, kv[0], kv[1], vals)
			}
		}
		body, _ := io.ReadAll(r.Body)
		if want := b[h.size:min(len(b), h.size+h.contentLength)]; !bytes.Equal(body, want) {
			t.Fatalf("fast path took %q: body %q, net/http %q", b, want, body)
		}
	})
}

func containsString(vals []string, s string) bool {
	for _, v := range vals {
		if v == s {
			return true
		}
	}
	return false
}
