// Package limit holds herald's abuse limits that are not a property of one
// request: how many connections a node and each client address may hold
// and open per second (Conns, Listener), and how fast each caller may
// publish (Rates, Publish). Limits that are (event size, topics per
// request, subscriptions per connection) are checked by the hub.
//
// Every refusal names the limit by its configuration key, so that the
// answer a client gets (429 or 503 with Retry-After, a WebSocket close
// 4029, a gRPC RESOURCE_EXHAUSTED) and the metric that counts it
// (herald_limit_refusals_total{limit=...}) say which setting to look at.
package limit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// numShards splits a Rates set so that callers with different keys rarely
// wait for each other's lock.
const numShards = 16

// DefaultMaxKeys bounds a Rates set's entries when its options do not.
const DefaultMaxKeys = 1 << 16

// Rates is a set of token buckets (rate.Limiter), one per key: a publisher's
// identity, a connection, a client address. Buckets are made on first use
// and forgotten once they are full again, when a new one would behave the
// same, so memory follows the keys active within about Burst/Rate seconds,
// and never exceeds MaxKeys buckets: a set that is full of busy keys forgets
// some of them (each then starts again with a full bucket), which keeps
// memory bounded under a flood of distinct keys at the price of letting such
// a key burst once more.
//
// A zero Rate turns the set off: Allow always allows. Rates is safe for
// concurrent use; Allow takes one shard's lock and does not allocate for a
// key it already has.
type Rates[K comparable] struct {
	limit   rate.Limit // static
	burst   int        // static
	maxKeys int        // static: per shard
	every   time.Duration
	seed    maphash.Seed
	shards  [numShards]rateShard[K]
}

type rateShard[K comparable] struct {
	mu      sync.Mutex // guards the fields below
	buckets map[K]*rate.Limiter
	sweep   time.Time // no sweep for idle buckets before this
}

// RatesOptions configure NewRates.
type RatesOptions struct {
	Rate  float64 // events per second; 0 turns the set off
	Burst int     // bucket size: the most events allowed at once; at least 1
	// MaxKeys bounds the buckets held; default DefaultMaxKeys.
	MaxKeys int
}

// NewRates returns an empty set.
func NewRates[K comparable](o RatesOptions) *Rates[K] {
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	r := &Rates[K]{limit: rate.Limit(o.Rate), burst: max(o.Burst, 1), maxKeys: max(o.MaxKeys/numShards, 1), seed: maphash.MakeSeed()}
	// A bucket left alone this long is full again: forgetting it changes
	// nothing. Sweeps look for such buckets at most this often per shard.
	r.every = time.Second
	if o.Rate > 0 {
		r.every = max(r.every, time.Duration(float64(r.burst)/o.Rate*float64(time.Second)))
	}
	r.every = min(r.every, time.Minute)
	for i := range r.shards {
		r.shards[i].buckets = make(map[K]*rate.Limiter)
	}
	return r
}

// On reports whether the set limits anything.
func (r *Rates[K]) On() bool { return r != nil && r.limit > 0 }

// Rate returns the set's rate, in events per second.
func (r *Rates[K]) Rate() float64 { return float64(r.limit) }

// Burst returns the set's bucket size.
func (r *Rates[K]) Burst() int { return r.burst }

// Allow takes n tokens from k's bucket at now. When the bucket has fewer,
// it takes none and returns false with how long until it will have n: the
// Retry-After of the refusal (0 when n is over Burst, which no wait helps).
func (r *Rates[K]) Allow(k K, now time.Time, n int) (bool, time.Duration) {
	if !r.On() {
		return true, 0
	}
	if n > r.burst {
		return false, 0
	}
	sh := &r.shards[maphash.Comparable(r.seed, k)%numShards]
	sh.mu.Lock()
	lim := sh.buckets[k]
	if lim == nil {
		lim = r.insert(sh, k, now)
	}
	// Under the shard's lock, so that a sweep cannot forget the bucket
	// between the lookup and the take.
	ok := lim.AllowN(now, n)
	var have float64
	if !ok {
		have = lim.TokensAt(now)
	}
	sh.mu.Unlock()
	if ok {
		return true, 0
	}
	need := float64(n) - have
	wait := time.Duration(math.Ceil(need / float64(r.limit) * float64(time.Second)))
	return false, max(wait, time.Millisecond)
}

// insert makes k's bucket, first forgetting idle buckets when a sweep is
// due, and a quarter of the busy ones when the shard is full (so that the
// next inserts do not sweep again). sh.mu must be held.
func (r *Rates[K]) insert(sh *rateShard[K], k K, now time.Time) *rate.Limiter {
	if now.After(sh.sweep) || len(sh.buckets) >= r.maxKeys {
		sh.sweep = now.Add(r.every)
		for key, lim := range sh.buckets {
			if lim.TokensAt(now) >= float64(r.burst) {
				delete(sh.buckets, key)
			}
		}
		if len(sh.buckets) >= r.maxKeys {
			keep := r.maxKeys - max(r.maxKeys/4, 1)
			for key := range sh.buckets {
				if len(sh.buckets) <= keep {
					break
				}
				delete(sh.buckets, key) // map order is random
			}
		}
	}
	lim := rate.NewLimiter(r.limit, r.burst)
	sh.buckets[k] = lim
	return lim
}

// Len returns the number of buckets held.
func (r *Rates[K]) Len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}
