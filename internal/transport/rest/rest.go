// Package rest serves herald's HTTP API for producers and pull consumers:
// publish (one event or a batch), pull from a cursor, long polling (a pull
// with wait=), and topic listings. docs/api.md is its specification; this
// package only translates between HTTP and the hub.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/cursor"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/source"
	"github.com/heraldhq/herald/internal/webhook"
	"github.com/heraldhq/herald/internal/wire"
)

// Options configure the handlers. Zero fields take the defaults noted.
type Options struct {
	MaxEventBytes int           // single-event body cap; default 1 MiB
	MaxBodyBytes  int64         // batch body cap; default 16 MiB
	MaxWait       time.Duration // longest long poll; default 120s
	Tokens        wire.TokenSources
	// Sources serves /v1/sources (sources.go); nil answers unavailable.
	Sources *source.Manager
	// Groups serves /v1/groups (groups.go); nil answers unavailable.
	Groups *group.Manager
	// Webhooks serves /v1/webhooks (webhooks.go); nil answers
	// unavailable.
	Webhooks *webhook.Manager
}

// Limits on request metadata.
const (
	MaxTypeLen    = hub.MaxTypeLen
	MaxKeyLen     = hub.MaxKeyLen
	MaxHeaders    = hub.MaxHeaders
	headerPrefix  = "Herald-Header-"
	typeHeader    = "Herald-Event-Type"
	idempotencyKV = "Idempotency-Key"
)

// Handler serves the REST API over a hub.
type Handler struct {
	hub  *hub.Hub
	opts Options
	bufs sync.Pool // *bytes.Buffer for request bodies
}

// New returns the API handlers over h.
func New(h *hub.Hub, opts Options) *Handler {
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = 1 << 20
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 120 * time.Second
	}
	return &Handler{hub: h, opts: opts, bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

// Register adds the API's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("/v1/topics/{topic}/events", h.methods(map[string]http.HandlerFunc{
		http.MethodPost: h.publish,
		http.MethodGet:  h.pullTopic,
	}))
	mux.HandleFunc("/v1/events", h.methods(map[string]http.HandlerFunc{
		http.MethodPost: h.publishBatch,
		http.MethodGet:  h.pull,
	}))
	mux.HandleFunc("/v1/topics", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.listTopics}))
	mux.HandleFunc("/v1/topics/{topic}", h.methods(map[string]http.HandlerFunc{http.MethodGet: h.topicInfo}))
	h.registerSources(mux)
	h.registerGroups(mux)
	h.registerWebhooks(mux)
}

// methods dispatches on the request method, answering 405 in the API's
// error format with an Allow header, and authenticates the request: the
// handler's request context carries the caller's identity to the hub.
func (h *Handler) methods(m map[string]http.HandlerFunc) http.HandlerFunc {
	var allow []string
	for k := range m {
		allow = append(allow, k)
	}
	slices.Sort(allow) // a stable Allow header, not map order
	allowed := strings.Join(allow, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		f, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			f, ok = m[http.MethodGet]
		}
		if ok {
			ctx, _, err := h.hub.Authenticate(r.Context(), h.opts.Tokens.Credentials(r, "rest"))
			if err != nil {
				wire.WriteError(w, err)
				return
			}
			f(w, r.WithContext(ctx))
			return
		}
		w.Header().Set("Allow", allowed)
		wire.WriteErrorCode(w, reason.MethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allowed))
	}
}

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", hub.ErrBadInput, fmt.Sprintf(format, a...))
}

// publish handles POST /v1/topics/{topic}/events.
func (h *Handler) publish(w http.ResponseWriter, r *http.Request) {
	gz, err := gzipped(r.Header)
	if err != nil {
		wire.WriteErrorCode(w, reason.UnsupportedMediaType, err.Error())
		return
	}
	buf := h.bufs.Get().(*bytes.Buffer)
	defer h.putBuf(buf)
	limit := int64(h.opts.MaxEventBytes)
	if err := readBody(buf, r, limit); err != nil {
		if errors.Is(err, hub.ErrTooLarge) && (r.ContentLength < 0 || r.ContentLength > maxDiscard) {
			writeErrorAndClose(w, err) // the rest of the body is unread
			return
		}
		wire.WriteError(w, err)
		return
	}
	body := buf.Bytes()
	if gz {
		dec := h.bufs.Get().(*bytes.Buffer)
		defer h.putBuf(dec)
		if err := gunzip(dec, body, limit, "limits.max_event_bytes"); err != nil {
			wire.WriteError(w, err)
			return
		}
		body = dec.Bytes()
	}
	in := Single{
		Topic:       r.PathValue("topic"),
		Body:        body,
		ContentType: r.Header.Get("Content-Type"),
		Key:         r.Header.Get(idempotencyKV),
		Type:        r.Header.Get(typeHeader),
	}
	if r.URL.RawQuery != "" {
		if q := r.URL.Query().Get("type"); q != "" {
			in.Type = q
		}
	}
	for name, vals := range r.Header {
		if len(name) > len(headerPrefix) && strings.HasPrefix(name, headerPrefix) && len(vals) > 0 {
			if in.Headers == nil {
				in.Headers = make(map[string]string)
			}
			in.Headers[strings.ToLower(name[len(headerPrefix):])] = vals[0]
		}
	}
	status, b := h.PublishSingle(r.Context(), &in, make([]byte, 0, 192+2*len(in.Topic)))
	if status >= 400 {
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	if in.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(wire.RetrySeconds(in.RetryAfter)))
	}
	writeJSON(w, status, b)
}

// Single is one single-event publish as the HTTP API receives it, whatever
// parsed the request (net/http, or the fast path of package httpfast).
type Single struct {
	Topic       string            // from the path, decoded
	Body        []byte            // the payload; copied, not retained
	ContentType string            // the Content-Type header
	Key         string            // the Idempotency-Key header
	Type        string            // the Herald-Event-Type header or ?type=
	Headers     map[string]string // Herald-Header-* (names lower-cased); may be nil
	// RetryAfter is set by PublishSingle when it answers a refusal that
	// carries a retry hint (a rate limit's): the answer's Retry-After.
	RetryAfter time.Duration
}

// PublishSingle publishes in through the hub and appends the answer's JSON
// body to dst: the position and cursor, or the API's error. It returns the
// HTTP status: 201, 200 for a duplicate, or the error's.
func (h *Handler) PublishSingle(ctx context.Context, in *Single, dst []byte) (int, []byte) {
	if err := event.ValidateTopic(in.Topic); err != nil {
		return errorAnswer(dst, err)
	}
	if len(in.Body) > h.opts.MaxEventBytes {
		return errorAnswer(dst, fmt.Errorf("%w: the body is %d bytes, over %d (limits.max_event_bytes)", hub.ErrTooLarge, len(in.Body), h.opts.MaxEventBytes))
	}
	enc, err := bodyEncoding(in.ContentType, in.Body)
	if err != nil {
		return errorAnswer(dst, err)
	}
	rec := event.Record{Key: in.Key, Type: in.Type, Encoding: enc, Headers: in.Headers}
	rec.Data = bytes.Clone(in.Body)
	if rec.Data == nil {
		rec.Data = []byte{}
	}
	acks, err := h.hub.Publish(ctx, in.Topic, []event.Record{rec})
	if err != nil {
		in.RetryAfter = hub.RetryAfter(err)
		return errorAnswer(dst, err)
	}
	ack := acks[0]
	b := append(dst, `{"topic":`...)
	b = wire.AppendString(b, in.Topic)
	b = appendAck(b, ack)
	b = append(b, `,"cursor":"`...)
	b = cursor.AppendSingle(b, in.Topic, ack.Position)
	b = append(b, "\"}\n"...)
	if ack.Duplicate {
		return http.StatusOK, b
	}
	return http.StatusCreated, b
}

// Anonymous returns ctx carrying the identity of a caller at remoteAddr
// that presented no credentials: the fast path's, for a connection whose
// requests carry none (it hands those with credentials to net/http).
func (h *Handler) Anonymous(ctx context.Context, remoteAddr string) (context.Context, error) {
	ctx, _, err := h.hub.Authenticate(ctx, hub.Credentials{RemoteAddr: remoteAddr, Transport: "rest"})
	return ctx, err
}

// Authenticated returns ctx carrying the identity of the caller whose
// Authorization header is authorization (the fast path's), and when it
// expires.
func (h *Handler) Authenticated(ctx context.Context, authorization, remoteAddr string) (context.Context, time.Time, error) {
	c := hub.Credentials{Token: wire.BearerToken(authorization), Source: hub.SourceHeader, RemoteAddr: remoteAddr, Transport: "rest"}
	ctx, id, err := h.hub.Authenticate(ctx, c)
	if err != nil {
		return nil, time.Time{}, err
	}
	return ctx, id.Expires, nil
}

// ErrorAnswer appends the API's error JSON for err to dst and returns the
// HTTP status.
func (h *Handler) ErrorAnswer(dst []byte, err error) (int, []byte) { return errorAnswer(dst, err) }

// MaxEventBytes is the largest single-event body the handler accepts.
func (h *Handler) MaxEventBytes() int { return h.opts.MaxEventBytes }

// errorAnswer appends err's API error JSON to dst.
func errorAnswer(dst []byte, err error) (int, []byte) {
	r, msg := wire.Describe(err)
	return r.HTTP, wire.AppendError(dst, r.Code, msg)
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		b.Reset()
		h.bufs.Put(b)
	}
}

// appendAck appends `,"offset":N,"epoch":"…","duplicate":bool`.
func appendAck(b []byte, ack event.Ack) []byte {
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, ack.Offset, 10)
	b = append(b, `,"epoch":"`...)
	b = ack.Epoch.Append(b)
	b = append(b, `","duplicate":`...)
	return strconv.AppendBool(b, ack.Duplicate)
}

// readBody reads at most limit bytes of body into buf; more is ErrTooLarge.
func readBody(buf *bytes.Buffer, r *http.Request, limit int64) error {
	if cl := r.ContentLength; cl >= 0 {
		// The common case: the size is known, so check it first and read
		// exactly that (net/http ends the body there).
		if cl > limit {
			return fmt.Errorf("%w: the body is %d bytes, over %d (limits.max_event_bytes)", hub.ErrTooLarge, cl, limit)
		}
		buf.Grow(int(cl))
		b := buf.AvailableBuffer()[:cl]
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return badRequest("reading the body: %v", err)
		}
		buf.Write(b)
		return nil
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return badRequest("reading the body: %v", err)
	}
	if n > limit {
		return fmt.Errorf("%w: the body is over %d bytes (limits.max_event_bytes)", hub.ErrTooLarge, limit)
	}
	return nil
}

// bodyEncoding decides how a single-event body is stored (docs/api.md):
// JSON types must be valid JSON, text types valid UTF-8, other types are
// bytes; without a content type (or with curl's default form type) the
// body is JSON if it parses, else text if it is UTF-8, else bytes.
func bodyEncoding(contentType string, body []byte) (event.Encoding, error) {
	mt := ""
	if contentType == "application/json" {
		mt = contentType // the common case, without parsing
	} else if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return 0, badRequest("Content-Type %q: %v", contentType, err)
		}
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if !json.Valid(body) {
			return 0, badRequest("the body is not valid JSON; send Content-Type text/plain or application/octet-stream for other payloads")
		}
		return event.EncodingJSON, nil
	case strings.HasPrefix(mt, "text/"):
		if !utf8.Valid(body) {
			return 0, badRequest("the body is not valid UTF-8 text; send Content-Type application/octet-stream for binary payloads")
		}
		return event.EncodingText, nil
	case mt == "" || mt == "application/x-www-form-urlencoded":
		switch {
		case len(body) > 0 && json.Valid(body):
			return event.EncodingJSON, nil
		case utf8.Valid(body):
			return event.EncodingText, nil
		}
		return event.EncodingBinary, nil
	default:
		return event.EncodingBinary, nil
	}
}

// batchRequest is the body of POST /v1/events.
type batchRequest struct {
	Events []batchEvent `json:"events"`
}

type batchEvent struct {
	Topic string `json:"topic"`
	wire.EventFields
}

// publishBatch handles POST /v1/events.
func (h *Handler) publishBatch(w http.ResponseWriter, r *http.Request) {
	// application/json only: not curl -d's default form type, nor none. A
	// form or text/plain POST is a CORS simple request, which any web page
	// can send here without a preflight; a JSON one is not.
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		wire.WriteErrorCode(w, reason.UnsupportedMediaType, fmt.Sprintf(
			"the batch endpoint takes Content-Type application/json, not %q; with curl, add -H 'Content-Type: application/json'", ct))
		return
	}
	gz, err := gzipped(r.Header)
	if err != nil {
		wire.WriteErrorCode(w, reason.UnsupportedMediaType, err.Error())
		return
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		// Known to be too large: refused before reading megabytes of it.
		writeErrorAndClose(w, fmt.Errorf("%w: the body is %d bytes, over %d (http.max_body_bytes)", hub.ErrTooLarge, r.ContentLength, h.opts.MaxBodyBytes))
		return
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes), r.ContentLength, h.opts.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErrorAndClose(w, fmt.Errorf("%w: the body is over %d bytes (http.max_body_bytes)", hub.ErrTooLarge, mbe.Limit))
			return
		}
		wire.WriteError(w, badRequest("reading the body: %v", err))
		return
	}
	if gz {
		var dec bytes.Buffer
		if err := gunzip(&dec, body, h.opts.MaxBodyBytes, "http.max_body_bytes"); err != nil {
			wire.WriteError(w, err)
			return
		}
		body = dec.Bytes()
	}
	events, err := decodeBatch(body)
	if err != nil {
		wire.WriteError(w, badRequest("the body is not a valid batch: %v", err))
		return
	}
	req := batchRequest{Events: events}
	if len(req.Events) == 0 {
		wire.WriteError(w, badRequest(`the batch has no events; send {"events":[{"topic":"…","data":…}]}`))
		return
	}
	// Validate everything, grouping records by topic in order.
	type group struct {
		recs []event.Record
		idx  []int
	}
	groups := make(map[string]*group)
	var order []string
	for i := range req.Events {
		be := &req.Events[i]
		rec, err := be.Record()
		if err == nil {
			err = event.ValidateTopic(be.Topic)
		}
		if err != nil {
			wire.WriteError(w, fmt.Errorf("event %d: %w", i, err))
			return
		}
		g := groups[be.Topic]
		if g == nil {
			g = &group{}
			groups[be.Topic] = g
			order = append(order, be.Topic)
		}
		g.recs = append(g.recs, rec)
		g.idx = append(g.idx, i)
	}
	for _, t := range order {
		if err := h.hub.CheckPublish(r.Context(), t, groups[t].recs); err != nil {
			var re *hub.RecordError
			if errors.As(err, &re) {
				err = fmt.Errorf("event %d: %w", groups[t].idx[re.Index], re.Err)
			} else if len(groups[t].recs) == 1 && (errors.Is(err, hub.ErrBadInput) || errors.Is(err, hub.ErrTooLarge)) {
				err = fmt.Errorf("event %d: %w", groups[t].idx[0], err)
			}
			wire.WriteError(w, err)
			return
		}
	}
	acks := make([]event.Ack, len(req.Events))
	ctx := hub.PublishCounted(r.Context()) // CheckPublish counted the events against the rate limits
	for _, t := range order {
		g := groups[t]
		got, err := h.hub.Publish(ctx, t, g.recs)
		if err != nil {
			wire.WriteError(w, err)
			return
		}
		for j, a := range got {
			acks[g.idx[j]] = a
		}
	}
	b := make([]byte, 0, 16+len(acks)*160)
	b = append(b, `{"results":[`...)
	for i, a := range acks {
		if i > 0 {
			b = append(b, ',')
		}
		t := req.Events[i].Topic
		b = append(b, `{"topic":`...)
		b = wire.AppendString(b, t)
		b = appendAck(b, a)
		b = append(b, `,"cursor":"`...)
		b = cursor.AppendSingle(b, t, a.Position)
		b = append(b, `"}`...)
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// pull handles GET /v1/events.
func (h *Handler) pull(w http.ResponseWriter, r *http.Request) {
	h.servepull(w, r, r.URL.Query()["topic"])
}

// pullTopic handles GET /v1/topics/{topic}/events.
func (h *Handler) pullTopic(w http.ResponseWriter, r *http.Request) {
	h.servepull(w, r, []string{r.PathValue("topic")})
}

func (h *Handler) servepull(w http.ResponseWriter, r *http.Request, topics []string) {
	req, err := h.parsePull(r, topics)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	res, err := h.hub.Pull(r.Context(), req)
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	size := 64
	for _, ev := range res.Events {
		size += len(ev.Data) + 160
	}
	b := make([]byte, 0, size)
	b = append(b, `{"events":[`...)
	for i, ev := range res.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, wire.EventJSON(ev)...)
	}
	b = append(b, `],"cursor":"`...)
	b = res.Cursor.AppendEncoded(b)
	b = append(b, '"')
	if len(res.Gaps) > 0 {
		b = append(b, `,"gaps":[`...)
		for i := range res.Gaps {
			if i > 0 {
				b = append(b, ',')
			}
			b = wire.AppendGap(b, &res.Gaps[i])
		}
		b = append(b, ']')
	}
	b = append(b, "}\n"...)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, b)
}

// parsePull reads the pull parameters of docs/api.md.
func (h *Handler) parsePull(r *http.Request, topics []string) (hub.PullRequest, error) {
	q := r.URL.Query()
	req := hub.PullRequest{Topics: topics, From: hub.FromEarliest}
	if len(topics) == 0 {
		return req, badRequest("give at least one topic: ?topic=name (repeatable)")
	}
	c, err := cursor.Parse(q.Get("cursor"))
	if err != nil {
		return req, err
	}
	req.Cursor = c
	if req.From, err = hub.ParseFrom(q.Get("from"), hub.FromEarliest); err != nil {
		return req, err
	}
	if s, ok, err := numericParam(q, "limit"); err != nil {
		return req, err
	} else if ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > hub.MaxPullLimit {
			return req, badRequest("limit=%q: use a whole number from 1 to %d, or leave limit out for the default (100)", s, hub.MaxPullLimit)
		}
		req.Limit = n
	}
	if s, ok, err := numericParam(q, "wait"); err != nil {
		return req, err
	} else if ok {
		d, err := ParseWait(s)
		if err != nil {
			return req, badRequest("wait=%q: %v", s, err)
		}
		if d > h.opts.MaxWait {
			return req, badRequest("wait=%q is over the maximum %v (pull.max_wait)", s, h.opts.MaxWait)
		}
		req.Wait = d
	}
	return req, nil
}

// numericParam returns the value of the numeric query parameter name and
// whether it is there. A parameter given is checked like any other value,
// an empty one (limit=) too: only a parameter left out takes the default.
// Given twice, it is an error.
func numericParam(q url.Values, name string) (string, bool, error) {
	vals, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vals) > 1:
		return "", false, badRequest("%s is given %d times; give it once", name, len(vals))
	}
	return vals[0], true, nil
}

// ParseWait parses a wait= value: a Go duration ("30s", "1m") or a whole
// number of seconds.
func ParseWait(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, errors.New("must not be negative")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("use a duration such as 30s, or a number of seconds")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// listTopics handles GET /v1/topics.
func (h *Handler) listTopics(w http.ResponseWriter, r *http.Request) {
	infos, err := h.hub.Topics(r.Context())
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	b := make([]byte, 0, 32+len(infos)*128)
	b = append(b, `{"topics":[`...)
	for i := range infos {
		if i > 0 {
			b = append(b, ',')
		}
		b = h.appendInfo(b, &infos[i])
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// topicInfo handles GET /v1/topics/{topic}.
func (h *Handler) topicInfo(w http.ResponseWriter, r *http.Request) {
	info, ok, err := h.hub.Info(r.Context(), r.PathValue("topic"))
	if err != nil {
		wire.WriteError(w, err)
		return
	}
	if !ok {
		wire.WriteErrorCode(w, reason.NotFound,
			fmt.Sprintf("topic %s does not exist; it is created by its first publish", r.PathValue("topic")))
		return
	}
	b := h.appendInfo(nil, &info)
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

func (h *Handler) appendInfo(b []byte, t *event.TopicInfo) []byte {
	b = append(b, `{"name":`...)
	b = wire.AppendString(b, t.Name)
	b = append(b, `,"epoch":"`...)
	b = t.Epoch.Append(b)
	b = append(b, `","first":`...)
	b = strconv.AppendUint(b, t.First, 10)
	b = append(b, `,"last":`...)
	b = strconv.AppendUint(b, t.Last, 10)
	b = append(b, `,"retained":`...)
	b = strconv.AppendInt(b, int64(t.Retained), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, t.Bytes, 10)
	b = append(b, `,"subscribers":`...)
	b = strconv.AppendInt(b, int64(h.hub.Subscribers(t.Name)), 10)
	if p := t.Presence; p != nil {
		b = append(b, `,"presence":{`...)
		b = wire.AppendPresence(b, p)
		b = append(b, '}')
	}
	return append(b, '}')
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	hd := w.Header()
	hd["Content-Type"] = jsonType
	if len(b) > 2048 {
		// Small answers get their Content-Length from net/http, which
		// buffers them whole; saying it here costs two allocations.
		hd["Content-Length"] = []string{strconv.Itoa(len(b))}
	}
	w.WriteHeader(status)
	w.Write(b)
}

var jsonType = []string{"application/json"}

// readAll reads r into a buffer sized from the request's Content-Length
// (when known and within limit), so that large bodies are not regrown.
func readAll(r io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength <= 0 || contentLength > limit {
		return io.ReadAll(r)
	}
	// net/http ends the body at Content-Length, so one full read is all.
	buf := make([]byte, contentLength)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
