package auth

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// cache remembers verified tokens, keyed by the token string, until they
// expire, so that a reconnect storm (10,000 clients coming back with the
// same few tokens) verifies each token once rather than once per client:
// an ES256 verification costs tens of microseconds, a lookup well under
// one. A token that is being verified when others present it is verified
// once, the others wait for that result (a storm arrives all at once).
//
// It is bounded: cacheShards maps of at most size/cacheShards entries
// each; a full shard first drops its expired entries, then an arbitrary
// one. Entries are valid while the token is (until exp, plus the leeway)
// and while the key generation they were verified under is current, so
// a key dropped from the JWKS voids them. Only successes are stored.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 16

type cacheShard struct {
	mu       sync.Mutex // guards the maps
	entries  map[string]*verified
	inflight map[string]*flight
}

// flight is one verification in progress; done is closed when v and err
// are set.
type flight struct {
	done    chan struct{}
	v       *verified
	err     error
	waiters int // callers waiting on done, guarded by the shard's mu (for tests)
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]*verified)
		c.shards[i].inflight = make(map[string]*flight)
	}
	return c
}

func (c *cache) shard(token string) *cacheShard {
	return &c.shards[maphash.String(c.seed, token)%cacheShards]
}

// valid returns the entry of token if it is still valid at notBefore (now
// less the leeway) under key generation gen, or nil; it drops an entry
// that is no longer valid. s.mu must be held.
func (s *cacheShard) valid(token string, notBefore time.Time, gen uint64) *verified {
	e, ok := s.entries[token]
	if !ok {
		return nil
	}
	if e.gen != gen || notBefore.After(e.expires) {
		delete(s.entries, token)
		return nil
	}
	return e
}

// do returns the cached verification of token, if valid, else waits for the
// verification of token in progress (or for ctx), else verifies it with
// verify and stores a success. A token is verified once however many
// callers present it at the same time.
func (c *cache) do(ctx context.Context, token string, now time.Time, notBefore time.Time, gen uint64, verify func() (*verified, error)) (*verified, error) {
	s := c.shard(token)
	s.mu.Lock()
	if e := s.valid(token, notBefore, gen); e != nil {
		s.mu.Unlock()
		return e, nil
	}
	if f, ok := s.inflight[token]; ok {
		f.waiters++
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.v, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	token = strings.Clone(token) // the caller's may share a large buffer
	f := &flight{done: make(chan struct{})}
	s.inflight[token] = f
	s.mu.Unlock()

	f.v, f.err = verify()

	s.mu.Lock()
	delete(s.inflight, token)
	if f.err == nil {
		s.put(token, f.v, now, c.perShard)
	}
	s.mu.Unlock()
	close(f.done)
	return f.v, f.err
}

// len returns the number of cached entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

// put stores v, making room first: expired entries go, then, if the
// shard is still full, an arbitrary one (map order is random). s.mu must
// be held.
func (s *cacheShard) put(token string, v *verified, now time.Time, limit int) {
	if _, ok := s.entries[token]; !ok && len(s.entries) >= limit {
		for k, e := range s.entries {
			if now.After(e.expires) {
				delete(s.entries, k)
			}
		}
		for k := range s.entries {
			if len(s.entries) < limit {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[token] = v
}
