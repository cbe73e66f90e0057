package grpcapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
func (v *service) PublishStream(ss heraldv1.Herald_PublishStreamServer) error {
	s := v.s
	ctx := ss.Context()
	in := new(publishIn)
	var msg rawMessage
	for {
		if err := ss.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		out, err := s.publish(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return statusError(ctx.Err())
			}
			_, code, text := describe(err)
			msg = s.codec.newRaw(32 + len(code) + len(text))
			msg.b = appendPublishError(msg.b, in.id, code, text)
		} else {
			msg = *s.encodePublish(out, in.id)
		}
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
	}
}

// publish validates in whole, then stores its events topic by topic. The
// answer has one ack per event, in the request's order. Nothing is stored
// when any event is refused before the engine is reached.
func (s *Server) publish(ctx context.Context, in *publishIn) (*publishOut, error) {
	n := len(in.events)
	if n == 0 {
		return nil, badRequest("the request has no events; give at least one in events")
	}
	out := &publishOut{topics: make([]string, n)}
	recs := make([]event.Record, n)
	single := true
	for i := range in.events {
		e := &in.events[i]
		t := e.topic
		if t == "" {
			t = in.topic
		}
		out.topics[i] = t
		single = single && t == out.topics[0]
		if err := s.record(&recs[i], t, e); err != nil {
			if n == 1 {
				return nil, err
			}
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	// The common case, one topic, needs no grouping.
	if single {
		acks, err := s.hub.Publish(ctx, out.topics[0], recs)
		if err != nil {
			return nil, err
		}
		out.acks = acks
		return out, nil
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
			return nil, err
		}
	}
	out.acks = make([]event.Ack, n)
	ctx = hub.PublishCounted(ctx) // CheckPublish counted the events against the rate limits
	for _, t := range order {
		g := groups[t]
		acks, err := s.hub.Publish(ctx, t, g.recs)
		if err != nil {
			return nil, err
		}
		for j, a := range acks {
			out.acks[g.idx[j]] = a
		}
	}
	return out, nil
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
