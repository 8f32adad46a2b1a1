package store

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// URLParts returns the host and path of a destination URL, which message
// filters match on. An unparsable URL yields empty parts.
func URLParts(raw string) (host, path string) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", ""
	}
	return u.Host, u.Path
}

// Millis converts t to Unix milliseconds, the time format of every store.
// The zero time maps to 0.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis converts Unix milliseconds to a UTC time; 0 maps to the zero
// time.
func FromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// MarshalHeader encodes h as a JSON object of name to values. A nil header
// encodes as {}.
func MarshalHeader(h http.Header) string {
	if h == nil {
		return "{}"
	}
	b, err := json.Marshal(h)
	if err != nil {
		// A map of strings to string slices always marshals.
		panic(fmt.Sprintf("marshal header: %v", err))
	}
	return string(b)
}

// UnmarshalHeader decodes a header stored by MarshalHeader.
func UnmarshalHeader(s string) (http.Header, error) {
	h := http.Header{}
	if s == "" {
		return h, nil
	}
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("decode stored header: %w", err)
	}
	return h, nil
}

// MarshalStrings encodes a string list as a JSON array.
func MarshalStrings(list []string) string {
	if list == nil {
		return "[]"
	}
	b, err := json.Marshal(list)
	if err != nil {
		panic(fmt.Sprintf("marshal strings: %v", err))
	}
	return string(b)
}

// UnmarshalStrings decodes a list stored by MarshalStrings.
func UnmarshalStrings(s string) ([]string, error) {
	var list []string
	if s == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, fmt.Errorf("decode stored list: %w", err)
	}
	return list, nil
}
