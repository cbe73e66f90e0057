package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// The commands a client sends ("op").
const (
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
	opPublish     = "publish"
	opPresence    = "presence"
	opRefresh     = "refresh"
)

// allOps lists the ops for error messages.
const allOps = "subscribe, unsubscribe, publish, presence, refresh, fetch, ack, nak, in_progress or term"

// Limits of the protocol (docs/protocol.md, "Limits").
const (
	MaxTopicsPerConn = 256            // topics one connection follows, unless Options.MaxTopics says otherwise
	MaxIDBytes       = 64             // the JSON text of a command's id
	MaxTypeLen       = hub.MaxTypeLen // an event type, as in the HTTP API
	MaxKeyLen        = hub.MaxKeyLen  // an idempotency key
	MaxHeaders       = 32             // headers of one event
)

// command is a client message. One struct holds every op's fields; each
// op reads its own and unknown fields are refused, so that a misspelt
// field is an error rather than silently ignored.
type command struct {
	Op               string          `json:"op"`
	ID               json.RawMessage `json:"id"`
	Topics           []string        `json:"topics"`
	Topic            string          `json:"topic"`
	Cursor           string          `json:"cursor"`
	Cursors          []string        `json:"cursors"`
	From             string          `json:"from"`
	Presence         json.RawMessage `json:"presence"`
	Token            string          `json:"token"`
	Group            string          `json:"group"`  // fetch, ack, nak, in_progress, term
	Member           string          `json:"member"` // the same; default the connection's client id
	Limit            int             `json:"limit"`  // fetch
	Wait             json.RawMessage `json:"wait"`   // fetch
	IDs              []string        `json:"ids"`    // ack, nak, in_progress, term
	Delay            json.RawMessage `json:"delay"`  // nak
	Reason           string          `json:"reason"` // term
	wire.EventFields                 // publish
}

// commandError is a refused command: its id (when it could be read) and
// why.
type commandError struct {
	id  []byte
	err error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", hub.ErrBadInput, fmt.Sprintf(format, a...))
}

// parseCommand decodes and checks one message. Errors are *commandError,
// with the command's id when it could be read.
func parseCommand(msg []byte) (command, error) {
	var cmd command
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if dec.Decode(&cmd) != nil || !onlySpace(msg[dec.InputOffset():]) {
		return command{}, refusal(msg)
	}
	// A message that decodes whole is one JSON object: its id is the one
	// a lenient read would find (refusal).
	id, idErr := checkID(cmd.ID)
	if idErr != nil {
		return cmd, &commandError{err: idErr}
	}
	cmd.ID = id
	switch cmd.Op {
	case opSubscribe, opUnsubscribe:
		if len(cmd.Cursors) > cursor.MaxTopics {
			return cmd, &commandError{id: id, err: badRequest("%d cursors in one command; the limit is %d", len(cmd.Cursors), cursor.MaxTopics)}
		}
		if len(cmd.Topics) == 0 {
			return cmd, &commandError{id: id, err: badRequest(`%s needs "topics", a list of at least one topic`, cmd.Op)}
		}
		if len(cmd.Topics) > cursor.MaxTopics {
			return cmd, &commandError{id: id, err: badRequest("%d topics in one command; the limit is %d", len(cmd.Topics), cursor.MaxTopics)}
		}
	case opPublish, opPresence:
		if cmd.Topic == "" {
			return cmd, &commandError{id: id, err: badRequest(`%s needs "topic"`, cmd.Op)}
		}
	case opRefresh:
		if cmd.Token == "" {
			return cmd, &commandError{id: id, err: badRequest(`refresh needs "token"`)}
		}
	case opFetch, opAck, opNak, opInProgress, opTerm:
		if err := cmd.checkGroup(); err != nil {
			return cmd, &commandError{id: id, err: err}
		}
	case "":
		return cmd, &commandError{id: id, err: badRequest(`the message has no "op"; use %s`, allOps)}
	default:
		return cmd, &commandError{id: id, err: badRequest("unknown op %q; use %s", cmd.Op, allOps)}
	}
	return cmd, nil
}

// checkID checks a command's id: a JSON string or number of at most
// MaxIDBytes, returned compacted.
func checkID(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return nil, badRequest(`every command needs an "id" (a string or a number) to match its reply`)
	case len(raw) > MaxIDBytes:
		return nil, badRequest("the id is %d bytes of JSON; the limit is %d", len(raw), MaxIDBytes)
	case raw[0] == '"', raw[0] == '-', raw[0] >= '0' && raw[0] <= '9':
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, badRequest("the id is not valid JSON")
		}
		return b.Bytes(), nil
	default:
		return nil, badRequest("the id must be a string or a number")
	}
}

// refusal is the error of a message that does not decode as one command:
// its id is read first, leniently, so that even a command refused for its
// other fields gets an answer the client can match. (Only refused
// messages are read twice.)
func refusal(msg []byte) error {
	var head struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(msg, &head); err != nil {
		return &commandError{err: badRequest("a message must be one JSON object: %v", jsonProblem(err))}
	}
	id, idErr := checkID(head.ID)
	if idErr != nil {
		return &commandError{err: idErr}
	}
	var cmd command
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return &commandError{id: id, err: badRequest("%v", jsonProblem(err))}
	}
	return &commandError{id: id, err: badRequest("one JSON object per message")}
}

// onlySpace reports whether b is JSON whitespace only.
func onlySpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// jsonProblem shortens encoding/json's errors for clients.
func jsonProblem(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// command handles one message: it parses it, runs it through the hub and
// queues the reply in order with events.
func (c *conn) command(msg []byte) {
	cmd, err := parseCommand(msg)
	if err == nil && cmd.Op == opPublish && c.queuePublish(&cmd) {
		return // stored with the publishes around it (publish.go)
	}
	c.flushPublishes() // replies stay in the order of the commands
	if err != nil {
		var ce *commandError
		errors.As(err, &ce)
		c.reply(&note{frame: errorReply(ce.id, ce.err)})
		return
	}
	switch cmd.Op {
	case opSubscribe:
		c.subscribe(&cmd)
	case opUnsubscribe:
		c.unsubscribe(&cmd)
	case opPublish:
		c.publish(&cmd)
	case opPresence:
		c.presence(&cmd)
	case opRefresh:
		c.refresh(&cmd)
	case opFetch:
		c.fetch(&cmd)
	case opAck, opNak, opInProgress, opTerm:
		c.answer(&cmd)
	}
}

// reply queues n.
func (c *conn) reply(n *note) {
	c.sub.Enqueue(n, len(n.frame)+64)
}

// subscribe subscribes to every topic of cmd or, when one fails, to none.
// The hub queues its reply ahead of the gaps, joins and events of the new
// topics, so the client learns of a subscription before its first item.
func (c *conn) subscribe(cmd *command) {
	id := cmd.ID
	req, err := cmd.subscribeRequest()
	if err != nil {
		c.reply(&note{frame: errorReply(id, err)})
		return
	}
	c.sub.Subscribe(c.ctx, &req, func(starts []event.Position, err error) (any, int) {
		if err != nil {
			n := &note{frame: errorReply(id, err)}
			return n, len(n.frame) + 64
		}
		var all cursor.Cursor
		for i, t := range req.Topics {
			all.Set(t, starts[i])
		}
		n := &note{subscribed: req.Topics}
		n.frame = reply("subscribed", id, func(b []byte) []byte {
			b = append(b, `,"topics":[`...)
			for i, t := range req.Topics {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"topic":`...)
				b = wire.AppendString(b, t)
				b = append(b, ',')
				b = appendPosition(b, starts[i])
				b = append(b, '}')
			}
			b = append(b, `],"cursor":"`...)
			b = all.AppendEncoded(b)
			return append(b, '"')
		})
		return n, len(n.frame) + 64
	})
}

// subscribeRequest reads a subscribe command into the hub's request,
// which checks it: the cursors (one merged cursor, or one per topic) and
// from.
func (cmd *command) subscribeRequest() (hub.SubscribeRequest, error) {
	req := hub.SubscribeRequest{Topics: cmd.Topics}
	for _, tok := range append([]string{cmd.Cursor}, cmd.Cursors...) {
		one, err := cursor.Parse(tok)
		if err != nil {
			return req, err
		}
		for _, e := range one.Entries() {
			req.Cursor.Set(e.Topic, e.Position)
		}
	}
	var err error
	if req.From, err = hub.ParseFrom(cmd.From, hub.FromLatest); err != nil {
		return req, err
	}
	if p := bytes.TrimSpace(cmd.Presence); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		req.Presence = p
	}
	return req, nil
}

// unsubscribe ends the subscriptions to cmd's topics. Events of them
// already queued leave before the reply; none follows it. Topics not
// subscribed are left out of the reply's list.
func (c *conn) unsubscribe(cmd *command) {
	var done []string
	for _, t := range cmd.Topics {
		if c.sub.Unsubscribe(t) {
			done = append(done, t)
		}
	}
	c.reply(&note{
		frame: reply("unsubscribed", cmd.ID, func(b []byte) []byte {
			b = append(b, `,"topics":[`...)
			for i, t := range done {
				if i > 0 {
					b = append(b, ',')
				}
				b = wire.AppendString(b, t)
			}
			return append(b, ']')
		}),
		unsubscribed: done,
	})
}

// publish stores one event through the hub, where the client_publish
// policy and the Gate decide whether this client may.
func (c *conn) publish(cmd *command) {
	rec, err := cmd.Record()
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	acks, err := c.h.hub.Publish(c.ctx, cmd.Topic, []event.Record{rec})
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	c.replyAck(cmd, acks[0])
}

// replyAck queues the ack of a stored publish command.
func (c *conn) replyAck(cmd *command, ack event.Ack) {
	c.reply(&note{frame: reply("ack", cmd.ID, func(b []byte) []byte {
		b = append(b, `,"topic":`...)
		b = wire.AppendString(b, cmd.Topic)
		b = append(b, ',')
		b = appendPosition(b, ack.Position)
		b = append(b, `,"cursor":"`...)
		b = cursor.AppendSingle(b, cmd.Topic, ack.Position)
		b = append(b, `","duplicate":`...)
		return strconv.AppendBool(b, ack.Duplicate)
	})})
}

// presence answers who is on a topic.
func (c *conn) presence(cmd *command) {
	p, err := c.h.hub.Presence(c.ctx, cmd.Topic)
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	c.reply(&note{frame: reply("presence", cmd.ID, func(b []byte) []byte {
		b = append(b, `,"topic":`...)
		b = wire.AppendString(b, cmd.Topic)
		b = append(b, ',')
		return wire.AppendPresence(b, &p)
	})})
}

// refresh swaps the connection's credentials for cmd's token (sent before
// the old ones expire, or as the first command of a connection opened
// without credentials). The subscriptions the new identity may no longer
// hold end, listed in the reply's unsubscribed; the rest go on without a
// gap, and the connection now expires with the new credentials. A refresh
// may not change who the connection is: a token for another subject is
// refused, and the old credentials stay.
func (c *conn) refresh(cmd *command) {
	old := hub.IdentityOf(c.ctx)
	ctx, id, err := c.h.hub.Authenticate(c.base, hub.Credentials{
		Token: cmd.Token, Source: hub.SourceFrame, Transport: "ws", RemoteAddr: old.RemoteAddr,
	})
	if err == nil && old.Subject != "" && id.Subject != old.Subject {
		err = fmt.Errorf("%w: the connection is %q; a refresh may not make it %q (open a new connection)", hub.ErrForbidden, old.Subject, id.Subject)
	}
	if err == nil {
		err = c.sub.SetIdentity(id) // a connection opened without credentials counts for its user now
	}
	if err != nil {
		c.reply(&note{frame: errorReply(cmd.ID, err)})
		return
	}
	c.ctx = ctx
	dropped, err := c.sub.Reauthorize(ctx)
	if err != nil {
		return // ending
	}
	c.reply(&note{
		frame: reply("refreshed", cmd.ID, func(b []byte) []byte {
			b = append(b, `,"subject":`...)
			b = wire.AppendString(b, id.Subject)
			b = append(b, `,"expires":`...)
			if id.Expires.IsZero() {
				b = append(b, '0')
			} else {
				b = strconv.AppendInt(b, id.Expires.UnixMilli(), 10)
			}
			b = append(b, `,"unsubscribed":[`...)
			for i, t := range dropped {
				if i > 0 {
					b = append(b, ',')
				}
				b = wire.AppendString(b, t)
			}
			return append(b, ']')
		}),
		unsubscribed: dropped,
	})
}

func validUTF8(b []byte) bool { return utf8.Valid(b) }
