package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/api/herald/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/reason"
)

// TestAuthMatrix runs every credential case against every transport of
// one server configured with an HS256 secret, an RSA public key file, API
// keys and a namespace open to anonymous subscribers (issue 16, "Checked
// by"). Each case names the answer it must get, per action or per
// operation where transports differ; every operation checks its
// transport's form of that answer (HTTP status and error code, WebSocket
// handshake status or error message, gRPC status and ErrorInfo reason).
// After every operation the topics' state is compared with the state
// before it: a refusal must store nothing and leave no subscriber behind,
// and a success of a publish must store exactly one event.
func TestAuthMatrix(t *testing.T) {
	rsaKey, otherRSA := newRSAKey(t), newRSAKey(t)
	pubFile, pubPEM := rsaPublicKeyFile(t, rsaKey)
	keyA, cfgA := newAPIKey(t, "svc-a", grantsOn("chat.a"))
	keyOps, cfgOps := newAPIKey(t, "ops", config.Grants{
		Publish: []string{">"}, Subscribe: []string{">"}, History: []string{">"}, Admin: true,
	})
	revoked, _ := newAPIKey(t, "revoked", grantsOn(">")) // never configured

	ts := startServer(t, func(c *config.Config) {
		c.Auth.JWT.HMACSecret = string(authSecret)
		c.Auth.JWT.PublicKeyFile = pubFile
		c.Auth.JWT.Audience = testAudience
		c.Auth.JWT.Issuer = testIssuer
		c.Auth.APIKeys = []config.APIKey{cfgA, cfgOps}
		c.Namespaces = map[string]config.Namespace{"public": {Anonymous: []string{"subscribe", "history"}}}
		c.SSE.Heartbeat = 50 * time.Millisecond // finds a closed stream soon
	})
	m := &matrix{ts: ts, admin: keyOps, gc: ts.grpcClient()}
	for _, topic := range []string{"chat.a", "chat.b", "public.news"} {
		ts.publish(topic, "application/json", []byte(`{"n":0}`), bearer(keyOps)...)
	}

	hour := time.Now().Add(time.Hour)
	userA := userClaims("alice", hour, grantsOn("chat.a"))
	validHS := hs256(t, userA)
	const longName = "chat.a.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	const (
		unauth    = string(reason.Unauthenticated)
		expired   = string(reason.TokenExpired)
		forbidden = string(reason.Forbidden)
		badTopic  = string(reason.BadTopic)
	)
	// Valid credentials without the admin grant may not use the topics API.
	notAdmin := map[string]string{"admin": forbidden}

	cases := []matrixCase{
		{name: "no credential", topic: "chat.a", want: unauth},
		{name: "no credential, anonymous namespace", topic: "public.news", want: unauth,
			per: map[string]string{"subscribe": "", "history": ""}},
		{name: "alg none", token: unsignedJWT(t, userA), topic: "chat.a", want: unauth},
		{name: "HS256 signed with the RSA public key", token: signJWT(t, jwt.SigningMethodHS256, pubPEM, userA, ""),
			topic: "chat.a", want: unauth},
		{name: "expired", token: hs256(t, with(userA, "exp", time.Now().Add(-time.Hour).Unix())), topic: "chat.a", want: expired},
		{name: "not yet valid", token: hs256(t, with(userA, "nbf", hour.Unix())), topic: "chat.a", want: unauth},
		{name: "wrong audience", token: hs256(t, with(userA, "aud", "other")), topic: "chat.a", want: unauth},
		{name: "wrong issuer", token: hs256(t, with(userA, "iss", "https://evil.test")), topic: "chat.a", want: unauth},
		{name: "tampered payload", token: tamperJWT(t, validHS, with(userA, "herald", grantsOn(">"))), topic: "chat.b", want: unauth},
		{name: "bad signature", token: signJWT(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef-x"), userA, ""),
			topic: "chat.a", want: unauth},
		// With a public key file the kid is not looked at: the token fails
		// on its signature (TestAuthJWKS has unknown kids of a key set).
		{name: "unknown kid", token: signJWT(t, jwt.SigningMethodRS256, otherRSA, userA, "k-unknown"), topic: "chat.a", want: unauth},
		{name: "valid HS256", token: validHS, topic: "chat.a", per: notAdmin},
		{name: "valid RS256", token: signJWT(t, jwt.SigningMethodRS256, rsaKey, userA, ""), topic: "chat.a", per: notAdmin},
		{name: "valid token in access_token", token: validHS, source: "query", topic: "chat.a", per: notAdmin},
		{name: "valid token in the cookie", token: validHS, source: "cookie", topic: "chat.a", per: notAdmin},
		{name: "cookie from a foreign origin", token: validHS, source: "cookie-foreign", topic: "chat.a", want: unauth,
			per: map[string]string{"ws.subscribe": forbidden, "ws.publish": forbidden}},
		{name: "token for chat.a on chat.b", token: validHS, topic: "chat.b", want: forbidden},
		{name: "chat.a.x beyond a grant of chat.a", token: validHS, topic: "chat.a.x", want: forbidden},
		{name: "encoded separator", token: validHS, topic: "chat%2Eb", raw: "chat%2Eb", want: badTopic,
			// URLs decode it to chat.b, which the grant does not reach.
			per: map[string]string{"rest.publish": forbidden, "pull": forbidden, "longpoll": forbidden, "sse": forbidden, "topics": forbidden}},
		{name: "very long name", token: validHS, topic: longName, want: badTopic},
		{name: "Cyrillic look-alike", token: validHS, topic: "ch\u0430t.a", want: badTopic},
		{name: "fullwidth full stop", token: validHS, topic: "chat\uff0ea", want: badTopic},
		{name: "unknown API key", token: revoked, topic: "chat.a", want: unauth},
		{name: "API key in access_token", token: keyA, source: "query", topic: "chat.a", want: unauth},
		{name: "API key in the cookie", token: keyA, source: "cookie", topic: "chat.a", want: unauth},
		{name: "API key for chat.a on chat.b", token: keyA, topic: "chat.b", want: forbidden},
		{name: "valid API key", token: keyA, topic: "chat.a", per: notAdmin},
		{name: "admin API key", token: keyOps, topic: "chat.b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, op := range matrixOps {
				if (op.anonOnly && c.token != "") || (!op.http && c.source != "") {
					continue // the fast path takes no credentials; gRPC has no query or cookie
				}
				t.Run(op.name, func(t *testing.T) {
					m := m.in(t)
					before := m.snapshot()
					got := op.run(m, &c)
					want := c.expect(op)
					if got.code != want {
						t.Fatalf("answer %q (%s), want %q", got.code, got.detail, want)
					}
					m.checkAfter(before, &c, op, got)
				})
			}
		})
	}
}

// matrixCase is one credential presented for one topic.
type matrixCase struct {
	name   string
	token  string // "" presents none
	source string // "" (Authorization header or gRPC metadata), "query", "cookie", "cookie-foreign"
	topic  string // the name as JSON bodies, WebSocket and gRPC carry it
	raw    string // as written in URLs, when not simply escaped
	want   string // the error code every operation answers; "" passes
	per    map[string]string
}

// expect returns the code op must answer: by operation, then by action,
// then the case's.
func (c *matrixCase) expect(op matrixOp) string {
	if w, ok := c.per[op.name]; ok {
		return w
	}
	if w, ok := c.per[op.action]; ok {
		return w
	}
	return c.want
}

// pathTopic is the topic as a URL path segment; queryTopic as a query
// value.
func (c *matrixCase) pathTopic() string {
	if c.raw != "" {
		return c.raw
	}
	return url.PathEscape(c.topic)
}

func (c *matrixCase) queryTopic() string {
	if c.raw != "" {
		return c.raw
	}
	return url.QueryEscape(c.topic)
}

// headers are the request header pairs presenting the case's credential
// over HTTP, and query the query parameters (with a leading &).
func (c *matrixCase) headers() []string {
	switch {
	case c.token == "" || c.source == "query":
		return nil
	case c.source == "cookie":
		return []string{"Cookie", "herald_token=" + c.token}
	case c.source == "cookie-foreign":
		return []string{"Cookie", "herald_token=" + c.token, "Origin", "http://evil.test"}
	}
	return bearer(c.token)
}

func (c *matrixCase) query() string {
	if c.source == "query" {
		return "&access_token=" + url.QueryEscape(c.token)
	}
	return ""
}

// matrixOp is one operation of one transport.
type matrixOp struct {
	name     string
	action   string // publish, subscribe, history or admin
	http     bool   // credentials may come in a query parameter or cookie
	anonOnly bool   // only without credentials (the fast path)
	stores   bool   // a success stores one event on the case's topic
	run      func(m *matrix, c *matrixCase) matrixResult
}

// matrixResult is an operation's answer: herald's error code ("" for a
// success) and what to print when it is not the one wanted.
type matrixResult struct {
	code   string
	detail string
}

var matrixOps = []matrixOp{
	{name: "rest.publish", action: "publish", http: true, stores: true, run: (*matrix).restPublish},
	{name: "rest.publish.fast", action: "publish", http: true, stores: true, anonOnly: true, run: (*matrix).restPublishFast},
	{name: "rest.batch", action: "publish", http: true, stores: true, run: (*matrix).restBatch},
	{name: "pull", action: "history", http: true, run: (*matrix).pull},
	{name: "longpoll", action: "history", http: true, run: (*matrix).longPoll},
	{name: "sse", action: "subscribe", http: true, run: (*matrix).sse},
	{name: "ws.subscribe", action: "subscribe", http: true, run: (*matrix).wsSubscribe},
	{name: "ws.publish", action: "publish", http: true, stores: true, run: (*matrix).wsPublish},
	{name: "grpc.publish", action: "publish", stores: true, run: (*matrix).grpcPublish},
	{name: "grpc.subscribe", action: "subscribe", run: (*matrix).grpcSubscribe},
	{name: "grpc.connect.subscribe", action: "subscribe", run: (*matrix).grpcConnectSubscribe},
	{name: "grpc.connect.publish", action: "publish", stores: true, run: (*matrix).grpcConnectPublish},
	{name: "grpc.pull", action: "history", run: (*matrix).grpcPull},
	{name: "topics", action: "admin", http: true, run: (*matrix).topicInfo},
	{name: "grpc.topics", action: "admin", run: (*matrix).grpcTopic},
}

// matrix runs the operations against one server.
type matrix struct {
	t     *testing.T
	ts    *testServer
	admin string // an API key with every grant, to look at the server's state
	gc    heraldv1.HeraldClient
}

func (m *matrix) in(t *testing.T) *matrix {
	c := *m
	c.t, c.ts = t, m.ts.in(t)
	return &c
}

// matrixState is every topic's last offset and subscriber count.
type matrixState map[string][2]int

// snapshot reads every topic's state through the topics API.
func (m *matrix) snapshot() matrixState {
	m.t.Helper()
	r := m.ts.get("/v1/topics", bearer(m.admin)...)
	if r.status != http.StatusOK {
		m.t.Fatalf("GET /v1/topics: %d %s", r.status, r.body)
	}
	var list struct{ Topics []topicInfo }
	if err := json.Unmarshal(r.body, &list); err != nil {
		m.t.Fatal(err)
	}
	st := matrixState{}
	for _, ti := range list.Topics {
		st[ti.Name] = [2]int{int(ti.Last), ti.Subscribers}
	}
	return st
}

// checkAfter compares the server's state after op with before: nothing
// changed, except one more event on the case's topic after a publish
// that succeeded. Streams opened by a success were closed by the
// operation; their subscribers must be gone.
func (m *matrix) checkAfter(before matrixState, c *matrixCase, op matrixOp, got matrixResult) {
	m.t.Helper()
	want := matrixState{}
	for k, v := range before {
		want[k] = v
	}
	if got.code == "" && op.stores {
		v := want[c.topic]
		v[0]++
		want[c.topic] = v
	}
	var after matrixState
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = m.snapshot()
		if fmt.Sprint(after) == fmt.Sprint(want) {
			break
		}
		// A closed stream's subscriber goes when the server sees the
		// close; nothing else may differ even for a moment.
		if got.code != "" || time.Now().After(deadline) {
			m.t.Fatalf("topics after the operation %v, want %v (before %v)", after, want, before)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, topic := range []string{c.topic, "chat.a", "chat.b", "public.news"} {
		if n := m.ts.srv.Hub().Subscribers(topic); n != 0 {
			m.t.Errorf("hub: %d subscribers of %q after the operation", n, topic)
		}
	}
}

// httpResult turns an HTTP answer into a result, checking that an error's
// status is its code's.
func (m *matrix) httpResult(r response, okStatus ...int) matrixResult {
	m.t.Helper()
	if slices.Contains(okStatus, r.status) {
		return matrixResult{}
	}
	code := apiCode(r.body)
	if rr, known := reason.Of(reason.Code(code)); !known || rr.HTTP != r.status {
		m.t.Errorf("status %d with error code %q (body %s)", r.status, code, r.body)
	}
	return matrixResult{code: code, detail: fmt.Sprintf("%d %s", r.status, strings.TrimSpace(string(r.body)))}
}

// grpcResult turns a gRPC error into a result, checking that the status
// code is its reason's.
func (m *matrix) grpcResult(err error) matrixResult {
	m.t.Helper()
	if err == nil {
		return matrixResult{}
	}
	code := grpcReason(err)
	st, _ := status.FromError(err)
	if rr, known := reason.Of(reason.Code(code)); !known || rr.GRPC != st.Code() {
		m.t.Errorf("gRPC status %v with reason %q", st.Code(), code)
	}
	return matrixResult{code: code, detail: err.Error()}
}

// frameResult turns a reply of a command (WebSocket or gRPC Connect) into
// a result.
func frameResult(code, msg string) matrixResult {
	return matrixResult{code: code, detail: "error message: " + msg}
}

func (m *matrix) restPublish(c *matrixCase) matrixResult {
	// The query string alone hands the request to net/http (httpfast's
	// parseHead), as credentials do.
	hdr := append(c.headers(), "Content-Type", "application/json")
	r := m.ts.do(http.MethodPost, "/v1/topics/"+c.pathTopic()+"/events?x=1"+c.query(), []byte(`{"n":1}`), hdr...)
	return m.httpResult(r, http.StatusCreated)
}

// restPublishFast sends a publish that the fast path serves: nothing in it
// makes httpfast hand it to net/http (no credentials, no query, no '%').
func (m *matrix) restPublishFast(c *matrixCase) matrixResult {
	m.t.Helper()
	conn, err := net.Dial("tcp", m.ts.addr)
	if err != nil {
		m.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(readTimeout))
	body := `{"n":1}`
	fmt.Fprintf(conn, "POST /v1/topics/%s/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		c.pathTopic(), m.ts.addr, len(body), body)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		m.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	return m.httpResult(response{status: res.StatusCode, header: res.Header, body: b}, http.StatusCreated)
}

func (m *matrix) restBatch(c *matrixCase) matrixResult {
	body, _ := json.Marshal(map[string]any{"events": []any{map[string]any{"topic": c.topic, "data": map[string]int{"n": 1}}}})
	path := "/v1/events"
	if q := c.query(); q != "" {
		path += "?" + q[1:]
	}
	r := m.ts.do(http.MethodPost, path, body, append(c.headers(), "Content-Type", "application/json")...)
	return m.httpResult(r, http.StatusOK)
}

func (m *matrix) pull(c *matrixCase) matrixResult {
	return m.httpResult(m.ts.get("/v1/topics/"+c.pathTopic()+"/events?from=earliest"+c.query(), c.headers()...), http.StatusOK)
}

func (m *matrix) longPoll(c *matrixCase) matrixResult {
	return m.httpResult(m.ts.get("/v1/events?topic="+c.queryTopic()+"&from=latest&wait=20ms"+c.query(), c.headers()...), http.StatusOK)
}

func (m *matrix) topicInfo(c *matrixCase) matrixResult {
	return m.httpResult(m.ts.get("/v1/topics/"+c.pathTopic()+"?x=1"+c.query(), c.headers()...), http.StatusOK)
}

// sse opens a stream from now (subscribe, no history); a started one
// must be counted as a subscriber of the topic, and is closed.
func (m *matrix) sse(c *matrixCase) matrixResult {
	m.t.Helper()
	s := m.ts.dialSSE(nil, "topic="+c.queryTopic()+c.query(), c.headers()...)
	if s.status != http.StatusOK {
		return m.httpResult(response{status: s.status, header: s.header, body: s.body})
	}
	if b := s.next(); !b.hasID {
		m.t.Errorf("first block %v, want the starting id", b)
	}
	if n := m.ts.srv.Hub().Subscribers(c.topic); n != 1 {
		m.t.Errorf("%d subscribers while the stream is open, want 1", n)
	}
	s.close()
	return matrixResult{}
}

// dialWS opens a WebSocket with the case's credentials; a refused
// handshake is a result.
func (m *matrix) dialWS(c *matrixCase) (*wsClient, *matrixResult) {
	m.t.Helper()
	q := c.query()
	if q != "" {
		q = q[1:]
	}
	wc, err := m.ts.dialWS(q, c.headers()...)
	if err != nil {
		ue, ok := err.(*wsUpgradeError)
		if !ok {
			m.t.Fatalf("WebSocket dial: %v", err)
		}
		r := m.httpResult(response{status: ue.status, body: ue.body})
		r.detail = "handshake: " + r.detail
		return nil, &r
	}
	return wc, nil
}

// wsWhere checks where a WebSocket refusal came: refused credentials and
// foreign origins at the handshake, anything else (no credentials
// included: the connection may take them with a refresh) in an error
// message after it.
func (m *matrix) wsWhere(c *matrixCase, handshake bool, code string) {
	m.t.Helper()
	atHandshake := code == string(reason.Unauthenticated) && c.token != "" && c.source != "cookie-foreign" ||
		code == string(reason.TokenExpired) || c.source == "cookie-foreign"
	if handshake != atHandshake {
		m.t.Errorf("answer %q at the handshake: %v, want %v", code, handshake, atHandshake)
	}
}

func (m *matrix) wsSubscribe(c *matrixCase) matrixResult {
	m.t.Helper()
	wc, refused := m.dialWS(c)
	if refused != nil {
		m.wsWhere(c, true, refused.code)
		return *refused
	}
	defer wc.nc.Close()
	cmd, _ := json.Marshal(map[string]any{"op": "subscribe", "id": 1, "topics": []string{c.topic}})
	r := wc.reply(1, string(cmd), nil)
	if r["op"] == "error" {
		m.wsWhere(c, false, r["code"].(string))
		return frameResult(r["code"].(string), fmt.Sprint(r["message"]))
	}
	if r["op"] != "subscribed" {
		m.t.Fatalf("reply %v", r)
	}
	if n := m.ts.srv.Hub().Subscribers(c.topic); n != 1 {
		m.t.Errorf("%d subscribers while subscribed, want 1", n)
	}
	return matrixResult{}
}

func (m *matrix) wsPublish(c *matrixCase) matrixResult {
	m.t.Helper()
	wc, refused := m.dialWS(c)
	if refused != nil {
		m.wsWhere(c, true, refused.code)
		return *refused
	}
	defer wc.nc.Close()
	cmd, _ := json.Marshal(map[string]any{"op": "publish", "id": 2, "topic": c.topic, "data": map[string]int{"n": 1}})
	r := wc.reply(2, string(cmd), nil)
	if r["op"] == "error" {
		m.wsWhere(c, false, r["code"].(string))
		return frameResult(r["code"].(string), fmt.Sprint(r["message"]))
	}
	if r["op"] != "ack" {
		m.t.Fatalf("reply %v", r)
	}
	return matrixResult{}
}

func (m *matrix) grpcCtx(c *matrixCase) context.Context {
	return grpcAuth(grpcCtx(m.t), c.token)
}

func (m *matrix) grpcPublish(c *matrixCase) matrixResult {
	_, err := m.gc.Publish(m.grpcCtx(c), &heraldv1.PublishRequest{Topic: c.topic,
		Events: []*heraldv1.PublishEvent{{Data: []byte(`{"n":1}`), Encoding: heraldv1.Encoding_ENCODING_JSON}}})
	return m.grpcResult(err)
}

func (m *matrix) grpcPull(c *matrixCase) matrixResult {
	_, err := m.gc.Pull(m.grpcCtx(c), &heraldv1.PullRequest{Topics: []string{c.topic}, Wait: durationpb.New(20 * time.Millisecond)})
	return m.grpcResult(err)
}

func (m *matrix) grpcTopic(c *matrixCase) matrixResult {
	_, err := m.gc.GetTopic(m.grpcCtx(c), &heraldv1.GetTopicRequest{Topic: c.topic})
	return m.grpcResult(err)
}

func (m *matrix) grpcSubscribe(c *matrixCase) matrixResult {
	m.t.Helper()
	ctx, cancel := context.WithCancel(m.grpcCtx(c))
	defer cancel()
	sub, err := m.gc.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{c.topic}})
	if err != nil {
		return m.grpcResult(err)
	}
	if _, err := sub.Recv(); err != nil {
		return m.grpcResult(err)
	}
	if n := m.ts.srv.Hub().Subscribers(c.topic); n != 1 {
		m.t.Errorf("%d subscribers while subscribed, want 1", n)
	}
	return matrixResult{}
}

// connect runs one Connect command and returns its reply, or the result
// of a stream refused at its start.
func (m *matrix) connect(c *matrixCase, req *heraldv1.ConnectRequest, check func(*heraldv1.ConnectResponse)) matrixResult {
	m.t.Helper()
	ctx, cancel := context.WithCancel(m.grpcCtx(c))
	defer cancel()
	conn, err := m.gc.Connect(ctx)
	if err != nil {
		return m.grpcResult(err)
	}
	if err := conn.Send(req); err != nil && err != io.EOF {
		m.t.Fatal(err)
	}
	for {
		r, err := conn.Recv()
		if err != nil {
			if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || c.token == "" {
				m.t.Errorf("a Connect stream ended with %v; only refused credentials end it", err)
			}
			return m.grpcResult(err)
		}
		if r.Id != req.Id {
			continue
		}
		if e := r.GetError(); e != nil {
			return frameResult(e.Code, e.Message)
		}
		check(r)
		return matrixResult{}
	}
}

func (m *matrix) grpcConnectSubscribe(c *matrixCase) matrixResult {
	return m.connect(c, &heraldv1.ConnectRequest{Id: 1, Command: &heraldv1.ConnectRequest_Subscribe{
		Subscribe: &heraldv1.SubscribeCommand{Topics: []string{c.topic}}}},
		func(r *heraldv1.ConnectResponse) {
			if r.GetSubscribed() == nil {
				m.t.Fatalf("reply %v, want subscribed", r)
			}
			if n := m.ts.srv.Hub().Subscribers(c.topic); n != 1 {
				m.t.Errorf("%d subscribers while subscribed, want 1", n)
			}
		})
}

func (m *matrix) grpcConnectPublish(c *matrixCase) matrixResult {
	return m.connect(c, &heraldv1.ConnectRequest{Id: 2, Command: &heraldv1.ConnectRequest_Publish{
		Publish: &heraldv1.PublishRequest{Topic: c.topic, Events: []*heraldv1.PublishEvent{{Data: []byte(`{"n":1}`), Encoding: heraldv1.Encoding_ENCODING_JSON}}}}},
		func(r *heraldv1.ConnectResponse) {
			p := r.GetPublished()
			if p == nil || p.Error != nil || len(p.Acks) != 1 {
				m.t.Fatalf("reply %v, want one ack", r)
			}
		})
}
