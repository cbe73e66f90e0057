package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a WebSocket handler over a hub, served on a real socket.
type fixture struct {
	t      *testing.T
	eng    hub.Engine
	hub    *hub.Hub
	h      *Handler
	srv    *httptest.Server
	url    string // ws://…/v1/ws
	conns  atomic.Int64
	groups *group.Manager
}

type fixtureOpts struct {
	hub    hub.Options
	ws     Options
	eng    hub.Engine // default: a memory engine
	sndbuf int        // SO_SNDBUF of the server's sockets; 0: the kernel's
	groups bool       // serve the group commands with a group.Manager (f.groups)
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{t: t, eng: o.eng}
	var closeEng func() error
	if f.eng == nil {
		m := memory.New(memory.Options{})
		f.eng, closeEng = m, m.Close
	}
	f.hub = hub.New(f.eng, o.hub)
	if o.groups {
		m, err := group.New(context.Background(), f.hub, group.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f.groups, o.ws.Groups = m, m
	}
	o.ws.OnConn = func(d int) { f.conns.Add(int64(d)) }
	if o.ws.tick == 0 {
		o.ws.tick = 50 * time.Millisecond
	}
	f.h = New(f.hub, o.ws)
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", f.h)
	f.srv = httptest.NewUnstartedServer(mux)
	if o.sndbuf > 0 {
		f.srv.Listener = sndbufListener{f.srv.Listener, o.sndbuf}
	}
	f.srv.Start()
	f.url = "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/v1/ws"
	t.Cleanup(func() {
		f.hub.Close()
		f.h.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.h.Wait(ctx); err != nil {
			t.Errorf("Wait: %v", err)
		}
		if f.groups != nil {
			f.groups.Close()
		}
		f.srv.Close()
		if closeEng != nil {
			closeEng()
		}
	})
	return f
}

// sndbufListener sets SO_SNDBUF on the connections it accepts.
type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// connOf returns the server's connection whose client id is id.
func (f *fixture) connOf(id string) *conn {
	f.t.Helper()
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	for c := range f.h.conns {
		if c.sub.Client() == id {
			return c
		}
	}
	f.t.Fatalf("no connection with client id %s", id)
	return nil
}

// publish publishes text events through the hub and returns their acks.
func (f *fixture) publish(topic string, data ...string) []event.Ack {
	f.t.Helper()
	var acks []event.Ack
	for _, d := range data {
		a, err := f.hub.Publish(hub.Internal(context.Background()), topic, []event.Record{{Data: []byte(d), Encoding: event.EncodingText}})
		if err != nil {
			f.t.Fatalf("publish to %s: %v", topic, err)
		}
		acks = append(acks, a...)
	}
	return acks
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a WebSocket client written for the tests: it sends exactly
// the bytes it is told to, so that malformed frames can be sent too.
type client struct {
	t       *testing.T
	nc      net.Conn
	br      *bufio.Reader
	welcome msg
	pongs   int // pongs received while reading
}

// msg is a decoded server message.
type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }
func (m msg) num(k string) uint64 { n, _ := m[k].(float64); return uint64(n) }

// dial connects and reads the welcome message.
func (f *fixture) dial(t *testing.T, hdr ...string) *client {
	t.Helper()
	c := f.dialRaw(t, ws.Dialer{}, hdr...)
	c.welcome = c.next()
	if c.welcome.str("op") != "welcome" {
		t.Fatalf("first message %v, want the welcome", c.welcome)
	}
	return c
}

func (f *fixture) dialRaw(t *testing.T, d ws.Dialer, hdr ...string) *client {
	t.Helper()
	if len(hdr) > 0 {
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, f.url)
	if err != nil {
		t.Fatalf("dial %s: %v", f.url, err)
	}
	if br == nil {
		br = bufio.NewReader(nc)
	}
	c := &client{t: t, nc: nc, br: br}
	t.Cleanup(func() { nc.Close() })
	return c
}

// frame writes one masked frame.
func (c *client) frame(fin bool, rsv byte, op ws.OpCode, payload []byte) {
	c.t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f.Header.Rsv = rsv
	f = ws.MaskFrameInPlace(f)
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteFrame(c.nc, f); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

// send writes a command.
func (c *client) send(format string, a ...any) {
	c.t.Helper()
	c.frame(true, 0, ws.OpText, []byte(fmt.Sprintf(format, a...)))
}

// rawFrame is one frame read from the server.
type rawFrame struct {
	h       ws.Header
	payload []byte
}

// read reads one frame.
func (c *client) read() (rawFrame, error) {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return rawFrame{}, err
	}
	if h.Masked {
		return rawFrame{}, errors.New("a masked server frame")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return rawFrame{}, err
	}
	return rawFrame{h, p}, nil
}

// next returns the next message, skipping pings and pongs. A close frame
// fails the test.
func (c *client) next() msg {
	c.t.Helper()
	for {
		f, err := c.read()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.h.OpCode {
		case ws.OpPing:
			continue
		case ws.OpPong:
			c.pongs++
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.payload)
			c.t.Fatalf("closed by the server: %d %s", code, reason)
		}
		if !f.h.Fin || f.h.Rsv != 0 {
			c.t.Fatalf("unexpected frame header %+v", f.h)
		}
		var m msg
		if err := json.Unmarshal(f.payload, &m); err != nil {
			c.t.Fatalf("message %q is not JSON: %v", f.payload, err)
		}
		return m
	}
}

// expect reads the next message and checks its op.
func (c *client) expect(op string) msg {
	c.t.Helper()
	m := c.next()
	if m.str("op") != op {
		c.t.Fatalf("got %v, want a %s message", m, op)
	}
	return m
}

// ackAndEvent reads a publish's ack and the event it made on a topic the
// client subscribes to. They may arrive in either order: the ack is
// written by the command's reader, the event by fan-out.
func (c *client) ackAndEvent() (ack, ev msg) {
	c.t.Helper()
	for ack == nil || ev == nil {
		m := c.next()
		switch {
		case m.str("op") == "ack" && ack == nil:
			ack = m
		case m.str("op") == "event" && ev == nil:
			ev = m
		default:
			c.t.Fatalf("got %v, want one ack and one event", m)
		}
	}
	return ack, ev
}

// expectClose reads until the close frame and checks its code; the
// connection must end after it.
func (c *client) expectClose(code ws.StatusCode) string {
	c.t.Helper()
	for {
		f, err := c.read()
		if err != nil {
			c.t.Fatalf("read, waiting for close %d: %v", code, err)
		}
		if f.h.OpCode != ws.OpClose {
			continue
		}
		got, reason := ws.ParseCloseFrameData(f.payload)
		if got != code {
			c.t.Fatalf("close %d %q, want %d", got, reason, code)
		}
		if _, err := c.read(); err == nil {
			c.t.Fatal("the server sent more after its close frame")
		}
		return reason
	}
}

// subscribe sends a subscribe and reads its reply.
func (c *client) subscribe(id int, fields string) msg {
	c.t.Helper()
	c.send(`{"op":"subscribe","id":%d,%s}`, id, fields)
	m := c.expect("subscribed")
	if m.num("id") != uint64(id) {
		c.t.Fatalf("reply %v to subscribe %d", m, id)
	}
	return m
}

// closePayload builds a close frame body.
func closePayload(code uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, reason...)
}

// rawUpgrade sends an upgrade request followed at once by a command, in
// one write, and returns the connection positioned after the 101 answer.
func rawUpgrade(t *testing.T, f *fixture, cmd string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var b []byte
	b = append(b, "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	fr := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(cmd)))
	var fb strings.Builder
	ws.WriteFrame(&fb, fr)
	b = append(b, fb.String()...)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade answer %q: %v", line, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			return nc, br
		}
	}
}
