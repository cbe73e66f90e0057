package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/config"
)

// Keys from a JWKS URL (an identity provider's JSON Web Key Set) are held
// in memory and refreshed:
//
//   - at start: a failed first fetch is logged and herald starts anyway
//     (tokens then fail until a fetch succeeds), so that a restart does not
//     depend on the identity provider being up;
//   - every auth.jwt.jwks_refresh (1h by default, as Centrifugo does);
//   - when a token names a key id the set does not have (a rotation at the
//     provider), at most once per auth.jwt.jwks_unknown_kid_refresh (5m):
//     a flood of tokens with made-up key ids costs at most one fetch per
//     period, and while the limit holds such tokens are refused at once.
//
// A failed refresh keeps the keys already held. A refresh that drops or
// changes a key bumps the generation, which voids every cached
// verification (cache.go): tokens of a revoked key stop working at the
// next refresh, not at their expiry.

// jwksFetchTimeout bounds one fetch of the key set.
const jwksFetchTimeout = 5 * time.Second

// jwksWaitMax bounds how long a token with an unknown key id waits for the
// unknown-kid limiter before it is refused; with a limit of one fetch per
// minutes, it is refused at once except in the last seconds of a period.
const jwksWaitMax = 10 * time.Second

// jwks is a key set fetched from a URL.
type jwks struct {
	kf       keyfunc.Keyfunc
	store    *trackedStore
	limit    time.Duration // unknown-kid refresh interval, for messages
	log      *slog.Logger
	tr       *http.Transport    // owned: close drops its idle connections
	cancel   context.CancelFunc // stops the refresh goroutine
	fetches  atomic.Int64       // attempted fetches, for tests and logs
	closeOne sync.Once
}

// newJWKS fetches the key set at cfg.JWKSURL and starts its refresh
// goroutine (owned by jwkset; close stops it).
func newJWKS(cfg config.JWT, log *slog.Logger) (*jwks, error) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &jwks{
		store:  &trackedStore{Storage: jwkset.NewMemoryStorage()},
		limit:  cfg.JWKSUnknownKIDRefresh,
		log:    log,
		tr:     http.DefaultTransport.(*http.Transport).Clone(),
		cancel: cancel,
	}
	if cfg.JWKSCAFile != "" {
		pool, err := caPool(cfg.JWKSCAFile)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("auth.jwt.jwks_ca_file: %w", err)
		}
		k.tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	onError := func(ctx context.Context, err error) {
		log.Warn("auth: JWKS fetch failed; the keys already held stay in use", "url", cfg.JWKSURL, "err", err)
	}
	remote, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    &http.Client{Transport: countingTransport{k.tr, &k.fetches}},
		Ctx:                       ctx,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       onError,
		RefreshInterval:           cfg.JWKSRefresh,
		Storage:                   k.store,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: remote},
		RateLimitWaitMax:  jwksWaitMax,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.JWKSUnknownKIDRefresh), 1),
	})
	if err != nil {
		k.close()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
	}
	k.kf, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client})
	if err != nil {
		k.close()
		return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
	}
	return k, nil
}

// key returns the key of the set that verifies t (signed with alg, naming
// kid, "" when it names none).
func (k *jwks) key(ctx context.Context, t *jwt.Token, kid, alg string) (any, error) {
	key, err := k.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		// An unknown kid fails with ErrKeyNotFound after a refresh, or
		// with the limiter's refusal when a refresh is not due.
		if _, known := k.store.KeyRead(ctx, kid); errors.Is(err, jwkset.ErrKeyNotFound) || (kid != "" && known != nil) {
			return nil, &keyError{fmt.Sprintf("unknown key id %q: the identity provider's key set does not have it "+
				"(herald fetches the set again for an unknown key id at most every %v)", kid, k.limit)}
		}
		k.log.Debug("auth: JWKS key lookup failed", "kid", kid, "alg", alg, "err", err)
		return nil, &keyError{fmt.Sprintf("no key of the identity provider's key set verifies this token (kid %q, alg %s)", kid, alg)}
	}
	if set, ok := key.(jwt.VerificationKeySet); ok { // no kid: every key of the type
		var fit jwt.VerificationKeySet
		for _, key := range set.Keys {
			if checkKey(key, alg) == nil {
				fit.Keys = append(fit.Keys, key)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, &keyError{fmt.Sprintf("the token names no key id, and no key of the identity provider's key set verifies %s", alg)}
		}
		return fit, nil
	}
	if err := checkKey(key, alg); err != nil {
		return nil, &keyError{fmt.Sprintf("key id %q: %v", kid, err)}
	}
	return key, nil
}

// close stops the refresh goroutine and drops idle connections.
func (k *jwks) close() {
	k.closeOne.Do(func() {
		k.cancel()
		k.tr.CloseIdleConnections()
	})
}

// trackedStore is the in-memory key set, counting the refreshes that drop
// or change a key.
type trackedStore struct {
	jwkset.Storage
	mu  sync.Mutex // serialises KeyReplaceAll
	gen atomic.Uint64
}

// KeyReplaceAll replaces the set and bumps the generation when a key held
// before is gone or different.
func (s *trackedStore) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.Storage.KeyReadAll(ctx)
	if err != nil {
		return err
	}
	if err := s.Storage.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	kept := make(map[string]bool, len(given))
	for _, j := range given {
		kept[fingerprint(j)] = true
	}
	for _, j := range old {
		if !kept[fingerprint(j)] {
			s.gen.Add(1)
			break
		}
	}
	return nil
}

// fingerprint identifies a key by its public form.
func fingerprint(j jwkset.JWK) string {
	b, err := json.Marshal(j.Marshal())
	if err != nil {
		return j.Marshal().KID
	}
	return string(b)
}

// countingTransport counts the requests it makes.
type countingTransport struct {
	http.RoundTripper
	n *atomic.Int64
}

// RoundTrip counts and sends r.
func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.RoundTripper.RoundTrip(r)
}

// caPool returns the system's CA certificates and those of the PEM file
// at path.
func caPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system pool here: the file's alone
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
