package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
// answer into out.
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
	return g.b.doJSON(req, out)
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
	}
	return out, nil
}

func (g *httpGroup) answer(ctx context.Context, op string, ids []string, delay time.Duration, reason string) ([]answerResult, error) {
	body := struct {
		Member string   `json:"member"`
		IDs    []string `json:"ids"`
		Delay  string   `json:"delay,omitempty"`
		Reason string   `json:"reason,omitempty"`
	}{Member: g.name, IDs: ids, Reason: reason}
	if delay > 0 {
		body.Delay = delay.String()
	}
	var ans struct {
		Results []struct {
			ID       string    `json:"id"`
			Deadline time.Time `json:"deadline"`
			Error    *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := g.post(ctx, op, body, &ans); err != nil {
		return nil, err
	}
	if len(ans.Results) != len(ids) {
		return nil, fmt.Errorf("%s: %d results for %d ids", op, len(ans.Results), len(ids))
	}
	out := make([]answerResult, len(ids))
	for i, r := range ans.Results {
		if r.Error != nil {
			out[i].err = &Error{Code: r.Error.Code, Message: r.Error.Message}
		}
		out[i].deadline = r.Deadline
	}
	return out, nil
}
