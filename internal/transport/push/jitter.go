package push

import (
	"math/rand/v2"
	"time"
)

// Jitter returns a reconnect delay between one and four times base, so that
// the clients of a draining server do not all come back at the same moment.
func Jitter(base time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	return base + time.Duration(rand.Int64N(3*int64(base)+1))
}
