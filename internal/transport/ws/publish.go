package ws

import (
	"github.com/heraldhq/herald/internal/event"
)

// Publish commands that arrive together (in one read of the connection)
// are stored together: consecutive publishes to one topic wait in the
// connection's pubRun while the read's other messages are decoded, and go
// to the hub in one append when a command of another kind or topic comes,
// when the read is handled, or at 1,000. A client sending many publishes
// without waiting for their acks so costs one engine call per batch (one
// Redis round trip), not per event; one sent alone is stored at once, as
// before. Each is still checked on its own (a refused one is answered
// alone, in its place), and acks and errors are queued in the order of
// the commands. Publishes stored together succeed or fail together, as
// concurrent publishes an engine coalesces do.

// maxPubRun bounds the publishes stored in one append.
const maxPubRun = 1000

// pubRun is the publish commands waiting, all to one topic.
type pubRun struct {
	cmds []command
	recs []event.Record
}

// queuePublish adds cmd to the run waiting, storing the run first when
// cmd is to another topic. It reports false, queuing nothing, for a
// command whose record is refused: command then answers it (after
// storing the run, to keep the order).
func (c *conn) queuePublish(cmd *command) bool {
	rec, err := cmd.Record()
	if err != nil {
		return false
	}
	if c.pubs == nil {
		c.pubs = &pubRun{}
	}
	r := c.pubs
	if len(r.cmds) > 0 && r.cmds[0].Topic != cmd.Topic {
		c.flushPublishes()
	}
	r.cmds = append(r.cmds, *cmd)
	r.recs = append(r.recs, rec)
	if len(r.cmds) >= maxPubRun {
		c.flushPublishes()
	}
	return true
}

// flushPublishes stores the publishes waiting and queues their replies.
func (c *conn) flushPublishes() {
	r := c.pubs
	if r == nil || len(r.cmds) == 0 {
		return
	}
	defer func() {
		clear(r.cmds)
		clear(r.recs)
		r.cmds, r.recs = r.cmds[:0], r.recs[:0]
		if cap(r.cmds) > 64 {
			c.pubs = nil // a burst's arrays go back
		}
	}()
	topic := r.cmds[0].Topic
	if len(r.cmds) == 1 {
		acks, err := c.h.hub.Publish(c.ctx, topic, r.recs)
		if err != nil {
			c.reply(&note{frame: errorReply(r.cmds[0].ID, err)})
			return
		}
		c.replyAck(&r.cmds[0], acks[0])
		return
	}
	pubs := make([][]event.Record, len(r.recs))
	for i := range r.recs {
		pubs[i] = r.recs[i : i+1 : i+1]
	}
	acks, errs := c.h.hub.PublishEach(c.ctx, topic, pubs)
	for i := range r.cmds {
		if errs[i] != nil {
			c.reply(&note{frame: errorReply(r.cmds[i].ID, errs[i])})
		} else {
			c.replyAck(&r.cmds[i], acks[i][0])
		}
	}
}
