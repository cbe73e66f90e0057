// Package client is the Go client of herald's HTTP API, version 1
// (docs/api.md), and of its gRPC API (docs/grpc.md): publish events, pull
// them from a cursor, and subscribe to live events over Server-Sent
// Events, WebSocket (docs/protocol.md), long polling or gRPC with
// automatic, loss-free reconnection.
//
// # The model
//
// A topic is a named, ordered stream of events. Each event has an offset
// (1, 2, 3, … per topic) and an epoch that names one continuous history of
// the topic. A cursor is an opaque token holding the position of every topic
// a consumer follows; every transport accepts and returns the same cursor,
// so a consumer can stop, switch transport and carry on without losing or
// repeating an event.
//
// # Publishing and pulling
//
// Calls take what they need as arguments and everything optional as
// options (WithType, WithKey, WithHeader, WithContentType for Publish;
// WithCursor, WithFrom, WithLimit, WithWait for Pull):
//
//	c, err := client.New("http://127.0.0.1:8080")
//	if err != nil {
//		return err
//	}
//	ack, err := c.Publish(ctx, "chat.room-1", []byte(`{"text":"hi"}`))
//	if err != nil {
//		return err
//	}
//	res, err := c.Pull(ctx, []string{"chat.room-1"}, client.WithFrom(client.FromEarliest))
//	// res.Events holds the events, res.Cursor continues after them.
//
// Errors answered by the server are *Error values carrying the API's stable
// code:
//
//	var apiErr *client.Error
//	if errors.As(err, &apiErr) && apiErr.Code == client.CodeBadTopic {
//		// fix the topic name
//	}
//
// # Where reads start
//
// A Pull or a Subscribe given a cursor (WithCursor) continues after it.
// Without one, or for topics the cursor does not name, both start per
// From, whose default for both is FromLatest: only events published from
// now on, as a live subscription is expected to. Ask for FromEarliest to
// read a topic's retained history first. (The server's pull endpoints
// default to earliest; the client always says which it wants, so the same
// call behaves the same on every transport.)
//
// # Subscribing
//
// Subscribe follows topics live. It reconnects on its own with jittered
// exponential backoff and resumes from the last cursor it delivered, so a
// consumer sees every event once, in order, across dropped connections and
// server restarts; when history is gone it says so with a Gap message.
// WithTransport picks the transport (TransportSSE by default,
// TransportPoll, TransportWS; TransportGRPC for a gRPC client).
//
//	sub, err := c.Subscribe(ctx, []string{"chat.room-1"})
//	if err != nil {
//		return err
//	}
//	defer sub.Close()
//	for {
//		m, err := sub.Next(ctx)
//		if err != nil {
//			return err
//		}
//		switch {
//		case m.Event != nil:
//			payload, _ := m.Event.Payload()
//			fmt.Printf("%s #%d: %s\n", m.Event.Topic, m.Event.Offset, payload)
//		case m.Gap != nil:
//			fmt.Printf("lost events of %s: %s\n", m.Gap.Topic, m.Gap.Reason)
//		}
//		// Persist m.Cursor to resume after this message later.
//	}
//
// A Subscription is not safe for concurrent calls to Next; Close may be
// called from any goroutine. A Client is safe for concurrent use.
//
// # Credentials
//
// WithToken gives the client a callback it asks for a bearer token before
// every request and every connection of a subscription, reconnections
// included, so a token that expires can be refreshed; WithStaticToken
// sends a fixed one. The token goes as "Authorization: Bearer <token>" on
// every transport (gRPC metadata for a gRPC client).
//
// # gRPC
//
// NewGRPC makes a client of the server's gRPC API (docs/grpc.md, default
// address 127.0.0.1:9090) instead: the same *Client, whose Publish,
// PublishBatch, Pull and Subscribe (TransportGRPC, its only transport)
// work the same, with the same cursors, so a consumer can move between
// HTTP, SSE and gRPC. Events received over gRPC carry every field. Errors
// are *Error values whose Code is herald's error code and GRPCCode the
// status code. Close releases the connection.
//
//	c, err := client.NewGRPC("127.0.0.1:9090")
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	sub, err := c.Subscribe(ctx, []string{"chat.room-1"}, client.WithCursor(cursor))
package client
