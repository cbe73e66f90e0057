package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// TestCacheCoalesces checks that callers presenting a token while it is
// being verified wait for that one verification.
func TestCacheCoalesces(t *testing.T) {
	c := newCache(100)
	const n = 50
	release := make(chan struct{})
	var calls atomic.Int32
	verify := func() (*verified, error) {
		calls.Add(1)
		<-release
		return &verified{subject: "a", expires: time.Now().Add(time.Hour)}, nil
	}
	now := time.Now()
	var wg sync.WaitGroup
	results := make(chan *verified, n)
	for range n {
		wg.Go(func() {
			v, err := c.do(context.Background(), "tok", now, now, 0, verify)
			if err != nil {
				t.Error(err)
			}
			results <- v
		})
	}
	// Release once every caller but the verifying one waits.
	s := c.shard("tok")
	for {
		s.mu.Lock()
		f := s.inflight["tok"]
		waiting := f != nil && f.waiters == n-1
		s.mu.Unlock()
		if waiting {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(results)
	var first *verified
	for v := range results {
		if first == nil {
			first = v
		}
		if v != first {
			t.Fatal("callers got different results")
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("%d verifications, want 1", got)
	}
	// A failure is shared with the waiters but not cached.
	boom := errors.New("boom")
	if _, err := c.do(context.Background(), "bad", now, now, 0, func() (*verified, error) { return nil, boom }); err != boom {
		t.Fatal(err)
	}
	if _, err := c.do(context.Background(), "bad", now, now, 0, func() (*verified, error) { return nil, nil }); err != nil {
		t.Errorf("a failure was cached: %v", err)
	}
}

// TestCacheBound checks that the cache stays within its size.
func TestCacheBound(t *testing.T) {
	c := newCache(32)
	now := time.Now()
	for i := range 1000 {
		tok := fmt.Sprintf("t%d", i)
		c.do(context.Background(), tok, now, now, 0, func() (*verified, error) {
			return &verified{expires: now.Add(time.Hour)}, nil
		})
	}
	if n := c.len(); n > 32 || n < 16 {
		t.Errorf("%d entries, want at most 32 (and not far fewer)", n)
	}
}

// TestReconnectStorm authenticates 10,000 clients presenting three tokens,
// from several goroutines: each token is verified once.
func TestReconnectStorm(t *testing.T) {
	k := testKeys(t)
	path, _ := pemFile(t, &k.ec.PublicKey)
	a := newTestAuth(t, authConfig(func(au *config.Auth) { au.JWT.PublicKeyFile = path }))
	var toks []string
	for _, sub := range []string{"a", "b", "c"} {
		toks = append(toks, sign(t, jwt.SigningMethodES256, k.ec, claims(map[string]any{"subscribe": []string{">"}}, "sub", sub), ""))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10000 / 8 {
				if _, err := a.Authenticate(context.Background(), hub.Credentials{Token: toks[(g+i)%3]}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := a.jwt.fresh.Load(); n != 3 {
		t.Errorf("%d verifications from scratch for 10,000 clients with 3 tokens, want 3", n)
	}
}

// TestCacheExpiry checks that a cached token stops working at its exp
// (plus the leeway), with the same answer as an uncached one.
func TestCacheExpiry(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	cfg := authConfig(func(au *config.Auth) { au.JWT.HMACSecret = string(testSecret) })
	a, err := newAuth(cfg, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	exp := clock.Add(time.Minute).Truncate(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil, "exp", exp.Unix()), "")
	auth := func() error {
		_, err := a.Authenticate(context.Background(), hub.Credentials{Token: tok})
		return err
	}
	if err := auth(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock = exp.Add(4 * time.Second) // within the 5s leeway
	mu.Unlock()
	if err := auth(); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	if n := a.jwt.fresh.Load(); n != 1 {
		t.Errorf("%d verifications, want 1 (the second from the cache)", n)
	}
	mu.Lock()
	clock = exp.Add(6 * time.Second)
	mu.Unlock()
	if err := auth(); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("past exp and leeway: %v, want ErrTokenExpired", err)
	}
}
