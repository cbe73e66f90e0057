package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldhq/herald/internal/reason"
)

// This file is the WebSocket transport of Subscribe (TransportWS): one
// connection to GET /v1/ws speaking herald's JSON protocol
// (docs/protocol.md). The subscription's goroutine dials, sends one
// subscribe command with the subscription's cursor, and reads events,
// answering the server's pings. Every event carries its topic, offset,
// epoch, time, type, encoding, data and headers, like a pull answer.

// wsHandshakeTimeout bounds dialling, the upgrade and the subscribe reply.
const wsHandshakeTimeout = 30 * time.Second

// wsMaxMessage bounds one message from the server: an event of the
// largest payload a default server accepts, in JSON, is well under it.
const wsMaxMessage = 16 << 20

// wsStream is one open WebSocket connection of a subscription. Only the
// subscription's goroutine uses it.
type wsStream struct {
	nc   net.Conn
	br   *bufio.Reader
	idle time.Duration // read deadline per frame; 0: none
	hdr  []byte        // header read buffer
	msg  []byte        // the message being read
}

// wsURL turns the client's base URL into the WebSocket endpoint's.
func (b *httpBackend) wsURL() string {
	u, _ := url.Parse(b.base) // checked by New
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path += "/v1/ws"
	return u.String()
}

// openWS connects, subscribes from s.cursor, and returns once the server
// has answered the subscribe.
func (b *httpBackend) openWS(s *Subscription) (stream, error) {
	ctx, cancel := context.WithTimeout(s.ctx, wsHandshakeTimeout)
	defer cancel()
	h, err := b.headers(ctx)
	if err != nil {
		return nil, err
	}
	var status *Error
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(h),
		OnStatusError: func(code int, _ []byte, resp io.Reader) {
			r, err := http.ReadResponse(bufio.NewReader(io.MultiReader(
				strings.NewReader(fmt.Sprintf("HTTP/1.1 %d x\r\n", code)), resp)), nil)
			if err != nil {
				status = &Error{Status: code, Message: http.StatusText(code)}
				return
			}
			defer r.Body.Close()
			status, _ = readError(r).(*Error)
		},
	}
	if t, ok := b.s.hc.Transport.(*http.Transport); ok {
		// Clone waits for net/http's lazy setup of t, which a request on
		// another goroutine may be doing, and which writes its TLS config
		// (adding h2 to NextProtos: a WebSocket handshake needs HTTP/1.1).
		t = t.Clone()
		if t.TLSClientConfig != nil {
			d.TLSConfig = t.TLSClientConfig
			d.TLSConfig.NextProtos = slices.DeleteFunc(d.TLSConfig.NextProtos, func(p string) bool { return p == "h2" })
		}
		d.NetDial = t.DialContext
	}
	nc, br, _, err := d.Dial(ctx, b.wsURL())
	if err != nil {
		if status != nil {
			return nil, status
		}
		return nil, fmt.Errorf("open websocket %s: %w", b.wsURL(), err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 4096)
	}
	st := &wsStream{nc: nc, br: br, idle: max(s.p.idleTimeout, 0), hdr: make([]byte, ws.MaxHeaderSize)}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := s.subscribeWS(st, b.base); err != nil {
		nc.Close()
		if ctx.Err() != nil && s.ctx.Err() == nil {
			return nil, fmt.Errorf("websocket handshake: %w", ctx.Err())
		}
		return nil, err
	}
	return st, nil
}

// wsCommand is the subscribe command the client sends.
type wsCommand struct {
	Op     string   `json:"op"`
	ID     int      `json:"id"`
	Topics []string `json:"topics"`
	Cursor string   `json:"cursor,omitempty"`
	From   string   `json:"from,omitempty"`
}

// wsMessage is any message of the server; each op uses its own fields.
type wsMessage struct {
	Op     string          `json:"op"`
	ID     json.RawMessage `json:"id"`
	Cursor string          `json:"cursor"`
	// event
	Topic    string            `json:"topic"`
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Time     time.Time         `json:"time"`
	Type     string            `json:"type"`
	Encoding string            `json:"encoding"`
	Data     json.RawMessage   `json:"data"`
	Headers  map[string]string `json:"headers"`
	// gap
	Reason    string   `json:"reason"`
	Requested Position `json:"requested"`
	Resumed   Position `json:"resumed"`
	Earliest  uint64   `json:"earliest"`
	// error
	Code    string `json:"code"`
	Message string `json:"message"`
}

// subscribeWS reads the welcome, sends the subscribe and reads its reply.
// base names the server in errors.
func (s *Subscription) subscribeWS(st *wsStream, base string) error {
	if m, err := st.next(); err != nil {
		return err
	} else if m.Op != "welcome" {
		return fmt.Errorf("%w: the first message is %q, not a welcome; is %s a herald server?", errBadFrame, m.Op, base)
	}
	cmd, _ := json.Marshal(wsCommand{Op: "subscribe", ID: 1, Topics: s.topics, Cursor: s.cursor, From: string(s.p.from)})
	if err := st.write(ws.OpText, cmd); err != nil {
		return fmt.Errorf("send subscribe: %w", err)
	}
	for {
		m, err := st.next()
		if err != nil {
			return err
		}
		switch m.Op {
		case "subscribed":
			// The reply's cursor holds where each topic starts; a topic
			// the subscription had no position for now has one.
			start, err := decodeCursor(m.Cursor)
			if err != nil {
				return fmt.Errorf("%w: subscribed cursor: %v", errBadFrame, err)
			}
			pos := s.pos
			if !s.posOK {
				pos = nil
			}
			for _, e := range start {
				pos = setPosition(pos, e)
			}
			s.setCursor(encodeCursor(pos))
			return nil
		case "error":
			return &Error{Code: m.Code, Message: m.Message}
		}
		// Anything else before the reply (a newer server's notice) is
		// not for this subscription.
	}
}

// close releases the connection.
func (st *wsStream) close() { st.nc.Close() }

// pump delivers the messages of the connection until it ends.
func (st *wsStream) pump(s *Subscription, attempt *int) error {
	stop := context.AfterFunc(s.ctx, func() { st.nc.Close() }) // unblocks the read
	defer stop()
	for {
		m, err := st.next()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrClosed
			}
			return err
		}
		var msg Message
		switch m.Op {
		case "event":
			epoch, err := parseEpoch(m.Epoch)
			if err != nil || m.Topic == "" {
				return fmt.Errorf("%w: event %s/%d with epoch %q", errBadFrame, m.Topic, m.Offset, m.Epoch)
			}
			ev := &Event{Topic: m.Topic, Offset: m.Offset, Epoch: m.Epoch, Time: m.Time, Type: m.Type,
				Encoding: m.Encoding, Data: m.Data, Headers: m.Headers}
			msg = Message{Event: ev, Cursor: s.advance(cursorEntry{topic: m.Topic, epoch: epoch, offset: m.Offset})}
		case "gap":
			epoch, err := parseEpoch(m.Resumed.Epoch)
			if err != nil {
				return fmt.Errorf("%w: gap of %s with epoch %q", errBadFrame, m.Topic, m.Resumed.Epoch)
			}
			g := &Gap{Topic: m.Topic, Reason: m.Reason, Requested: m.Requested, Resumed: m.Resumed, Earliest: m.Earliest}
			msg = Message{Gap: g, Cursor: s.advance(cursorEntry{topic: m.Topic, epoch: epoch, offset: m.Resumed.Offset})}
		default:
			// join and leave (topics with presence), replies, and ops of
			// newer servers are not messages of a Subscription.
			continue
		}
		if err := s.deliver(msg); err != nil {
			return err
		}
		s.setCursor(msg.Cursor)
		*attempt = 0
	}
}

// advance returns the subscription's cursor with e's position set.
func (s *Subscription) advance(e cursorEntry) string {
	pos := s.pos
	if !s.posOK {
		pos = nil
	}
	return encodeCursor(setPosition(append([]cursorEntry(nil), pos...), e))
}

// next returns the next message, answering pings on the way. A close
// frame becomes the error it stands for.
func (st *wsStream) next() (*wsMessage, error) {
	st.msg = st.msg[:0]
	fragmented := false
	for {
		if st.idle > 0 {
			st.nc.SetReadDeadline(time.Now().Add(st.idle))
		}
		h, err := ws.ReadHeaderBuffer(st.br, st.hdr[:2])
		if err != nil {
			return nil, st.readErr(err)
		}
		if h.Masked || h.Rsv != 0 {
			return nil, fmt.Errorf("%w: a masked or extended frame from the server", errBadFrame)
		}
		if h.Length > wsMaxMessage-int64(len(st.msg)) {
			return nil, fmt.Errorf("%w: a message over %d bytes", errBadFrame, wsMaxMessage)
		}
		start := len(st.msg)
		st.msg = append(st.msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(st.br, st.msg[start:]); err != nil {
			return nil, st.readErr(err)
		}
		payload := st.msg[start:]
		switch h.OpCode {
		case ws.OpPing:
			st.msg = st.msg[:start]
			if err := st.write(ws.OpPong, payload); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			st.msg = st.msg[:start]
			continue
		case ws.OpClose:
			return nil, closeError(payload)
		case ws.OpText, ws.OpBinary:
			if fragmented {
				return nil, fmt.Errorf("%w: a new message inside a fragmented one", errBadFrame)
			}
		case ws.OpContinuation:
			if !fragmented {
				return nil, fmt.Errorf("%w: a continuation frame without a message", errBadFrame)
			}
		}
		if !h.Fin {
			fragmented = true
			continue
		}
		m := new(wsMessage)
		if err := json.Unmarshal(st.msg, m); err != nil {
			return nil, fmt.Errorf("%w: a message that is not JSON: %v", errBadFrame, err)
		}
		return m, nil
	}
}

func (st *wsStream) readErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && st.idle > 0 {
		return fmt.Errorf("nothing received for %v (WithIdleTimeout)", st.idle)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the server closed the websocket without a close frame")
	}
	return fmt.Errorf("read the websocket: %w", err)
}

// write sends one masked frame.
func (st *wsStream) write(op ws.OpCode, p []byte) error {
	f := ws.NewFrame(op, true, append([]byte(nil), p...))
	f = ws.MaskFrameInPlace(f)
	st.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, f); err != nil {
		return err
	}
	_, err := st.nc.Write(b.Bytes())
	return err
}

// closeError turns a close frame into the error the subscription acts on:
// an *Error for the codes that say what to do, errBadFrame for protocol
// violations (reconnecting would not help).
func closeError(payload []byte) error {
	if len(payload) < 2 {
		return errors.New("the server closed the websocket")
	}
	code := binary.BigEndian.Uint16(payload)
	text := string(payload[2:])
	_, msg, ok := strings.Cut(text, ": ") // the text starts with the code's name
	if !ok {
		msg = text
	}
	r, known := reason.ByWSClose(code)
	switch {
	case !known || r.Code == reason.ClientClosed:
		return fmt.Errorf("the server closed the websocket: %d %s", code, text)
	case r.Code == reason.ProtocolError || r.Code == reason.InvalidPayload || r.Code == reason.TooLarge:
		return fmt.Errorf("%w: the server closed the websocket: %d %s", errBadFrame, code, text)
	}
	return &Error{Code: string(r.Code), Message: msg}
}
