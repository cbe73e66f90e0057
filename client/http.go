package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// This file is the HTTP side of the client (docs/api.md): a Client made
// with New publishes and pulls with HTTP requests and subscribes over
// Server-Sent Events (sse_stream.go), long polling (poll.go) or WebSocket
// (ws.go).

// httpBackend is the HTTP API of one server.
type httpBackend struct {
	base string   // scheme://host[/prefix], no trailing slash; static
	s    settings // static
}

func newHTTPBackend(baseURL string, s settings) (*httpBackend, error) {
	if !strings.Contains(baseURL, "://") {
		return nil, fmt.Errorf("herald client: base URL %q has no scheme; give a URL such as http://127.0.0.1:8080", baseURL)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("herald client: base URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("herald client: base URL %q: the scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("herald client: base URL %q has no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("herald client: base URL %q must not have a query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return &httpBackend{base: u.String(), s: s}, nil
}

func (b *httpBackend) addr() string { return b.base }

func (b *httpBackend) close() error { return nil }

// headers returns the headers of a new request: the client's, its
// User-Agent and the Authorization of its token.
func (b *httpBackend) headers(ctx context.Context) (http.Header, error) {
	h := b.s.header.Clone()
	if b.s.userAgent != "" {
		h.Set("User-Agent", b.s.userAgent)
	}
	auth, err := b.s.authorization(ctx)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return h, nil
}

// newRequest builds a request for path (which starts with "/v1/") with the
// client's headers.
func (b *httpBackend) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	target := b.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if req.Header, err = b.headers(ctx); err != nil {
		return nil, err
	}
	return req, nil
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// maxAnswerBody bounds how much of a JSON answer is read: a pull of 10,000
// events of 1 MiB each is far more than any server sends by default.
const maxAnswerBody = 1 << 30

// doJSON sends req and decodes a 2xx JSON answer into out. Any other
// answer becomes an *Error.
func (b *httpBackend) doJSON(req *http.Request, out any) error {
	resp, err := b.s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBody))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	// Drain the rest (a newline) so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 512))
	return nil
}

// readError turns a non-2xx answer into an *Error.
func readError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		return e
	}
	e.Message = strings.TrimSpace(string(body))
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// publish is Publish: POST /v1/topics/{topic}/events.
func (b *httpBackend) publish(ctx context.Context, topic string, data []byte, p *publishParams) (Ack, error) {
	req, err := b.newRequest(ctx, http.MethodPost, "/v1/topics/"+url.PathEscape(topic)+"/events", nil, bytes.NewReader(data))
	if err != nil {
		return Ack{}, err
	}
	req.Header.Set("Content-Type", p.contentType)
	if p.typ != "" {
		req.Header.Set("Herald-Event-Type", p.typ)
	}
	if p.key != "" {
		req.Header.Set("Idempotency-Key", p.key)
	}
	for k, v := range p.headers {
		req.Header.Set("Herald-Header-"+k, v)
	}
	var ack Ack
	err = b.doJSON(req, &ack)
	return ack, err
}

// publishBatch is PublishBatch: POST /v1/events.
func (b *httpBackend) publishBatch(ctx context.Context, events []BatchEvent) ([]Ack, error) {
	body := struct {
		Events []batchEventWire `json:"events"`
	}{Events: make([]batchEventWire, len(events))}
	for i := range events {
		body.Events[i] = events[i].wire()
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := b.newRequest(ctx, http.MethodPost, "/v1/events", nil, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var ans struct {
		Results []Ack `json:"results"`
	}
	if err := b.doJSON(req, &ans); err != nil {
		return nil, err
	}
	// The batch endpoint answers no cursors; make them as the server does
	// for a single publish.
	for i := range ans.Results {
		a := &ans.Results[i]
		if epoch, err := parseEpoch(a.Epoch); a.Cursor == "" && err == nil {
			a.Cursor = encodeCursor([]cursorEntry{{topic: a.Topic, epoch: epoch, offset: a.Offset}})
		}
	}
	return ans.Results, nil
}

// pull is Pull: GET /v1/events.
func (b *httpBackend) pull(ctx context.Context, topics []string, p *pullParams) (PullResult, error) {
	q := url.Values{"topic": topics, "from": {string(p.from)}}
	if p.cursor != "" {
		q.Set("cursor", p.cursor)
	}
	if p.limit != 0 {
		q.Set("limit", strconv.Itoa(p.limit))
	}
	if p.wait > 0 {
		q.Set("wait", p.wait.String())
	}
	req, err := b.newRequest(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return PullResult{}, err
	}
	req.Header.Set("Accept", "application/json")
	var res PullResult
	err = b.doJSON(req, &res)
	return res, err
}

// dialer returns the opener of one of the HTTP API's transports; SSE is the
// default. Subscribe has checked that t is a Transport.
func (b *httpBackend) dialer(t Transport) (dialFunc, error) {
	switch t {
	case "", TransportSSE:
		return b.openSSE, nil
	case TransportPoll:
		return b.openPoll, nil
	case TransportWS:
		return b.openWS, nil
	}
	return nil, fmt.Errorf("transport %q needs a client made with NewGRPC (the gRPC API has its own address)", t)
}
