package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// wsMaxMessage bounds one message from the server.
const wsMaxMessage = 16 << 20

// wsReadBuffer is the read buffer of one WebSocket subscriber: an event
// frame of a few hundred bytes fits, and is returned without a copy.
const wsReadBuffer = 2048

// WS subscribes over herald's WebSocket protocol (GET /v1/ws,
// docs/protocol.md) on raw TCP connections: the upgrade request and the
// subscribe command go out in one write, and frames are read with a
// bufio.Reader and a few byte checks, without decoding JSON. The payload
// parser finds its fields in the whole event message, so a delivery costs
// one buffered read and no copy.
type WS struct {
	d *Dialer
}

// Open connects, upgrades, subscribes from the latest position, and
// returns once the server has answered the subscribe.
func (t *WS) Open(ctx context.Context, topic string) (Stream, error) {
	return openStream(ctx, t.d, "ws", topic, t.handshake)
}

func (t *WS) handshake(ctx context.Context, conn net.Conn, topic string) (*wsStream, error) {
	stop, err := handshakeDeadline(ctx, conn)
	if err != nil {
		return nil, err
	}
	defer stop()
	// The server reads frames sent right behind the handshake: one write
	// and no round trip before the subscribe.
	s, err := upgradeWS(conn, t.d.host, []byte(`{"op":"subscribe","id":1,"topics":[`+strconv.Quote(topic)+`]}`))
	if err != nil {
		return nil, err
	}
	return s, s.await(conn, `{"op":"subscribed"`, "the subscribe reply")
}

// upgradeWS sends the WebSocket upgrade of GET /v1/ws on conn, with the
// command first (if any) right behind it, and reads the 101.
func upgradeWS(conn net.Conn, host string, first []byte) (*wsStream, error) {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"User-Agent: herald-bench\r\n\r\n"
	b := []byte(req)
	if first != nil {
		b = appendClientFrame(b, 0x1, first)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("write upgrade: %w", err)
	}
	br := bufio.NewReaderSize(conn, wsReadBuffer)
	h, err := readHead(br)
	if err != nil {
		return nil, err
	}
	if h.status != 101 {
		return nil, &errResponse{status: h.status, body: readSnippet(br, h)}
	}
	return &wsStream{conn: conn, br: br}, nil
}

// await reads frames until a text message starting with prefix (then
// clears conn's deadline), an error message, or a failure.
func (s *wsStream) await(conn net.Conn, prefix, what string) error {
	for {
		op, p, err := s.frame()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		switch {
		case op != 0x1:
		case bytes.HasPrefix(p, []byte(prefix)):
			if err := conn.SetDeadline(time.Time{}); err != nil {
				return fmt.Errorf("clear deadline: %w", err)
			}
			return nil
		case bytes.HasPrefix(p, []byte(`{"op":"error"`)):
			return &ServerError{Data: string(p)}
		}
	}
}

// wsStream is one open WebSocket subscription. Next is called by one
// goroutine; Close by any.
type wsStream struct {
	conn      net.Conn      // static after Open
	br        *bufio.Reader // reads conn
	big       []byte        // payloads over the read buffer
	out       []byte        // pongs
	closeOnce sync.Once
}

// wsEventPrefix starts every event message.
var wsEventPrefix = []byte(`{"op":"event"`)

// Next returns the payload of the next event message: the whole message,
// in which the payload parser finds its fields.
func (s *wsStream) Next() ([]byte, error) {
	for {
		op, p, err := s.frame()
		if err != nil {
			return nil, err
		}
		switch op {
		case 0x1:
			if bytes.HasPrefix(p, wsEventPrefix) {
				return p, nil
			}
			if bytes.HasPrefix(p, []byte(`{"op":"gap"`)) {
				return nil, fmt.Errorf("%w: %s", ErrGap, p)
			}
		case 0x8:
			code := 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
				p = p[2:]
			}
			return nil, &ServerError{Data: fmt.Sprintf("close %d %s", code, p)}
		case 0x9:
			s.out = appendClientFrame(s.out[:0], 0xA, p)
			if _, err := s.conn.Write(s.out); err != nil {
				return nil, fmt.Errorf("write pong: %w", err)
			}
		}
	}
}

// frame reads one frame and returns its opcode and payload, valid until
// the next call. Messages from herald are never fragmented or masked.
func (s *wsStream) frame() (byte, []byte, error) {
	b0, err := s.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	b1, err := s.br.ReadByte()
	if err != nil {
		return 0, nil, unexpected(err)
	}
	if b0&0x80 == 0 || b1&0x80 != 0 {
		return 0, nil, errors.New("a fragmented or masked frame from the server")
	}
	n := int64(b1 & 0x7f)
	switch n {
	case 126, 127:
		extLen := 2
		if n == 127 {
			extLen = 8
		}
		ext, err := s.br.Peek(extLen)
		if err != nil {
			return 0, nil, unexpected(err)
		}
		if n == 126 {
			n = int64(binary.BigEndian.Uint16(ext))
		} else {
			n = int64(binary.BigEndian.Uint64(ext))
		}
		s.br.Discard(len(ext))
	}
	if n > wsMaxMessage {
		return 0, nil, fmt.Errorf("a frame of %d bytes", n)
	}
	if int(n) <= s.br.Size() {
		p, err := s.br.Peek(int(n))
		if err != nil {
			return 0, nil, unexpected(err)
		}
		s.br.Discard(int(n)) // p stays valid until the next read
		return b0 & 0x0f, p, nil
	}
	if cap(s.big) < int(n) {
		s.big = make([]byte, n)
	}
	s.big = s.big[:n]
	if _, err := io.ReadFull(s.br, s.big); err != nil {
		return 0, nil, unexpected(err)
	}
	return b0 & 0x0f, s.big, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close closes the connection.
func (s *wsStream) Close() error {
	err := net.ErrClosed
	s.closeOnce.Do(func() { err = s.conn.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// appendClientFrame appends a final, masked client frame.
func appendClientFrame(dst []byte, op byte, p []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	dst = append(dst, mask[:]...)
	for i, c := range p {
		dst = append(dst, c^mask[i&3])
	}
	return dst
}
