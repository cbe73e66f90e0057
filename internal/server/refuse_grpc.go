package server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/internal/limit"
	"github.com/heraldhq/herald/internal/reason"
	"github.com/heraldhq/herald/internal/transport/grpcapi"
)

// refuseGRPC answers a refused connection of the gRPC listener in HTTP/2,
// so that the call the client makes on it fails with a status naming the
// limit rather than a bare connection error: it sends the server's
// SETTINGS, answers the client's first call with a trailers-only response
// (UNAVAILABLE when the node is full, else RESOURCE_EXHAUSTED, with
// herald's ErrorInfo and a RetryInfo, as every herald status carries),
// then GOAWAY. A client that sends no call in time gets GOAWAY with
// ENHANCE_YOUR_CALM and the message as debug data.
func refuseGRPC(nc net.Conn, r *limit.Refusal) {
	nc.SetDeadline(time.Now().Add(refuseTime))
	defer linger(nc)
	br := bufio.NewReader(io.LimitReader(nc, refuseHeadBytes))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(nc, br)
	if fr.WriteSettings() != nil {
		return
	}
	for range 8 { // the client's SETTINGS, WINDOW_UPDATE, then its call
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if fr.WriteHeaders(http2.HeadersFrameParam{
				StreamID: f.StreamID, BlockFragment: grpcRefusal(r), EndStream: true, EndHeaders: true,
			}) == nil {
				fr.WriteGoAway(f.StreamID, http2.ErrCodeNo, []byte(r.Message))
			}
			return
		}
	}
	fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte(r.Message))
}

// grpcRefusal returns the HPACK-encoded trailers-only response of a call
// refused for r.
func grpcRefusal(r *limit.Refusal) []byte {
	code, why := codes.ResourceExhausted, reason.LimitReached
	if r.Node {
		code, why = codes.Unavailable, reason.Unavailable
	}
	st := status.New(code, r.Message)
	details := []protoadapt.MessageV1{
		&errdetails.ErrorInfo{Reason: string(why), Domain: grpcapi.ErrorDomain, Metadata: map[string]string{"limit": r.Key}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(r.RetryAfter)},
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := [][2]string{
		{":status", "200"},
		{"content-type", "application/grpc"},
		{"grpc-status", strconv.Itoa(int(code))},
		{"grpc-message", grpcMessage(r.Message)},
	}
	if b, err := proto.Marshal(st.Proto()); err == nil {
		fields = append(fields, [2]string{"grpc-status-details-bin", base64.RawStdEncoding.EncodeToString(b)})
	}
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return buf.Bytes()
}

// grpcMessage percent-encodes msg as the grpc-message header takes it.
func grpcMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
