package signature

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// Issuer is the value of the "iss" claim. The SDK receivers require it
	// exactly.
	Issuer = "Upstash"

	// TokenLifetime is the time between the "iat" and "exp" claims.
	TokenLifetime = 300 * time.Second

	jtiPrefix = "jwt_"

	// jtiRandomLength gives the token ID about 128 bits of entropy.
	jtiRandomLength = 22
)

// Signer signs deliveries with one key.
type Signer struct {
	// Key is the signing key, normally made by NewKey.
	Key string

	// Now returns the signing time. A nil Now means time.Now.
	Now func() time.Time
}

// Sign creates the token for a delivery of body to url, signed with s.Key at
// the time s.Now returns.
func (s *Signer) Sign(url string, body []byte) (string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	return Sign(s.Key, url, body, now())
}

// Sign creates the Upstash-Signature token for a delivery of body to url,
// issued at now and valid for TokenLifetime. The HMAC key is the UTF-8 bytes
// of key, prefix included.
//
// Sign returns ErrMissingKey for an empty key and an error for a url that is
// not valid UTF-8, because JSON cannot carry such a string unchanged in the
// "sub" claim.
func Sign(key, url string, body []byte, now time.Time) (string, error) {
	if key == "" {
		return "", ErrMissingKey
	}
	if !utf8.ValidString(url) {
		return "", fmt.Errorf("signature: url %q is not valid UTF-8", url)
	}

	jti, err := randomBase58(jtiRandomLength)
	if err != nil {
		return "", err
	}

	// MapClaims with int64 values marshals every time claim as a JSON
	// integer. jwt.NumericDate would depend on the global jwt.TimePrecision.
	issuedAt := now.Unix()
	claims := jwt.MapClaims{
		"iss":  Issuer,
		"sub":  url,
		"iat":  issuedAt,
		"exp":  issuedAt + int64(TokenLifetime/time.Second),
		"nbf":  int64(0),
		"jti":  jtiPrefix + jti,
		"body": BodyHash(body),
	}

	// NewWithClaims sets the header to {"alg":"HS256","typ":"JWT"}.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		return "", fmt.Errorf("signature: sign token: %w", err)
	}
	return token, nil
}

// BodyHash returns the "body" claim for body: SHA-256 encoded as base64url
// with "=" padding.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.URLEncoding.EncodeToString(sum[:])
}
