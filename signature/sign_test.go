package signature

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const emptyBodyHash = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="

// decodeSegment decodes one segment of token as JSON, keeping numbers as
// json.Number so their literal form can be checked.
func decodeSegment(t *testing.T, token string, index int) map[string]any {
	t.Helper()
	segments := strings.Split(token, ".")
	if len(segments) != 3 {
		t.Fatalf("token has %d segments, want 3", len(segments))
	}
	data, err := base64.RawURLEncoding.DecodeString(segments[index])
	if err != nil {
		t.Fatalf("decode segment %d: %v", index, err)
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var object map[string]any
	if err := decoder.Decode(&object); err != nil {
		t.Fatalf("decode segment %d JSON %s: %v", index, data, err)
	}
	return object
}

func TestBodyHash(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"nil", nil, emptyBodyHash},
		{"empty", []byte{}, emptyBodyHash},
		{"abc", []byte("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := BodyHash(tc.body); got != tc.want {
				t.Errorf("BodyHash(%q) = %q, want %q", tc.body, got, tc.want)
			}
		})
	}
}

func TestSignHeader(t *testing.T) {
	token, err := Sign(testKey, testURL, []byte("hello"), testTime)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	data, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatalf("decode header: %v", err)
	}
	if string(data) != `{"alg":"HS256","typ":"JWT"}` {
		t.Errorf("header = %s, want {\"alg\":\"HS256\",\"typ\":\"JWT\"}", data)
	}
}

func TestSignClaimTypes(t *testing.T) {
	body := []byte(`{"hello":"world"}`)
	token, err := Sign(testKey, testURL, body, testTime)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	claims := decodeSegment(t, token, 1)

	integers := map[string]string{
		"iat": "1700000000",
		"exp": "1700000300",
		"nbf": "0",
	}
	for name, want := range integers {
		number, ok := claims[name].(json.Number)
		if !ok {
			t.Errorf("%s = %#v, want a JSON number", name, claims[name])
			continue
		}
		if strings.ContainsAny(number.String(), ".eE") {
			t.Errorf("%s = %s, want an integer literal", name, number)
		}
		if number.String() != want {
			t.Errorf("%s = %s, want %s", name, number, want)
		}
	}

	textClaims := map[string]string{
		"iss":  "Upstash",
		"sub":  testURL,
		"body": BodyHash(body),
	}
	for name, want := range textClaims {
		value, ok := claims[name].(string)
		if !ok {
			t.Errorf("%s = %#v, want a JSON string", name, claims[name])
			continue
		}
		if value != want {
			t.Errorf("%s = %q, want %q", name, value, want)
		}
	}

	jti, ok := claims["jti"].(string)
	if !ok {
		t.Errorf("jti = %#v, want a JSON string", claims["jti"])
	}
	if !strings.HasPrefix(jti, "jwt_") {
		t.Errorf("jti = %q, want prefix jwt_", jti)
	}
	if strings.Trim(strings.TrimPrefix(jti, "jwt_"), base58Alphabet) != "" {
		t.Errorf("jti = %q, want base58 after the prefix", jti)
	}

	if _, ok := claims["aud"]; ok {
		t.Errorf("aud is present, want no aud claim")
	}
	if len(claims) != 7 {
		t.Errorf("payload has %d claims, want 7: %v", len(claims), claims)
	}
}

func TestSignHMACKeyIncludesPrefix(t *testing.T) {
	token, err := Sign(testKey, testURL, nil, testTime)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	segments := strings.Split(token, ".")

	if strings.Contains(segments[2], "=") {
		t.Errorf("signature segment %q contains padding", segments[2])
	}
	got, err := base64.RawURLEncoding.DecodeString(segments[2])
	if err != nil {
		t.Fatalf("decode signature: %v", err)
	}
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write([]byte(segments[0] + "." + segments[1]))
	if !hmac.Equal(got, mac.Sum(nil)) {
		t.Errorf("signature is not HMAC-SHA256 keyed with the whole key string")
	}
}

func TestSignUniqueTokenID(t *testing.T) {
	first, err := Sign(testKey, testURL, nil, testTime)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	second, err := Sign(testKey, testURL, nil, testTime)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	firstID := decodeSegment(t, first, 1)["jti"]
	secondID := decodeSegment(t, second, 1)["jti"]
	if firstID == secondID {
		t.Errorf("two tokens share jti %v", firstID)
	}
}

func TestSignRejectsInput(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		url     string
		wantErr error
	}{
		{"empty key", "", testURL, ErrMissingKey},
		{"invalid UTF-8 url", testKey, "https://example.com/\xff", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token, err := Sign(tc.key, tc.url, nil, testTime)
			if err == nil {
				t.Fatalf("Sign returned %q, want an error", token)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestSignerUsesNow(t *testing.T) {
	signer := &Signer{Key: testKey, Now: func() time.Time { return testTime }}
	token, err := signer.Sign(testURL, []byte("x"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	iat := decodeSegment(t, token, 1)["iat"]
	if iat != json.Number("1700000000") {
		t.Errorf("iat = %v, want 1700000000", iat)
	}
	verifier := &Verifier{CurrentKey: testKey, Now: func() time.Time { return testTime }}
	if err := verifier.Verify(token, testURL, []byte("x")); err != nil {
		t.Errorf("Verify: %v", err)
	}
}
