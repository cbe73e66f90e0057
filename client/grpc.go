package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
)

// This file is the gRPC side of the client (docs/grpc.md): a Client made
// with NewGRPC publishes, pulls and subscribes over herald's gRPC API
// instead of HTTP. Cursors are the same tokens on both, so a consumer can
// move between them.

// maxGRPCMessage is the largest message the client accepts: a Delivery is
// at most 512 KiB unless one event is larger, and events are at most
// limits.max_event_bytes (1 MiB by default).
const maxGRPCMessage = 64 << 20

// WithGRPCDialOptions adds options to the gRPC connection of a client made
// with NewGRPC (New ignores them), such as grpc.WithTransportCredentials
// for TLS (the default is plaintext, as for a server on 127.0.0.1).
func WithGRPCDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.grpcOpts = append(s.grpcOpts, opts...) }
}

// grpcBackend is the gRPC API of one server.
type grpcBackend struct {
	conn   *grpc.ClientConn      // static
	api    heraldv1.HeraldClient // static
	target string                // static
	s      settings              // static
}

// NewGRPC returns a client of the server's gRPC API at target (host:port,
// such as "127.0.0.1:9090", or any gRPC target). Publish, PublishBatch,
// Pull and Subscribe go over gRPC; WithRequestHeader headers and WithToken
// tokens are sent as gRPC metadata. The connection is made on first use
// and reconnects by itself; Close releases it.
func NewGRPC(target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New("herald client: empty gRPC target; give host:port, such as 127.0.0.1:9090")
	}
	if strings.Contains(target, "://") && !strings.HasPrefix(target, "dns:") && !strings.HasPrefix(target, "unix:") {
		return nil, fmt.Errorf("herald client: gRPC target %q: give host:port, not a URL", target)
	}
	s := newSettings(opts)
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(s.userAgent),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGRPCMessage)),
		// Notice a connection that died silently (the SSE idle timeout's job).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	conn, err := grpc.NewClient(target, append(dial, s.grpcOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("herald client: gRPC target %q: %w", target, err)
	}
	return &Client{api: &grpcBackend{conn: conn, api: heraldv1.NewHeraldClient(conn), target: target, s: s}, renew: s.renew}, nil
}

func (b *grpcBackend) addr() string { return b.target }

func (b *grpcBackend) close() error { return b.conn.Close() }

// callCtx returns ctx with the client's headers and token added to its
// outgoing metadata, for one call.
func (b *grpcBackend) callCtx(ctx context.Context) (context.Context, error) {
	auth, err := b.s.authorization(ctx)
	if err != nil {
		return nil, err
	}
	var kv []string
	for k, vs := range b.s.header {
		if auth != "" && strings.EqualFold(k, "Authorization") {
			continue // the token replaces it
		}
		for _, v := range vs {
			kv = append(kv, k, v)
		}
	}
	if auth != "" {
		kv = append(kv, "authorization", auth)
	}
	if len(kv) == 0 {
		return ctx, nil
	}
	return metadata.AppendToOutgoingContext(ctx, kv...), nil
}

// grpcError turns a gRPC status into an *Error carrying herald's error
// code (the status's ErrorInfo reason) and the gRPC code.
func grpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &Error{GRPCCode: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Code = d.Reason
		case *errdetails.RetryInfo:
			e.RetryAfter = d.RetryDelay.AsDuration()
		}
	}
	return e
}

// grpcEncoding is the gRPC encoding of a publish's content type, which
// says the same as over HTTP (WithContentType).
func grpcEncoding(contentType string) (heraldv1.Encoding, error) {
	if contentType == "" {
		return heraldv1.Encoding_ENCODING_JSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("content type %q: %w", contentType, err)
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return heraldv1.Encoding_ENCODING_JSON, nil
	case strings.HasPrefix(mt, "text/"):
		return heraldv1.Encoding_ENCODING_TEXT, nil
	default:
		return heraldv1.Encoding_ENCODING_BINARY, nil
	}
}

// publish is Publish: one Publish call.
func (b *grpcBackend) publish(ctx context.Context, topic string, data []byte, p *publishParams) (Ack, error) {
	enc, err := grpcEncoding(p.contentType)
	if err != nil {
		return Ack{}, err
	}
	if data == nil {
		data = []byte{}
	}
	if ctx, err = b.callCtx(ctx); err != nil {
		return Ack{}, err
	}
	resp, err := b.api.Publish(ctx, &heraldv1.PublishRequest{Topic: topic, Events: []*heraldv1.PublishEvent{{
		Data: data, Encoding: enc, Type: p.typ, Key: p.key, Headers: p.headers,
	}}})
	if err != nil {
		return Ack{}, grpcError(err)
	}
	if len(resp.Acks) != 1 {
		return Ack{}, fmt.Errorf("the server answered %d acks for 1 event", len(resp.Acks))
	}
	return ackOf(resp.Acks[0]), nil
}

func ackOf(a *heraldv1.Ack) Ack {
	return Ack{Topic: a.Topic, Offset: a.Offset, Epoch: a.Epoch, Cursor: a.Cursor, Duplicate: a.Duplicate}
}

// publishBatch is PublishBatch: one Publish call.
func (b *grpcBackend) publishBatch(ctx context.Context, events []BatchEvent) ([]Ack, error) {
	req := &heraldv1.PublishRequest{Events: make([]*heraldv1.PublishEvent, len(events))}
	for i := range events {
		e := &events[i]
		pe := &heraldv1.PublishEvent{Topic: e.Topic, Type: e.Type, Key: e.Key, Headers: e.Headers}
		switch {
		case e.Data != nil:
			pe.Data, pe.Encoding = e.Data, heraldv1.Encoding_ENCODING_JSON
		case e.Binary != nil:
			pe.Data, pe.Encoding = e.Binary, heraldv1.Encoding_ENCODING_BINARY
		default:
			pe.Data, pe.Encoding = []byte(e.Text), heraldv1.Encoding_ENCODING_TEXT
		}
		req.Events[i] = pe
	}
	ctx, err := b.callCtx(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := b.api.Publish(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	acks := make([]Ack, len(resp.Acks))
	for i, a := range resp.Acks {
		acks[i] = ackOf(a)
	}
	return acks, nil
}

// grpcFroms are the gRPC forms of the From values.
var grpcFroms = map[From]heraldv1.From{
	FromLatest:   heraldv1.From_FROM_LATEST,
	FromEarliest: heraldv1.From_FROM_EARLIEST,
}

// pull is Pull: one Pull call.
func (b *grpcBackend) pull(ctx context.Context, topics []string, p *pullParams) (PullResult, error) {
	req := &heraldv1.PullRequest{Topics: topics, Cursor: p.cursor, From: grpcFroms[p.from], Limit: uint32(p.limit)}
	if p.wait > 0 {
		req.Wait = durationpb.New(p.wait)
	}
	ctx, err := b.callCtx(ctx)
	if err != nil {
		return PullResult{}, err
	}
	resp, err := b.api.Pull(ctx, req)
	if err != nil {
		return PullResult{}, grpcError(err)
	}
	res := PullResult{Cursor: resp.Cursor, Events: make([]Event, len(resp.Events))}
	for i, ev := range resp.Events {
		res.Events[i] = eventOf(ev)
	}
	for _, g := range resp.Gaps {
		res.Gaps = append(res.Gaps, gapOf(g))
	}
	return res, nil
}

// eventOf converts an event of the gRPC API into the HTTP API's form.
func eventOf(ev *heraldv1.Event) Event {
	out := Event{Topic: ev.Topic, Offset: ev.Offset, Epoch: ev.Epoch, Type: ev.Type, Headers: ev.Headers}
	if ev.Time != nil {
		out.Time = ev.Time.AsTime()
	}
	switch ev.Encoding {
	case heraldv1.Encoding_ENCODING_JSON:
		out.Encoding, out.Data = EncodingJSON, json.RawMessage(ev.Data)
	case heraldv1.Encoding_ENCODING_TEXT:
		out.Encoding = EncodingText
		out.Data, _ = json.Marshal(string(ev.Data)) // a string cannot fail
	default:
		out.Encoding = EncodingBinary
		out.Data, _ = json.Marshal(base64.StdEncoding.EncodeToString(ev.Data))
	}
	return out
}

// gapReasons are the HTTP API's names of the gRPC gap reasons.
var gapReasons = map[heraldv1.GapReason]string{
	heraldv1.GapReason_GAP_REASON_TRIMMED:       GapTrimmed,
	heraldv1.GapReason_GAP_REASON_EPOCH_CHANGED: GapEpochChanged,
	heraldv1.GapReason_GAP_REASON_AHEAD:         GapAhead,
}

func gapOf(g *heraldv1.Gap) Gap {
	return Gap{
		Topic:     g.Topic,
		Reason:    gapReasons[g.Reason],
		Requested: Position{Epoch: g.GetRequested().GetEpoch(), Offset: g.GetRequested().GetOffset()},
		Resumed:   Position{Epoch: g.GetResumed().GetEpoch(), Offset: g.GetResumed().GetOffset()},
		Earliest:  g.Earliest,
	}
}

// dialer returns the opener of the gRPC API's one transport, its default.
// Subscribe has checked that t is a Transport.
func (b *grpcBackend) dialer(t Transport) (dialFunc, error) {
	if t != "" && t != TransportGRPC {
		return nil, fmt.Errorf("transport %q: a client made with NewGRPC subscribes over %q only", t, TransportGRPC)
	}
	return b.openGRPC, nil
}

// grpcStream is one open Subscribe call.
type grpcStream struct {
	s      heraldv1.Herald_SubscribeClient
	cancel context.CancelFunc // ends the call
	first  *heraldv1.Delivery // the starting delivery, not yet handled
}

func (gs *grpcStream) close() { gs.cancel() }

// openGRPC starts a Subscribe call from s.cursor and reads its starting
// delivery, which shows that the server has fixed where the stream starts.
func (b *grpcBackend) openGRPC(s *Subscription) (stream, error) {
	ctx, err := b.callCtx(s.ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	call, err := b.api.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: s.topics, Cursor: s.cursor, From: grpcFroms[s.p.from]})
	if err != nil {
		cancel()
		return nil, grpcError(err)
	}
	first, err := call.Recv()
	if err != nil {
		cancel()
		return nil, s.grpcEnd(err)
	}
	return &grpcStream{s: call, cancel: cancel, first: first}, nil
}

// grpcEnd turns the end of a Subscribe call into the error handed to
// retryAfter, taking the server's resume hint.
func (s *Subscription) grpcEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the server ended the gRPC stream")
	}
	err = grpcError(err)
	s.retry = 0
	var e *Error
	if errors.As(err, &e) {
		s.retry = e.RetryAfter
	}
	return err
}

// pump delivers the deliveries of the call until it ends.
func (gs *grpcStream) pump(s *Subscription, attempt *int) error {
	for {
		d := gs.first
		gs.first = nil
		if d == nil {
			var err error
			if d, err = gs.s.Recv(); err != nil {
				return s.grpcEnd(err)
			}
		}
		if err := s.handleDelivery(d); err != nil {
			return err
		}
		if len(d.Events) > 0 || len(d.Gaps) > 0 {
			*attempt = 0
		}
	}
}

// handleDelivery delivers a Delivery's gaps, then its events, each with
// the cursor after it, and moves to the delivery's cursor. The cursor of
// each message is made from the subscription's position and the message
// (the server sends one cursor per delivery); the last message of the
// delivery gets the server's cursor.
func (s *Subscription) handleDelivery(d *heraldv1.Delivery) error {
	if d.Cursor == "" {
		return fmt.Errorf("%w: a delivery without a cursor", errBadFrame)
	}
	n := len(d.Gaps) + len(d.Events)
	pos, ok := s.pos, s.posOK
	if ok {
		pos = append([]cursorEntry(nil), pos...)
	}
	i := 0
	next := func(e cursorEntry, err error) string {
		i++
		if i == n {
			return d.Cursor
		}
		if !ok || err != nil {
			ok = false
			return ""
		}
		pos = setPosition(pos, e)
		return encodeCursor(pos)
	}
	for _, g := range d.Gaps {
		gap := gapOf(g)
		epoch, err := parseEpoch(gap.Resumed.Epoch)
		m := Message{Gap: &gap, Cursor: next(cursorEntry{topic: gap.Topic, epoch: epoch, offset: gap.Resumed.Offset}, err)}
		if err := s.deliver(m); err != nil {
			return err
		}
	}
	for _, ev := range d.Events {
		e := eventOf(ev)
		epoch, err := parseEpoch(e.Epoch)
		m := Message{Event: &e, Cursor: next(cursorEntry{topic: e.Topic, epoch: epoch, offset: e.Offset}, err)}
		if err := s.deliver(m); err != nil {
			return err
		}
	}
	s.setCursor(d.Cursor)
	return nil
}

// grpcRetryable reports whether a gRPC code means "try again later".
func grpcRetryable(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}
