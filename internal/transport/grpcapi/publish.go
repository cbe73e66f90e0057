package grpcapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// publishHandler is the Publish method's handler (it replaces the
// generated one in the service description): the request is decoded and
// the answer encoded by hand (publishwire.go). Like the generated
// handlers, it runs the call through the server's interceptor, which
// authenticates it.
func (s *Server) publishHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(publishIn)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return s.publishDecoded(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: servicePrefix + "Publish"}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.publishDecoded(ctx, req.(*publishIn))
	})
}

// publishDecoded publishes a decoded request and encodes the answer.
func (s *Server) publishDecoded(ctx context.Context, in *publishIn) (any, error) {
	out, err := s.publish(ctx, in)
	if err != nil {
		return nil, statusError(err)
	}
	return s.encodePublish(out, in.id), nil
}

// encodePublish returns out's PublishResponse as a rawMessage.
func (s *Server) encodePublish(out *publishOut, id uint64) *rawMessage {
	m := s.codec.newRaw(publishResponseSize(out))
	var scratch [128]byte
	m.b, _ = appendPublishResponse(m.b, out, id, scratch[:0])
	return &m
}

// Publish stores one event or a batch. The server runs publishHandler
// instead; this typed form is the same call for the generated interface.
func (v *service) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	out, err := v.s.publish(ctx, fromProto(req))
	if err != nil {
		return nil, statusError(err)
	}
	return out.toProto(req.Id), nil
}

// PublishStream handles each request as a Publish, in order, answering
// each with the request's id. A refused request is answered with its error
// and the stream goes on; a broken stream (a message over the size limit,
// say) ends it.
//
// The stream is pipelined: a reader goroutine receives requests while the
// handler stores the ones before them, and the handler stores the requests
// waiting when it is free in one go (storeRun): consecutive requests to one
// topic become one append, in their order. A client with many requests in
// flight on one stream so gets the throughput of as many concurrent
// publishers, with its per-topic order kept; a lone request is stored at
// once, as before.
func (v *service) PublishStream(ss heraldv1.Herald_PublishStreamServer) error {
	s := v.s
	ctx := ss.Context()
	// The reader owns reqs and closes it when the stream's receiving side
	// ends (readErr then holds why); it stops early when the handler
	// returns (stop). It is counted in s.workers, as Connect's is.
	reqs := make(chan *publishIn, streamWindow)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	ahead := newLookahead()
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		defer close(reqs)
		for {
			in := new(publishIn)
			if err := ss.RecvMsg(in); err != nil {
				readErr <- err
				return
			}
			over := ahead.add(in.size())
			select {
			case reqs <- in:
			case <-stop:
				readErr <- nil
				return
			}
			if over && !ahead.wait(stop) {
				readErr <- nil
				return
			}
		}
	}()
	batch := make([]*publishIn, 0, streamWindow)
	var answers []streamAnswer
	for {
		in, ok := <-reqs
		if !ok {
			if err := <-readErr; err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		batch = append(batch[:0], in)
		n := len(in.events)
	more:
		for len(batch) < streamWindow && n < maxStreamMerge {
			select {
			case in, ok := <-reqs:
				if !ok {
					break more // answer these, then see why the reader stopped
				}
				batch = append(batch, in)
				n += len(in.events)
			default:
				break more
			}
		}
		taken := 0
		for _, in := range batch {
			taken += in.size()
		}
		ahead.take(taken)
		answers = s.publishMany(ctx, batch, answers[:0])
		for i, a := range answers {
			if a.err != nil && ctx.Err() != nil {
				return statusError(ctx.Err())
			}
			if err := ss.SendMsg(s.streamAnswer(batch[i].id, a)); err != nil {
				return err
			}
		}
		clear(batch)
		clear(answers)
	}
}

// Bounds of PublishStream's pipelining: the requests awaiting their turn
// (received ahead of the one being stored) and their payload bytes (one
// request more may pass it), and the events stored in one go (a request
// over it still runs whole).
const (
	streamWindow   = 256
	maxAheadBytes  = 4 << 20
	maxStreamMerge = 1000
)

// lookahead counts the payload bytes a PublishStream's reader holds ahead
// of the store, so that a client sending large requests faster than they
// are stored holds at most maxAheadBytes (and one request) of the
// server's memory, not streamWindow requests of grpc.max_message_bytes.
type lookahead struct {
	mu    sync.Mutex
	bytes int
	freed chan struct{} // poked when the handler takes requests
}

func newLookahead() *lookahead { return &lookahead{freed: make(chan struct{}, 1)} }

// add counts n bytes received and reports whether the reader is now over
// the bound.
func (l *lookahead) add(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bytes += n
	return l.bytes > maxAheadBytes
}

// take uncounts n bytes the handler took.
func (l *lookahead) take(n int) {
	l.mu.Lock()
	l.bytes -= n
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// wait returns true once the reader is under the bound, false if stop is
// closed first.
func (l *lookahead) wait(stop <-chan struct{}) bool {
	for {
		l.mu.Lock()
		under := l.bytes <= maxAheadBytes
		l.mu.Unlock()
		if under {
			return true
		}
		select {
		case <-l.freed:
		case <-stop:
			return false
		}
	}
}

// streamAnswer is the outcome of one request of a PublishStream.
type streamAnswer struct {
	out *publishOut
	err error
}

// streamAnswer encodes a's PublishResponse for the request id.
func (s *Server) streamAnswer(id uint64, a streamAnswer) *rawMessage {
	if a.err == nil {
		return s.encodePublish(a.out, id)
	}
	_, code, text := describe(a.err)
	msg := s.codec.newRaw(32 + len(code) + len(text))
	msg.b = appendPublishError(msg.b, id, code, text)
	return &msg
}

// publishMany publishes batch's requests in order, appending one answer
// per request to answers: each as publish would, except that consecutive
// requests to one topic are checked one by one (a refused one is answered
// alone) and the accepted ones stored in one append, so they succeed or
// fail together, as concurrent appends coalesced by an engine do.
func (s *Server) publishMany(ctx context.Context, batch []*publishIn, answers []streamAnswer) []streamAnswer {
	preps := make([]prepared, len(batch))
	for i, in := range batch {
		preps[i] = s.prepare(in)
	}
	for i := 0; i < len(preps); {
		p := &preps[i]
		if p.err != nil || !p.single {
			if p.err == nil {
				p.err = s.store(ctx, p)
			}
			answers = append(answers, streamAnswer{out: p.out, err: p.err})
			i++
			continue
		}
		j := i + 1
		for j < len(preps) && preps[j].err == nil && preps[j].single && preps[j].out.topics[0] == p.out.topics[0] {
			j++
		}
		answers = s.storeRun(ctx, preps[i:j], answers)
		i = j
	}
	return answers
}

// storeRun stores run, requests to one topic each and all to the same
// one, in one append (hub.PublishEach), appending their answers.
func (s *Server) storeRun(ctx context.Context, run []prepared, answers []streamAnswer) []streamAnswer {
	if len(run) == 1 {
		p := &run[0]
		p.err = s.store(ctx, p)
		return append(answers, streamAnswer{out: p.out, err: p.err})
	}
	pubs := make([][]event.Record, len(run))
	for i := range run {
		pubs[i] = run[i].recs
	}
	acks, errs := s.hub.PublishEach(ctx, run[0].out.topics[0], pubs)
	for i := range run {
		p := &run[i]
		p.out.acks, p.err = acks[i], errs[i]
		answers = append(answers, streamAnswer{out: p.out, err: p.err})
	}
	return answers
}

// prepared is a request checked and turned into records, ready to store.
type prepared struct {
	out    *publishOut // topics set; acks set by store
	recs   []event.Record
	single bool  // all events to out.topics[0]
	err    error // the request's refusal
}

// publish validates in whole, then stores its events topic by topic. The
// answer has one ack per event, in the request's order. Nothing is stored
// when any event is refused before the engine is reached.
func (s *Server) publish(ctx context.Context, in *publishIn) (*publishOut, error) {
	p := s.prepare(in)
	if p.err != nil {
		return nil, p.err
	}
	if err := s.store(ctx, &p); err != nil {
		return nil, err
	}
	return p.out, nil
}

// prepare checks in's events and turns them into records.
func (s *Server) prepare(in *publishIn) prepared {
	n := len(in.events)
	if n == 0 {
		return prepared{err: badRequest("the request has no events; give at least one in events")}
	}
	p := prepared{out: &publishOut{topics: make([]string, n)}, recs: make([]event.Record, n), single: true}
	for i := range in.events {
		e := &in.events[i]
		t := e.topic
		if t == "" {
			t = in.topic
		}
		p.out.topics[i] = t
		p.single = p.single && t == p.out.topics[0]
		if err := s.record(&p.recs[i], t, e); err != nil {
			if n == 1 {
				return prepared{err: err}
			}
			return prepared{err: fmt.Errorf("event %d: %w", i, err)}
		}
	}
	return p
}

// store stores p's records, topic by topic, and sets its acks.
func (s *Server) store(ctx context.Context, p *prepared) error {
	out, recs := p.out, p.recs
	// The common case, one topic, needs no grouping.
	if p.single {
		acks, err := s.hub.Publish(ctx, out.topics[0], recs)
		if err != nil {
			return err
		}
		out.acks = acks
		return nil
	}
	type group struct {
		recs []event.Record
		idx  []int
	}
	groups := make(map[string]*group)
	var order []string
	for i, t := range out.topics {
		g := groups[t]
		if g == nil {
			g = &group{}
			groups[t] = g
			order = append(order, t)
		}
		g.recs = append(g.recs, recs[i])
		g.idx = append(g.idx, i)
	}
	for _, t := range order {
		if err := s.hub.CheckPublish(ctx, t, groups[t].recs); err != nil {
			return err
		}
	}
	out.acks = make([]event.Ack, len(recs))
	ctx = hub.PublishCounted(ctx) // CheckPublish counted the events against the rate limits
	for _, t := range order {
		g := groups[t]
		acks, err := s.hub.Publish(ctx, t, g.recs)
		if err != nil {
			return err
		}
		for j, a := range acks {
			out.acks[g.idx[j]] = a
		}
	}
	return nil
}

// record checks one event and fills rec from it. The payload is not
// copied: it was allocated for this request, and the engine keeps it.
func (s *Server) record(rec *event.Record, topic string, e *publishEvent) error {
	if topic == "" {
		return badRequest("the event has no topic; set topic on the event or the request")
	}
	if err := event.ValidateTopic(topic); err != nil {
		return err
	}
	enc, err := payloadEncoding(e.enc, e.data)
	if err != nil {
		return err
	}
	*rec = event.Record{Type: e.typ, Key: e.key, Encoding: enc, Data: e.data}
	if len(e.headers) > 0 {
		rec.Headers = make(map[string]string, len(e.headers))
		for k, v := range e.headers {
			rec.Headers[strings.ToLower(k)] = v
		}
	}
	return nil // the hub checks the rest
}

// payloadEncoding checks data against the encoding asked for, or detects
// one (docs/grpc.md): JSON must be valid JSON, text valid UTF-8.
func payloadEncoding(enc heraldv1.Encoding, data []byte) (event.Encoding, error) {
	switch enc {
	case heraldv1.Encoding_ENCODING_JSON:
		if !json.Valid(data) {
			return 0, badRequest("data is not valid JSON; use ENCODING_TEXT or ENCODING_BINARY for other payloads")
		}
		return event.EncodingJSON, nil
	case heraldv1.Encoding_ENCODING_TEXT:
		if !utf8.Valid(data) {
			return 0, badRequest("data is not valid UTF-8 text; use ENCODING_BINARY for binary payloads")
		}
		return event.EncodingText, nil
	case heraldv1.Encoding_ENCODING_BINARY:
		return event.EncodingBinary, nil
	case heraldv1.Encoding_ENCODING_UNSPECIFIED:
		switch {
		case len(data) > 0 && json.Valid(data):
			return event.EncodingJSON, nil
		case utf8.Valid(data):
			return event.EncodingText, nil
		}
		return event.EncodingBinary, nil
	default:
		return 0, badRequest("unknown encoding %d", enc)
	}
}
