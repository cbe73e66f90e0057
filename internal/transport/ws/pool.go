package ws

import (
	"runtime"

	"github.com/heraldhq/herald/internal/transport/netio"
)

// newReaderPool returns the pool that runs connection readers
// (conn.readReady) with bounded concurrency. A reader needs a read buffer
// while it runs; ten thousand connections readable at once (a load
// balancer dropping its clients, say) would otherwise make ten thousand
// goroutines and buffers. The bound is generous, because a reader runs
// its connection's commands and a publish waits for the engine (an fsync
// on the durable engine): several must run at once for the engine's group
// commit to batch them.
//
// The caller of Submit has counted the connection in the handler's
// readers group.
func newReaderPool() *netio.Pool[*conn] {
	return netio.NewPool(max(8, 8*runtime.GOMAXPROCS(0)), readPooled)
}

// readPooled runs c's reader on a reader pool worker, with a pooled read
// buffer (sync.Pool keeps it on the P, so this costs no allocation).
func readPooled(c *conn) {
	bp := readBufs.Get().(*[]byte)
	c.readReady(*bp)
	readBufs.Put(bp)
}
