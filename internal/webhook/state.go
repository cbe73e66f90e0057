package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// A subscription's state lives in the engine's hub.StateStore, beside its
// group's, so that it survives what they survive. Two kinds of space:
//
//	registrySpace ("webhooks"): one key per subscription, its name; the
//	    value is its settings as JSON (jsonConfig), secrets included. A
//	    subscription exists when its key does.
//	"webhook.NAME":
//	    "s"  status (JSON): since when the endpoint fails with no success
//	         between, and whether (when, why) it was disabled automatically;
//	         written when these change, not on every attempt
//	    "h"  ordered subscriptions: the event being retried (its
//	         webhook-id) and its failed attempts, so that a restart goes on
//	         with the schedule where it was instead of from its start
//
// The position, the leases and the dead-letter topic are the group's
// (package group, group "webhook.NAME").

const (
	registrySpace = "webhooks"
	spacePrefix   = "webhook."
	keyStatus     = "s"
	keyHead       = "h"
)

func spaceOf(name string) string { return spacePrefix + name }

// status is a subscription's "s" key.
type status struct {
	FailingSince   time.Time `json:"failing_since,omitzero"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
}

// head is an ordered subscription's "h" key.
type head struct {
	ID       string `json:"id"`
	Attempts int    `json:"attempts"`
}

// loadJSON reads key of space into v; ok is false when it is missing or
// unreadable.
func loadJSON(ctx context.Context, store hub.StateStore, space, key string, v any) (bool, error) {
	b, ok, err := store.LoadState(ctx, space, key)
	if err != nil {
		return false, fmt.Errorf("load %s/%s: %w", space, key, err)
	}
	return ok && json.Unmarshal(b, v) == nil, nil
}

// saveJSON writes v at key of space, or deletes key when del.
func saveJSON(ctx context.Context, store hub.StateStore, space, key string, v any, del bool) error {
	op := hub.StateOp{Key: key, Delete: true}
	if !del {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		op = hub.StateOp{Key: key, Set: true, Value: b}
	}
	if err := store.ApplyState(ctx, space, []hub.StateOp{op}); err != nil {
		return fmt.Errorf("write %s/%s: %w", space, key, err)
	}
	return nil
}

// errCorrupt is wrapped by stored settings that cannot be read.
var errCorrupt = errors.New("stored webhook is not readable")
