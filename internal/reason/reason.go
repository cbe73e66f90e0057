// Package reason is herald's one vocabulary of why: every error a client
// can be answered with and every reason a stream ends, with its stable code
// and how each protocol says it. The HTTP API (an error's status and code),
// the SSE stream's final error event, the WebSocket protocol (error
// messages and close codes), the gRPC API (status codes with the code as
// the ErrorInfo reason) and the Go client all read this one table, so a
// code means the same thing everywhere and a new one is added in one place.
//
//	code                    HTTP  WebSocket close  gRPC                 retry
//	bad_request             400   —                INVALID_ARGUMENT     no
//	bad_topic               400   —                INVALID_ARGUMENT     no
//	bad_cursor              400   —                INVALID_ARGUMENT     no
//	unauthenticated         401   —                UNAUTHENTICATED      no
//	token_expired           401   4001             UNAUTHENTICATED      no (new credentials)
//	forbidden               403   —                PERMISSION_DENIED    no
//	not_found               404   —                NOT_FOUND            no
//	conflict                409   —                ABORTED              no (read again)
//	method_not_allowed      405   —                —                    no
//	too_large               413   1009             INVALID_ARGUMENT     no
//	unsupported_media_type  415   —                —                    no
//	headers_too_large       431   —                —                    no
//	limit_reached           429   4029             RESOURCE_EXHAUSTED   yes (later)
//	protocol_error          —     1002             —                    no
//	invalid_payload         —     1007             —                    no
//	idle_timeout            —     4000             —                    yes
//	slow_consumer           —     4008             RESOURCE_EXHAUSTED   yes (resume)
//	shutting_down           503   1001             UNAVAILABLE          yes (resume)
//	unavailable             503   1013             UNAVAILABLE          yes
//	storage_full            507   —                RESOURCE_EXHAUSTED   yes (later)
//	internal_error          500   1011             INTERNAL             yes
//	client_closed           —     1000             CANCELED             —
//
// A "—" under WebSocket means the reason never closes a connection (it is
// answered as an error message); under HTTP or gRPC, that no answer of
// that protocol carries it. Where a code both answers a command and closes
// a connection (too_large: a payload over the event limit is an error
// message, a frame over the message limit a close), the close code is the
// one given. docs/api.md, docs/protocol.md and docs/grpc.md list the same
// table; a test checks them against it.
package reason

import "google.golang.org/grpc/codes"

// Code is a stable error or end code, as sent on the wire.
type Code string

// The codes.
const (
	BadRequest           Code = "bad_request"
	BadTopic             Code = "bad_topic"
	BadCursor            Code = "bad_cursor"
	Unauthenticated      Code = "unauthenticated"
	TokenExpired         Code = "token_expired"
	Forbidden            Code = "forbidden"
	NotFound             Code = "not_found"
	Conflict             Code = "conflict"
	MethodNotAllowed     Code = "method_not_allowed"
	TooLarge             Code = "too_large"
	UnsupportedMediaType Code = "unsupported_media_type"
	HeadersTooLarge      Code = "headers_too_large"
	LimitReached         Code = "limit_reached"
	ProtocolError        Code = "protocol_error"
	InvalidPayload       Code = "invalid_payload"
	IdleTimeout          Code = "idle_timeout"
	SlowConsumer         Code = "slow_consumer"
	ShuttingDown         Code = "shutting_down"
	Unavailable          Code = "unavailable"
	StorageFull          Code = "storage_full"
	Internal             Code = "internal_error"
	ClientClosed         Code = "client_closed"
)

// Reason is one row of the table: how every protocol says one code.
type Reason struct {
	Code Code
	// HTTP is the status of an HTTP answer with this code; 0 when the code
	// only ends streams.
	HTTP int
	// WSClose is the WebSocket close code when the reason ends a
	// connection; 0 when it never does (it is answered as an error
	// message).
	WSClose uint16
	// GRPC is the status code of a gRPC answer or stream end; codes.OK
	// when no gRPC answer carries the reason.
	GRPC codes.Code
	// Retryable says the same request may succeed later unchanged, or a
	// stream ended for this reason may be resumed from its cursor.
	Retryable bool
	// Message is what a stream's end says for people when the end has no
	// more specific message; it says what to do.
	Message string
}

// table holds every reason, in the order of the package comment.
var table = []Reason{
	{Code: BadRequest, HTTP: 400, GRPC: codes.InvalidArgument, Message: "the request is malformed"},
	{Code: BadTopic, HTTP: 400, GRPC: codes.InvalidArgument, Message: "the topic name is not valid"},
	{Code: BadCursor, HTTP: 400, GRPC: codes.InvalidArgument, Message: "the cursor cannot be read"},
	{Code: Unauthenticated, HTTP: 401, GRPC: codes.Unauthenticated, Message: "credentials are missing or not valid"},
	{Code: TokenExpired, HTTP: 401, WSClose: 4001, GRPC: codes.Unauthenticated,
		Message: "the connection's credentials expired; reconnect with fresh ones and resume from your cursor"},
	{Code: Forbidden, HTTP: 403, GRPC: codes.PermissionDenied, Message: "the credentials do not allow this"},
	{Code: NotFound, HTTP: 404, GRPC: codes.NotFound, Message: "not found"},
	{Code: Conflict, HTTP: 409, GRPC: codes.Aborted, Message: "the request conflicts with the current state; read it again"},
	{Code: MethodNotAllowed, HTTP: 405, Message: "the method is not allowed here"},
	{Code: TooLarge, HTTP: 413, WSClose: 1009, GRPC: codes.InvalidArgument, Message: "the message is over the size limit"},
	{Code: UnsupportedMediaType, HTTP: 415, Message: "the content type or coding is not supported"},
	{Code: HeadersTooLarge, HTTP: 431, Message: "the request line or headers are over the size limit"},
	{Code: LimitReached, HTTP: 429, WSClose: 4029, GRPC: codes.ResourceExhausted, Retryable: true,
		Message: "a server limit was reached; retry later or elsewhere"},
	{Code: ProtocolError, WSClose: 1002, Message: "a protocol violation"},
	{Code: InvalidPayload, WSClose: 1007, Message: "a text message that is not valid UTF-8"},
	{Code: IdleTimeout, WSClose: 4000, Retryable: true,
		Message: "nothing was received for too long; reconnect and resume from your cursor"},
	{Code: SlowConsumer, WSClose: 4008, GRPC: codes.ResourceExhausted, Retryable: true,
		Message: "the stream fell too far behind (limits.max_queue_bytes); reconnect and resume from your cursor"},
	{Code: ShuttingDown, HTTP: 503, WSClose: 1001, GRPC: codes.Unavailable, Retryable: true,
		Message: "the server is shutting down; reconnect (to another node, or later) and resume from your cursor"},
	{Code: Unavailable, HTTP: 503, WSClose: 1013, GRPC: codes.Unavailable, Retryable: true,
		Message: "the server cannot take this now; retry later (a stream: resume from your cursor)"},
	{Code: StorageFull, HTTP: 507, GRPC: codes.ResourceExhausted, Retryable: true,
		Message: "the server's storage is full; retry once space is freed"},
	{Code: Internal, HTTP: 500, WSClose: 1011, GRPC: codes.Internal, Retryable: true,
		Message: "the server failed; reconnect and resume from your cursor"},
	{Code: ClientClosed, WSClose: 1000, GRPC: codes.Canceled, Message: "the stream was closed"},
}

var byCode = func() map[Code]*Reason {
	m := make(map[Code]*Reason, len(table))
	for i := range table {
		m[table[i].Code] = &table[i]
	}
	return m
}()

// Of returns the row of code, and false for a code not in the table (one
// a newer server sent, say).
func Of(code Code) (Reason, bool) {
	r, ok := byCode[code]
	if !ok {
		return Reason{Code: code}, false
	}
	return *r, true
}

// MustOf returns the row of a code known to be in the table.
func MustOf(code Code) Reason {
	r, ok := byCode[code]
	if !ok {
		panic("reason: no row for code " + string(code))
	}
	return *r
}

// ByWSClose returns the row whose WebSocket close code is c.
func ByWSClose(c uint16) (Reason, bool) {
	for _, r := range table {
		if r.WSClose == c && c != 0 {
			return r, true
		}
	}
	return Reason{}, false
}

// All returns every row, in table order.
func All() []Reason { return append([]Reason(nil), table...) }

// Retryable reports whether code's row says retryable; unknown codes are
// not.
func Retryable(code Code) bool {
	r, ok := byCode[code]
	return ok && r.Retryable
}
