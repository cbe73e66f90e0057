package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// pollWait is the wait= of each long poll.
const pollWait = 20 * time.Second

// LongPoll subscribes with long polls (GET /v1/events?wait=…) on one
// keep-alive connection per subscriber, passing each answer's cursor to
// the next request.
type LongPoll struct {
	d *Dialer
}

// pollAnswer is the part of a pull answer the load generator reads.
type pollAnswer struct {
	Events []struct {
		Data json.RawMessage `json:"data"`
	} `json:"events"`
	Cursor string            `json:"cursor"`
	Gaps   []json.RawMessage `json:"gaps"`
}

// Open asks for the topic's latest position (wait=0, from=latest); the
// cursor answered is where the stream's long polls start.
func (t *LongPoll) Open(ctx context.Context, topic string) (Stream, error) {
	conn, err := t.d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	s := &pollStream{conn: conn, topic: url.QueryEscape(topic), hc: newHTTPConn(t.d)}
	s.hc.adopt(conn)
	s.hc.timeout = pollWait + 15*time.Second
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := s.poll(ctx, "/v1/events?from=latest&topic="+s.topic); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to %s by long polling: %w", topic, err)
	}
	return s, nil
}

// pollStream is one long-polling subscriber. Next is called by one
// goroutine; Close by any.
type pollStream struct {
	conn      net.Conn // static after Open; Close closes it
	topic     string   // query-escaped
	hc        *httpConn
	cursor    string
	batch     []json.RawMessage // payloads of the last answer not yet returned
	gaps      int               // gaps of the last answer not yet reported
	closeOnce sync.Once
}

func (s *pollStream) poll(ctx context.Context, path string) error {
	status, body, err := s.hc.Do(ctx, "GET", path, "", nil)
	if err != nil {
		return err
	}
	if status != 200 {
		return &errResponse{status: status, body: string(body)}
	}
	var a pollAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("decode pull answer: %w", err)
	}
	if a.Cursor == "" {
		return errors.New("pull answer without a cursor")
	}
	s.cursor = a.Cursor
	s.gaps = len(a.Gaps)
	s.batch = s.batch[:0]
	for _, e := range a.Events {
		s.batch = append(s.batch, e.Data)
	}
	return nil
}

// Next returns the next event of the last answer, long-polling for more
// when none is left.
func (s *pollStream) Next() ([]byte, error) {
	for {
		if s.gaps > 0 {
			s.gaps--
			return nil, ErrGap
		}
		if len(s.batch) > 0 {
			p := s.batch[0]
			s.batch = s.batch[1:]
			return p, nil
		}
		path := "/v1/events?limit=1000&wait=" + pollWait.String() + "&topic=" + s.topic + "&cursor=" + url.QueryEscape(s.cursor)
		if err := s.poll(context.Background(), path); err != nil {
			return nil, err
		}
	}
}

// Close closes the connection, which ends a long poll in progress.
func (s *pollStream) Close() error {
	err := net.ErrClosed
	s.closeOnce.Do(func() { err = s.conn.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
