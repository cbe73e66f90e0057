package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// PublishOptions are the optional parts of a publish.
type PublishOptions struct {
	// ContentType says how the server stores the payload: application/json
	// (the default; any +json type too) must be valid JSON and is stored as
	// json; text/* must be valid UTF-8 and is stored as text; anything else
	// is stored as binary.
	ContentType string
	// Type is the event type, the SSE "event:" name. "gap" and "error" are
	// reserved for server signals.
	Type string
	// IdempotencyKey makes retries safe: a publish with a key the server
	// saw within its dedupe window (5 minutes by default) stores nothing new
	// and answers the original position with Duplicate set. With a key,
	// net/http also resends the request by itself when a pooled connection
	// turns out to be closed (after a server restart, say); without one,
	// such a publish fails with a network error, as it may have been stored.
	IdempotencyKey string
	// Headers are stored with the event; names are stored in lower case.
	Headers map[string]string
}

// Ack is the server's answer to a publish: where the event was stored.
type Ack struct {
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	// Cursor is positioned at this event: reading from it returns the
	// events after it. The batch endpoint does not answer cursors; for
	// PublishBatch the client makes them from Topic, Epoch and Offset, as
	// the server does for a single publish.
	Cursor string `json:"cursor,omitempty"`
	// Duplicate is set when the idempotency key was seen before and
	// nothing new was stored.
	Duplicate bool `json:"duplicate"`
}

// Publish stores data as one event of topic and returns its position once
// the server has stored it.
func (c *Client) Publish(ctx context.Context, topic string, data []byte, opts PublishOptions) (Ack, error) {
	if topic == "" {
		return Ack{}, errors.New("publish: the topic is empty")
	}
	if c.grpc != nil {
		return c.publishGRPC(ctx, topic, data, opts)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/topics/"+url.PathEscape(topic)+"/events", nil, bytes.NewReader(data))
	if err != nil {
		return Ack{}, fmt.Errorf("publish to %s: %w", topic, err)
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	if opts.Type != "" {
		req.Header.Set("Herald-Event-Type", opts.Type)
	}
	if opts.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	for k, v := range opts.Headers {
		req.Header.Set("Herald-Header-"+k, v)
	}
	var ack Ack
	if err := c.doJSON(req, &ack); err != nil {
		return Ack{}, fmt.Errorf("publish to %s: %w", topic, err)
	}
	return ack, nil
}

// BatchEvent is one event of PublishBatch. Exactly one of Data, Text and
// Binary is the payload: Data when it is not nil, else Binary when it is
// not nil, else Text (which may be empty). Setting more than one is an
// error.
type BatchEvent struct {
	Topic   string
	Data    json.RawMessage // a JSON value, stored as json
	Text    string          // UTF-8 text, stored as text
	Binary  []byte          // opaque bytes, stored as binary
	Type    string          // the event type, as in PublishOptions
	Key     string          // the idempotency key, as in PublishOptions
	Headers map[string]string
}

// batchEventWire is BatchEvent as the batch endpoint takes it.
type batchEventWire struct {
	Topic      string            `json:"topic"`
	Data       json.RawMessage   `json:"data,omitempty"`
	Text       *string           `json:"text,omitempty"`
	DataBase64 *string           `json:"data_base64,omitempty"`
	Type       string            `json:"type,omitempty"`
	Key        string            `json:"key,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
}

func (e *BatchEvent) wire() (batchEventWire, error) {
	w := batchEventWire{Topic: e.Topic, Type: e.Type, Key: e.Key, Headers: e.Headers}
	switch {
	case e.Data != nil && (e.Binary != nil || e.Text != ""):
		return w, errors.New("give only one of Data, Text or Binary")
	case e.Binary != nil && e.Text != "":
		return w, errors.New("give only one of Data, Text or Binary")
	case e.Data != nil:
		if !json.Valid(e.Data) {
			return w, errors.New("data is not valid JSON; use Text or Binary for other payloads")
		}
		w.Data = e.Data
	case e.Binary != nil:
		s := base64.StdEncoding.EncodeToString(e.Binary)
		w.DataBase64 = &s
	default:
		s := e.Text
		w.Text = &s
	}
	return w, nil
}

// PublishBatch stores several events, of one topic or several, in one
// request. The server validates the whole batch before storing anything: a
// bad event refuses it all with an *Error naming the event's index. Events
// of one topic are stored in the order given. The acks are in the order of
// events.
func (c *Client) PublishBatch(ctx context.Context, events []BatchEvent) ([]Ack, error) {
	if len(events) == 0 {
		return nil, errors.New("publish batch: no events")
	}
	if c.grpc != nil {
		return c.publishBatchGRPC(ctx, events)
	}
	body := struct {
		Events []batchEventWire `json:"events"`
	}{Events: make([]batchEventWire, len(events))}
	for i := range events {
		w, err := events[i].wire()
		if err != nil {
			return nil, fmt.Errorf("publish batch: event %d: %w", i, err)
		}
		body.Events[i] = w
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("publish batch: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/events", nil, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("publish batch: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var ans struct {
		Results []Ack `json:"results"`
	}
	if err := c.doJSON(req, &ans); err != nil {
		return nil, fmt.Errorf("publish batch of %d events: %w", len(events), err)
	}
	if len(ans.Results) != len(events) {
		return nil, fmt.Errorf("publish batch: the server answered %d results for %d events", len(ans.Results), len(events))
	}
	for i := range ans.Results {
		a := &ans.Results[i]
		if epoch, err := parseEpoch(a.Epoch); a.Cursor == "" && err == nil {
			a.Cursor = encodeCursor([]cursorEntry{{topic: a.Topic, epoch: epoch, offset: a.Offset}})
		}
	}
	return ans.Results, nil
}
