package grpcapi

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec this one wraps
	"google.golang.org/grpc/mem"
)

// codec is the server's gRPC codec: the standard proto codec, except that a
// *rawMessage is sent as the bytes it holds. The delivery path encodes its
// messages by hand (frames.go), from bytes cached on each event, so that a
// send to one stream marshals nothing; everything else (requests, unary
// answers, the health and reflection services) goes through proto.
//
// Its name is "proto": on the wire it is the standard protobuf encoding,
// which is what a client asks for.
type codec struct {
	proto encoding.CodecV2
	pool  mem.BufferPool
}

func newCodec() (*codec, error) {
	p := encoding.GetCodecV2("proto")
	if p == nil {
		return nil, fmt.Errorf("grpc: no proto codec registered")
	}
	return &codec{proto: p, pool: mem.DefaultBufferPool()}, nil
}

// rawMessage is an encoded message. Its buffer comes from the codec's pool
// (newRaw) and goes back to it once gRPC has written it to the connection,
// which may be after SendMsg returns: the writer must not touch it after
// SendMsg. Without pooled, b is shared, immutable bytes (an event's
// soloFrame) that gRPC only reads.
type rawMessage struct {
	b      []byte
	pooled *[]byte // b's pool entry, when pooled
}

// newRaw returns a message with room for n bytes in b. Its buffer is from
// the pool, at least of gRPC's pooling threshold, so that gRPC gives it
// back once written: small messages are not garbage either.
func (c *codec) newRaw(n int) rawMessage {
	bp := c.pool.Get(max(n, minPooled))
	return rawMessage{b: (*bp)[:0], pooled: bp}
}

// minPooled is the smallest buffer gRPC returns to its pool (it goes by
// capacity): mem.IsBelowBufferPoolingThreshold's limit, 1 KiB, plus one.
const minPooled = 1<<10 + 1

// Marshal returns a rawMessage's bytes, and proto's encoding of anything
// else.
func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*rawMessage)
	if !ok {
		return c.proto.Marshal(v)
	}
	b, bp := r.b, r.pooled
	*r = rawMessage{} // the buffer is gRPC's now
	if bp == nil {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	*bp = b
	return mem.BufferSlice{mem.NewBuffer(bp, c.pool)}, nil
}

// Unmarshal decodes a *publishIn by hand (publishwire.go), and anything
// else with proto.
func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*publishIn)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return decodePublish(data[0].ReadOnlyData(), in)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return decodePublish(buf.ReadOnlyData(), in)
}

// Name is "proto": the wire format is standard protobuf.
func (c *codec) Name() string { return "proto" }
