package ws

import (
	"runtime"
	"time"

	"github.com/heraldhq/herald/internal/transport/netio"
)

// pooledWriteSlice bounds how long a pooled worker waits on one write
// where non-blocking writes are not available.
const pooledWriteSlice = 20 * time.Millisecond

// newWriterPool returns the pool that runs connection writers
// (conn.runPooled) with bounded concurrency, as the SSE transport does
// (docs/decisions/0003): a fan-out that wakes ten thousand connections
// would otherwise start ten thousand goroutines, and every P busy with
// runnable writers delays the network poller, so publishes and commands
// wait behind the fan-out. Workers exist only while connections wait for
// one, so an idle server has none.
//
// A worker must not be held by one client that stopped reading: pooled
// writes never wait on the socket, and a connection whose socket is full
// continues on a goroutine of its own (see conn.runPooled).
//
// n is the number of workers (the ws.writers setting); 0 picks
// netio.Writers' default.
func newWriterPool(n int) *netio.Pool[*conn] {
	return netio.NewPool(netio.Writers(n), (*conn).runPooled)
}

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
