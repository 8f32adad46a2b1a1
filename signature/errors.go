package signature

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by Sign and Verify. Use errors.Is to test for
// them, because most are wrapped with details about the failing value.
var (
	// ErrMissingKey means the signing key is empty, or that a Verifier has
	// neither CurrentKey nor NextKey set.
	ErrMissingKey = errors.New("signature: missing signing key")

	// ErrMalformedToken means the token is not three base64url segments
	// whose first two decode to JSON objects in valid UTF-8.
	ErrMalformedToken = errors.New("signature: malformed token")

	// ErrUnsupportedAlgorithm means the "alg" header is not "HS256".
	ErrUnsupportedAlgorithm = errors.New("signature: unsupported algorithm")

	// ErrUnsupportedHeader means the token header contains a parameter that
	// at least one SDK receiver rejects, such as "crit".
	ErrUnsupportedHeader = errors.New("signature: unsupported header parameter")

	// ErrInvalidSignature means the HMAC-SHA256 signature does not match the
	// key.
	ErrInvalidSignature = errors.New("signature: invalid signature")

	// ErrMissingClaim means a required claim is absent or null.
	ErrMissingClaim = errors.New("signature: missing claim")

	// ErrInvalidClaim means a claim has the wrong JSON type or value.
	ErrInvalidClaim = errors.New("signature: invalid claim")

	// ErrTokenExpired means "exp" is not after the current time minus the
	// tolerance.
	ErrTokenExpired = errors.New("signature: token is expired")

	// ErrTokenNotValidYet means "nbf" or "iat" is after the current time
	// plus the tolerance.
	ErrTokenNotValidYet = errors.New("signature: token is not valid yet")

	// ErrBodyHashMismatch means the "body" claim is not the hash of the
	// request body.
	ErrBodyHashMismatch = errors.New("signature: body hash mismatch")
)

// ClaimError describes one claim that failed verification.
type ClaimError struct {
	// Claim is the claim name, such as "sub".
	Claim string

	// Detail states the failing value and the expected one, such as
	// `is "x", want "y"`.
	Detail string

	// Err is the sentinel error that classifies the failure: ErrMissingClaim,
	// ErrInvalidClaim, ErrTokenExpired, ErrTokenNotValidYet or
	// ErrBodyHashMismatch.
	Err error
}

// Error formats the failure as `signature: claim "sub" is "x", want "y"`.
// Failures classified by a sentinel other than ErrMissingClaim and
// ErrInvalidClaim start with that sentinel's text, as in
// `signature: body hash mismatch: claim "body" is ...`.
func (e *ClaimError) Error() string {
	if e.Err == ErrMissingClaim || e.Err == ErrInvalidClaim || e.Err == nil {
		return fmt.Sprintf("signature: claim %q %s", e.Claim, e.Detail)
	}
	return fmt.Sprintf("%v: claim %q %s", e.Err, e.Claim, e.Detail)
}

// Unwrap returns the sentinel error in Err.
func (e *ClaimError) Unwrap() error {
	return e.Err
}
