package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn is a minimal HTTP/2 client connection that speaks gRPC, for the
// load generator: pre-encoded request headers, hand-encoded messages, and
// responses parsed in place, so that a call or a delivery costs little
// more than the syscalls. A grpc-go client costs several times more per
// message, which on a 2-core machine would measure the client, not the
// server. It is owned by one goroutine, which both writes and reads.
//
// What it does: the client preface and SETTINGS (a large receive window,
// so the server is rarely held back), ACKs for the server's SETTINGS and
// PINGs, WINDOW_UPDATEs as data is received, send-side flow control for
// requests, gRPC message framing (5-byte prefix) in both directions, and
// the grpc-status of each stream's trailers. What it does not: TLS,
// compression, server push, priorities, CONTINUATION of its own headers.
type h2Conn struct {
	// mu, when set, makes the connection shared: one goroutine reads
	// (readFrame takes mu to handle what it read), others open streams and
	// write, holding mu. Unshared connections have one owner and no lock.
	mu *sync.Mutex

	conn net.Conn
	bw   *bufio.Writer
	br   *bufio.Reader
	fr   *http2.Framer

	nextID     uint32
	sendConn   int64            // connection send window
	sendInit   int64            // the server's initial stream window
	sendStream map[uint32]int64 // send windows of open streams
	recvConn   int64            // bytes received since the last connection WINDOW_UPDATE

	streams map[uint32]*h2Stream

	enc    *hpack.Encoder    // writes to encBuf; its dynamic table is the server's
	encBuf bytes.Buffer      //
	blocks map[string][]byte // header blocks by path, once fully indexed
}

// h2Stream is one call on an h2Conn.
type h2Stream struct {
	id     uint32
	buf    []byte // received DATA; buf[r:] is not yet taken as messages
	r      int
	recv   int64  // bytes received since the last stream WINDOW_UPDATE
	ended  bool   // the server ended the stream (trailers or RST_STREAM)
	status int    // grpc-status from the trailers; -1 until known
	msg    string // grpc-message
}

// h2Window is the receive window the client advertises, per stream and
// for the connection; an update is sent when half of it is used.
const h2Window = 1 << 30

// errStreamEnded is returned when a call ended without an error status.
var errStreamEnded = errors.New("the server ended the stream")

// grpcStatusError is a stream that ended with a non-zero grpc-status.
type grpcStatusError struct {
	code int
	msg  string
}

func (e *grpcStatusError) Error() string {
	return "grpc status " + strconv.Itoa(e.code) + ": " + e.msg
}

// newH2Conn starts HTTP/2 on conn: the preface, SETTINGS and the
// connection window. The server's SETTINGS are read as frames come.
// readBuf sizes the read buffer: small for the many streams of a fan-out,
// larger for a publisher's many answers.
func newH2Conn(conn net.Conn, readBuf int) (*h2Conn, error) {
	c := &h2Conn{
		conn:       conn,
		bw:         bufio.NewWriterSize(conn, 4096),
		nextID:     1,
		sendConn:   65535,
		sendInit:   65535,
		sendStream: make(map[uint32]int64),
		streams:    make(map[uint32]*h2Stream),
		blocks:     make(map[string][]byte),
	}
	c.enc = hpack.NewEncoder(&c.encBuf)
	c.br = bufio.NewReaderSize(conn, readBuf)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 64 << 10
	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		return nil, err
	}
	if err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2Window},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20},
	); err != nil {
		return nil, err
	}
	if err := c.fr.WriteWindowUpdate(0, h2Window-65535); err != nil {
		return nil, err
	}
	return c, c.bw.Flush()
}

// h2Call names a gRPC method of a server: the request headers of a call.
type h2Call struct {
	authority, path string
}

// headers returns the header block of a call. The first block of a path
// puts its fields into the connection's HPACK table; from the second on
// the block is all table indexes, the same every time, so it is encoded
// once and reused (the server decodes it with table lookups).
func (c *h2Conn) headers(call h2Call) []byte {
	if b, ok := c.blocks[call.path]; ok {
		return b
	}
	c.encBuf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", call.path}, {":authority", call.authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "herald-bench"},
	} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	b := bytes.Clone(c.encBuf.Bytes())
	if _, seen := c.blocks[call.path+"\x00first"]; seen {
		c.blocks[call.path] = b
	} else {
		c.blocks[call.path+"\x00first"] = nil
	}
	return b
}

// open starts a call; nothing is flushed.
func (c *h2Conn) open(call h2Call) (*h2Stream, error) {
	headers := c.headers(call)
	st := &h2Stream{id: c.nextID, status: -1}
	c.nextID += 2
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: headers, EndHeaders: true}); err != nil {
		return nil, err
	}
	c.streams[st.id] = st
	c.sendStream[st.id] = c.sendInit
	return st, nil
}

// canSend reports whether a message of n bytes (without its prefix) fits
// the send windows of the connection and of st.
func (c *h2Conn) canSend(st *h2Stream, n int) bool {
	need := int64(n + 5)
	return c.sendConn >= need && c.sendStream[st.id] >= need
}

// send writes one gRPC message on st (end closes the client's side); the
// caller checked canSend. Nothing is flushed.
func (c *h2Conn) send(st *h2Stream, msg []byte, end bool) error {
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(msg)))
	c.sendConn -= int64(len(msg) + 5)
	c.sendStream[st.id] -= int64(len(msg) + 5)
	// One DATA frame when it fits the server's 16 KiB default frame size.
	if len(msg)+5 <= 16384 {
		return c.writeData(st.id, end, prefix[:], msg)
	}
	if err := c.fr.WriteData(st.id, false, prefix[:]); err != nil {
		return err
	}
	for len(msg) > 0 {
		n := min(len(msg), 16384)
		if err := c.fr.WriteData(st.id, end && n == len(msg), msg[:n]); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}

// writeData writes one DATA frame holding a then b, without joining them
// in a buffer of its own: the frame header goes straight to the writer.
func (c *h2Conn) writeData(id uint32, end bool, a, b []byte) error {
	n := len(a) + len(b)
	var hdr [9]byte
	hdr[0], hdr[1], hdr[2] = byte(n>>16), byte(n>>8), byte(n)
	hdr[3] = byte(http2.FrameData)
	if end {
		hdr[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(hdr[5:], id&(1<<31-1))
	c.bw.Write(hdr[:])
	c.bw.Write(a)
	_, err := c.bw.Write(b)
	return err
}

// flush sends what was written.
func (c *h2Conn) flush() error { return c.bw.Flush() }

// buffered reports whether a frame (or part of one) has been read from the
// socket and not yet taken: a caller that answers frames can handle all of
// them before writing once.
func (c *h2Conn) buffered() bool { return c.br.Buffered() > 0 }

// readFrame reads one frame and handles it: connection frames are answered,
// DATA is appended to its stream (with window updates as needed), trailers
// end their stream. It returns the stream the frame was for, or nil.
func (c *h2Conn) readFrame() (*h2Stream, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	if c.mu != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	switch f := f.(type) {
	case *http2.DataFrame:
		st := c.streams[f.StreamID]
		n := int64(len(f.Data()))
		c.recvConn += int64(f.Length)
		if c.recvConn >= h2Window/2 {
			if err := c.fr.WriteWindowUpdate(0, uint32(c.recvConn)); err != nil {
				return nil, err
			}
			c.recvConn = 0
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
		if st == nil {
			return nil, nil
		}
		st.add(f.Data())
		st.recv += n
		if st.recv >= h2Window/2 && !f.StreamEnded() {
			if err := c.fr.WriteWindowUpdate(st.id, uint32(st.recv)); err != nil {
				return nil, err
			}
			st.recv = 0
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
		if f.StreamEnded() {
			c.end(st)
		}
		return st, nil
	case *http2.MetaHeadersFrame:
		st := c.streams[f.StreamID]
		if st == nil {
			return nil, nil
		}
		if s := f.PseudoValue("status"); s != "" && s != "200" {
			st.status, st.msg = 2, "HTTP status "+s
		}
		for _, hf := range f.RegularFields() {
			switch hf.Name {
			case "grpc-status":
				st.status, _ = strconv.Atoi(hf.Value)
			case "grpc-message":
				st.msg = decodeGRPCMessage(hf.Value)
			}
		}
		if f.StreamEnded() {
			c.end(st)
		}
		return st, nil
	case *http2.RSTStreamFrame:
		st := c.streams[f.StreamID]
		if st == nil {
			return nil, nil
		}
		if st.status < 0 {
			st.status, st.msg = 14, "stream reset: "+f.ErrCode.String()
		}
		c.end(st)
		return st, nil
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil, nil
		}
		err := f.ForeachSetting(func(s http2.Setting) error {
			if s.ID == http2.SettingInitialWindowSize {
				delta := int64(s.Val) - c.sendInit
				c.sendInit = int64(s.Val)
				for id := range c.sendStream {
					c.sendStream[id] += delta
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := c.fr.WriteSettingsAck(); err != nil {
			return nil, err
		}
		return nil, c.bw.Flush()
	case *http2.PingFrame:
		if f.IsAck() {
			return nil, nil
		}
		if err := c.fr.WritePing(true, f.Data); err != nil {
			return nil, err
		}
		return nil, c.bw.Flush()
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			c.sendConn += int64(f.Increment)
		} else if _, ok := c.sendStream[f.StreamID]; ok {
			c.sendStream[f.StreamID] += int64(f.Increment)
		}
		return nil, nil
	case *http2.GoAwayFrame:
		return nil, fmt.Errorf("the server sent GOAWAY (%v)", f.ErrCode)
	}
	return nil, nil
}

// end marks st ended and forgets it.
func (c *h2Conn) end(st *h2Stream) {
	st.ended = true
	if st.status < 0 {
		st.status = 0
	}
	delete(c.streams, st.id)
	delete(c.sendStream, st.id)
}

// add appends received DATA to st, reusing its buffer: messages taken
// from st before are no longer valid.
func (st *h2Stream) add(data []byte) {
	switch {
	case st.r == len(st.buf):
		st.buf, st.r = st.buf[:0], 0
	case st.r > cap(st.buf)/2:
		n := copy(st.buf, st.buf[st.r:])
		st.buf, st.r = st.buf[:n], 0
	}
	st.buf = append(st.buf, data...)
}

// nextMessage takes the next complete gRPC message of st, which stays
// valid until st receives more. ok is false when none is complete yet.
func (st *h2Stream) nextMessage() (msg []byte, ok bool, err error) {
	in := st.buf[st.r:]
	if len(in) < 5 {
		return nil, false, nil
	}
	if in[0] != 0 {
		return nil, false, errors.New("a compressed gRPC message: the load generator asks for none")
	}
	n := int(binary.BigEndian.Uint32(in[1:5]))
	if len(in) < 5+n {
		return nil, false, nil
	}
	st.r += 5 + n
	return in[5 : 5+n], true, nil
}

// err returns the error a finished stream ended with, or errStreamEnded.
func (st *h2Stream) err() error {
	if st.status > 0 {
		return &grpcStatusError{code: st.status, msg: st.msg}
	}
	return errStreamEnded
}

// decodeGRPCMessage undoes the percent-encoding of grpc-message.
func decodeGRPCMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
