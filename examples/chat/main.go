// Command chat is herald's chat example: a chat room in the browser over
// herald's WebSocket, with presence (who is in the room). Messages are
// events of the topic chat.lobby; presence is on for the chat namespace.
//
//	go run ./examples/chat
//
// then open http://127.0.0.1:8000/?name=ann in one tab and
// http://127.0.0.1:8000/?name=bob in another (README.md).
package main

import (
	"embed"

	"github.com/heraldhq/herald/examples/internal/demo"
	"github.com/heraldhq/herald/internal/config"
)

//go:embed index.html app.js
var pages embed.FS

var example = demo.Example{
	Name:  "chat",
	Pages: pages,
	Config: func(c *config.Config) {
		on := true
		// Presence: joins, leaves and the presence query. Clients may
		// publish from their WebSocket (client_publish is on by default).
		c.Namespaces = map[string]config.Namespace{"chat": {Presence: &on}}
	},
}

func main() { demo.Main(example) }
