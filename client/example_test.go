package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// startExampleServer starts a herald server with the default configuration
// (a memory engine) on free ports of 127.0.0.1, as `herald serve` would on
// 127.0.0.1:8080 and 127.0.0.1:9090, and returns its HTTP base URL, its
// gRPC address and a function that stops it.
func startExampleServer() (baseURL, grpcAddr string, stop func()) {
	cfg := config.Default()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.GRPC.Addr = "127.0.0.1:0"
	srv, err := server.New(cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	return "http://" + srv.HTTPAddr(), srv.GRPCAddr(), func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Fatal(err)
		}
	}
}

func Example() {
	baseURL, _, stop := startExampleServer() // such as http://127.0.0.1:8080
	defer stop()
	ctx := context.Background()

	c, err := client.New(baseURL)
	if err != nil {
		log.Fatal(err)
	}
	for _, text := range []string{"hi", "how are you?"} {
		if _, err := c.Publish(ctx, "chat.room-1", []byte(fmt.Sprintf(`{"text":%q}`, text))); err != nil {
			log.Fatal(err)
		}
	}
	// Pull and Subscribe start from the latest event unless asked otherwise.
	res, err := c.Pull(ctx, []string{"chat.room-1"}, client.WithFrom(client.FromEarliest))
	if err != nil {
		log.Fatal(err)
	}
	for _, ev := range res.Events {
		fmt.Printf("%s #%d: %s\n", ev.Topic, ev.Offset, ev.Data)
	}
	// Output:
	// chat.room-1 #1: {"text":"hi"}
	// chat.room-1 #2: {"text":"how are you?"}
}

func ExampleClient_Publish() {
	baseURL, _, stop := startExampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.New(baseURL)
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		ack, err := c.Publish(ctx, "orders.eu", []byte(`{"id":"8f14e45f","total":42}`),
			client.WithType("order.created"),
			client.WithKey("order-8f14e45f"), // a retry with this key stores nothing twice
			client.WithHeader("trace-id", "4bf92f35"),
		)
		var apiErr *client.Error
		switch {
		case errors.As(err, &apiErr) && apiErr.Code == client.CodeBadTopic:
			log.Fatalf("fix the topic name: %s", apiErr.Message)
		case err != nil:
			log.Fatal(err)
		}
		fmt.Printf("stored as %s #%d (duplicate: %t)\n", ack.Topic, ack.Offset, ack.Duplicate)
	}
	// Output:
	// stored as orders.eu #1 (duplicate: false)
	// stored as orders.eu #1 (duplicate: true)
}

func ExampleClient_Pull() {
	baseURL, _, stop := startExampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.New(baseURL)
	if err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := c.Publish(ctx, "orders.eu", []byte(fmt.Sprint(i))); err != nil {
			log.Fatal(err)
		}
	}
	// Read the topic's history in pages of two, as a batch job would; save
	// the cursor to resume where the last run stopped.
	cursor := "" // the cursor saved by the last run
	for {
		res, err := c.Pull(ctx, []string{"orders.eu"},
			client.WithCursor(cursor),
			client.WithFrom(client.FromEarliest), // without a cursor, start at the beginning
			client.WithLimit(2),
		)
		if err != nil {
			log.Fatal(err)
		}
		for _, g := range res.Gaps {
			log.Printf("lost events of %s: %s", g.Topic, g.Reason)
		}
		for _, ev := range res.Events {
			fmt.Printf("%s #%d: %s\n", ev.Topic, ev.Offset, ev.Data)
		}
		cursor = res.Cursor
		if len(res.Events) == 0 {
			break // caught up; WithWait(30*time.Second) would wait for more instead
		}
	}
	// Output:
	// orders.eu #1: 1
	// orders.eu #2: 2
	// orders.eu #3: 3
	// orders.eu #4: 4
	// orders.eu #5: 5
}

func ExampleClient_Subscribe() {
	baseURL, _, stop := startExampleServer()
	defer stop()
	ctx := context.Background()

	c, err := client.New(baseURL)
	if err != nil {
		log.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, []string{"prices.BTC-USD", "prices.ETH-USD"},
		client.WithTransport(client.TransportWS), // the default is SSE
	)
	if err != nil {
		log.Fatal(err) // a bad topic, cursor or address
	}
	defer sub.Close()

	// Subscribe has returned: every event published from now on arrives.
	c.Publish(ctx, "prices.BTC-USD", []byte(`{"bid":64000}`))
	c.Publish(ctx, "prices.BTC-USD", []byte(`{"bid":64010}`))

	for n := 0; n < 2; {
		m, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err) // ErrClosed, or an error reconnecting cannot fix
		}
		switch {
		case m.Event != nil:
			fmt.Printf("%s #%d: %s\n", m.Event.Topic, m.Event.Offset, m.Event.Data)
			n++
		case m.Gap != nil:
			log.Printf("lost events of %s (%s); going on after #%d", m.Gap.Topic, m.Gap.Reason, m.Gap.Resumed.Offset)
		case m.Err != nil:
			log.Printf("reconnecting: %v", m.Err)
		}
		// m.Cursor resumes right after this message: store it with the
		// work the message caused, and pass it to WithCursor after a
		// restart.
	}
	// Output:
	// prices.BTC-USD #1: {"bid":64000}
	// prices.BTC-USD #2: {"bid":64010}
}

func ExampleNewGRPC() {
	_, grpcAddr, stop := startExampleServer() // such as 127.0.0.1:9090
	defer stop()
	ctx := context.Background()

	c, err := client.NewGRPC(grpcAddr) // WithGRPCDialOptions for TLS
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ack, err := c.Publish(ctx, "chat.room-1", []byte("hello over gRPC"), client.WithContentType("text/plain"))
	if err != nil {
		log.Fatal(err)
	}
	// A cursor works on every transport: the ack's resumes after the event.
	sub, err := c.Subscribe(ctx, []string{"chat.room-1"}, client.WithCursor(ack.Cursor))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	c.Publish(ctx, "chat.room-1", []byte("and again"), client.WithContentType("text/plain"))
	m, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	payload, _ := m.Event.Payload()
	fmt.Printf("%s #%d (%s): %s\n", m.Event.Topic, m.Event.Offset, m.Event.Encoding, payload)
	// Output:
	// chat.room-1 #2 (text): and again
}

func ExampleWithToken() {
	// refresh stands for the identity provider's client: it returns a
	// fresh token and when it expires.
	refresh := func(ctx context.Context) (string, time.Time, error) {
		return "eyJhbGciOi…", time.Now().Add(time.Hour), nil
	}
	// The client asks for the token before each request and each
	// (re)connection of a subscription; cache it until it is about to
	// expire.
	var (
		mu     sync.Mutex
		token  string
		expiry time.Time
	)
	c, err := client.New("https://events.example.com", client.WithToken(func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Until(expiry) < time.Minute {
			t, exp, err := refresh(ctx)
			if err != nil {
				return "", err
			}
			token, expiry = t, exp
		}
		return token, nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	_ = c // publish, pull and subscribe as usual
}
