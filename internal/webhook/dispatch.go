package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netguard"
	"github.com/heraldhq/herald/internal/wire"
)

// member is the name a dispatcher fetches under in its group.
const member = "herald"

// The results of an attempt, as the delivery log and the metrics name
// them.
const (
	ResultSuccess  = "success" // a 2xx answer
	ResultStatus   = "status"  // another answer (3xx are not followed)
	ResultTimeout  = "timeout" // no answer within the timeout
	ResultRefused  = "refused" // the outbound guard refused the address
	ResultNetwork  = "network" // connection refused, reset, DNS, TLS…
	maxLoggedBody  = 256       // bytes of a response kept in the log
	maxDrainedBody = 64 << 10  // bytes read to keep a connection for reuse
)

// Attempt is one request of the delivery log.
type Attempt struct {
	Time    time.Time `json:"time"`
	ID      string    `json:"webhook_id"`
	Attempt int       `json:"attempt"`
	Replay  bool      `json:"replay,omitempty"`
	Test    bool      `json:"test,omitempty"`
	Result  string    `json:"result"`
	Status  int       `json:"status,omitempty"`
	Latency float64   `json:"latency_ms"`
	Error   string    `json:"error,omitempty"`
	Body    string    `json:"response,omitempty"`
	// Next says what came of the event: "delivered", "retry" (at
	// RetryAt), "failed" (dead-lettered), "disabled", or "" for a replay.
	Next    string     `json:"next,omitempty"`
	RetryAt *time.Time `json:"retry_at,omitempty"`
}

// Status is a subscription's state as the API shows it.
type Status struct {
	// State is "active", "paused" (enabled: false), "disabled" (by
	// failing for disable_after, or a 410 answer), or "waiting" (its group
	// cannot be made yet: Waiting says why, a topic that does not exist
	// yet, say).
	State          string     `json:"state"`
	Waiting        string     `json:"waiting,omitempty"`
	FailingSince   *time.Time `json:"failing_since,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	Attempts       uint64     `json:"attempts"`
	Delivered      uint64     `json:"delivered"`
	Failed         uint64     `json:"failed"`
	Skipped        uint64     `json:"skipped"`
	RetriesPending int        `json:"retries_pending"`
	LastAttempt    *Attempt   `json:"last_attempt,omitempty"`
	Replay         *Replay    `json:"replay,omitempty"`
}

// sub is one subscription: its settings and its dispatcher.
type sub struct {
	// Static after newSub.
	m       *Manager
	cfg     Config
	raw     []byte // cfg as stored in the registry
	group   string
	signer  *signer
	client  *http.Client
	tr      *http.Transport
	limiter *rate.Limiter // nil: no limit

	// Set by start; done is closed when run and the handlers and the
	// replay it waits for have returned.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // the handlers and the replay

	saveMu sync.Mutex // serializes changes of st with their writes; taken before mu

	mu        sync.Mutex // guards the following
	st        status
	hd        head // ordered: the event being retried
	log       []Attempt
	logNext   int
	attemptsN uint64
	delivered uint64
	failed    uint64
	skipped   uint64
	retrying  map[string]struct{} // unordered: events nak'd for a retry
	replay    *Replay
	waiting   string // why the dispatcher cannot start yet (its group cannot be made)
}

func (s *sub) setWaiting(why string) {
	s.mu.Lock()
	s.waiting = why
	s.mu.Unlock()
}

// newSub makes the subscription for cfg with its stored status.
func (m *Manager) newSub(ctx context.Context, cfg Config, raw []byte) (*sub, error) {
	s := &sub{m: m, cfg: cfg, raw: raw, group: groupName(cfg.Name), signer: newSigner(cfg.Secrets), retrying: make(map[string]struct{}), done: make(chan struct{})}
	close(s.done) // until start
	guard, connect := m.opts.Guard, cfg.ConnectTimeout
	s.tr = guard.Transport()
	s.tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, connect)
		defer cancel()
		return guard.DialContext(ctx, network, addr)
	}
	s.tr.MaxIdleConnsPerHost = max(4, cfg.Concurrency)
	s.tr.ResponseHeaderTimeout = cfg.Timeout
	s.client = &http.Client{Transport: s.tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, int(math.Ceil(cfg.RateLimit))))
	}
	if _, err := loadJSON(ctx, m.store, spaceOf(cfg.Name), keyStatus, &s.st); err != nil {
		return nil, err
	}
	if _, err := loadJSON(ctx, m.store, spaceOf(cfg.Name), keyHead, &s.hd); err != nil {
		return nil, err
	}
	return s, nil
}

// inheritLog carries old's delivery log and counters over a change.
func (s *sub) inheritLog(old *sub) {
	old.mu.Lock()
	defer old.mu.Unlock()
	s.log, s.logNext = old.log, old.logNext
	s.attemptsN, s.delivered, s.failed, s.skipped = old.attemptsN, old.delivered, old.failed, old.skipped
}

// start runs the dispatcher unless the subscription is paused or
// disabled; groupReady says its group was just put.
func (s *sub) start(parent context.Context, groupReady bool) {
	s.ctx, s.cancel = context.WithCancel(parent)
	s.done = make(chan struct{})
	disabled := !s.cfg.Enabled || s.autoDisabled()
	if o := s.m.opts.Observer; o.Disabled != nil {
		o.Disabled(s.cfg.Name, disabled)
	}
	if disabled {
		close(s.done)
		return
	}
	go s.run(groupReady)
}

// stop ends the dispatcher and waits for it.
func (s *sub) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	<-s.done
	s.tr.CloseIdleConnections()
}

func (s *sub) autoDisabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.st.DisabledAt.IsZero()
}

// run is the dispatcher: it fetches as many events as it has free slots
// (one for an ordered subscription) and hands each to a handler
// goroutine.
func (s *sub) run(groupReady bool) {
	defer close(s.done)
	defer s.wg.Wait()
	ictx := hub.Internal(s.ctx)
	backoff := func(err error, what string, wait *time.Duration) bool {
		s.m.log.Warn("webhook dispatcher: "+what, "webhook", s.cfg.Name, "error", err, "retry_in", *wait)
		t := time.NewTimer(*wait)
		defer t.Stop()
		*wait = min(2**wait, 30*time.Second)
		select {
		case <-t.C:
			return true
		case <-s.ctx.Done():
			return false
		}
	}
	wait := 100 * time.Millisecond
	for !groupReady {
		gc := groupConfig(&s.cfg)
		err := s.m.putGroup(ictx, &s.cfg)
		if errors.Is(err, group.ErrNoTopic) && gc.Start == "latest" {
			// A named topic does not exist yet: every event it will have
			// comes after the subscription, so once it exists the group
			// starts at the earliest event (the other topics' retained
			// ones too: sent again rather than lost).
			gc.Start = "earliest"
			s.setWaiting(err.Error())
			for errors.Is(err, group.ErrNoTopic) {
				t := time.NewTimer(time.Second)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
					return
				}
				_, _, err = s.m.groups.Put(ictx, gc)
			}
		}
		if err == nil {
			s.setWaiting("")
			break
		}
		s.setWaiting(err.Error())
		if s.ctx.Err() != nil || !backoff(err, "cannot make its group", &wait) {
			return
		}
	}
	slots := make(chan struct{}, s.cfg.Concurrency)
	wait = 100 * time.Millisecond
	for {
		select {
		case slots <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		n := 1
	more:
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		msgs, err := s.m.groups.Fetch(ictx, s.group, member, n, s.m.opts.FetchWait)
		for range n - len(msgs) {
			<-slots
		}
		if err != nil {
			if s.ctx.Err() != nil || !backoff(err, "fetch failed", &wait) {
				return
			}
			continue
		}
		wait = 100 * time.Millisecond
		for _, msg := range msgs {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-slots }()
				s.handle(ictx, msg)
			}()
		}
	}
}

// handle delivers one leased event: it acks it once delivered (or skipped
// by the type filter); on failure it retries after the schedule's wait —
// holding the lease for an ordered subscription, so that nothing after
// it is sent, and with a nak for an unordered one — and terms it (to the
// dead-letter topic) once the schedule is exhausted.
func (s *sub) handle(ctx context.Context, msg group.Message) {
	ev := msg.Event
	if !s.cfg.wants(ev) {
		s.mu.Lock()
		s.skipped++
		s.mu.Unlock()
		s.ack(ctx, msg)
		return
	}
	id := MessageID(ev)
	n := msg.Delivery
	if s.cfg.Ordered {
		n = 1
		if s.m.shared && msg.Delivery > 1 {
			s.reloadHead(ctx)
		}
		s.mu.Lock()
		if s.hd.ID == id {
			n = s.hd.Attempts + 1
		}
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		if _, ok := s.retrying[id]; ok {
			delete(s.retrying, id)
			s.retriesChanged()
		}
		s.mu.Unlock()
	}
	body := wire.EventJSON(ev)
	for {
		a, retryAfter := s.send(ctx, id, body, n)
		if ctx.Err() != nil {
			s.handBack(ctx, msg)
			return
		}
		// What the attempt decided is told to the group even when the
		// dispatcher is stopping meanwhile.
		dctx := context.WithoutCancel(ctx)
		if a.Result == ResultSuccess {
			a.Next = "delivered"
			s.record(a)
			s.succeeded(dctx)
			s.ack(dctx, msg)
			if s.cfg.Ordered && n > 1 {
				s.setHead(dctx, head{}, true)
			}
			s.count(func() { s.delivered++ }, s.m.opts.Observer.Delivered)
			return
		}
		if why := s.failing(dctx, a); why != "" {
			a.Next = "disabled"
			s.record(a)
			s.disable(dctx, why)
			s.handBack(dctx, msg)
			return
		}
		delay, again := s.cfg.retryDelay(n, retryAfter, s.m.opts.Rand())
		if !again {
			a.Next = "failed"
			s.record(a)
			why := fmt.Sprintf("webhook %s: %d attempts failed, the last: %s", s.cfg.Name, n, a.describe())
			if err := s.m.groups.Term(dctx, s.group, member, msg.ID, why); err != nil {
				s.m.log.Warn("webhook: dead-letter failed", "webhook", s.cfg.Name, "id", id, "error", err)
			}
			if s.cfg.Ordered && n > 1 {
				s.setHead(dctx, head{}, true)
			}
			s.count(func() { s.failed++ }, s.m.opts.Observer.Failed)
			return
		}
		at := s.m.clock.Now().Add(delay)
		a.Next, a.RetryAt = "retry", &at
		s.record(a)
		if !s.cfg.Ordered {
			s.mu.Lock()
			s.retrying[id] = struct{}{}
			s.retriesChanged()
			s.mu.Unlock()
			if err := s.m.groups.Nak(dctx, s.group, member, msg.ID, max(delay, time.Millisecond)); err != nil {
				s.m.log.Warn("webhook: nak failed", "webhook", s.cfg.Name, "id", id, "error", err)
			}
			return
		}
		s.setHead(dctx, head{ID: id, Attempts: n}, false)
		s.mu.Lock()
		s.retrying[id] = struct{}{}
		s.retriesChanged()
		s.mu.Unlock()
		err := s.hold(ctx, msg, delay)
		s.mu.Lock()
		delete(s.retrying, id)
		s.retriesChanged()
		s.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				s.handBack(ctx, msg)
			}
			return
		}
		n++
	}
}

// handBack returns a leased event to the group when the dispatcher stops
// (Close, a change, disabling), so that it is sent as soon as one runs
// again rather than when its lease would have ended.
func (s *sub) handBack(ctx context.Context, msg group.Message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.m.groups.Nak(ctx, s.group, member, msg.ID, 0); err != nil {
		s.m.log.Debug("webhook: event not handed back; it comes again when its lease ends", "webhook", s.cfg.Name, "error", err)
	}
}

// hold waits d on the clock, extending msg's lease meanwhile, and once
// more at the end so that the next attempt has a whole lease.
func (s *sub) hold(ctx context.Context, msg group.Message, d time.Duration) error {
	t := s.m.clock.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker((s.cfg.Timeout + leaseMargin) / 3)
	defer tick.Stop()
	extend := func() error {
		if _, err := s.m.groups.InProgress(ctx, s.group, member, msg.ID); err != nil {
			if ctx.Err() == nil {
				s.m.log.Warn("webhook: lease lost while waiting to retry", "webhook", s.cfg.Name, "error", err)
			}
			return err
		}
		return nil
	}
	for {
		select {
		case <-t.C():
			return extend()
		case <-tick.C:
			if err := extend(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *sub) ack(ctx context.Context, msg group.Message) {
	res, err := s.m.groups.Ack(ctx, s.group, member, []string{msg.ID})
	if err == nil && len(res) == 1 {
		err = res[0]
	}
	if err != nil && ctx.Err() == nil {
		s.m.log.Warn("webhook: ack failed", "webhook", s.cfg.Name, "error", err)
	}
}

// count bumps a counter under mu and tells the observer.
func (s *sub) count(bump func(), o func(string)) {
	s.mu.Lock()
	bump()
	s.mu.Unlock()
	if o != nil {
		o(s.cfg.Name)
	}
}

// retriesChanged reports the count of retrying events; mu is held.
func (s *sub) retriesChanged() {
	if o := s.m.opts.Observer; o.RetriesPending != nil {
		o.RetriesPending(s.cfg.Name, len(s.retrying))
	}
}

func (s *sub) setHead(ctx context.Context, h head, del bool) {
	s.mu.Lock()
	s.hd = h
	s.mu.Unlock()
	if err := saveJSON(ctx, s.m.store, spaceOf(s.cfg.Name), keyHead, h, del); err != nil && ctx.Err() == nil {
		s.m.log.Warn("webhook: state not written", "webhook", s.cfg.Name, "error", err)
	}
}

// succeeded ends a run of failures.
func (s *sub) succeeded(ctx context.Context) {
	s.mu.Lock()
	failing := !s.st.FailingSince.IsZero()
	s.mu.Unlock()
	if !failing {
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.FailingSince = time.Time{}
	s.saveStatusLocked(ctx, st)
}

// failing records a failed attempt a and returns why the subscription is
// to be disabled, or "": an answer 410 Gone, or failures only for
// DisableAfter.
func (s *sub) failing(ctx context.Context, a Attempt) string {
	if a.Status == http.StatusGone {
		return "the endpoint answered 410 Gone"
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	now := s.m.clock.Now()
	if st.FailingSince.IsZero() {
		st.FailingSince = now
		s.saveStatusLocked(ctx, st)
		return ""
	}
	if since := now.Sub(st.FailingSince); since >= s.cfg.DisableAfter {
		return fmt.Sprintf("every attempt failed for %v (disable_after %v); the last: %s", since.Round(time.Second), s.cfg.DisableAfter, a.describe())
	}
	return ""
}

// disable stops the dispatcher for good (until the subscription is put
// again), recording why. The event in hand keeps its lease until it runs
// out, and comes back when the subscription is enabled again.
func (s *sub) disable(ctx context.Context, why string) {
	s.saveMu.Lock()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.DisabledAt, st.DisabledReason = s.m.clock.Now(), why
	s.saveStatusLocked(ctx, st)
	s.saveMu.Unlock()
	s.m.log.Warn("webhook disabled", "webhook", s.cfg.Name, "reason", why)
	if o := s.m.opts.Observer; o.Disabled != nil {
		o.Disabled(s.cfg.Name, true)
	}
	s.cancel()
}

// saveStatus writes st as the subscription's status.
func (s *sub) saveStatus(ctx context.Context, st status) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	return s.saveStatusLocked(ctx, st)
}

// saveStatusLocked writes st and keeps it; saveMu is held.
func (s *sub) saveStatusLocked(ctx context.Context, st status) error {
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	err := saveJSON(context.WithoutCancel(ctx), s.m.store, spaceOf(s.cfg.Name), keyStatus, st, st == status{})
	if err != nil {
		s.m.log.Warn("webhook: status not written", "webhook", s.cfg.Name, "error", err)
		return err
	}
	s.m.bumpVersion(context.WithoutCancel(ctx))
	return nil
}

// send makes one attempt of the event id with body, the n-th, and logs
// it to the observer (the caller records it in the delivery log, with
// what comes next). retryAfter is the wait a 429 or 503 asked for.
func (s *sub) send(ctx context.Context, id string, body []byte, n int) (a Attempt, retryAfter time.Duration) {
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return Attempt{Result: ResultNetwork, Error: err.Error()}, 0
		}
	}
	now := s.m.clock.Now()
	a = Attempt{Time: now, ID: id, Attempt: n}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		a.Result, a.Error = ResultNetwork, err.Error()
		return a, 0
	}
	ts := now.Unix()
	req.Header = http.Header{
		"Content-Type":                           {"application/json"},
		"User-Agent":                             {s.m.opts.UserAgent},
		http.CanonicalHeaderKey(HeaderID):        {id},
		http.CanonicalHeaderKey(HeaderTimestamp): {fmt.Sprint(ts)},
		http.CanonicalHeaderKey(HeaderSignature): {s.signer.sign(id, ts, body)},
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err == nil {
		var head [maxLoggedBody]byte
		k, _ := io.ReadFull(resp.Body, head[:])
		io.CopyN(io.Discard, resp.Body, maxDrainedBody)
		resp.Body.Close()
		a.Status, a.Body = resp.StatusCode, string(bytes.ToValidUTF8(head[:k], nil))
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
	}
	a.Latency = float64(time.Since(start).Microseconds()) / 1000
	switch {
	case err != nil && errors.Is(err, netguard.ErrRefused):
		a.Result, a.Error = ResultRefused, err.Error()
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
		a.Result, a.Error = ResultTimeout, fmt.Sprintf("no answer within %v", s.cfg.Timeout)
	case err != nil:
		a.Result, a.Error = ResultNetwork, err.Error()
	case a.Status >= 200 && a.Status < 300:
		a.Result, a.Body = ResultSuccess, ""
	default:
		a.Result = ResultStatus
	}
	if ctx.Err() != nil && a.Result != ResultSuccess && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return a, 0 // cancelled: not an attempt
	}
	s.mu.Lock()
	s.attemptsN++
	s.mu.Unlock()
	if o := s.m.opts.Observer; o.Attempted != nil {
		o.Attempted(s.cfg.Name, a.Result, time.Since(start))
	}
	return a, retryAfter
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// describe says what went wrong in an attempt, for a log line or a
// dead-letter header.
func (a *Attempt) describe() string {
	if a.Error != "" {
		return a.Error
	}
	return fmt.Sprintf("status %d", a.Status)
}

// record adds a to the delivery log.
func (s *sub) record(a Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) < s.m.opts.LogSize {
		s.log = append(s.log, a)
		return
	}
	s.log[s.logNext] = a
	s.logNext = (s.logNext + 1) % len(s.log)
}

// attempts returns the delivery log, the newest first.
func (s *sub) attempts() []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Attempt, 0, len(s.log))
	for i := range s.log {
		j := (s.logNext - 1 - i + 2*len(s.log)) % len(s.log)
		out = append(out, s.log[j])
	}
	return out
}

func (s *sub) info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	when := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC().Truncate(time.Millisecond)
		return &t
	}
	st := Status{
		State: "active", FailingSince: when(s.st.FailingSince), DisabledAt: when(s.st.DisabledAt), DisabledReason: s.st.DisabledReason,
		Attempts: s.attemptsN, Delivered: s.delivered, Failed: s.failed, Skipped: s.skipped, RetriesPending: len(s.retrying),
	}
	switch {
	case !s.st.DisabledAt.IsZero():
		st.State = "disabled"
	case !s.cfg.Enabled:
		st.State = "paused"
	case s.waiting != "":
		st.State, st.Waiting = "waiting", s.waiting
	}
	if len(s.log) > 0 {
		last := s.log[(s.logNext-1+len(s.log))%len(s.log)]
		st.LastAttempt = &last
	}
	if s.replay != nil {
		r := *s.replay
		st.Replay = &r
	}
	return Info{Config: s.cfg.Redact(), Status: st}
}

// testEvent is the event a test request carries.
func testEvent(name string, now time.Time) *event.Event {
	return &event.Event{
		Topic: "webhook.test", Time: now.UnixMilli(),
		Record: event.Record{Type: "herald.webhook.test", Encoding: event.EncodingJSON, Data: fmt.Appendf(nil, `{"webhook":%q}`, name)},
	}
}
