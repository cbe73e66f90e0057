package hub

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
)

// From says where a consumer starts reading a topic that its cursor does
// not name. (Starting from a time will be another value.)
type From uint8

// The starting points.
const (
	FromLatest   From = iota // after the newest event: only what comes next
	FromEarliest             // at the earliest retained event
)

// String names the starting point as the APIs spell it.
func (f From) String() string {
	if f == FromEarliest {
		return "earliest"
	}
	return "latest"
}

// ParseFrom reads a from parameter as the HTTP and WebSocket APIs take it:
// "latest", "earliest", or "" for def.
func ParseFrom(s string, def From) (From, error) {
	switch s {
	case "":
		return def, nil
	case "latest":
		return FromLatest, nil
	case "earliest":
		return FromEarliest, nil
	}
	return def, fmt.Errorf("%w: from %s: use earliest or latest", ErrBadInput, strconv.Quote(s))
}

// SubscribeRequest is what a push consumer asks for, the same on every
// transport: each transport's parser fills one (from an SSE query, a
// WebSocket command, a gRPC message) and Subscriber.Subscribe checks it.
// Fields to come (filters, a start time) are added here, once.
type SubscribeRequest struct {
	Topics []string      // at least one, at most cursor.MaxTopics, none twice
	Cursor cursor.Cursor // positions to resume after; topics it does not name start at From
	From   From
	// Presence is what the consumer shows others on topics with presence
	// on (a JSON object of at most MaxPresenceInfo bytes); nil shows none.
	Presence []byte
}

// ErrLimit is wrapped by refusals of requests over a limit of the server
// (topics per connection, and the limits of the permissions to come).
var ErrLimit = errors.New("limit reached")

// checkTopics checks a request's topic list: 1 to cursor.MaxTopics valid
// names, none twice.
func (h *Hub) checkTopics(topics []string) error {
	if len(topics) == 0 {
		return fmt.Errorf("%w: at least one topic is required", ErrBadInput)
	}
	if len(topics) > cursor.MaxTopics {
		h.refused(KeyTopicsPerRequest)
		return fmt.Errorf("%w: %d topics, the limit is %d per request (%s, fixed by the cursor format); split the request",
			ErrBadInput, len(topics), cursor.MaxTopics, KeyTopicsPerRequest)
	}
	for i, t := range topics {
		if err := event.ValidateTopic(t); err != nil {
			return err
		}
		for _, u := range topics[:i] {
			if u == t {
				return fmt.Errorf("%w: topic %s is listed twice", ErrBadInput, t)
			}
		}
	}
	return nil
}

// start returns where req starts topic.
func (req *SubscribeRequest) start(topic string) Start {
	pos, have := req.Cursor.Get(topic)
	return Start{Position: pos, Set: have, Earliest: req.From == FromEarliest, Info: req.Presence}
}
