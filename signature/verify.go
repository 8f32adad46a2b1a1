package signature

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks Upstash-Signature tokens the way the official SDK
// receivers do, with the strictest form of each of their rules. Verify only
// reads the fields, so one Verifier can serve concurrent calls.
type Verifier struct {
	// CurrentKey is tried first. An empty CurrentKey is skipped.
	CurrentKey string

	// NextKey is tried when verification with CurrentKey fails for any
	// reason. An empty NextKey is skipped.
	NextKey string

	// Tolerance is the allowed clock difference when checking "exp", "nbf"
	// and "iat". A negative Tolerance counts as zero.
	//
	// NOTE: the qstash-py receiver passes its clock tolerance inside PyJWT's
	// options dict, where PyJWT does not read it, so that receiver checks
	// with zero tolerance. With a nonzero Tolerance, Verify can accept a
	// token whose "nbf" or "iat" is slightly in the future, or whose "exp"
	// has just passed, and the Python receiver rejects it.
	Tolerance time.Duration

	// Now returns the current time. A nil Now means time.Now.
	Now func() time.Time
}

// Verify checks that token was signed with CurrentKey or NextKey for a
// delivery of body to url. An empty url skips the "sub" comparison.
//
// Verify tries CurrentKey first. When any check fails with it and NextKey is
// set, Verify repeats all checks with NextKey and returns that result. The
// error wraps ErrMissingKey, ErrMalformedToken, ErrUnsupportedAlgorithm,
// ErrUnsupportedHeader or ErrInvalidSignature, or is a *ClaimError.
func (v *Verifier) Verify(token string, url string, body []byte) error {
	if v.CurrentKey == "" && v.NextKey == "" {
		return ErrMissingKey
	}

	if v.CurrentKey != "" {
		err := v.verifyWithKey(token, v.CurrentKey, url, body)
		if err == nil || v.NextKey == "" {
			return err
		}
	}
	return v.verifyWithKey(token, v.NextKey, url, body)
}

func (v *Verifier) verifyWithKey(token, key, url string, body []byte) error {
	segments, err := splitToken(token)
	if err != nil {
		return err
	}

	header, err := decodeObject(segments[0], "header")
	if err != nil {
		return err
	}
	if err := checkHeader(header); err != nil {
		return err
	}

	if err := checkHMAC(segments, key); err != nil {
		return err
	}

	claims, err := decodeObject(segments[1], "payload")
	if err != nil {
		return err
	}

	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tolerance := max(v.Tolerance, 0)
	return checkClaims(claims, now(), tolerance, url, body)
}

// splitToken returns the three segments of a compact JWS.
func splitToken(token string) ([]string, error) {
	// Only base64url characters and dots are allowed. The base64 decoders
	// in the SDKs differ in which other characters they skip, but each
	// computes the HMAC over the raw text.
	for i := 0; i < len(token); i++ {
		if !isTokenByte(token[i]) {
			return nil, fmt.Errorf("%w: byte %q at offset %d is not base64url or '.'", ErrMalformedToken, token[i], i)
		}
	}

	segments := strings.Split(token, ".")
	if len(segments) != 3 {
		return nil, fmt.Errorf("%w: got %d dot-separated segments, want 3", ErrMalformedToken, len(segments))
	}
	return segments, nil
}

func isTokenByte(b byte) bool {
	switch {
	case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9':
		return true
	default:
		return b == '-' || b == '_' || b == '.'
	}
}

// decodeObject decodes one unpadded base64url segment holding a JSON object.
// name is "header" or "payload" and appears in errors.
func decodeObject(segment, name string) (map[string]json.RawMessage, error) {
	data, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not unpadded base64url: %v", ErrMalformedToken, name, err)
	}

	// PyJWT rejects invalid UTF-8, while Go and jose replace it with U+FFFD.
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformedToken, name)
	}

	// json.Unmarshal rejects trailing data after the object, as PyJWT and
	// jose do. golang-jwt's claims decoder would ignore it.
	var object map[string]json.RawMessage
	if err := json.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%w: %s is not a JSON object: %v", ErrMalformedToken, name, err)
	}
	if object == nil {
		return nil, fmt.Errorf("%w: %s is null, want a JSON object", ErrMalformedToken, name)
	}
	return object, nil
}

// checkHeader accepts only HS256 and rejects header parameters that make at
// least one SDK receiver fail.
func checkHeader(header map[string]json.RawMessage) error {
	rawAlg, ok := header["alg"]
	if !ok {
		return fmt.Errorf(`%w: header "alg" is missing, want "HS256"`, ErrUnsupportedAlgorithm)
	}
	alg, ok := decodeString(rawAlg)
	if !ok || alg != jwt.SigningMethodHS256.Alg() {
		return fmt.Errorf(`%w: header "alg" is %s, want "HS256"`, ErrUnsupportedAlgorithm, rawAlg)
	}

	// jose rejects "crit" unless it lists only extensions that jose
	// implements. Sign never sets "crit", so every "crit" is rejected here.
	if _, ok := header["crit"]; ok {
		return fmt.Errorf(`%w: "crit"`, ErrUnsupportedHeader)
	}

	// PyJWT rejects "b64": false because it then expects a detached payload.
	if rawB64, ok := header["b64"]; ok && !bytes.Equal(rawB64, []byte("true")) {
		return fmt.Errorf(`%w: "b64" is %s, want true or absent`, ErrUnsupportedHeader, rawB64)
	}

	// PyJWT rejects a "kid" that is not a string.
	if rawKid, ok := header["kid"]; ok {
		if _, ok := decodeString(rawKid); !ok {
			return fmt.Errorf(`%w: "kid" is %s, want a string`, ErrUnsupportedHeader, rawKid)
		}
	}
	return nil
}

// checkHMAC verifies the third segment as the HS256 signature over the first
// two, keyed with the UTF-8 bytes of key.
func checkHMAC(segments []string, key string) error {
	signature, err := base64.RawURLEncoding.DecodeString(segments[2])
	if err != nil {
		return fmt.Errorf("%w: signature is not unpadded base64url: %v", ErrMalformedToken, err)
	}

	signingInput := segments[0] + "." + segments[1]
	if err := jwt.SigningMethodHS256.Verify(signingInput, signature, []byte(key)); err != nil {
		return ErrInvalidSignature
	}
	return nil
}
