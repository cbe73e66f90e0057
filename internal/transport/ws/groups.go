package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/wire"
)

// The consumer-group commands (docs/protocol.md, "Consumer groups"):
//
//	{"op":"fetch","id":1,"group":"g","member":"w1","limit":10,"wait":"30s"}
//	  → {"op":"messages","id":1,"group":"g","member":"w1","messages":[
//	       {"id":"…","delivery":1,"deadline":"…","cursor":"…","event":{…}}]}
//	{"op":"ack","id":2,"group":"g","member":"w1","ids":["…"]}
//	{"op":"nak","id":3,"group":"g","member":"w1","ids":["…"],"delay":"10s"}
//	{"op":"in_progress","id":4,"group":"g","member":"w1","ids":["…"]}
//	{"op":"term","id":5,"group":"g","member":"w1","ids":["…"],"reason":"…"}
//	  → {"op":"answered","id":2,"results":[{"id":"…"},
//	       {"id":"…","error":{"code":"not_found","message":"…"}}]}
//
// A fetch waits (up to wait) on a goroutine of its own, so the connection's
// other commands go on meanwhile; at most maxFetches run per connection.
// Answers run on the reader, like a publish. Deliveries a fetch brought
// and the client did not answer (ack, nak, term) are handed back (naked)
// when the connection ends, so another member gets them at once.

// Limits of the group commands.
const (
	maxFetches     = 4              // fetches waiting at once on one connection
	maxFetchLimit  = group.MaxFetch // messages one fetch asks for
	maxAnswerIDs   = 10000          // ids one answer names
	handBackTimout = 5 * time.Second
)

// The group commands' ops.
const (
	opFetch      = "fetch"
	opAck        = "ack"
	opNak        = "nak"
	opInProgress = "in_progress"
	opTerm       = "term"
)

// groupState is a connection's consumer-group side. It is touched by the
// reader (commands), the fetch goroutines and release; mu guards it.
type groupState struct {
	mu      sync.Mutex
	life    context.Context    // ends with the connection; nil until the first fetch
	end     context.CancelFunc // ends life
	ended   bool               // the connection released: nothing more is fetched
	fetches int                // fetch goroutines running
	pending map[string]memberOf
}

// memberOf says whose delivery an id is, and who fetched it (ctx: the
// identity a hand-back naks with).
type memberOf struct {
	group, member string
	ctx           context.Context
}

// groupCommand checks the fields of a group command.
func (cmd *command) checkGroup() error {
	if cmd.Group == "" {
		return badRequest(`%s needs "group"`, cmd.Op)
	}
	switch cmd.Op {
	case opFetch:
		if cmd.Limit < 0 || cmd.Limit > maxFetchLimit {
			return badRequest("limit %d: give 1 to %d (default %d)", cmd.Limit, maxFetchLimit, group.DefaultFetch)
		}
		if len(cmd.IDs) > 0 || len(cmd.Delay) > 0 || cmd.Reason != "" {
			return badRequest("fetch takes group, member, limit and wait")
		}
	default:
		if len(cmd.IDs) == 0 {
			return badRequest(`%s needs "ids", the delivery ids of a fetch's messages`, cmd.Op)
		}
		if len(cmd.IDs) > maxAnswerIDs {
			return badRequest("%d ids in one %s; the limit is %d", len(cmd.IDs), cmd.Op, maxAnswerIDs)
		}
		if len(cmd.Delay) > 0 && cmd.Op != opNak {
			return badRequest("delay is for nak only")
		}
		if cmd.Reason != "" && cmd.Op != opTerm {
			return badRequest("reason is for term only")
		}
		if cmd.Limit != 0 || len(cmd.Wait) > 0 {
			return badRequest("limit and wait are for fetch only")
		}
	}
	return nil
}

// parseDuration reads a wait or delay: a Go duration string ("30s") or a
// number of seconds. Absent is 0.
func parseDuration(name string, raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	var d time.Duration
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, badRequest("%s: %v", name, jsonProblem(err))
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, badRequest(`%s %q: use a duration such as "30s", or a number of seconds`, name, s)
		}
		d = v
	} else {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || f > 1e6 {
			return 0, badRequest(`%s: use a duration such as "30s", or a number of seconds`, name)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return 0, badRequest("%s must not be negative", name)
	}
	return d, nil
}

// groups returns the group manager, or queues the error reply when there
// is none.
func (c *conn) groups(id []byte) *group.Manager {
	if c.h.opts.Groups == nil {
		c.reply(&note{frame: errorFrame(id, reason.Unavailable, "consumer groups are not available: "+group.ErrUnsupported.Error())})
	}
	return c.h.opts.Groups
}

// member is cmd's member, or the connection's client id.
func (c *conn) member(cmd *command) string {
	if cmd.Member != "" {
		return cmd.Member
	}
	return c.sub.Client()
}

// fetch starts a fetch on a goroutine of its own; its reply is queued when
// it returns.
func (c *conn) fetch(cmd *command) {
	m := c.groups(cmd.ID)
	if m == nil {
		return
	}
	wait, err := parseDuration("wait", cmd.Wait)
	if err == nil && wait > c.h.opts.MaxWait {
		err = badRequest("wait %v is over the maximum %v (pull.max_wait)", wait, c.h.opts.MaxWait)
	}
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	limit := cmd.Limit
	if limit == 0 {
		limit = group.DefaultFetch
	}
	gs := &c.gs
	gs.mu.Lock()
	switch {
	case gs.ended:
		gs.mu.Unlock()
		return
	case gs.fetches >= maxFetches:
		gs.mu.Unlock()
		c.reply(&note{frame: errorReply(cmd.ID, fmt.Errorf("%w: %d fetches are waiting on this connection; the limit is %d", hub.ErrLimit, gs.fetches, maxFetches))})
		return
	}
	if gs.life == nil {
		gs.life, gs.end = context.WithCancel(context.Background())
		gs.pending = make(map[string]memberOf)
	}
	gs.fetches++
	life := gs.life
	gs.mu.Unlock()

	ctx, cancel := context.WithCancel(c.ctx)
	stop := context.AfterFunc(life, cancel)
	grp, member, id := cmd.Group, c.member(cmd), cmd.ID
	who := context.WithoutCancel(c.ctx)
	c.h.calls.Add(1)
	go func() {
		defer c.h.calls.Done()
		defer cancel()
		defer stop()
		msgs, err := m.Fetch(ctx, grp, member, limit, wait)
		gs.mu.Lock()
		gs.fetches--
		ended := gs.ended
		if !ended {
			for i := range msgs {
				gs.pending[msgs[i].ID] = memberOf{grp, member, who}
			}
		}
		gs.mu.Unlock()
		if ended {
			handBack(who, m, grp, member, msgs)
			return
		}
		if err != nil && len(msgs) == 0 {
			c.reply(&note{frame: errorReply(id, err)})
			return
		}
		c.reply(&note{frame: messagesReply(id, grp, member, msgs)})
	}()
}

// handBack naks msgs, deliveries nobody will answer, as the identity in
// who.
func handBack(who context.Context, m *group.Manager, grp, member string, msgs []group.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(who, handBackTimout)
	defer cancel()
	for i := range msgs {
		m.Nak(ctx, grp, member, msgs[i].ID, 0) // a delivery answered or expired meanwhile is refused: fine
	}
}

// messagesReply builds a fetch's reply.
func messagesReply(id []byte, grp, member string, msgs []group.Message) []byte {
	return reply("messages", id, func(b []byte) []byte {
		b = append(b, `,"group":`...)
		b = wire.AppendString(b, grp)
		b = append(b, `,"member":`...)
		b = wire.AppendString(b, member)
		b = append(b, `,"messages":[`...)
		for i := range msgs {
			m := &msgs[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = wire.AppendString(b, m.ID)
			b = append(b, `,"delivery":`...)
			b = strconv.AppendInt(b, int64(m.Delivery), 10)
			b = append(b, `,"deadline":"`...)
			b = m.Deadline.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, `","cursor":"`...)
			b = cursor.AppendSingle(b, m.Event.Topic, event.Position{Epoch: m.Event.Epoch, Offset: m.Event.Offset})
			b = append(b, `","event":`...)
			b = append(b, bytes.TrimRight(wire.EventJSON(m.Event), "\n")...)
			b = append(b, '}')
		}
		return append(b, ']')
	})
}

// answer runs ack, nak, in_progress or term and queues the reply.
func (c *conn) answer(cmd *command) {
	m := c.groups(cmd.ID)
	if m == nil {
		return
	}
	delay, err := parseDuration("delay", cmd.Delay)
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	grp, member := cmd.Group, c.member(cmd)
	if cmd.Op != opInProgress {
		c.gs.mu.Lock()
		for _, d := range cmd.IDs {
			delete(c.gs.pending, d)
		}
		c.gs.mu.Unlock()
	}
	errs := make([]error, len(cmd.IDs))
	deadlines := make([]time.Time, len(cmd.IDs))
	switch cmd.Op {
	case opAck:
		res, err := m.Ack(c.ctx, grp, member, cmd.IDs)
		if err != nil {
			c.reply(&note{frame: errorReply(cmd.ID, err)})
			return
		}
		copy(errs, res)
	case opNak:
		for i, d := range cmd.IDs {
			errs[i] = m.Nak(c.ctx, grp, member, d, delay)
		}
	case opInProgress:
		for i, d := range cmd.IDs {
			deadlines[i], errs[i] = m.InProgress(c.ctx, grp, member, d)
		}
	case opTerm:
		for i, d := range cmd.IDs {
			errs[i] = m.Term(c.ctx, grp, member, d, cmd.Reason)
		}
	}
	if e := errs[0]; (errors.Is(e, hub.ErrForbidden) || errors.Is(e, group.ErrNoGroup)) && allSame(errs) {
		c.reply(&note{frame: errorReply(cmd.ID, errs[0])})
		return
	}
	c.reply(&note{frame: reply("answered", cmd.ID, func(b []byte) []byte {
		b = append(b, `,"results":[`...)
		for i, d := range cmd.IDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = wire.AppendString(b, d)
			if err := errs[i]; err != nil {
				r, msg := wire.Describe(err)
				b = append(b, `,"error":{"code":"`...)
				b = append(b, r.Code...)
				b = append(b, `","message":`...)
				b = wire.AppendString(b, msg)
				b = append(b, '}')
			} else if !deadlines[i].IsZero() {
				b = append(b, `,"deadline":"`...)
				b = deadlines[i].UTC().AppendFormat(b, time.RFC3339Nano)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		return append(b, ']')
	})})
}

// allSame reports whether every error has the same text (a refusal of the
// whole command, such as forbidden, rather than of some ids).
func allSame(errs []error) bool {
	for _, e := range errs[1:] {
		if e == nil || e.Error() != errs[0].Error() {
			return false
		}
	}
	return true
}

// endGroups stops the connection's fetches and hands back the deliveries
// it did not answer. release calls it once.
func (c *conn) endGroups() {
	gs := &c.gs
	gs.mu.Lock()
	gs.ended = true
	if gs.end != nil {
		gs.end()
	}
	pending := gs.pending
	gs.pending = nil
	gs.mu.Unlock()
	if len(pending) == 0 || c.h.opts.Groups == nil {
		return
	}
	m := c.h.opts.Groups
	c.h.calls.Add(1)
	go func() {
		defer c.h.calls.Done()
		for id, who := range pending {
			handBack(who.ctx, m, who.group, who.member, []group.Message{{ID: id}})
		}
	}()
}
