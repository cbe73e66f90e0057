package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// httpGroup is a member over the HTTP API (docs/api.md, "Consumer
// groups"): each receive is a long-polling POST /v1/groups/{group}/fetch,
// each answer a POST to /v1/groups/{group}/{ack,nak,in_progress,term}. It
// holds no connection of its own.
type httpGroup struct {
	b     *httpBackend
	group string
	name  string
}

// httpConsumeWait is how long one fetch waits for events.
const httpConsumeWait = 30 * time.Second

func (b *httpBackend) openGroup(ctx context.Context, group, member string) (groupSession, error) {
	if member == "" {
		var r [6]byte
		rand.Read(r[:])
		member = "go-" + hex.EncodeToString(r[:])
	}
	return &httpGroup{b: b, group: group, name: member}, nil
}

func (g *httpGroup) member() string { return g.name }
func (g *httpGroup) close()         {}

// post sends body as JSON to the group's endpoint op and decodes the
// answer into out; with out nil, any 2xx answer will do (204).
func (g *httpGroup) post(ctx context.Context, op string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := g.b.newRequest(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(g.group)+"/"+op, nil, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if out != nil {
		return g.b.doJSON(req, out)
	}
	resp, err := g.b.s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return nil
}

// groupMessageWire is a message of a fetch's answer.
type groupMessageWire struct {
	ID       string    `json:"id"`
	Delivery int       `json:"delivery"`
	Deadline time.Time `json:"deadline"`
	Cursor   string    `json:"cursor"`
	Event    Event     `json:"event"`
}

func (g *httpGroup) receive(ctx context.Context, limit int) ([]GroupMessage, error) {
	body := struct {
		Member string `json:"member"`
		Limit  int    `json:"limit"`
		Wait   string `json:"wait"`
	}{g.name, limit, httpConsumeWait.String()}
	var ans struct {
		Messages []groupMessageWire `json:"messages"`
	}
	if err := g.post(ctx, "fetch", body, &ans); err != nil {
		return nil, err
	}
	out := make([]GroupMessage, len(ans.Messages))
	for i, m := range ans.Messages {
		out[i] = GroupMessage{ID: m.ID, Event: m.Event, Cursor: m.Cursor, Delivery: m.Delivery, Deadline: m.Deadline}
		if epoch, err := parseEpoch(m.Event.Epoch); out[i].Cursor == "" && err == nil {
			out[i].Cursor = encodeCursor([]cursorEntry{{topic: m.Event.Topic, epoch: epoch, offset: m.Event.Offset}})
		}
	}
	return out, nil
}

// answer sends an ack of every id in one request, and a nak, in_progress
// or term per id (their endpoints take one id each).
func (g *httpGroup) answer(ctx context.Context, op string, ids []string, delay time.Duration, reason string) ([]answerResult, error) {
	if op == opAck {
		return g.ack(ctx, ids)
	}
	out := make([]answerResult, len(ids))
	for i, id := range ids {
		body := struct {
			Member string `json:"member"`
			ID     string `json:"id"`
			Delay  string `json:"delay,omitempty"`
			Reason string `json:"reason,omitempty"`
		}{Member: g.name, ID: id, Reason: reason}
		if delay > 0 {
			body.Delay = delay.String()
		}
		var ans struct {
			Deadline time.Time `json:"deadline"`
		}
		var res any
		if op == opInProgress {
			res = &ans
		}
		err := g.post(ctx, op, body, res)
		var e *Error
		switch {
		case errors.As(err, &e) && (e.Code == CodeNotFound || e.Code == CodeConflict):
			out[i].err = err // about this delivery
		case err != nil:
			return nil, err
		}
		out[i].deadline = ans.Deadline
	}
	return out, nil
}

// ack acks ids: POST /v1/groups/{group}/ack, a result per id.
func (g *httpGroup) ack(ctx context.Context, ids []string) ([]answerResult, error) {
	body := struct {
		Member string   `json:"member"`
		IDs    []string `json:"ids"`
	}{Member: g.name, IDs: ids}
	var ans struct {
		Results []struct {
			ID    string `json:"id"`
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := g.post(ctx, opAck, body, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != len(ids) {
		return nil, fmt.Errorf("ack: %d results for %d ids", len(ans.Results), len(ids))
	}
	out := make([]answerResult, len(ids))
	for i, r := range ans.Results {
		if r.Error != nil {
			out[i].err = &Error{Code: r.Error.Code, Message: r.Error.Message}
		}
	}
	return out, nil
}
