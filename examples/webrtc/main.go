// Command webrtc is herald's WebRTC signalling example: two browser tabs
// in a room find each other by presence and exchange the WebRTC offer,
// answer and ICE candidates as herald events over the WebSocket; then
// their peer connection (a data channel) carries messages directly.
//
//	go run ./examples/webrtc
//
// then open http://127.0.0.1:8000/ in two tabs (README.md).
package main

import (
	"embed"

	"github.com/heraldhq/herald/examples/internal/demo"
	"github.com/heraldhq/herald/internal/config"
)

//go:embed index.html app.js
var pages embed.FS

var example = demo.Example{
	Name:  "webrtc",
	Pages: pages,
	Config: func(c *config.Config) {
		on := true
		// Signals are short-lived: keep little history.
		c.Namespaces = map[string]config.Namespace{"rtc": {Presence: &on, History: config.Retention{MaxEvents: 1000}}}
	},
}

func main() { demo.Main(example) }
