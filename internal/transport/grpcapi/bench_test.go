package grpcapi

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// sinkStream is a grpc.ServerStream that marshals what is sent, as gRPC
// does, and drops it: the delivery path without the network.
type sinkStream struct {
	codec *codec
	bytes int
}

func (s *sinkStream) SetHeader(metadata.MD) error  { return nil }
func (s *sinkStream) SendHeader(metadata.MD) error { return nil }
func (s *sinkStream) SetTrailer(metadata.MD)       {}
func (s *sinkStream) Context() context.Context     { return context.Background() }
func (s *sinkStream) RecvMsg(any) error            { return nil }
func (s *sinkStream) SendMsg(m any) error {
	data, err := s.codec.Marshal(m)
	if err != nil {
		return err
	}
	s.bytes += data.Len()
	data.Free()
	return nil
}

// BenchmarkDelivery is one stream's writer sending one queued event: the
// event's frame is cached (as after the first of many subscribers), the
// writer copies it with the stream's cursor into a pooled buffer. Run with
// -benchmem: the only allocation left is gRPC's buffer wrapper.
func BenchmarkDelivery(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch int
	}{{"1event", 1}, {"16events", 16}} {
		b.Run(tc.name, func(b *testing.B) {
			eng := memory.New(memory.Options{})
			defer eng.Close()
			h := hub.New(eng, hub.Options{})
			defer h.Close()
			s, err := New(h, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Stop()
			sink := &sinkStream{codec: s.codec}
			st, err := s.newStream(sink, false)
			if err != nil {
				b.Fatal(err)
			}
			defer st.sub.Close(hub.CloseClient)
			st.cur.Set("bench.topic", event.Position{Epoch: 7, Offset: 0})
			items := make([]hub.Item, tc.batch)
			for i := range items {
				ev := &event.Event{Topic: "bench.topic", Offset: uint64(i + 1), Epoch: 7, Time: 1764100200123,
					Record: event.Record{Data: make([]byte, 128), Encoding: event.EncodingJSON}}
				eventFrame(ev)
				items[i] = hub.Item{Event: ev}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				st.take(items)
				if err := st.flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(sink.bytes)/float64(b.N), "B/send")
		})
	}
}

// BenchmarkEventFrame is the once-per-event encoding (the event's solo
// Delivery).
func BenchmarkEventFrame(b *testing.B) {
	ev := &event.Event{Topic: "bench.topic", Offset: 1, Epoch: 7, Time: 1764100200123,
		Record: event.Record{Data: make([]byte, 128), Encoding: event.EncodingJSON, Type: "t"}}
	b.ReportAllocs()
	for b.Loop() {
		encodeSolo(ev)
	}
}

// BenchmarkDecodePublish is the hand decoder of a request of 100 events.
func BenchmarkDecodePublish(b *testing.B) {
	var msg []byte
	payloads := make([][]byte, 100)
	for i := range payloads {
		payloads[i] = make([]byte, 128)
	}
	msg = appendTestPublish(msg, "bench.topic", payloads)
	var in publishIn
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := decodePublish(msg, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// appendTestPublish encodes a PublishRequest of payloads, as a client would.
func appendTestPublish(b []byte, topic string, payloads [][]byte) []byte {
	b = appendString(b, 1, topic)
	for _, p := range payloads {
		ev := appendString(nil, 2, string(p))
		b = appendString(b, 2, string(ev))
	}
	return b
}
