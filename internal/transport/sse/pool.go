package sse

import (
	"time"

	"github.com/heraldhq/herald/internal/transport/netio"
)

// pooledWriteSlice bounds how long a pooled worker waits on one write
// where non-blocking writes are not available.
const pooledWriteSlice = 20 * time.Millisecond

// newWriterPool returns the pool that runs stream writers (conn.runPooled)
// with bounded concurrency. A fan-out that wakes ten thousand streams
// would otherwise start ten thousand goroutines at once, and every other
// goroutine (a publish waiting for its answer, a long poll) would queue
// behind all of them. The pool's workers exist only while streams are
// waiting, so an idle server has none.
//
// A worker must not be held by one consumer that stopped reading: pooled
// writes do not wait on the socket (or wait a short deadline where they
// must), and a stream whose write does not finish is handed to a
// goroutine of its own (see conn.runPooled).
//
// n is the number of workers (the sse.writers setting); 0 picks
// netio.Writers' default.
func newWriterPool(n int) *netio.Pool[*conn] {
	return netio.NewPool(netio.Writers(n), (*conn).runPooled)
}
