package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// publishParams are a publish's options, defaults applied.
type publishParams struct {
	contentType string
	typ         string
	key         string
	headers     map[string]string
}

// PublishOption is an option of Publish.
type PublishOption func(*publishParams)

// WithContentType says how the server stores the payload:
// application/json (the default; any +json type too) must be valid JSON
// and is stored as json; text/* must be valid UTF-8 and is stored as text;
// anything else is stored as binary.
func WithContentType(contentType string) PublishOption {
	return func(p *publishParams) { p.contentType = contentType }
}

// WithType sets the event type, the SSE "event:" name. The types of the
// server's signals on SSE and WebSocket streams are reserved, and refused:
//
//	reserved: "gap", "error", "join", "leave"
func WithType(eventType string) PublishOption {
	return func(p *publishParams) { p.typ = eventType }
}

// WithKey sets an idempotency key, which makes retries safe: a publish
// with a key the server saw within its dedupe window (5 minutes by
// default) stores nothing new and answers the original position with
// Ack.Duplicate set. With a key, net/http also resends the request by
// itself when a pooled connection turns out to be closed (after a server
// restart, say); without one, such a publish fails with a network error,
// as it may have been stored.
func WithKey(key string) PublishOption {
	return func(p *publishParams) { p.key = key }
}

// WithHeader adds a header stored with the event (not a header of the
// request: see WithRequestHeader for those). Names are stored in lower
// case. It may be given several times; a name given again replaces the
// earlier value.
func WithHeader(name, value string) PublishOption {
	return func(p *publishParams) {
		if p.headers == nil {
			p.headers = make(map[string]string)
		}
		p.headers[name] = value
	}
}

// WithHeaders adds headers stored with the event, as WithHeader does for
// each.
func WithHeaders(headers map[string]string) PublishOption {
	return func(p *publishParams) {
		for k, v := range headers {
			WithHeader(k, v)(p)
		}
	}
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
// the server has stored it. Without WithContentType the payload must be
// JSON.
func (c *Client) Publish(ctx context.Context, topic string, data []byte, opts ...PublishOption) (Ack, error) {
	if topic == "" {
		return Ack{}, errors.New("publish: the topic is empty")
	}
	p := publishParams{contentType: "application/json"}
	for _, o := range opts {
		o(&p)
	}
	if p.contentType == "" {
		p.contentType = "application/json"
	}
	ack, err := c.api.publish(ctx, topic, data, &p)
	if err != nil {
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
	Data    json.RawMessage   // a JSON value, stored as json
	Text    string            // UTF-8 text, stored as text
	Binary  []byte            // opaque bytes, stored as binary
	Type    string            // the event type, as WithType
	Key     string            // the idempotency key, as WithKey
	Headers map[string]string // stored with the event, as WithHeaders
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

// check refuses an event whose payload is ambiguous or not what it says.
func (e *BatchEvent) check() error {
	switch {
	case e.Data != nil && (e.Binary != nil || e.Text != ""), e.Binary != nil && e.Text != "":
		return errors.New("give only one of Data, Text or Binary")
	case e.Data != nil && !json.Valid(e.Data):
		return errors.New("data is not valid JSON; use Text or Binary for other payloads")
	}
	return nil
}

// wire returns e as the batch endpoint takes it; e has been checked.
func (e *BatchEvent) wire() batchEventWire {
	w := batchEventWire{Topic: e.Topic, Type: e.Type, Key: e.Key, Headers: e.Headers}
	switch {
	case e.Data != nil:
		w.Data = e.Data
	case e.Binary != nil:
		s := base64.StdEncoding.EncodeToString(e.Binary)
		w.DataBase64 = &s
	default:
		s := e.Text
		w.Text = &s
	}
	return w
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
	for i := range events {
		if err := events[i].check(); err != nil {
			return nil, fmt.Errorf("publish batch: event %d: %w", i, err)
		}
	}
	acks, err := c.api.publishBatch(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("publish batch of %d events: %w", len(events), err)
	}
	if len(acks) != len(events) {
		return nil, fmt.Errorf("publish batch: the server answered %d acks for %d events", len(acks), len(events))
	}
	return acks, nil
}
