package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
)

// The gRPC side of the load generator: subscribers on herald's Subscribe
// stream, and publishers on Publish and PublishStream, over h2Conn (raw
// HTTP/2 with hand-encoded messages). Field numbers are those of
// api/herald/v1/herald.proto:
//
//	SubscribeRequest 1 topics, 2 cursor, 3 from
//	Delivery         1 gaps, 2 events, 3 cursor
//	Event            7 data
//	PublishRequest   1 topic, 2 events, 3 id
//	PublishEvent     2 data, 3 encoding
//	PublishResponse  1 acks, 2 id, 3 error
const (
	grpcSubscribePath     = "/herald.v1.Herald/Subscribe"
	grpcPublishPath       = "/herald.v1.Herald/Publish"
	grpcPublishStreamPath = "/herald.v1.Herald/PublishStream"
)

// DefaultGRPCPort is the port of the gRPC address assumed when none is
// given: the server's default grpc.addr port.
const DefaultGRPCPort = "9090"

// GRPC subscribes with the Subscribe stream of herald's gRPC API. By
// default each subscriber has a connection of its own (as SSE has), read
// by h2Conn without allocating per delivery; with perConn > 1 that many
// streams share a connection (HTTP/2 multiplexing, as a gRPC client
// application's subscriptions would), read by one goroutine per connection
// (grpcMux).
type GRPC struct {
	d       *Dialer // dials the gRPC address; static
	perConn int     // streams per connection; static

	mu   sync.Mutex // guards cur and curN
	cur  *grpcMux   // the connection new streams join
	curN int        // streams opened on cur
}

// Open connects, starts a Subscribe call from the latest position and
// waits for its first Delivery (the starting cursor), which shows that the
// subscription is in place.
func (t *GRPC) Open(ctx context.Context, topic string) (Stream, error) {
	if t.perConn > 1 {
		return t.openShared(ctx, topic)
	}
	return openStream(ctx, t.d, "grpc", topic, t.handshake)
}

func (t *GRPC) handshake(ctx context.Context, conn net.Conn, topic string) (*grpcStream, error) {
	stop, err := handshakeDeadline(ctx, conn)
	if err != nil {
		return nil, err
	}
	defer stop()
	c, err := newH2Conn(conn, sseReadBuffer)
	if err != nil {
		return nil, fmt.Errorf("start http/2: %w", err)
	}
	st, err := c.open(h2Call{authority: t.d.host, path: grpcSubscribePath})
	if err != nil {
		return nil, err
	}
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendString(req, topic)
	if err := c.send(st, req, true); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	s := &grpcStream{conn: conn, c: c, st: st}
	// The first Delivery: the starting cursor (and, in principle, events).
	if err := s.nextDelivery(); err != nil {
		return nil, fmt.Errorf("wait for the first delivery: %w", err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clear deadline: %w", err)
	}
	return s, nil
}

// grpcStream is one Subscribe call. Next is called by one goroutine;
// Close by any.
type grpcStream struct {
	conn      net.Conn // static after Open
	c         *h2Conn
	st        *h2Stream
	cur       []byte // the rest of the Delivery being read
	closeOnce sync.Once
}

// nextDelivery reads until a Delivery is complete and makes it current.
func (s *grpcStream) nextDelivery() error {
	for {
		msg, ok, err := s.st.nextMessage()
		if err != nil {
			return err
		}
		if ok {
			s.cur = msg
			return nil
		}
		if s.st.ended {
			return s.streamEnd()
		}
		if _, err := s.c.readFrame(); err != nil {
			return err
		}
	}
}

// streamEnd is the error of a stream the server ended.
func (s *grpcStream) streamEnd() error {
	err := s.st.err()
	var se *grpcStatusError
	if errors.As(err, &se) {
		return &ServerError{Data: se.Error()}
	}
	return err
}

// Next returns the payload of the next event.
func (s *grpcStream) Next() ([]byte, error) {
	for {
		if p, ok, err := nextEventPayload(&s.cur); ok {
			return p, err
		}
		if err := s.nextDelivery(); err != nil {
			return nil, err
		}
	}
}

// nextEventPayload reads the rest of a Delivery, *cur, up to its next gap
// (ErrGap) or event (its payload). ok is false when nothing is left.
func nextEventPayload(cur *[]byte) (payload []byte, ok bool, err error) {
	for len(*cur) > 0 {
		num, typ, n := protowire.ConsumeTag(*cur)
		if n < 0 {
			return nil, true, fmt.Errorf("malformed delivery: %w", protowire.ParseError(n))
		}
		*cur = (*cur)[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, *cur)
			if n < 0 {
				return nil, true, fmt.Errorf("malformed delivery: %w", protowire.ParseError(n))
			}
			*cur = (*cur)[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(*cur)
		if n < 0 {
			return nil, true, fmt.Errorf("malformed delivery: %w", protowire.ParseError(n))
		}
		*cur = (*cur)[n:]
		switch num {
		case 1: // a gap
			return nil, true, ErrGap
		case 2: // an event
			if data, ok := protoField(v, 7); ok {
				return data, true, nil
			}
			return []byte{}, true, nil
		}
	}
	return nil, false, nil
}

// protoField returns the first length-delimited field num of a message.
func protoField(m []byte, num protowire.Number) ([]byte, bool) {
	for len(m) > 0 {
		got, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return nil, false
		}
		m = m[n:]
		if got == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(m)
			return v, n >= 0
		}
		n = protowire.ConsumeFieldValue(got, typ, m)
		if n < 0 {
			return nil, false
		}
		m = m[n:]
	}
	return nil, false
}

// Close closes the connection.
func (s *grpcStream) Close() error {
	err := net.ErrClosed
	s.closeOnce.Do(func() { err = s.conn.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// appendPublishRequest appends a PublishRequest of payloads to topic
// (JSON encoding), with id.
func appendPublishRequest(b []byte, topic string, id uint64, payloads [][]byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, topic)
	for _, p := range payloads {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(len(p))+2))
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1) // ENCODING_JSON
	}
	if id != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, id)
	}
	return b
}

// publishAnswer reads a PublishResponse: the number of acks and the error
// code when the request was refused (PublishStream).
func publishAnswer(m []byte) (acks int, refused string) {
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return acks, "malformed answer"
		}
		m = m[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, m)
			if n < 0 {
				return acks, "malformed answer"
			}
			m = m[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(m)
		if n < 0 {
			return acks, "malformed answer"
		}
		m = m[n:]
		switch num {
		case 1:
			acks++
		case 3:
			code, _ := protoField(v, 1)
			msg, _ := protoField(v, 2)
			return acks, string(code) + ": " + string(msg)
		}
	}
	return acks, ""
}

// openShared opens a stream on the current shared connection, dialing a
// new one when it is full or broken.
func (t *GRPC) openShared(ctx context.Context, topic string) (Stream, error) {
	t.mu.Lock()
	if t.cur == nil || t.curN >= t.perConn || t.cur.broken() {
		m, err := t.dialMux(ctx)
		if err != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("subscribe to %s over grpc: %w", topic, err)
		}
		t.cur, t.curN = m, 0
	}
	m := t.cur
	t.curN++
	t.mu.Unlock()
	s, err := m.open(ctx, topic, t.d.host)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s over grpc: %w", topic, err)
	}
	return s, nil
}

// grpcMux is a connection shared by several Subscribe streams. Its reader
// goroutine, started by dialMux, is the only one that reads; it hands each
// stream copies of its deliveries, and ends when the connection closes
// (after its last stream is closed, or on an error).
type grpcMux struct {
	conn net.Conn
	c    *h2Conn

	mu   sync.Mutex            // the h2Conn's lock (c.mu); guards subs, refs, err
	subs map[uint32]*muxStream // open streams by id
	refs int                   // streams opened and not closed
	err  error                 // why the reader ended; nil while it runs
}

// muxStream is one stream of a grpcMux. Next is called by one goroutine;
// Close by any.
type muxStream struct {
	m         *grpcMux
	id        uint32
	ch        chan []byte   // deliveries, closed when the stream ends (after end is set)
	closed    chan struct{} // closed by Close
	end       error         // why the stream ended
	cur       []byte        // the rest of the delivery being read
	closeOnce sync.Once
}

func (t *GRPC) dialMux(ctx context.Context) (*grpcMux, error) {
	conn, err := t.d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c, err := newH2Conn(conn, 16<<10)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start http/2: %w", err)
	}
	m := &grpcMux{conn: conn, c: c, subs: make(map[uint32]*muxStream)}
	c.mu = &m.mu
	go m.read()
	return m, nil
}

func (m *grpcMux) broken() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err != nil
}

// open starts a Subscribe call on m and waits for its first delivery.
func (m *grpcMux) open(ctx context.Context, topic, authority string) (*muxStream, error) {
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendString(req, topic)
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return nil, m.err
	}
	st, err := m.c.open(h2Call{authority: authority, path: grpcSubscribePath})
	if err == nil {
		err = m.c.send(st, req, true)
	}
	if err == nil {
		err = m.c.flush()
	}
	if err != nil {
		m.mu.Unlock()
		m.conn.Close()
		return nil, err
	}
	s := &muxStream{m: m, id: st.id, ch: make(chan []byte, 64), closed: make(chan struct{})}
	m.subs[st.id] = s
	m.refs++
	m.mu.Unlock()

	t := time.NewTimer(handshakeTimeout)
	defer t.Stop()
	select {
	case d, ok := <-s.ch:
		if !ok {
			s.Close()
			return nil, fmt.Errorf("wait for the first delivery: %w", s.streamEnd())
		}
		s.cur = d
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	case <-t.C:
		s.Close()
		return nil, errors.New("no first delivery within the handshake timeout")
	}
}

// read is m's reader goroutine.
func (m *grpcMux) read() {
	for {
		st, err := m.c.readFrame()
		if err != nil {
			m.fail(err)
			return
		}
		if st == nil {
			continue
		}
		m.mu.Lock()
		s := m.subs[st.id]
		m.mu.Unlock()
		if s == nil {
			continue
		}
		for {
			msg, ok, err := st.nextMessage()
			if err != nil {
				m.fail(err)
				return
			}
			if !ok {
				break
			}
			select {
			case s.ch <- bytes.Clone(msg):
			case <-s.closed:
			}
		}
		if st.ended {
			m.mu.Lock()
			if m.subs[st.id] == s {
				delete(m.subs, st.id)
				s.end = st.err()
				close(s.ch)
			}
			m.mu.Unlock()
		}
	}
}

// fail ends every stream of m with err and closes the connection.
func (m *grpcMux) fail(err error) {
	m.mu.Lock()
	m.err = err
	for id, s := range m.subs {
		delete(m.subs, id)
		s.end = err
		close(s.ch)
	}
	m.mu.Unlock()
	m.conn.Close()
}

// streamEnd is the error of an ended stream.
func (s *muxStream) streamEnd() error {
	var se *grpcStatusError
	if errors.As(s.end, &se) {
		return &ServerError{Data: se.Error()}
	}
	if s.end == nil {
		return errStreamEnded
	}
	return s.end
}

// Next returns the payload of the next event.
func (s *muxStream) Next() ([]byte, error) {
	for {
		p, ok, err := nextEventPayload(&s.cur)
		if ok {
			return p, err
		}
		d, open := <-s.ch
		if !open {
			return nil, s.streamEnd()
		}
		s.cur = d
	}
}

// Close cancels the stream, and closes the connection after its last
// stream.
func (s *muxStream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		m := s.m
		m.mu.Lock()
		if m.subs[s.id] == s {
			delete(m.subs, s.id)
			s.end = errStreamEnded
			close(s.ch)
			if m.err == nil {
				m.c.fr.WriteRSTStream(s.id, http2.ErrCodeCancel)
				m.c.flush()
			}
		}
		m.refs--
		last := m.refs == 0
		m.mu.Unlock()
		if last {
			m.conn.Close()
		}
	})
	return nil
}
