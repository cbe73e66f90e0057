package server

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/limit"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/netio"
	"github.com/heraldhq/herald/internal/wire"
)

// A connection over a connection limit (limits.max_connections, …_per_ip,
// new_connections_per_ip) is refused by the listener before net/http, the
// fast path or gRPC see it, with an answer in the listener's protocol that
// names the limit. The answer is bounded: refuseTime for the whole
// exchange, refuseHeadBytes of request read, and at most 64 refusals at
// once (package limit); beyond that, refused connections are closed
// without a word.
const (
	refuseTime      = time.Second
	refuseHeadBytes = 8 << 10
)

// refuseHTTP answers a refused connection of the HTTP listener. It reads
// the request head, then answers a WebSocket handshake by completing it
// and closing at once with 4029 limit_reached and the limit in the reason
// (a browser's WebSocket sees close codes, never an HTTP status), and any
// other request with the API's error: 503 unavailable when the node is
// full, else 429 limit_reached, with Retry-After. A client that sends no
// request head in time gets the same answer.
func (s *Server) refuseHTTP(nc net.Conn, r *limit.Refusal) {
	nc.SetDeadline(time.Now().Add(refuseTime))
	req, _ := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(nc, refuseHeadBytes), 4<<10))
	if req != nil && s.wsRefusable(req) {
		writeWSRefusal(nc, req.Header.Get("Sec-WebSocket-Key"), r)
	} else {
		nc.Write(s.httpRefusal(req, r))
	}
	linger(nc)
}

// wsRefusable reports whether req is a WebSocket handshake the WebSocket
// handler would have accepted, but for the limit.
func (s *Server) wsRefusable(req *http.Request) bool {
	h := req.Header
	if req.Method != http.MethodGet || !strings.EqualFold(h.Get("Upgrade"), "websocket") ||
		h.Get("Sec-WebSocket-Key") == "" || h.Get("Sec-WebSocket-Version") != "13" {
		return false
	}
	o := h.Get("Origin")
	return o == "" || wire.SameOrigin(o, req.Host) || s.allowOrigin(o) != ""
}

// wsGUID is the handshake's constant (RFC 6455 section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// writeWSRefusal completes a WebSocket handshake and closes the
// connection with limit_reached, naming the limit and the wait.
func writeWSRefusal(nc net.Conn, key string, r *limit.Refusal) {
	sum := sha1.Sum([]byte(key + wsGUID))
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = base64.StdEncoding.AppendEncode(b, sum[:])
	b = append(b, "\r\n\r\n"...)
	text := r.Key + ": retry in " + strconv.Itoa(retrySeconds(r)) + "s"
	frame := ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(reason.MustOf(reason.LimitReached).WSClose), text))
	if _, err := nc.Write(b); err == nil {
		ws.WriteFrame(nc, frame)
	}
}

// httpRefusal returns the HTTP answer to a refused connection whose
// request (nil when none came in time) is req.
func (s *Server) httpRefusal(req *http.Request, r *limit.Refusal) []byte {
	code := reason.LimitReached
	if r.Node {
		code = reason.Unavailable
	}
	status := reason.MustOf(code).HTTP
	body := wire.AppendError(nil, code, r.Message)
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nRetry-After: "...)
	b = strconv.AppendInt(b, int64(retrySeconds(r)), 10)
	if req != nil {
		if o := req.Header.Get("Origin"); o != "" {
			if allow := s.allowOrigin(o); allow != "" {
				b = append(b, "\r\nAccess-Control-Allow-Origin: "...)
				b = append(b, allow...)
				b = append(b, "\r\nVary: Origin"...)
			}
		}
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// retrySeconds is r's Retry-After in whole seconds, at least 1.
func retrySeconds(r *limit.Refusal) int {
	return max(1, int((r.RetryAfter+time.Second-1)/time.Second))
}

// linger closes nc with a lingering close (netio.LingerClose): closing a
// socket with the client's bytes unread would reset the connection, and
// the client could lose the answer.
func linger(nc net.Conn) { netio.LingerClose(nc, refuseTime, 64<<10) }
