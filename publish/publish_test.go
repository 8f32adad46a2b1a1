package publish

import (
	"net/http"
	"testing"
)

func TestForwardedHeadersPrefixWins(t *testing.T) {
	h := http.Header{
		"Content-Type":                 {"text/plain"},
		"Upstash-Forward-Content-Type": {"application/json"},
		"X-Trace":                      {"plain"},
		"Upstash-Forward-X-Trace":      {"forwarded"},
	}

	// Map order is random, so one call could pass by chance.
	for range 50 {
		got := ForwardedHeaders(h, true)
		if v := got.Get("Content-Type"); v != "application/json" {
			t.Fatalf("Content-Type = %q, want %q", v, "application/json")
		}
		if v := got.Get("X-Trace"); v != "forwarded" {
			t.Fatalf("X-Trace = %q, want %q", v, "forwarded")
		}
	}
}
