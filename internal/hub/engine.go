package hub

import (
	"context"
	"errors"

	"github.com/heraldhq/herald/internal/event"
)

// Engine is what the hub needs from a storage and broadcast backend. The
// memory engine, the embedded durable log and the networked engines (Redis,
// NATS) all satisfy it; the hub never imports an implementation.
//
// The contract that makes recovery gap-free:
//
//   - Append assigns offsets atomically with storing the records: offsets of
//     a topic grow by exactly one, in the order the engine acknowledges them,
//     on every node.
//   - An event is readable by Read before it is passed to the deliver
//     function given to Attach.
//   - Deliver is called for the events of one topic in offset order, never
//     concurrently for the same topic. A networked engine may lose or
//     duplicate live deliveries; the hub notices from the offsets and reads
//     the missing events from history.
type Engine interface {
	// Attach sets the function that receives every event appended to a
	// watched topic, by this node or another. It is called once, before use.
	Attach(deliver func(*event.Event))
	// Append stores recs at the end of topic and returns their positions.
	// A record whose idempotency key was seen within the dedupe window is not
	// stored again: its Ack carries the original position and Duplicate.
	Append(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error)
	// Read returns up to limit events of topic with offsets after `after`,
	// oldest first, together with the topic's state at the time of the read.
	// When after is older than retained history, the events start at the
	// earliest retained one; callers detect the gap from Info.First. A topic
	// never published to reads as empty, with the epoch its history will
	// have once created, and reading does not create it.
	Read(ctx context.Context, topic string, after uint64, limit int) (event.Batch, error)
	// Info returns a topic's state, and false if the topic does not exist.
	Info(ctx context.Context, topic string) (event.TopicInfo, bool, error)
	// Topics lists the existing topics, sorted by name.
	Topics(ctx context.Context) ([]event.TopicInfo, error)
	// Watch asks for topic's events to be delivered to this node; Unwatch
	// withdraws that. Single-node engines deliver everything and may ignore
	// both.
	Watch(ctx context.Context, topic string) error
	Unwatch(topic string)
}

// Errors an engine may return that callers branch on.
var (
	// ErrUnavailable means the engine cannot take writes now (backend
	// down); reads may still work.
	ErrUnavailable = errors.New("engine unavailable")
	// ErrStorageFull means the engine's storage has no room for the
	// events: nothing was stored, reads still work, and publishes succeed
	// again once space is freed (by retention or by the operator).
	ErrStorageFull = errors.New("storage full")
)
