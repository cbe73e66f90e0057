package webhook

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// Defaults and bounds of a replay.
const (
	DefaultReplayLimit = 10000
	MaxReplayLimit     = 1000000
)

// ReplayRequest is a range of events to send again: those after a cursor's
// positions, or stored at or after a time, up to Until (a time; zero: up
// to the newest) and at most Limit of them.
type ReplayRequest struct {
	// From is a cursor, an RFC 3339 time, or "earliest".
	From  string
	Until time.Time
	Limit int
}

// Replay is a replay's progress, in a subscription's status.
type Replay struct {
	From      string     `json:"from"`
	Until     *time.Time `json:"until,omitempty"`
	Started   time.Time  `json:"started"`
	Finished  *time.Time `json:"finished,omitempty"`
	Sent      int        `json:"sent"`
	Delivered int        `json:"delivered"`
	Failed    int        `json:"failed"`
	Error     string     `json:"error,omitempty"`
	// Cursor is where the replay is: a replay from it goes on.
	Cursor string `json:"cursor,omitempty"`
}

// Replay sends again, in the background, the events of the subscription
// named name in req's range that its type filter keeps, in order, one
// attempt each (with the same webhook-id as their first delivery, so a
// receiver deduplicating on it sees nothing new unless it lost them).
// Its progress is in the subscription's status. It refuses with
// ErrReplaying while one runs, and with hub.ErrBadInput a bad range.
func (m *Manager) Replay(ctx context.Context, name string, req ReplayRequest) (Replay, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.syncLocked(ctx); err != nil {
		return Replay{}, err
	}
	s, err := m.sub(name)
	if err != nil {
		return Replay{}, err
	}
	if req.Limit == 0 {
		req.Limit = DefaultReplayLimit
	}
	if req.Limit < 0 || req.Limit > MaxReplayLimit {
		return Replay{}, fmt.Errorf("%w: limit must be between 1 and %d, got %d", hub.ErrBadInput, MaxReplayLimit, req.Limit)
	}
	var (
		cur   cursor.Cursor
		since time.Time
	)
	switch {
	case req.From == "earliest":
	case req.From == "":
		return Replay{}, fmt.Errorf("%w: from: give a cursor, an RFC 3339 time or earliest", hub.ErrBadInput)
	default:
		if t, err := time.Parse(time.RFC3339Nano, req.From); err == nil {
			since = t
		} else if cur, err = cursor.Parse(req.From); err != nil {
			return Replay{}, fmt.Errorf("%w: from: %q is none of a cursor, an RFC 3339 time or earliest", hub.ErrBadInput, req.From)
		}
	}
	topics, err := m.resolve(ctx, s.cfg.Topics)
	if err != nil {
		return Replay{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay != nil && s.replay.Finished == nil {
		return Replay{}, fmt.Errorf("%w: %s", ErrReplaying, name)
	}
	r := &Replay{From: req.From, Started: m.clock.Now().UTC().Truncate(time.Millisecond)}
	if !req.Until.IsZero() {
		u := req.Until
		r.Until = &u
	}
	s.replay = r
	ctx, cancel := context.WithCancel(s.ctx)
	out := *r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.runReplay(hub.Internal(ctx), topics, cur, since, req)
	}()
	return out, nil
}

// resolve returns the topics patterns name now: names as they are, and
// the existing topics a pattern matches.
func (m *Manager) resolve(ctx context.Context, patterns []string) ([]string, error) {
	var out []string
	var infos []event.TopicInfo
	for _, p := range patterns {
		if event.ValidateTopic(p) == nil {
			out = append(out, p)
			continue
		}
		if infos == nil {
			var err error
			if infos, err = m.hub.Topics(hub.Internal(ctx)); err != nil {
				return nil, fmt.Errorf("list topics: %w", err)
			}
		}
		for _, in := range infos {
			if matchPattern(p, in.Name) {
				out = append(out, in.Name)
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > cursor.MaxTopics {
		return nil, fmt.Errorf("%w: the webhook's patterns match %d topics; a replay reads at most %d", hub.ErrBadInput, len(out), cursor.MaxTopics)
	}
	return out, nil
}

// runReplay reads the range and sends each event once, in the order the
// pull gives them (each topic's in order).
func (s *sub) runReplay(ctx context.Context, topics []string, cur cursor.Cursor, since time.Time, req ReplayRequest) {
	finish := func(errMsg string) {
		now := s.m.clock.Now().UTC().Truncate(time.Millisecond)
		s.mu.Lock()
		s.replay.Finished, s.replay.Error = &now, errMsg
		s.mu.Unlock()
	}
	if len(topics) == 0 {
		finish("")
		return
	}
	from := hub.FromEarliest
	if cur.Len() > 0 {
		from = hub.FromLatest // topics the cursor does not name: nothing to replay
	}
	sent := 0
	for sent < req.Limit {
		res, err := s.m.hub.Pull(ctx, hub.PullRequest{Topics: topics, Cursor: cur, From: from, Limit: min(1000, req.Limit-sent)})
		if err != nil {
			if ctx.Err() != nil {
				finish("stopped")
			} else {
				finish(err.Error())
			}
			return
		}
		if len(res.Events) == 0 {
			break
		}
		for _, ev := range res.Events {
			if ev.Time < since.UnixMilli() || !s.cfg.wants(ev) {
				continue
			}
			if !req.Until.IsZero() && ev.Time >= req.Until.UnixMilli() {
				continue
			}
			a, _ := s.send(ctx, MessageID(ev), wire.EventJSON(ev), 1)
			if ctx.Err() != nil {
				finish("stopped")
				return
			}
			a.Replay = true
			s.record(a)
			sent++
			s.mu.Lock()
			s.replay.Sent++
			if a.Result == ResultSuccess {
				s.replay.Delivered++
			} else {
				s.replay.Failed++
			}
			s.mu.Unlock()
			if sent >= req.Limit {
				break
			}
		}
		cur = res.Cursor
		s.mu.Lock()
		s.replay.Cursor = cur.String()
		s.mu.Unlock()
	}
	finish("")
}

// Test sends the subscription named name a test event (topic
// "webhook.test", type "herald.webhook.test"), signed like any other, and
// returns the attempt. It does not count toward disabling.
func (m *Manager) Test(ctx context.Context, name string) (Attempt, error) {
	s, err := m.sub(name)
	if err != nil {
		return Attempt{}, err
	}
	now := m.clock.Now()
	ev := testEvent(name, now)
	id := fmt.Sprintf("test:%d", now.UnixNano())
	a, _ := s.send(ctx, id, wire.EventJSON(ev), 1)
	a.Test = true
	s.record(a)
	return a, nil
}
