package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryDelay returns the wait before the next attempt of an event after n
// failed attempts (n ≥ 1): the schedule's n-th wait varied by up to
// ±Jitter (r is uniform in [0, 1)), or retryAfter when the receiver asked
// for longer. ok is false when the schedule is exhausted: the event has
// failed for good.
func (c *Config) retryDelay(n int, retryAfter time.Duration, r float64) (d time.Duration, ok bool) {
	if n < 1 || n > len(c.Retry) {
		return 0, false
	}
	d = c.Retry[n-1]
	d += time.Duration(float64(d) * c.Jitter * (2*r - 1))
	if retryAfter > d {
		d = min(retryAfter, MaxRetryDelay)
	}
	return max(d, 0), true
}

// parseRetryAfter reads a Retry-After header (RFC 9110, section 10.2.3):
// a number of seconds or an HTTP date, the wait from now. It returns 0 for
// a header that is missing or neither.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(s)*time.Second, MaxRetryDelay)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryDelay)
	}
	return 0
}
