// Command notifications is herald's notifications example: a user's
// notifications are events of the topic notify.alice; the browser takes
// them by long polling (the transport that passes every proxy) and
// remembers where it is in localStorage, so a reloaded page shows only
// what is new. A backend publishes with one HTTP POST.
//
//	go run ./examples/notifications
//
// then open http://127.0.0.1:8000/ (README.md).
package main

import (
	"context"
	"embed"
	"io"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/examples/internal/demo"
)

//go:embed index.html app.js
var pages embed.FS

const topic = "notify.alice"

var example = demo.Example{
	Name:  "notifications",
	Pages: pages,
	Work:  welcome,
}

func main() { demo.Main(example) }

// welcome publishes the first notification, as a backend would, once.
func welcome(ctx context.Context, n demo.Node, out io.Writer) error {
	c, err := client.New(n.HTTP)
	if err != nil {
		return err
	}
	defer c.Close()
	body := []byte(`{"title":"Welcome","body":"Notifications arrive here by long polling.","level":"info"}`)
	if _, err := c.Publish(ctx, topic, body, client.WithContentType("application/json"), client.WithKey("welcome")); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
