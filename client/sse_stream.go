package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// This file is the Server-Sent Events transport of Subscribe
// (TransportSSE): one GET /v1/sse stream (docs/api.md), resumed with
// Last-Event-ID. An SSE frame holds only the event's type, its payload and
// the stream's cursor; handleFrame recovers the rest (see Event).

// sseStream is one open SSE connection of a subscription.
type sseStream struct {
	first    *sseFrame // the starting frame, read by openSSE and not yet handled
	body     io.ReadCloser
	p        *sseParser
	cancel   context.CancelFunc // ends the request
	idle     *time.Timer        // nil without an idle timeout
	timedOut atomic.Bool        // idle fired
}

func (st *sseStream) close() {
	if st.idle != nil {
		st.idle.Stop()
	}
	st.cancel()
	st.body.Close()
}

// activityReader restarts the idle timer whenever bytes arrive.
type activityReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.t.Reset(a.d)
	}
	return n, err
}

// openSSE connects, resuming from s.cursor when there is one, and reads
// the stream's first frame, which shows that the server has fixed where
// the stream starts.
func (b *httpBackend) openSSE(s *Subscription) (stream, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	q := url.Values{"topic": s.topics, "from": {string(s.p.from)}}
	req, err := b.newRequest(ctx, http.MethodGet, "/v1/sse", q, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if s.cursor != "" {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	resp, err := b.s.hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		err := readError(resp)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%w: the answer is %q, not an event stream; is %s a herald server?",
			errBadFrame, resp.Header.Get("Content-Type"), b.base)
	}
	st := &sseStream{body: resp.Body, cancel: cancel}
	var r io.Reader = resp.Body
	if d := s.p.idleTimeout; d > 0 {
		st.idle = time.AfterFunc(d, func() {
			st.timedOut.Store(true)
			cancel()
		})
		r = &activityReader{r: r, t: st.idle, d: d}
	}
	st.p = newSSEParser(r)
	first, err := s.nextFrame(st)
	if err != nil {
		st.close()
		return nil, err
	}
	st.first = &first
	return st, nil
}

// nextFrame reads one frame, keeping the server's retry hint.
func (s *Subscription) nextFrame(st *sseStream) (sseFrame, error) {
	f, err := st.p.Next()
	if r := st.p.Retry(); r > 0 {
		s.retry = r
	}
	switch {
	case err == nil:
		return f, nil
	case st.timedOut.Load():
		return f, fmt.Errorf("nothing received for %v (WithIdleTimeout)", s.p.idleTimeout)
	case errors.Is(err, io.EOF):
		return f, errors.New("the server ended the event stream")
	default:
		return f, fmt.Errorf("read the event stream: %w", err)
	}
}

// pump delivers the frames of the connection until it ends.
func (st *sseStream) pump(s *Subscription, attempt *int) error {
	for {
		var f sseFrame
		if st.first != nil {
			f, st.first = *st.first, nil
		} else {
			var err error
			if f, err = s.nextFrame(st); err != nil {
				return err
			}
		}
		if err := s.handleFrame(f); err != nil {
			return err
		}
		*attempt = 0
	}
}

// handleFrame delivers one SSE frame and moves the cursor past it.
func (s *Subscription) handleFrame(f sseFrame) error {
	next := f.ID
	if next == "" {
		next = s.cursor // an empty id never erases a known position
	}
	if !f.HasData {
		s.setCursor(next) // the starting cursor, or a bare id
		return nil
	}
	switch f.Event {
	case "join", "leave":
		if f.ID == s.cursor {
			return nil // a presence notice: it has no id of its own
		}
	case "gap":
		g := new(Gap)
		if err := json.Unmarshal([]byte(f.Data), g); err != nil {
			return fmt.Errorf("%w: gap event: %v", errBadFrame, err)
		}
		if err := s.deliver(Message{Gap: g, Cursor: next}); err != nil {
			return err
		}
		s.setCursor(next)
		return nil
	case "error":
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(f.Data), &e); err != nil || e.Code == "" {
			return fmt.Errorf("%w: error event %q", errBadFrame, f.Data)
		}
		return &Error{Code: e.Code, Message: e.Message}
	}
	ev := &Event{Type: f.Event}
	if data := []byte(f.Data); json.Valid(data) {
		ev.Encoding, ev.Data = EncodingJSON, data
	} else {
		ev.Encoding = EncodingText
		ev.Data, _ = json.Marshal(f.Data) // a string cannot fail
	}
	pos, err := decodeCursor(next)
	switch {
	case err == nil && s.posOK:
		if e, ok := advanced(s.pos, pos); ok {
			ev.Topic, ev.Offset, ev.Epoch = e.topic, e.offset, formatEpoch(e.epoch)
		}
	case len(s.topics) == 1:
		ev.Topic = s.topics[0]
	}
	if err := s.deliver(Message{Event: ev, Cursor: next}); err != nil {
		return err
	}
	s.cursor, s.pos, s.posOK = next, pos, err == nil
	return nil
}
