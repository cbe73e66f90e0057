package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/internal/config"
)

// TokenRequest is what a minted token says.
type TokenRequest struct {
	Subject  string        // sub
	TTL      time.Duration // exp is now plus TTL
	Grants   config.Grants // the grants claim
	Audience string        // aud, when not empty
	Issuer   string        // iss, when not empty
	Claim    string        // the grants claim's name (auth.jwt.claim)
}

// MintHS256 signs a token for r with secret, as of now. It is for
// development and tests (herald token): in production an application's
// backend or an identity provider mints tokens.
func MintHS256(secret []byte, r TokenRequest, now time.Time) (string, error) {
	if len(secret) < config.MinHMACSecretBytes {
		return "", fmt.Errorf("the HMAC secret is %d bytes; at least %d are needed", len(secret), config.MinHMACSecretBytes)
	}
	if r.Subject == "" {
		return "", errors.New("a token needs a subject (--sub)")
	}
	if r.TTL <= 0 {
		return "", fmt.Errorf("the time to live must be positive, got %v", r.TTL)
	}
	if r.Claim == "" {
		r.Claim = config.Default().Auth.JWT.Claim
	}
	if _, err := CompileGrants(r.Grants); err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"sub":   r.Subject,
		"iat":   now.Unix(),
		"exp":   now.Add(r.TTL).Unix(),
		r.Claim: r.Grants,
	}
	if r.Audience != "" {
		claims["aud"] = r.Audience
	}
	if r.Issuer != "" {
		claims["iss"] = r.Issuer
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign the token: %w", err)
	}
	return s, nil
}
