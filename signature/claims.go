package signature

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxNumericDate bounds the absolute value of "exp", "nbf" and "iat" to
// 2^53-1 seconds. Larger values lose integer precision in JavaScript, and
// golang-jwt converts them to int64, whose result the Go specification leaves
// implementation-dependent when the value is out of range.
const maxNumericDate = 1<<53 - 1

// structClaimNames are the claims that the Go SDK decodes into a struct.
// encoding/json matches struct fields to keys without regard to letter case
// and keeps the last match, so "SUB" would override "sub" there but not in
// jose or PyJWT.
var structClaimNames = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "body"}

// checkClaims applies every claim rule to a payload whose signature is
// already verified.
func checkClaims(claims map[string]json.RawMessage, now time.Time, tolerance time.Duration, url string, body []byte) error {
	if err := checkClaimNames(claims); err != nil {
		return err
	}

	issuer, err := requiredString(claims, "iss")
	if err != nil {
		return err
	}
	if issuer != Issuer {
		return invalidClaim("iss", "is %q, want %q", issuer, Issuer)
	}

	subject, err := requiredString(claims, "sub")
	if err != nil {
		return err
	}
	expiresAt, err := requiredNumber(claims, "exp")
	if err != nil {
		return err
	}
	notBefore, err := requiredNumber(claims, "nbf")
	if err != nil {
		return err
	}
	bodyHash, err := requiredString(claims, "body")
	if err != nil {
		return err
	}
	issuedAt, hasIssuedAt, err := optionalNumber(claims, "iat")
	if err != nil {
		return err
	}
	if err := checkTokenID(claims); err != nil {
		return err
	}
	if err := checkAudience(claims); err != nil {
		return err
	}

	if err := checkTimes(now, tolerance, expiresAt, notBefore, issuedAt, hasIssuedAt); err != nil {
		return err
	}

	if url != "" {
		if err := checkSubject(subject, url); err != nil {
			return err
		}
	}

	want := BodyHash(body)
	if strings.TrimRight(bodyHash, "=") != strings.TrimRight(want, "=") {
		return &ClaimError{Claim: "body", Detail: fmt.Sprintf("is %q, want %q", bodyHash, want), Err: ErrBodyHashMismatch}
	}
	return nil
}

// checkClaimNames rejects keys that equal a struct claim name except for
// letter case.
func checkClaimNames(claims map[string]json.RawMessage) error {
	for _, name := range slices.Sorted(maps.Keys(claims)) {
		for _, known := range structClaimNames {
			if name != known && strings.EqualFold(name, known) {
				return invalidClaim(name, "differs from %q only in letter case", known)
			}
		}
	}
	return nil
}

// checkTimes compares the time claims with now. The SDKs round differently:
// golang-jwt truncates claims to whole seconds, jose truncates now to whole
// seconds, and PyJWT truncates "exp" and "nbf" with int(). Each check below
// uses the rounding that makes it strictest, so the result holds for all
// three.
func checkTimes(now time.Time, tolerance time.Duration, expiresAt, notBefore, issuedAt float64, hasIssuedAt bool) error {
	nowSeconds := float64(now.Unix()) + float64(now.Nanosecond())/1e9
	wholeNow := float64(now.Unix())
	slack := tolerance.Seconds()

	if math.Floor(expiresAt) <= nowSeconds-slack {
		return &ClaimError{
			Claim:  "exp",
			Detail: fmt.Sprintf("is %s, want after %s minus tolerance %s", formatSeconds(expiresAt), now.UTC().Format(time.RFC3339Nano), tolerance),
			Err:    ErrTokenExpired,
		}
	}
	if math.Ceil(notBefore) > wholeNow+slack {
		return &ClaimError{
			Claim:  "nbf",
			Detail: fmt.Sprintf("is %s, want at or before %s plus tolerance %s", formatSeconds(notBefore), now.UTC().Format(time.RFC3339), tolerance),
			Err:    ErrTokenNotValidYet,
		}
	}
	if hasIssuedAt && math.Ceil(issuedAt) > wholeNow+slack {
		return &ClaimError{
			Claim:  "iat",
			Detail: fmt.Sprintf("is %s, want at or before %s plus tolerance %s", formatSeconds(issuedAt), now.UTC().Format(time.RFC3339), tolerance),
			Err:    ErrTokenNotValidYet,
		}
	}
	return nil
}

// formatSeconds formats a Unix time claim with its UTC date when the value
// is a whole number of seconds.
func formatSeconds(seconds float64) string {
	text := strconv.FormatFloat(seconds, 'f', -1, 64)
	if seconds != math.Trunc(seconds) {
		return text
	}
	return fmt.Sprintf("%s (%s)", text, time.Unix(int64(seconds), 0).UTC().Format(time.RFC3339))
}

// checkSubject compares "sub" with the delivery URL.
func checkSubject(subject, url string) error {
	if subject != url {
		return invalidClaim("sub", "is %q, want %q", subject, url)
	}

	// encoding/json decodes an unpaired UTF-16 surrogate escape such as
	// "\ud800" to U+FFFD, while jose and PyJWT keep the surrogate. A match
	// that involves U+FFFD may therefore be a mismatch in those receivers.
	if strings.ContainsRune(subject, utf8.RuneError) {
		return invalidClaim("sub", "contains U+FFFD, which JSON decoders in the SDKs can decode differently")
	}
	return nil
}

// checkTokenID accepts a missing "jti" or a string. PyJWT rejects any other
// type, null included.
func checkTokenID(claims map[string]json.RawMessage) error {
	raw, ok := claims["jti"]
	if !ok {
		return nil
	}
	if _, ok := decodeString(raw); !ok {
		return invalidClaim("jti", "is a JSON %s, want a string", jsonType(raw))
	}
	return nil
}

// checkAudience accepts a missing "aud" or one of "", null and [].
// PyJWT rejects any truthy "aud" when the caller expects no audience, and
// golang-jwt rejects an "aud" that is neither a string nor an array of
// strings, so only these empty values pass both.
func checkAudience(claims map[string]json.RawMessage) error {
	raw, ok := claims["aud"]
	if !ok {
		return nil
	}

	var audience any
	if err := json.Unmarshal(raw, &audience); err != nil {
		return invalidClaim("aud", "is not valid JSON: %v", err)
	}
	switch value := audience.(type) {
	case nil:
		return nil
	case string:
		if value == "" {
			return nil
		}
	case []any:
		if len(value) == 0 {
			return nil
		}
	}
	return invalidClaim("aud", "is %s, want absent, \"\", null or []", raw)
}

// requiredString returns a claim that must be present as a JSON string.
func requiredString(claims map[string]json.RawMessage, name string) (string, error) {
	raw, err := requiredRaw(claims, name)
	if err != nil {
		return "", err
	}
	value, ok := decodeString(raw)
	if !ok {
		return "", invalidClaim(name, "is a JSON %s, want a string", jsonType(raw))
	}
	return value, nil
}

// requiredNumber returns a claim that must be present as a JSON number.
func requiredNumber(claims map[string]json.RawMessage, name string) (float64, error) {
	raw, err := requiredRaw(claims, name)
	if err != nil {
		return 0, err
	}
	return decodeNumber(raw, name)
}

// optionalNumber returns a claim that may be absent but, when present, must
// be a JSON number. jose and PyJWT reject a null value too.
func optionalNumber(claims map[string]json.RawMessage, name string) (value float64, present bool, err error) {
	raw, ok := claims[name]
	if !ok {
		return 0, false, nil
	}
	value, err = decodeNumber(raw, name)
	return value, true, err
}

// requiredRaw returns a claim that must be present and not null. PyJWT
// treats a null claim as missing.
func requiredRaw(claims map[string]json.RawMessage, name string) (json.RawMessage, error) {
	raw, ok := claims[name]
	if !ok {
		return nil, &ClaimError{Claim: name, Detail: "is missing", Err: ErrMissingClaim}
	}
	if jsonType(raw) == "null" {
		return nil, &ClaimError{Claim: name, Detail: "is null", Err: ErrMissingClaim}
	}
	return raw, nil
}

// decodeNumber parses a JSON number within ±maxNumericDate. A JSON string
// holding digits is rejected, because jose requires the number type.
func decodeNumber(raw json.RawMessage, name string) (float64, error) {
	if jsonType(raw) != "number" {
		return 0, invalidClaim(name, "is a JSON %s, want a number", jsonType(raw))
	}
	value, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.Abs(value) > maxNumericDate {
		return 0, invalidClaim(name, "is %s, want a number of seconds within ±%d", raw, int64(maxNumericDate))
	}
	return value, nil
}

// decodeString decodes raw when it is a JSON string.
func decodeString(raw json.RawMessage) (string, bool) {
	if jsonType(raw) != "string" {
		return "", false
	}
	var value string
	if err := json.Unmarshal(raw, &value); err != nil {
		return "", false
	}
	return value, true
}

// jsonType names the JSON type of a value that encoding/json has already
// validated, judging by its first byte.
func jsonType(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty value"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func invalidClaim(name, format string, args ...any) *ClaimError {
	return &ClaimError{Claim: name, Detail: fmt.Sprintf(format, args...), Err: ErrInvalidClaim}
}
