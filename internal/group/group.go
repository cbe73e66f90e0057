// Package group implements consumer groups: workers that share a topic's
// load. Each event of a group's topics is leased to one member at a time;
// the member acks it (done), naks it (redeliver, maybe later), extends its
// lease (in progress) or terms it (dead-letter now). An event whose lease
// runs out is redelivered to any member, and one delivered MaxDeliveries
// times goes to the group's dead-letter topic.
//
// A group's state (its committed position and in-flight table) lives in
// the engine's StateStore, so it survives what the topics survive: the
// memory engine keeps it for the process's life, the durable engine across
// restarts, a networked engine on every node. Outbound webhooks are
// server-side members of groups.
//
// THIS FILE IS THE AGREED API (types and method set). The implementation
// is being written; until then every method returns errNotBuilt.
package group

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Defaults of a group's settings.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliveries = 5
	DefaultMaxInFlight   = 1000
)

// Errors callers branch on. Each wraps the hub error that transports map to
// a reason (not_found, conflict, bad_request).
var (
	// ErrUnsupported is returned by New for an engine that keeps no
	// consumer state.
	ErrUnsupported = errors.New("consumer groups need an engine with a state store")
	// ErrNoGroup is wrapped by calls naming a group that does not exist.
	ErrNoGroup = fmt.Errorf("%w: no such group", hub.ErrNotFound)
	// ErrUnknownDelivery is wrapped by answers to a delivery id that is
	// not in flight: never issued, already acked, or dead-lettered.
	ErrUnknownDelivery = fmt.Errorf("%w: no such delivery in flight", hub.ErrNotFound)
	// ErrLeaseLost is wrapped by answers to a delivery whose lease ran out
	// and which was delivered again (to this member or another) since:
	// the answer is refused and nothing changes.
	ErrLeaseLost = fmt.Errorf("%w: the lease of this delivery ran out and it was delivered again", hub.ErrConflict)
	// ErrExists is wrapped by Create for a group that exists with other
	// settings.
	ErrExists = fmt.Errorf("%w: the group exists with other settings", hub.ErrConflict)
)

var errNotBuilt = errors.New("consumer groups: not built yet")

// Config is one group's settings. Zero fields take the defaults.
type Config struct {
	// Name is the group's name, following the rules of topic names.
	Name string
	// Topics are the topics the group consumes: names, or patterns as
	// auth grants write them ("orders.*", "orders.>").
	Topics []string
	// Start is where a new group starts on each topic: "latest" (the
	// default: events published from now on), "earliest" (all retained
	// history), a cursor, or an RFC 3339 time.
	Start string
	// AckWait is a delivery's lease (default 30 s).
	AckWait time.Duration
	// MaxDeliveries is how many times an event is delivered before it goes
	// to the dead-letter topic (default 5).
	MaxDeliveries int
	// DeadLetter is the dead-letter topic (default "<Name>.dead").
	DeadLetter string
	// MaxInFlight caps the group's leased deliveries (default 1,000), and
	// MemberMaxInFlight one member's (default 1,000): a fetch over either
	// returns fewer events, or waits.
	MaxInFlight       int
	MemberMaxInFlight int
	// Backoff lists the delays before redelivery after an expired lease or
	// a nak without a delay: the n-th redelivery waits Backoff[n-1], the
	// last entry repeating. Empty: redeliver at once.
	Backoff []time.Duration
	// OrderingKey turns per-key ordering on: events with the same key are
	// never in flight to two members at once. "" is off; "idempotency_key"
	// keys on the event's idempotency key; "header:NAME" on a header.
	OrderingKey string
}

// Message is one delivery of an event to a member.
type Message struct {
	// ID names this delivery in ack, nak, in_progress and term. It is
	// opaque, and differs between deliveries of the same event.
	ID string
	// Event is the event delivered (its topic, offset, epoch and cursor).
	Event *event.Event
	// Delivery counts the event's deliveries, 1 on the first.
	Delivery int
	// Deadline is when the lease ends unless extended.
	Deadline time.Time
}

// Info is a group's settings and state.
type Info struct {
	Config Config
	// Created is when the group was created.
	Created time.Time
	// Pending counts events of the group's topics not yet delivered
	// (its lag behind the topics' heads); InFlight those leased now, and
	// Members how many each member holds.
	Pending  uint64
	InFlight int
	Members  map[string]int
	// Redelivered and DeadLettered count events since the group was
	// created.
	Redelivered  uint64
	DeadLettered uint64
}

// Options configures a Manager.
type Options struct{}

// Manager owns the groups of one hub: it keeps their state in the engine's
// StateStore, leases deliveries and takes them back when leases end.
type Manager struct{}

// New returns a Manager for h's groups, or an error wrapping ErrUnsupported
// when h's engine keeps no consumer state. Close stops it.
func New(ctx context.Context, h *hub.Hub, opts Options) (*Manager, error) {
	return nil, errNotBuilt
}

// Put creates the group cfg.Name, or returns it unchanged when it exists
// with the same settings (created reports which); other settings are
// refused with ErrExists.
func (m *Manager) Put(ctx context.Context, cfg Config) (info Info, created bool, err error) {
	return Info{}, false, errNotBuilt
}

// Get returns a group's settings and state, or ErrNoGroup.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	return Info{}, errNotBuilt
}

// List returns every group, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) { return nil, errNotBuilt }

// Delete removes a group and its state (its dead-letter topic stays), or
// returns ErrNoGroup.
func (m *Manager) Delete(ctx context.Context, name string) error { return errNotBuilt }

// Fetch leases up to limit events of group name to member and returns
// them. When none is available it waits up to wait for one (long polling),
// then returns what it has, maybe nothing. The caller's identity (in ctx)
// must be allowed hub.ActionConsume on the group's topics.
func (m *Manager) Fetch(ctx context.Context, name, member string, limit int, wait time.Duration) ([]Message, error) {
	return nil, errNotBuilt
}

// Ack marks deliveries done. results[i] is nil when ids[i] was acked, or
// an error wrapping ErrUnknownDelivery or ErrLeaseLost; err is for the
// whole call (no such group, engine unavailable). An ack returns once it
// is stored: an acked event is never delivered again, even after a crash.
func (m *Manager) Ack(ctx context.Context, name, member string, ids []string) (results []error, err error) {
	return nil, errNotBuilt
}

// Nak hands a delivery back for redelivery after delay (0: the group's
// backoff), counting as a delivery attempt.
func (m *Manager) Nak(ctx context.Context, name, member, id string, delay time.Duration) error {
	return errNotBuilt
}

// InProgress extends a delivery's lease by the group's AckWait and returns
// the new deadline.
func (m *Manager) InProgress(ctx context.Context, name, member, id string) (time.Time, error) {
	return time.Time{}, errNotBuilt
}

// Term sends a delivery's event to the dead-letter topic now, with why in
// its headers.
func (m *Manager) Term(ctx context.Context, name, member, id, why string) error {
	return errNotBuilt
}

// Close stops the Manager's timers and wakes its waiting fetches.
func (m *Manager) Close() {}
