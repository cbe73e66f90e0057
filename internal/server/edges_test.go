package server_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// Bad input at the edges (issue 15): each test here drives a real server
// over real sockets the way a hostile or merely unusual client does.

// fastPaths runs f against a server with the fast path on (the default)
// and one with it off, where net/http serves every request.
func fastPaths(t *testing.T, f func(t *testing.T, ts *testServer), opts ...func(*config.Config)) {
	for _, fast := range []bool{true, false} {
		name := "fast path"
		if !fast {
			name = "net/http only"
		}
		t.Run(name, func(t *testing.T) {
			o := append([]func(*config.Config){func(c *config.Config) { c.HTTP.FastPath = fast }}, opts...)
			f(t, startServer(t, o...))
		})
	}
}

// rawExchange writes req on a new connection, then reads one answer and
// reports whether the server closed the connection after it.
func rawExchange(t *testing.T, addr string, req string) (*http.Response, []byte, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := bufio.NewReader(c)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read answer to %q: %v", trimForLog(req), err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("read answer body: %v", err)
	}
	if !res.Close {
		return res, body, false // kept alive: nothing more to wait for
	}
	_, err = r.ReadByte()
	return res, body, err == io.EOF
}

func trimForLog(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// wantRaw checks a raw answer: its status, JSON error code, and whether the
// connection closed after it.
func wantRaw(t *testing.T, res *http.Response, body []byte, closed bool, status int, code string, wantClosed bool) {
	t.Helper()
	wantError(t, response{status: res.StatusCode, header: res.Header, body: body}, status, code)
	if closed != wantClosed {
		t.Errorf("connection closed after the answer = %v, want %v", closed, wantClosed)
	}
}

// TestTooLargeBodyReachesTheClient posts bodies well over the default
// limits (1 MiB single event, 16 MiB batch) with Go's net/http client
// (with a Content-Length, and chunked),
// and with a client that sends its whole body before it reads (as
// Python's httpx and urllib do). Each must read its 413 too_large, not a
// connection reset: the server closes with a lingering close. Repeated,
// so that a race between the answer and the reset shows.
func TestTooLargeBodyReachesTheClient(t *testing.T) {
	const rounds = 20
	big := bytes.Repeat([]byte("x"), 20<<20)
	paths := []struct{ name, path, ct string }{
		{"single", "/v1/topics/big.a/events", "application/octet-stream"},
		{"batch", "/v1/events", "application/json"},
	}
	fastPaths(t, func(t *testing.T, ts *testServer) {
		for _, p := range paths {
			t.Run(p.name+", Go client", func(t *testing.T) {
				for i := range rounds {
					var send io.Reader = bytes.NewReader(big)
					if i%2 == 1 {
						send = io.MultiReader(send) // length unknown: sent chunked
					}
					req, _ := http.NewRequest(http.MethodPost, ts.base+p.path, send)
					req.Header.Set("Content-Type", p.ct)
					res, err := ts.client.Do(req)
					if err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
					body, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil {
						t.Fatalf("round %d: read the answer: %v", i, err)
					}
					wantError(t, response{status: res.StatusCode, header: res.Header, body: body}, http.StatusRequestEntityTooLarge, "too_large")
				}
			})
			t.Run(p.name+", send all then read", func(t *testing.T) {
				head := "POST " + p.path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + p.ct + "\r\nContent-Length: " +
					strconv.Itoa(len(big)) + "\r\n\r\n"
				for i := range rounds / 2 {
					res, body, _ := rawExchange(t, ts.addr, head+string(big))
					if res.StatusCode != http.StatusRequestEntityTooLarge {
						t.Fatalf("round %d: status %d: %s", i, res.StatusCode, body)
					}
				}
			})
		}
		if _, ok := ts.info("big.a"); ok {
			t.Error("an oversize publish created its topic")
		}
	})
}

// TestRequestSmuggling sends requests with both Content-Length and
// Transfer-Encoding (and their kin) as the first request of a connection
// and behind others: each is refused with 400 and the connection closed
// (RFC 9112 §6.1), and nothing is stored.
func TestRequestSmuggling(t *testing.T) {
	const smuggle = "POST /v1/topics/smug.a/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
	tests := []struct{ name, req string }{
		{"length and chunked", smuggle},
		{"chunked first", "POST /v1/topics/smug.a/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n"},
		{"batch", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"behind a GET", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + smuggle},
		{"behind a publish", "POST /v1/topics/smug.b/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" + smuggle},
		{"HTTP/1.0 chunked", "POST /v1/topics/smug.a/events HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}"},
		{"folded header", "POST /v1/topics/smug.a/events HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\n{}"},
	}
	fastPaths(t, func(t *testing.T, ts *testServer) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, tt.req)
				r := bufio.NewReader(c)
				var last *http.Response
				var body []byte
				for {
					res, err := http.ReadResponse(r, nil)
					if err != nil {
						break
					}
					body, _ = io.ReadAll(res.Body)
					res.Body.Close()
					last = res
					if res.StatusCode == http.StatusBadRequest {
						break
					}
				}
				if last == nil {
					t.Fatal("no answer")
				}
				_, err = r.ReadByte()
				wantRaw(t, last, body, err == io.EOF, http.StatusBadRequest, "bad_request", true)
				if !last.Close {
					t.Error("the 400 does not say Connection: close")
				}
			})
		}
		if _, ok := ts.info("smug.a"); ok {
			t.Error("a smuggled request was stored")
		}
	})
}

// TestHeadTooLarge sends a request line and headers over the 64 KiB limit:
// the answer is 431 in the API's JSON form, read in full by the client
// (not a reset), first on a connection or behind another request.
func TestHeadTooLarge(t *testing.T) {
	longHeader := "GET /v1/topics HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
	longLine := "GET /v1/topics?x=" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	publish := "POST /v1/topics/h.a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 70) + "\r\n{}"
	fastPaths(t, func(t *testing.T, ts *testServer) {
		for _, tt := range []struct{ name, req string }{
			{"long header", longHeader},
			{"long request line", longLine},
			{"many headers on a publish", publish},
		} {
			t.Run(tt.name, func(t *testing.T) {
				for i := range 5 {
					res, body, closed := rawExchange(t, ts.addr, tt.req)
					wantRaw(t, res, body, closed, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", true)
					if i == 0 && !strings.Contains(string(body), "65536") {
						t.Errorf("the message does not name the limit: %s", body)
					}
				}
			})
		}
		t.Run("behind another request", func(t *testing.T) {
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"+longHeader)
			r := bufio.NewReader(c)
			for _, want := range []int{200, 431} {
				res, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatalf("read answer %d: %v", want, err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != want {
					t.Fatalf("status %d, want %d: %s", res.StatusCode, want, body)
				}
			}
		})
	})
}

// TestUncleanPaths: a path with an empty or dot segment is answered in the
// API's form, not redirected by ServeMux to its cleaned form.
func TestUncleanPaths(t *testing.T) {
	fastPaths(t, func(t *testing.T, ts *testServer) {
		for _, tt := range []struct {
			req, code string
			status    int
		}{
			{"POST /v1/topics//events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "bad_topic", 400},
			{"POST /v1/topics/./events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "bad_topic", 400},
			{"POST /v1/topics/../events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "bad_topic", 400},
			{"GET /v1/topics//events HTTP/1.1\r\nHost: x\r\n\r\n", "bad_topic", 400},
			{"GET /v1//topics HTTP/1.1\r\nHost: x\r\n\r\n", "not_found", 404},
			{"GET /v1/./events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n", "not_found", 404},
		} {
			res, body, _ := rawExchange(t, ts.addr, tt.req)
			if res.StatusCode != tt.status {
				t.Errorf("%q: status %d, want %d: %s", trimForLog(tt.req), res.StatusCode, tt.status, body)
				continue
			}
			wantError(t, response{status: res.StatusCode, header: res.Header, body: body}, tt.status, tt.code)
		}
		if r := ts.get("/v1/topics"); !strings.Contains(string(r.body), `"topics":[]`) {
			t.Errorf("an unclean path stored something: %s", r.body)
		}
	})
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestContentEncoding: a gzip body is decoded (the payload is what was
// compressed, never the compressed bytes), under the same limits applied
// to the decoded bytes; other codings are refused with 415.
func TestContentEncoding(t *testing.T) {
	// Decompression bombs: a few KiB that inflate past the limits.
	bomb := gz(t, make([]byte, 2<<20))
	batchBomb := gz(t, append(append([]byte(`{"events":[{"topic":"ce.c","text":"`), bytes.Repeat([]byte("a"), 17<<20)...), `"}]}`...))
	fastPaths(t, func(t *testing.T, ts *testServer) {
		r := ts.do(http.MethodPost, "/v1/topics/ce.a/events", gz(t, []byte(`{"n":1}`)),
			"Content-Type", "application/json", "Content-Encoding", "gzip")
		if r.status != http.StatusCreated {
			t.Fatalf("gzip publish: %d %s", r.status, r.body)
		}
		if ev := ts.lastEvent("ce.a"); ev.Encoding != "json" || !jsonEqual(t, ev.Data, `{"n":1}`) {
			t.Errorf("stored %s %s, want the decoded JSON", ev.Encoding, ev.Data)
		}
		r = ts.do(http.MethodPost, "/v1/events", gz(t, []byte(`{"events":[{"topic":"ce.b","text":"hi"}]}`)),
			"Content-Type", "application/json", "Content-Encoding", "gzip")
		if r.status != http.StatusOK {
			t.Fatalf("gzip batch: %d %s", r.status, r.body)
		}
		if ev := ts.lastEvent("ce.b"); ev.Encoding != "text" || !jsonEqual(t, ev.Data, `"hi"`) {
			t.Errorf("stored %s %s, want the decoded text", ev.Encoding, ev.Data)
		}
		wantError(t, ts.do(http.MethodPost, "/v1/topics/ce.c/events", bomb, "Content-Type", "application/octet-stream", "Content-Encoding", "gzip"),
			http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, ts.do(http.MethodPost, "/v1/events", batchBomb, "Content-Type", "application/json", "Content-Encoding", "gzip"),
			http.StatusRequestEntityTooLarge, "too_large")
		for _, tt := range []struct {
			path, ct, coding string
			body             []byte
			status           int
			code             string
		}{
			{"/v1/topics/ce.c/events", "application/json", "deflate", []byte(`{}`), 415, "unsupported_media_type"},
			{"/v1/topics/ce.c/events", "application/json", "br", []byte(`{}`), 415, "unsupported_media_type"},
			{"/v1/topics/ce.c/events", "application/json", "gzip, gzip", gz(t, gz(t, []byte(`{}`))), 415, "unsupported_media_type"},
			{"/v1/topics/ce.c/events", "application/json", "gzip", []byte(`{}`), 400, "bad_request"},
			{"/v1/topics/ce.c/events", "application/json", "gzip", gz(t, []byte(`{}`))[:10], 400, "bad_request"},
			{"/v1/events", "application/json", "deflate", []byte(`{"events":[{"topic":"ce.c","data":1}]}`), 415, "unsupported_media_type"},
			{"/v1/events", "application/json", "gzip", []byte(`{"events":[{"topic":"ce.c","data":1}]}`), 400, "bad_request"},
		} {
			r := ts.do(http.MethodPost, tt.path, tt.body, "Content-Type", tt.ct, "Content-Encoding", tt.coding)
			wantError(t, r, tt.status, tt.code)
		}
		if _, ok := ts.info("ce.c"); ok {
			t.Error("a refused encoded publish created its topic")
		}
	})
}
