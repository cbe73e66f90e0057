package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
)

// Result is what one poll came to.
type Result string

// The results of a poll.
const (
	ResultChanged     Result = "changed"      // events were published
	ResultUnchanged   Result = "unchanged"    // a body came, with nothing new in it
	ResultNotModified Result = "not_modified" // 304: the server said nothing changed
	ResultError       Result = "error"
)

// The kinds of errors a poll can end with, as metrics label them.
const (
	ErrKindRequest     = "request"      // the connection or the request failed, or timed out
	ErrKindRefused     = "refused"      // the SSRF guard refused the address
	ErrKindStatus      = "status"       // a status other than 2xx and 304
	ErrKindRateLimited = "rate_limited" // 429 or 503: backing off, honouring Retry-After
	ErrKindTooLarge    = "too_large"    // the body is over max_body_bytes
	ErrKindParse       = "parse"        // the body is not what the mode reads
	ErrKindPublish     = "publish"      // the hub refused the events
	ErrKindState       = "state"        // the state store failed
)

// ErrKinds lists the error kinds, for metrics.
var ErrKinds = []string{ErrKindRequest, ErrKindRefused, ErrKindStatus, ErrKindRateLimited, ErrKindTooLarge, ErrKindParse, ErrKindPublish, ErrKindState}

// Limits of one poll's publishing.
const (
	publishBatch     = 500       // events per hub.Publish call
	samplesPerEvent  = 1000      // prometheus samples per event
	sampleEventBytes = 256 << 10 // and bytes
	maxRetryAfter    = MaxInterval
	maxRedirects     = 5
)

// Status is what a source's poller has done lately.
type Status struct {
	LastPoll    time.Time // when the last poll ended; zero before the first
	LastSuccess time.Time
	LastResult  Result
	LastError   string // the last poll's error, "" after a success
	Failures    int    // polls failed in a row
	NextPoll    time.Time
	Polls       uint64 // since the poller started
	Published   uint64 // events published since the poller started
	Errors      uint64 // failed polls since the poller started
	// Standby: another node holds the source's lease and polls it (shared
	// mode, shared.go); this node tries again at NextPoll.
	Standby bool
}

// State names the status in a word: starting (no poll yet), ok, failing
// (the last poll failed), or standby (another node polls the source).
func (s *Status) State() string {
	switch {
	case s.Standby:
		return "standby"
	case s.Polls == 0:
		return "starting"
	case s.Failures > 0:
		return "failing"
	}
	return "ok"
}

// outcome is one poll's result.
type outcome struct {
	result     Result
	kind       string // of an error
	err        error
	published  int
	retryAfter time.Duration // asked for by a 429 or 503
}

func failed(kind string, err error) outcome {
	return outcome{result: ResultError, kind: kind, err: err}
}

// poller polls one source. Its fields are static after start but for
// those marked otherwise.
type poller struct {
	m       *Manager
	cfg     Config
	raw     []byte // cfg as stored in the registry
	space   string
	fp      string
	items   Path // json-items
	id      Path
	version Path
	keep    func(string) bool // prometheus

	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// owned by run:
	st       *state // nil until loaded, and after a failed write
	failures int
	lastErr  string // the last failed poll's error, for logging changes only
	lease    []byte // shared mode: the lease as last written, nil when not held

	mu     sync.Mutex // guards status
	status Status
}

func newPoller(m *Manager, cfg Config, raw []byte) *poller {
	p := &poller{m: m, cfg: cfg, raw: raw, space: spaceOf(cfg.Name), fp: cfg.fingerprint(), done: make(chan struct{})}
	if cfg.Mode == ModeJSONItems {
		p.items, _ = ParsePath(cfg.Items)
		p.id, _ = ParsePath(cfg.ID)
		if cfg.Version != "" {
			p.version, _ = ParsePath(cfg.Version)
		}
	}
	p.keep = metricFilter(cfg.Metrics)
	return p
}

// start runs the poller on a goroutine of its own, until stop.
func (p *poller) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	p.cancel = cancel
	go p.run(ctx)
}

// stop ends the poller and waits for it, cancelling a poll in flight.
func (p *poller) stop() {
	p.cancel()
	<-p.done
}

// run polls until ctx ends: a first poll after a random part of the
// jitter (so that sources declared together do not poll together), then
// one after each wait that next computes.
func (p *poller) run(ctx context.Context) {
	defer close(p.done)
	defer p.release()
	delay := time.Duration(float64(p.cfg.Interval) * p.cfg.Jitter * rand.Float64())
	for {
		p.mu.Lock()
		p.status.NextPoll = p.m.clock.Now().Add(delay)
		p.mu.Unlock()
		if delay > 0 {
			t := p.m.clock.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		if ctx.Err() != nil {
			return
		}
		if p.m.shared && !p.holds(ctx) {
			delay = nextDelay(&p.cfg, 0, 0, rand.Float64())
			continue
		}
		out := p.poll(ctx)
		if ctx.Err() != nil && out.result == ResultError {
			return // stopped midway: not the source's failure
		}
		if out.result == ResultError {
			p.failures++
		} else {
			p.failures = 0
		}
		delay = nextDelay(&p.cfg, p.failures, out.retryAfter, rand.Float64())
		if p.m.shared && delay > (leaseTerms-1)*p.cfg.Interval {
			// A backoff or a Retry-After: the lease covers the wait.
			if _, err := p.claim(ctx, delay+p.cfg.Timeout+(leaseTerms-1)*p.cfg.Interval); err != nil && ctx.Err() == nil {
				p.m.log.Warn("source: lease not extended", "source", p.cfg.Name, "error", err)
			}
		}
		p.record(out)
	}
}

// holds takes or renews the source's lease for this poll and reports
// whether this node is to poll; the status says standby when not.
func (p *poller) holds(ctx context.Context) bool {
	held, err := p.claim(ctx, p.cfg.Timeout+leaseTerms*p.cfg.Interval)
	if err != nil {
		if ctx.Err() == nil {
			p.m.log.Warn("source: lease not taken", "source", p.cfg.Name, "error", err)
		}
		held = false
	}
	p.mu.Lock()
	p.status.Standby = !held
	p.mu.Unlock()
	return held
}

// nextDelay is the wait before the next poll: the interval after a
// success; after failures in a row, the interval doubled for each, up to
// max_backoff; and at least what a Retry-After asked. The wait is varied by
// up to the jitter either way, except that it never goes below a
// Retry-After. r is a random number in [0, 1).
func nextDelay(cfg *Config, failures int, retryAfter time.Duration, r float64) time.Duration {
	d := cfg.Interval
	if failures > 0 {
		d = cfg.MaxBackoff
		if failures < 32 && cfg.Interval<<failures > 0 && cfg.Interval<<failures < cfg.MaxBackoff {
			d = cfg.Interval << failures
		}
	}
	d = time.Duration(float64(d) * (1 + cfg.Jitter*(2*r-1)))
	if retryAfter > 0 {
		retryAfter = min(retryAfter, maxRetryAfter)
		if ra := time.Duration(float64(retryAfter) * (1 + cfg.Jitter*r)); ra > d {
			d = ra
		}
	}
	return max(d, time.Millisecond)
}

// record keeps out in the status, tells the observer, and logs a failure.
func (p *poller) record(out outcome) {
	now := p.m.clock.Now()
	p.mu.Lock()
	s := &p.status
	s.LastPoll, s.LastResult, s.Failures = now, out.result, p.failures
	s.Polls++
	s.Published += uint64(out.published)
	if out.err != nil {
		s.Errors++
		s.LastError = out.err.Error()
	} else {
		s.LastError = ""
		s.LastSuccess = now
	}
	p.mu.Unlock()
	if o := p.m.opts.Observer; o.Polled != nil {
		o.Polled(p.cfg.Name, out.result, out.kind)
	}
	if o := p.m.opts.Observer; o.Published != nil && out.published > 0 {
		o.Published(p.cfg.Name, out.published)
	}
	p.logOutcome(out)
}

// logOutcome logs a poll's failure at warning level when it is the first
// or a new one, at debug level when it repeats the last one, and the
// recovery from failures.
func (p *poller) logOutcome(out outcome) {
	log := p.m.log.With("source", p.cfg.Name, "url", redactURL(p.cfg.URL))
	switch {
	case out.err != nil && out.err.Error() != p.lastErr:
		log.Warn("source poll failed", "kind", out.kind, "failures", p.failures, "error", out.err)
	case out.err != nil:
		log.Debug("source poll failed again", "kind", out.kind, "failures", p.failures, "error", out.err)
	case p.lastErr != "":
		log.Info("source polls again", "result", out.result)
	}
	p.lastErr = ""
	if out.err != nil {
		p.lastErr = out.err.Error()
	}
}

// snapshot returns the status.
func (p *poller) snapshot() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// poll fetches the source once and publishes what changed.
func (p *poller) poll(ctx context.Context) outcome {
	if p.st == nil {
		st, err := loadState(ctx, p.m.store, p.space, p.fp)
		if err != nil {
			return failed(ErrKindState, err)
		}
		p.st = st
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	resp, err := p.m.client.Do(p.request(rctx))
	if err != nil {
		kind := ErrKindRequest
		if errors.Is(err, netguard.ErrRefused) {
			kind = ErrKindRefused
		}
		return failed(kind, p.scrub(err))
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified:
		return outcome{result: ResultNotModified}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		out := failed(ErrKindRateLimited, fmt.Errorf("the source answered %s", resp.Status))
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), p.m.clock.Now())
		return out
	case code < 200 || code > 299:
		return failed(ErrKindStatus, fmt.Errorf("the source answered %s", resp.Status))
	}
	body, err := readBody(resp, p.cfg.MaxBodyBytes)
	if err != nil {
		if errors.Is(err, hub.ErrTooLarge) {
			return failed(ErrKindTooLarge, err)
		}
		return failed(ErrKindRequest, p.scrub(err))
	}
	return p.publish(ctx, resp.Header, body)
}

// request builds the poll's request: the source's method, headers and
// body, and the validators of the last response.
func (p *poller) request(ctx context.Context) *http.Request {
	var body io.Reader
	if p.cfg.Body != "" {
		body = strings.NewReader(p.cfg.Body)
	}
	req, _ := http.NewRequestWithContext(ctx, p.cfg.Method, p.cfg.URL, body) // Validate parsed the URL
	h := req.Header
	h.Set("User-Agent", p.m.opts.UserAgent)
	switch p.cfg.Mode {
	case ModePrometheus:
		h.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	case ModeJSONItems:
		h.Set("Accept", "application/json")
	}
	if p.cfg.Body != "" {
		if json.Valid([]byte(p.cfg.Body)) {
			h.Set("Content-Type", "application/json")
		} else {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	for k, v := range p.cfg.Headers {
		h.Set(k, v)
	}
	if p.st.meta.ETag != "" {
		h.Set("If-None-Match", p.st.meta.ETag)
	}
	if p.st.meta.LastModified != "" {
		h.Set("If-Modified-Since", p.st.meta.LastModified)
	}
	return req
}

// scrub removes the source's URL, which may hold credentials, from a
// client error, leaving its redacted form.
func (p *poller) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// readBody reads a response body of at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: the body is %d bytes, over max_body_bytes (%d)", hub.ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: the body is over max_body_bytes (%d)", hub.ErrTooLarge, limit)
	}
	return b, nil
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
// It returns 0 when there is none or it cannot be read.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// publish turns a body into events, publishes them, then writes the
// state that remembers them (see state.go for why in that order).
func (p *poller) publish(ctx context.Context, hdr http.Header, body []byte) outcome {
	st := p.st
	next := st.meta
	next.ETag, next.LastModified = hdr.Get("ETag"), hdr.Get("Last-Modified")
	next.Hash = hashOf(body)
	var recs []event.Record
	var ops []hub.StateOp
	if next.Hash != st.meta.Hash {
		var err error
		recs, ops, err = p.changes(st, hdr, body)
		if err != nil {
			return failed(ErrKindParse, err)
		}
	}
	if len(recs) == 0 && len(ops) == 0 && next == st.meta {
		return outcome{result: ResultUnchanged}
	}
	ictx := hub.Internal(ctx)
	for i := 0; i < len(recs); i += publishBatch {
		if _, err := p.m.hub.Publish(ictx, p.cfg.Topic, recs[i:min(i+publishBatch, len(recs))]); err != nil {
			return failed(ErrKindPublish, err)
		}
	}
	if len(recs) > 0 {
		next.N++
	}
	newSt := &state{meta: next, marks: st.marks}
	mop := newSt.metaOp()
	newSt.raw = mop.Value
	if err := applyChunked(ctx, p.m.store, p.space, st.raw, append(ops, mop)); err != nil {
		p.st = nil // what was written is read again before the next poll
		out := failed(ErrKindState, err)
		out.published = len(recs)
		return out
	}
	for _, op := range ops {
		if op.Delete {
			delete(st.marks, op.Key)
		} else {
			st.marks[op.Key] = string(op.Value)
		}
	}
	p.st = newSt
	if len(recs) == 0 {
		return outcome{result: ResultUnchanged}
	}
	return outcome{result: ResultChanged, published: len(recs)}
}

// changes returns the events a body makes against st, and the state ops
// that remember them.
func (p *poller) changes(st *state, hdr http.Header, body []byte) ([]event.Record, []hub.StateOp, error) {
	base := fmt.Sprintf("source:%s:%s:%d:", p.cfg.Name, st.meta.Gen, st.meta.N+1)
	headers := func(kv ...string) map[string]string {
		h := map[string]string{"source": p.cfg.Name}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				h[kv[i]] = kv[i+1]
			}
		}
		return h
	}
	switch p.cfg.Mode {
	case ModeJSONItems:
		return p.itemChanges(st, body, base, headers)
	case ModePrometheus:
		return p.sampleChanges(st, body, base, headers)
	}
	ct := hdr.Get("Content-Type")
	rec := event.Record{
		Type: p.cfg.Type, Data: body, Encoding: encodingOf(ct, body),
		Headers: headers("content_type", ct), Key: base + hashOf(body),
	}
	return []event.Record{rec}, nil, nil
}

func (p *poller) itemChanges(st *state, body []byte, base string, headers func(...string) map[string]string) ([]event.Record, []hub.StateOp, error) {
	items, skipped, err := readItems(body, p.items, p.id, p.version)
	if err != nil {
		return nil, nil, err
	}
	if len(items) == 0 && skipped > 0 {
		return nil, nil, fmt.Errorf("%w: none of the %d items has an id at %s (a string or a number)", errParse, skipped, p.id)
	}
	var recs []event.Record
	var ops []hub.StateOp
	present := make(map[string]bool, len(items))
	for _, it := range items {
		k := markKey(prefixItem, it.id)
		present[k] = true
		old, seen := st.marks[k]
		if seen && old == it.mark {
			continue
		}
		change := "new"
		if seen {
			change = "changed"
		}
		recs = append(recs, event.Record{
			Type: p.cfg.Type, Data: it.data, Encoding: event.EncodingJSON,
			Headers: headers("id", it.id, "change", change), Key: base + keyPart(it.id) + ":" + it.mark,
		})
		ops = append(ops, hub.StateOp{Key: k, Set: true, Value: []byte(it.mark)})
	}
	for _, k := range slices.Sorted(maps.Keys(st.marks)) {
		if present[k] || !strings.HasPrefix(k, prefixItem) {
			continue
		}
		ops = append(ops, hub.StateOp{Key: k, Delete: true})
		if !p.cfg.Removals {
			continue
		}
		id, known := strings.CutPrefix(k, prefixItem+"/")
		data := []byte(`{"id_hash":` + strconv.Quote(strings.TrimPrefix(k, prefixItem+"#")) + `}`)
		if known {
			data = appendJSONString([]byte(`{"id":`), id)
			data = append(data, '}')
		}
		recs = append(recs, event.Record{
			Type: p.cfg.Type, Data: data, Encoding: event.EncodingJSON,
			Headers: headers("id", id, "change", "removed"), Key: base + keyPart(k) + ":removed",
		})
	}
	return recs, ops, nil
}

// keyPart is an id as it goes into an idempotency key: itself when short,
// else its hash, so that every key stays within hub.MaxKeyLen.
func keyPart(id string) string {
	if len(id) <= 64 {
		return id
	}
	return "#" + hashOf([]byte(id))
}

func (p *poller) sampleChanges(st *state, body []byte, base string, headers func(...string) map[string]string) ([]event.Record, []hub.StateOp, error) {
	cur, err := readSamples(body, p.keep)
	if err != nil {
		return nil, nil, err
	}
	changed := changedSamples(func(series string) (string, bool) {
		m, ok := st.marks[markKey(prefixSeries, series)]
		return m, ok
	}, cur)
	var recs []event.Record
	var ops []hub.StateOp
	var b []byte
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		b = append(b, "]}"...)
		recs = append(recs, event.Record{
			Type: p.cfg.Type, Data: b, Encoding: event.EncodingJSON,
			Headers: headers(), Key: base + strconv.Itoa(len(recs)),
		})
		b, n = nil, 0
	}
	for _, s := range changed {
		one := appendSample(nil, s)
		if n > 0 && (n >= samplesPerEvent || len(b)+1+len(one) > sampleEventBytes) {
			flush()
		}
		if n == 0 {
			b = append(b, `{"samples":[`...)
		} else {
			b = append(b, ',')
		}
		b = append(b, one...)
		n++
	}
	flush()
	present := make(map[string]bool, len(cur))
	for _, s := range cur {
		present[markKey(prefixSeries, s.series)] = true
	}
	for _, s := range changed {
		ops = append(ops, hub.StateOp{Key: markKey(prefixSeries, s.series), Set: true, Value: []byte(valueMark(s.value))})
	}
	for _, k := range slices.Sorted(maps.Keys(st.marks)) {
		if !present[k] && strings.HasPrefix(k, prefixSeries) {
			ops = append(ops, hub.StateOp{Key: k, Delete: true})
		}
	}
	return recs, ops, nil
}
