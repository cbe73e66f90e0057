package client

import (
	"context"
	"fmt"
	"time"
)

// This file is the long-polling transport of Subscribe (TransportPoll):
// repeated GET /v1/events?wait=… (docs/api.md), each from the cursor of the
// answer before. Every event carries all its details; the client gives
// each message of an answer its own cursor.

// pollGrace is how much longer than its wait a long poll may take before
// the connection is taken for dead.
const pollGrace = 15 * time.Second

// pollStream is a subscription over long polling: the last answer, not yet
// delivered. Each poll is a request of its own; the "connection" lasts as
// long as polls succeed.
type pollStream struct {
	b   *httpBackend
	res PullResult
}

// openPoll sends a first pull from s.cursor, without waiting: its answer
// fixes where each topic starts.
func (b *httpBackend) openPoll(s *Subscription) (stream, error) {
	res, err := b.poll(s, 0)
	if err != nil {
		return nil, err
	}
	return &pollStream{b: b, res: res}, nil
}

// poll sends one pull from s.cursor.
func (b *httpBackend) poll(s *Subscription, wait time.Duration) (PullResult, error) {
	ctx := s.ctx
	if err := ctx.Err(); err != nil {
		return PullResult{}, err // do not dial for a request that cannot be sent
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+pollGrace)
		defer cancel()
	}
	res, err := b.pull(ctx, s.topics, &pullParams{
		readParams: readParams{cursor: s.cursor, from: s.p.from},
		limit:      s.p.pollLimit,
		wait:       wait,
	})
	if err != nil {
		return PullResult{}, fmt.Errorf("long poll: %w", err)
	}
	return res, nil
}

// pump delivers the last answer, then polls again, until a poll fails.
func (ps *pollStream) pump(s *Subscription, attempt *int) error {
	for {
		*attempt = 0 // the poll of ps.res succeeded
		if err := s.deliverPull(ps.res); err != nil {
			return err
		}
		var err error
		if ps.res, err = ps.b.poll(s, s.p.pollWait); err != nil {
			return err
		}
	}
}

func (ps *pollStream) close() {}

// deliverPull delivers a poll answer's gaps, then its events, each with
// the cursor that resumes right after it, then moves to the answer's
// cursor.
func (s *Subscription) deliverPull(res PullResult) error {
	msgs := make([]Message, 0, len(res.Gaps)+len(res.Events))
	for i := range res.Gaps {
		msgs = append(msgs, Message{Gap: &res.Gaps[i]})
	}
	for i := range res.Events {
		msgs = append(msgs, Message{Event: &res.Events[i]})
	}
	if len(msgs) > 0 {
		if !pullCursors(msgs, res.Cursor) {
			for i := range msgs {
				msgs[i].Cursor = ""
			}
			msgs[len(msgs)-1].Cursor = res.Cursor
		}
	}
	for _, m := range msgs {
		if err := s.deliver(m); err != nil {
			return err
		}
		if m.Cursor != "" {
			s.setCursor(m.Cursor)
		}
	}
	if res.Cursor != "" {
		s.setCursor(res.Cursor)
	}
	return nil
}

// pullCursors sets the Cursor of each message of a poll answer whose final
// cursor is final. Within an answer each topic's events are consecutive,
// after the topic's gap if it has one, so the position of a topic before
// the answer is its gap's Requested, else just before its first event,
// else its final position. It reports false when a position cannot be read.
func pullCursors(msgs []Message, final string) bool {
	cur, err := decodeCursor(final)
	if err != nil || len(cur) == 0 {
		return false
	}
	// Wind the final cursor back to where the answer started, last
	// messages first, so that the earliest position of each topic wins.
	for i := len(msgs) - 1; i >= 0; i-- {
		var e cursorEntry
		var err error
		if g := msgs[i].Gap; g != nil {
			e = cursorEntry{topic: g.Topic, offset: g.Requested.Offset}
			e.epoch, err = parseEpoch(g.Requested.Epoch)
		} else {
			ev := msgs[i].Event
			e = cursorEntry{topic: ev.Topic, offset: ev.Offset - 1}
			e.epoch, err = parseEpoch(ev.Epoch)
			if ev.Offset == 0 {
				err = errBadFrame
			}
		}
		if err != nil {
			return false
		}
		cur = setPosition(cur, e)
	}
	// Replay the answer, recording the cursor after each message.
	for i := range msgs {
		var e cursorEntry
		if g := msgs[i].Gap; g != nil {
			e = cursorEntry{topic: g.Topic, offset: g.Resumed.Offset}
			e.epoch, err = parseEpoch(g.Resumed.Epoch)
		} else {
			ev := msgs[i].Event
			e = cursorEntry{topic: ev.Topic, offset: ev.Offset}
			e.epoch, err = parseEpoch(ev.Epoch)
		}
		if err != nil {
			return false
		}
		cur = setPosition(cur, e)
		msgs[i].Cursor = encodeCursor(cur)
	}
	return msgs[len(msgs)-1].Cursor == final
}
