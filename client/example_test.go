package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/heraldhq/herald/client"
)

func ExampleClient_Publish() {
	c, err := client.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	ack, err := c.Publish(context.Background(), "chat.room-1", []byte(`{"text":"hi"}`), client.PublishOptions{
		Type:           "message",
		IdempotencyKey: "msg-8f14e45f", // a retry with this key stores nothing twice
	})
	var apiErr *client.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == client.CodeBadTopic:
		log.Fatalf("fix the topic name: %s", apiErr.Message)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("stored as %s #%d\n", ack.Topic, ack.Offset)
}

func ExampleClient_Pull() {
	c, err := client.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	cursor := "" // load the cursor saved by the last run
	for {
		res, err := c.Pull(ctx, client.PullRequest{
			Topics: []string{"orders.eu"},
			Cursor: cursor,
			Wait:   30 * time.Second, // a long poll
		})
		if err != nil {
			log.Fatal(err)
		}
		for _, g := range res.Gaps {
			log.Printf("lost events of %s: %s", g.Topic, g.Reason)
		}
		for _, ev := range res.Events {
			payload, err := ev.Payload()
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%s #%d: %s\n", ev.Topic, ev.Offset, payload)
		}
		cursor = res.Cursor // save it to resume here after a restart
	}
}

func ExampleClient_Subscribe() {
	c, err := client.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	sub, err := c.Subscribe(ctx, []string{"prices.BTC-USD", "prices.ETH-USD"}, client.SubscribeOptions{
		Transport: client.TransportSSE,
		From:      "latest",
	})
	if err != nil {
		log.Fatal(err) // a bad topic, cursor or address
	}
	defer sub.Close()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err) // ErrClosed, or an error reconnecting cannot fix
		}
		switch {
		case m.Event != nil:
			fmt.Printf("%s #%d: %s\n", m.Event.Topic, m.Event.Offset, m.Event.Data)
		case m.Gap != nil:
			log.Printf("lost events of %s (%s); going on after #%d", m.Gap.Topic, m.Gap.Reason, m.Gap.Resumed.Offset)
		case m.Err != nil:
			log.Printf("reconnecting: %v", m.Err)
		}
		// m.Cursor resumes right after this message: store it with the
		// work the message caused, and pass it as SubscribeOptions.Cursor
		// after a restart.
	}
}
