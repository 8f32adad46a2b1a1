package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Keys made by NewKey for these tests only.
const (
	testKey  = "sig_5PexUqicSQYJqDurbpMksU3b8Mnn"
	nextKey  = "sig_DN6Y7vHJvexiCJ4di4hNY8wqhCRm"
	wrongKey = "sig_9ZCbBMifBLgqCJV4cjCF8WmMJgwM"

	// testURL contains characters that encoding/json escapes, to check that
	// "sub" survives the round trip byte for byte.
	testURL = "https://example.com/hook?a=1&b=<2>"
)

var (
	testTime = time.Unix(1_700_000_000, 0)
	testBody = []byte(`{"hello":"world"}`)
)

func clockAt(now time.Time) func() time.Time {
	return func() time.Time { return now }
}

// validClaims returns the claims Sign would produce for testBody at testTime.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":  "Upstash",
		"sub":  testURL,
		"iat":  int64(1_700_000_000),
		"exp":  int64(1_700_000_300),
		"nbf":  0,
		"jti":  "jwt_test",
		"body": BodyHash(testBody),
	}
}

// craft signs validClaims after change edits them. A json.RawMessage value
// is written into the payload unchanged.
func craft(change func(jwt.MapClaims)) string {
	claims := validClaims()
	change(claims)
	return craftWith(jwt.SigningMethodHS256, []byte(testKey), claims, nil)
}

func craftWith(method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	token := jwt.NewWithClaims(method, claims)
	for name, value := range header {
		token.Header[name] = value
	}
	signed, err := token.SignedString(key)
	if err != nil {
		panic(err)
	}
	return signed
}

// rawToken signs arbitrary header and payload bytes with testKey.
func rawToken(header, payload string) string {
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func mustSign(key string, body []byte) string {
	token, err := Sign(key, testURL, body, testTime)
	if err != nil {
		panic(err)
	}
	return token
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

func TestVerify(t *testing.T) {
	validPayload := `{"iss":"Upstash","sub":"` + testURL + `","iat":1700000000,"exp":1700000300,"nbf":0,"body":"` + BodyHash(testBody) + `"}`
	spacedPayload := "{ \"iss\" : \"Upstash\" ,\n \"sub\" : \"" + testURL + "\" , \"exp\" : 1700000300 , \"nbf\" : 0 , \"body\" : \"" + BodyHash(testBody) + "\" }"

	tests := []struct {
		name      string
		token     string
		url       string
		body      []byte
		verifier  Verifier
		wantErr   error
		wantClaim string
	}{
		{name: "signed token", token: mustSign(testKey, testBody), url: testURL, body: testBody},
		{name: "empty url skips sub", token: mustSign(testKey, testBody), url: "", body: testBody},
		{name: "empty body", token: mustSign(testKey, nil), url: testURL, body: []byte{}},
		{name: "whitespace in JSON", token: rawToken(hs256Header, spacedPayload), url: testURL, body: testBody},
		{name: "unpadded body hash", token: craft(func(c jwt.MapClaims) { c["body"] = strings.TrimRight(BodyHash(testBody), "=") }), url: testURL, body: testBody},
		{name: "extra body hash padding", token: craft(func(c jwt.MapClaims) { c["body"] = BodyHash(testBody) + "==" }), url: testURL, body: testBody},

		{name: "next key after rotation", token: mustSign(nextKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, NextKey: nextKey}},
		{name: "current key during rotation", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, NextKey: nextKey}},
		{name: "only next key set", token: mustSign(nextKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{NextKey: nextKey}},
		{name: "wrong key", token: mustSign(wrongKey, testBody), url: testURL, body: testBody,
			wantErr: ErrInvalidSignature},
		{name: "wrong key with rotation", token: mustSign(wrongKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, NextKey: nextKey}, wantErr: ErrInvalidSignature},
		{name: "key without prefix", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: strings.TrimPrefix(testKey, "sig_")}, wantErr: ErrInvalidSignature},
		{name: "no keys", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{Now: clockAt(testTime)}, wantErr: ErrMissingKey},

		{name: "tampered body", token: mustSign(testKey, testBody), url: testURL, body: []byte(`{"hello":"World"}`),
			wantErr: ErrBodyHashMismatch, wantClaim: "body"},
		{name: "leading body hash padding", token: craft(func(c jwt.MapClaims) { c["body"] = "=" + BodyHash(testBody) }), url: testURL, body: testBody,
			wantErr: ErrBodyHashMismatch, wantClaim: "body"},
		{name: "wrong url", token: mustSign(testKey, testBody), url: "https://example.com/other", body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "sub"},
		{name: "url with trailing slash", token: mustSign(testKey, testBody), url: testURL + "/", body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "sub"},
		{name: "wrong issuer", token: craft(func(c jwt.MapClaims) { c["iss"] = "upstash" }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "iss"},

		{name: "expired at exp", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Now: clockAt(testTime.Add(300 * time.Second))}, wantErr: ErrTokenExpired, wantClaim: "exp"},
		{name: "valid before exp", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Now: clockAt(testTime.Add(299 * time.Second))}},
		{name: "expired within tolerance", token: mustSign(testKey, testBody), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Tolerance: 15 * time.Second, Now: clockAt(testTime.Add(310 * time.Second))}},
		{name: "fractional exp rounds down", token: craft(func(c jwt.MapClaims) { c["exp"] = 1_700_000_000.5 }), url: testURL, body: testBody,
			wantErr: ErrTokenExpired, wantClaim: "exp"},
		{name: "future iat", token: craft(func(c jwt.MapClaims) { c["iat"] = int64(1_700_000_060) }), url: testURL, body: testBody,
			wantErr: ErrTokenNotValidYet, wantClaim: "iat"},
		{name: "future iat within tolerance", token: craft(func(c jwt.MapClaims) { c["iat"] = int64(1_700_000_060) }), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Tolerance: time.Minute, Now: clockAt(testTime)}},
		{name: "fractional iat rounds up", token: craft(func(c jwt.MapClaims) { c["iat"] = 1_700_000_000.25 }), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Tolerance: 500 * time.Millisecond, Now: clockAt(testTime)}, wantErr: ErrTokenNotValidYet, wantClaim: "iat"},
		{name: "fractional nbf rounds up", token: craft(func(c jwt.MapClaims) { c["nbf"] = 1_700_000_000.25 }), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Tolerance: 500 * time.Millisecond, Now: clockAt(testTime)}, wantErr: ErrTokenNotValidYet, wantClaim: "nbf"},
		{name: "nbf against whole-second now", token: craft(func(c jwt.MapClaims) { c["nbf"] = int64(1_700_000_001) }), url: testURL, body: testBody,
			verifier: Verifier{CurrentKey: testKey, Tolerance: 500 * time.Millisecond, Now: clockAt(testTime.Add(999 * time.Millisecond))}, wantErr: ErrTokenNotValidYet, wantClaim: "nbf"},
		{name: "future nbf", token: craft(func(c jwt.MapClaims) { c["nbf"] = int64(1_700_000_001) }), url: testURL, body: testBody,
			wantErr: ErrTokenNotValidYet, wantClaim: "nbf"},
		{name: "nbf equal to now", token: craft(func(c jwt.MapClaims) { c["nbf"] = int64(1_700_000_000) }), url: testURL, body: testBody},
		{name: "missing iat", token: craft(func(c jwt.MapClaims) { delete(c, "iat") }), url: testURL, body: testBody},

		{name: "empty aud", token: craft(func(c jwt.MapClaims) { c["aud"] = "" }), url: testURL, body: testBody},
		{name: "null aud", token: craft(func(c jwt.MapClaims) { c["aud"] = nil }), url: testURL, body: testBody},
		{name: "empty aud array", token: craft(func(c jwt.MapClaims) { c["aud"] = []string{} }), url: testURL, body: testBody},
		{name: "non-empty aud", token: craft(func(c jwt.MapClaims) { c["aud"] = "https://example.com" }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "aud"},
		{name: "aud array with empty string", token: craft(func(c jwt.MapClaims) { c["aud"] = []string{""} }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "aud"},
		{name: "numeric aud", token: craft(func(c jwt.MapClaims) { c["aud"] = 0 }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "aud"},

		{name: "numeric jti", token: craft(func(c jwt.MapClaims) { c["jti"] = 12345 }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "jti"},
		{name: "null jti", token: craft(func(c jwt.MapClaims) { c["jti"] = nil }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "jti"},
		{name: "missing jti", token: craft(func(c jwt.MapClaims) { delete(c, "jti") }), url: testURL, body: testBody},

		{name: "missing nbf", token: craft(func(c jwt.MapClaims) { delete(c, "nbf") }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "nbf"},
		{name: "missing sub", token: craft(func(c jwt.MapClaims) { delete(c, "sub") }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "sub"},
		{name: "missing sub without url", token: craft(func(c jwt.MapClaims) { delete(c, "sub") }), url: "", body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "sub"},
		{name: "missing exp", token: craft(func(c jwt.MapClaims) { delete(c, "exp") }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "exp"},
		{name: "missing iss", token: craft(func(c jwt.MapClaims) { delete(c, "iss") }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "iss"},
		{name: "missing body", token: craft(func(c jwt.MapClaims) { delete(c, "body") }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "body"},
		{name: "null nbf", token: craft(func(c jwt.MapClaims) { c["nbf"] = nil }), url: testURL, body: testBody,
			wantErr: ErrMissingClaim, wantClaim: "nbf"},
		{name: "null iat", token: craft(func(c jwt.MapClaims) { c["iat"] = nil }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "iat"},
		{name: "string exp", token: craft(func(c jwt.MapClaims) { c["exp"] = "1700000300" }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "exp"},
		{name: "boolean nbf", token: craft(func(c jwt.MapClaims) { c["nbf"] = false }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "nbf"},
		{name: "huge exp", token: craft(func(c jwt.MapClaims) { c["exp"] = json.RawMessage("1e300") }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "exp"},
		{name: "numeric sub", token: craft(func(c jwt.MapClaims) { c["sub"] = 1 }), url: "", body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "sub"},
		{name: "numeric body", token: craft(func(c jwt.MapClaims) { c["body"] = 1 }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "body"},
		{name: "claim name in other case", token: craft(func(c jwt.MapClaims) { c["SUB"] = "https://example.com/other" }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "SUB"},
		{name: "claim name with long s", token: craft(func(c jwt.MapClaims) { c["\u017fub"] = "https://example.com/other" }), url: testURL, body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "\u017fub"},
		{name: "unpaired surrogate sub", token: craft(func(c jwt.MapClaims) { c["sub"] = json.RawMessage(`"\ud800"`) }), url: "\uFFFD", body: testBody,
			wantErr: ErrInvalidClaim, wantClaim: "sub"},

		{name: "HS512", token: craftWith(jwt.SigningMethodHS512, []byte(testKey), validClaims(), nil), url: testURL, body: testBody,
			wantErr: ErrUnsupportedAlgorithm},
		{name: "HS384", token: craftWith(jwt.SigningMethodHS384, []byte(testKey), validClaims(), nil), url: testURL, body: testBody,
			wantErr: ErrUnsupportedAlgorithm},
		{name: "alg none", token: craftWith(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims(), nil), url: testURL, body: testBody,
			wantErr: ErrUnsupportedAlgorithm},
		{name: "lower-case alg", token: rawToken(`{"alg":"hs256","typ":"JWT"}`, validPayload), url: testURL, body: testBody,
			wantErr: ErrUnsupportedAlgorithm},
		{name: "missing alg", token: rawToken(`{"typ":"JWT"}`, validPayload), url: testURL, body: testBody,
			wantErr: ErrUnsupportedAlgorithm},
		{name: "crit header", token: craftWith(jwt.SigningMethodHS256, []byte(testKey), validClaims(), map[string]any{"crit": []string{"b64"}, "b64": true}), url: testURL, body: testBody,
			wantErr: ErrUnsupportedHeader},
		{name: "b64 false header", token: craftWith(jwt.SigningMethodHS256, []byte(testKey), validClaims(), map[string]any{"b64": false}), url: testURL, body: testBody,
			wantErr: ErrUnsupportedHeader},
		{name: "numeric kid header", token: craftWith(jwt.SigningMethodHS256, []byte(testKey), validClaims(), map[string]any{"kid": 1}), url: testURL, body: testBody,
			wantErr: ErrUnsupportedHeader},
		{name: "string kid header", token: craftWith(jwt.SigningMethodHS256, []byte(testKey), validClaims(), map[string]any{"kid": "a"}), url: testURL, body: testBody},

		{name: "empty token", token: "", url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "two segments", token: "eyJhbGciOiJIUzI1NiJ9.e30", url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "four segments", token: mustSign(testKey, testBody) + ".x", url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "padded signature", token: mustSign(testKey, testBody) + "=", url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "newline in token", token: strings.Replace(mustSign(testKey, testBody), ".", ".\n", 1), url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "trailing payload data", token: rawToken(hs256Header, validPayload+"{}"), url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "invalid UTF-8 payload", token: rawToken(hs256Header, strings.Replace(validPayload, "Upstash", "Upstash\xff", 1)), url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "array payload", token: rawToken(hs256Header, "[]"), url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "null payload", token: rawToken(hs256Header, "null"), url: testURL, body: testBody, wantErr: ErrMalformedToken},
		{name: "array header", token: rawToken(`["HS256"]`, validPayload), url: testURL, body: testBody, wantErr: ErrMalformedToken},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verifier := tc.verifier
			if verifier.CurrentKey == "" && verifier.NextKey == "" && verifier.Now == nil {
				verifier.CurrentKey = testKey
			}
			if verifier.Now == nil {
				verifier.Now = clockAt(testTime)
			}

			err := verifier.Verify(tc.token, tc.url, tc.body)

			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantClaim != "" {
				var claimErr *ClaimError
				if !errors.As(err, &claimErr) {
					t.Fatalf("err = %v (%T), want *ClaimError", err, err)
				}
				if claimErr.Claim != tc.wantClaim {
					t.Errorf("ClaimError.Claim = %q, want %q", claimErr.Claim, tc.wantClaim)
				}
			}
		})
	}
}

func TestVerifyReturnsNextKeyError(t *testing.T) {
	// With the current key the token fails only on "sub". With the next key
	// the signature fails, and that second error is the one returned.
	verifier := &Verifier{CurrentKey: testKey, NextKey: nextKey, Now: clockAt(testTime)}
	err := verifier.Verify(mustSign(testKey, testBody), "https://example.com/other", testBody)

	if !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("err = %v, want ErrInvalidSignature", err)
	}
	var claimErr *ClaimError
	if errors.As(err, &claimErr) {
		t.Errorf("err = %v, want the next-key error, not the current-key ClaimError", err)
	}
}

func TestVerifyErrorMessages(t *testing.T) {
	verifier := &Verifier{CurrentKey: testKey, Now: clockAt(testTime)}
	token := mustSign(testKey, testBody)

	tests := []struct {
		name       string
		url        string
		body       []byte
		wantPrefix string
	}{
		{"body hash", testURL, []byte("other"), `signature: body hash mismatch: claim "body" is "` + BodyHash(testBody) + `", want "` + BodyHash([]byte("other")) + `"`},
		{"subject", "https://example.com/other", testBody, `signature: claim "sub" is "` + testURL + `", want "https://example.com/other"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verifier.Verify(token, tc.url, tc.body)
			if err == nil {
				t.Fatal("Verify returned nil, want an error")
			}
			if !strings.HasPrefix(err.Error(), tc.wantPrefix) {
				t.Errorf("err = %q, want prefix %q", err, tc.wantPrefix)
			}
		})
	}
}

func TestVerifyExpiredMessage(t *testing.T) {
	verifier := &Verifier{CurrentKey: testKey, Now: clockAt(testTime.Add(time.Hour))}
	err := verifier.Verify(mustSign(testKey, testBody), testURL, testBody)

	want := `signature: token is expired: claim "exp" is 1700000300 (2023-11-14T22:18:20Z), want after 2023-11-14T23:13:20Z minus tolerance 0s`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

// documentedErrors lists the sentinels that Verify documents.
var documentedErrors = []error{
	ErrMissingKey, ErrMalformedToken, ErrUnsupportedAlgorithm, ErrUnsupportedHeader,
	ErrInvalidSignature, ErrMissingClaim, ErrInvalidClaim, ErrTokenExpired,
	ErrTokenNotValidYet, ErrBodyHashMismatch,
}

func FuzzVerify(f *testing.F) {
	f.Add(mustSign(testKey, testBody))
	f.Add(mustSign(testKey, nil))
	f.Add(craft(func(c jwt.MapClaims) { c["aud"] = []any{"", 1, nil} }))
	f.Add(rawToken(hs256Header, `{"exp":-1e308,"nbf":"0","sub":{"a":[1,2]}}`))
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("\x00\xff.\u2028.=")

	verifier := &Verifier{CurrentKey: testKey, NextKey: nextKey, Now: clockAt(testTime)}
	f.Fuzz(func(t *testing.T, token string) {
		err := verifier.Verify(token, testURL, testBody)
		if err == nil {
			return
		}
		for _, sentinel := range documentedErrors {
			if errors.Is(err, sentinel) {
				return
			}
		}
		t.Errorf("Verify(%q) = %v, which wraps no documented error", token, err)
	})
}
