package httpapi

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
)

const publishPrefix = "/v2/publish/"

func TestParseDestination(t *testing.T) {
	tests := []struct {
		name       string
		rawURI     string
		wantURL    string
		wantConfig url.Values
	}{
		{
			name:    "https scheme keeps double slash",
			rawURI:  "/v2/publish/https://example.com/hook",
			wantURL: "https://example.com/hook",
		},
		{
			name:    "http scheme with port",
			rawURI:  "/v2/publish/http://example.com:8080/hook",
			wantURL: "http://example.com:8080/hook",
		},
		{
			name:    "IPv6 host",
			rawURI:  "/v2/publish/http://[::1]:8080/hook",
			wantURL: "http://[::1]:8080/hook",
		},
		{
			name:    "uppercase scheme kept as sent",
			rawURI:  "/v2/publish/HTTPS://Example.com/Hook",
			wantURL: "HTTPS://Example.com/Hook",
		},
		{
			name:    "encoded path kept as sent",
			rawURI:  "/v2/publish/https://example.com/a%20b%2Fc%3Fd/%C3%A9",
			wantURL: "https://example.com/a%20b%2Fc%3Fd/%C3%A9",
		},
		{
			name:    "path with double slash kept",
			rawURI:  "/v2/publish/https://example.com//a//b/",
			wantURL: "https://example.com//a//b/",
		},
		{
			name:    "query order and encoding kept",
			rawURI:  "/v2/publish/https://example.com/hook?b=2&a=1&c=%2F+x&a=0&flag",
			wantURL: "https://example.com/hook?b=2&a=1&c=%2F+x&a=0&flag",
		},
		{
			name:    "empty query pairs kept",
			rawURI:  "/v2/publish/https://example.com/hook?a=1&&b=2",
			wantURL: "https://example.com/hook?a=1&&b=2",
		},
		{
			name:    "qstash_token removed",
			rawURI:  "/v2/publish/https://example.com/hook?a=1&qstash_token=secret&b=2",
			wantURL: "https://example.com/hook?a=1&b=2",
		},
		{
			name:    "qstash_token in any case removed",
			rawURI:  "/v2/publish/https://example.com/hook?QStash_Token=secret&a=1",
			wantURL: "https://example.com/hook?a=1",
		},
		{
			name:    "encoded qstash_token key removed",
			rawURI:  "/v2/publish/https://example.com/hook?qstash%5Ftoken=secret&a=1",
			wantURL: "https://example.com/hook?a=1",
		},
		{
			name:    "only qstash_token leaves no question mark",
			rawURI:  "/v2/publish/https://example.com/hook?qstash_token=secret",
			wantURL: "https://example.com/hook",
		},
		{
			name:    "upstash parameters moved to config",
			rawURI:  "/v2/publish/https://example.com/hook?a=1&Upstash-Delay=10s&b=2&upstash-retries=3",
			wantURL: "https://example.com/hook?a=1&b=2",
			wantConfig: url.Values{
				"Upstash-Delay":   {"10s"},
				"upstash-retries": {"3"},
			},
		},
		{
			name:       "upstash parameter value decoded",
			rawURI:     "/v2/publish/https://example.com/hook?upstash-label=a%2Cb+c",
			wantURL:    "https://example.com/hook",
			wantConfig: url.Values{"upstash-label": {"a,b c"}},
		},
		{
			name:       "upstash parameter with invalid escape kept raw",
			rawURI:     "/v2/publish/https://example.com/hook?upstash-label=a%zz",
			wantURL:    "https://example.com/hook",
			wantConfig: url.Values{"upstash-label": {"a%zz"}},
		},
		{
			name:       "repeated upstash parameter keeps every value",
			rawURI:     "/v2/publish/https://example.com/hook?upstash-label=a&upstash-label=b",
			wantURL:    "https://example.com/hook",
			wantConfig: url.Values{"upstash-label": {"a", "b"}},
		},
		{
			name:    "key with invalid escape kept",
			rawURI:  "/v2/publish/https://example.com/hook?a%zz=1",
			wantURL: "https://example.com/hook?a%zz=1",
		},
		{
			name:    "encoded destination decoded",
			rawURI:  "/v2/publish/https%3A%2F%2Fexample.com%2Fa",
			wantURL: "https://example.com/a",
		},
		{
			name:    "lowercase encoded destination decoded",
			rawURI:  "/v2/publish/http%3a%2f%2fexample.com%2fa",
			wantURL: "http://example.com/a",
		},
		{
			name:    "encoded destination decoded once",
			rawURI:  "/v2/publish/https%3A%2F%2Fexample.com%2Fa%2520b",
			wantURL: "https://example.com/a%20b",
		},
		{
			name:    "own query and request query joined",
			rawURI:  "/v2/publish/https%3A%2F%2Fexample.com%2Fa%3Fx%3D1?y=2",
			wantURL: "https://example.com/a?x=1&y=2",
		},
		{
			name:       "own query kept and request config split",
			rawURI:     "/v2/publish/https%3A%2F%2Fexample.com%2Fa%3Fx%3D1?y=2&upstash-delay=5s&qstash_token=t",
			wantURL:    "https://example.com/a?x=1&y=2",
			wantConfig: url.Values{"upstash-delay": {"5s"}},
		},
		{
			name:    "own empty query and request query joined",
			rawURI:  "/v2/publish/https%3A%2F%2Fexample.com%2Fa%3F?y=2",
			wantURL: "https://example.com/a?y=2",
		},
		{
			name:    "request query placed before fragment",
			rawURI:  "/v2/publish/https%3A%2F%2Fexample.com%2Fa%23top?y=2",
			wantURL: "https://example.com/a?y=2#top",
		},
		{
			name:    "prefix matched in any case",
			rawURI:  "/v2/Publish/https://example.com/hook",
			wantURL: "https://example.com/hook",
		},
		{
			name:    "prefix in uppercase",
			rawURI:  "/V2/PUBLISH/https://example.com/hook?a=1",
			wantURL: "https://example.com/hook?a=1",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDestination(tt.rawURI, publishPrefix)
			if err != nil {
				t.Fatalf("parseDestination(%q) error = %v, want nil", tt.rawURI, err)
			}
			if got.URL != tt.wantURL {
				t.Errorf("URL = %q, want %q", got.URL, tt.wantURL)
			}
			if len(got.Config) != len(tt.wantConfig) {
				t.Errorf("len(Config) = %d, want %d (Config = %v)", len(got.Config), len(tt.wantConfig), got.Config)
			}
			for key, want := range tt.wantConfig {
				if values := got.Config[key]; !reflect.DeepEqual(values, want) {
					t.Errorf("Config[%q] = %q, want %q", key, values, want)
				}
			}
		})
	}
}

func TestParseDestinationErrors(t *testing.T) {
	longGroup := strings.Repeat("g", 250)

	tests := []struct {
		name        string
		rawURI      string
		wantCode    string
		wantMessage string
	}{
		{
			name:        "empty destination",
			rawURI:      "/v2/publish/",
			wantCode:    ferry.EINVALID,
			wantMessage: "a non-empty destination must be provided: publish to /v2/publish/https://your.app/path",
		},
		{
			name:        "empty destination with query",
			rawURI:      "/v2/publish/?a=1&qstash_token=t",
			wantCode:    ferry.EINVALID,
			wantMessage: "a non-empty destination must be provided: publish to /v2/publish/https://your.app/path",
		},
		{
			name:        "path without trailing slash",
			rawURI:      "/v2/publish",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid request path "/v2/publish": expected /v2/publish/{destination}`,
		},
		{
			name:        "other route",
			rawURI:      "/v2/messages/msg_1",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid request path "/v2/messages/msg_1": expected /v2/publish/{destination}`,
		},
		{
			name:        "ftp scheme",
			rawURI:      "/v2/publish/ftp://x",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "ftp://x": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "api destination",
			rawURI:      "/v2/publish/api/llm",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "api/llm": api destinations are not supported; use an http:// or https:// URL`,
		},
		{
			name:        "url group name",
			rawURI:      "/v2/publish/mygroup",
			wantCode:    ferry.ENOTFOUND,
			wantMessage: "topic mygroup not found: add endpoints with POST /v2/topics/{name}/endpoints, or use an http:// or https:// URL",
		},
		{
			name:        "url group name truncated",
			rawURI:      "/v2/publish/" + longGroup,
			wantCode:    ferry.ENOTFOUND,
			wantMessage: "topic " + longGroup[:200] + "... not found: add endpoints with POST /v2/topics/{name}/endpoints, or use an http:// or https:// URL",
		},
		{
			name:        "host without scheme",
			rawURI:      "/v2/publish/example.com/hook",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "example.com/hook": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "scheme with one slash",
			rawURI:      "/v2/publish/https:/example.com/hook",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https:/example.com/hook": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "http without host",
			rawURI:      "/v2/publish/http://",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "http://": the URL has no host; use a form such as https://your.app/path`,
		},
		{
			name:        "https with port only",
			rawURI:      "/v2/publish/https://:80/x",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https://:80/x": the URL has no host; use a form such as https://your.app/path`,
		},
		{
			name:        "https with empty authority",
			rawURI:      "/v2/publish/https:///x",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https:///x": the URL has no host; use a form such as https://your.app/path`,
		},
		{
			name:        "garbage",
			rawURI:      "/v2/publish/%%%",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "%%%": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "invalid port",
			rawURI:      "/v2/publish/http://example.com:abc/",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "http://example.com:abc/": invalid port ":abc" after host`,
		},
		{
			name:        "invalid escape in path",
			rawURI:      "/v2/publish/https://example.com/%zz",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https://example.com/%zz": invalid URL escape "%zz"`,
		},
		{
			name:        "unclosed IPv6 host",
			rawURI:      "/v2/publish/http://[::1/x",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "http://[::1/x": missing ']' in host`,
		},
		{
			name:        "invalid escape in encoded destination",
			rawURI:      "/v2/publish/https%3A%2F%2Fexample.com%zz",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https%3A%2F%2Fexample.com%zz": bad percent-encoding: invalid URL escape "%zz"`,
		},
		{
			name:        "control character in encoded destination",
			rawURI:      "/v2/publish/https%3A%2F%2Fexample.com%2F%0A",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https://example.com/\n": net/url: invalid control character in URL`,
		},
		{
			name:        "encoded destination without host",
			rawURI:      "/v2/publish/https%3A%2F%2F%2Fx",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "https:///x": the URL has no host; use a form such as https://your.app/path`,
		},
		{
			name:        "long invalid port truncated",
			rawURI:      "/v2/publish/http://example.com:" + strings.Repeat("9", 300) + "x/",
			wantCode:    ferry.EINVALID,
			wantMessage: `invalid destination "http://example.com:` + strings.Repeat("9", 181) + `...": invalid port ":` + strings.Repeat("9", 185) + `...`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDestination(tt.rawURI, publishPrefix)
			if err == nil {
				t.Fatalf("parseDestination(%q) = %+v, want an error", tt.rawURI, got)
			}
			if code := ferry.ErrorCode(err); code != tt.wantCode {
				t.Errorf("error code = %q, want %q", code, tt.wantCode)
			}
			if message := ferry.ErrorMessage(err); message != tt.wantMessage {
				t.Errorf("error message = %q, want %q", message, tt.wantMessage)
			}
		})
	}
}

func TestAppendQuery(t *testing.T) {
	tests := []struct {
		name   string
		rawURL string
		query  string
		want   string
	}{
		{name: "nothing kept", rawURL: "https://example.com/a?x=1", query: "", want: "https://example.com/a?x=1"},
		{name: "no query yet", rawURL: "https://example.com/a", query: "y=2", want: "https://example.com/a?y=2"},
		{name: "existing query", rawURL: "https://example.com/a?x=1", query: "y=2", want: "https://example.com/a?x=1&y=2"},
		{name: "trailing question mark", rawURL: "https://example.com/a?", query: "y=2", want: "https://example.com/a?y=2"},
		{name: "trailing ampersand", rawURL: "https://example.com/a?x=1&", query: "y=2", want: "https://example.com/a?x=1&y=2"},
		{name: "fragment", rawURL: "https://example.com/a#f", query: "y=2", want: "https://example.com/a?y=2#f"},
		{name: "query and fragment", rawURL: "https://example.com/a?x=1#f?g", query: "y=2", want: "https://example.com/a?x=1&y=2#f?g"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appendQuery(tt.rawURL, tt.query); got != tt.want {
				t.Errorf("appendQuery(%q, %q) = %q, want %q", tt.rawURL, tt.query, got, tt.want)
			}
		})
	}
}

func FuzzParseDestination(f *testing.F) {
	seeds := []string{
		"/v2/publish/https://example.com/hook",
		"/v2/publish/http://example.com:8080/a/b?x=1&y=2",
		"/v2/publish/HTTPS://EXAMPLE.COM",
		"/v2/publish/http://[::1]:8080/x",
		"/v2/publish/https://user:pass@example.com/x",
		"/v2/publish/https://example.com/a%20b%2Fc?d=%2F+e",
		"/v2/publish/https://example.com/hook?qstash_token=secret",
		"/v2/publish/https://example.com/hook?a=1&QSTASH_TOKEN=x&upstash-delay=5s&b",
		"/v2/publish/https://example.com/hook?qstash%5Ftoken=x",
		"/v2/publish/https://example.com/hook?upstash-retries=3&Upstash-Label=a%2Cb",
		"/v2/publish/https%3A%2F%2Fexample.com%2Fa",
		"/v2/publish/https%3A%2F%2Fexample.com%2Fa%3Fx%3D1?y=2",
		"/v2/publish/https%3A%2F%2Fexample.com%2Fa%23f?y=2",
		"/v2/publish/https%3a%2f%2fexample.com%2fa%3f?y=2&qstash_token=z",
		"/v2/publish/https%3A%2F%2Fexample.com%zz",
		"/v2/publish/https%3A%2F%2F%2Fx",
		"/v2/publish/https%3A%2F%2Fexample.com%2F%0A",
		"/v2/Publish/https://example.com/hook",
		"/v2/publish/",
		"/v2/publish",
		"/v2/publish/?a=1",
		"/v2/publish/ftp://x",
		"/v2/publish/api/llm",
		"/v2/publish/mygroup",
		"/v2/publish/example.com/hook",
		"/v2/publish/http://",
		"/v2/publish/https://:80/x",
		"/v2/publish/https:///x",
		"/v2/publish/http://example.com:abc/",
		"/v2/publish/http://[::1/x",
		"/v2/publish/https://example.com/%zz",
		"/v2/publish/%%%",
		"/v2/publish/http://a b",
		"/v2/publish/https://example.com/#frag?x=1",
		"",
		"?",
		"/",
	}
	for _, seed := range seeds {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, rawURI string) {
		dest, err := parseDestination(rawURI, publishPrefix)
		if err != nil {
			if code := ferry.ErrorCode(err); code != ferry.EINVALID && code != ferry.ENOTFOUND {
				t.Errorf("error code = %q, want %q or %q", code, ferry.EINVALID, ferry.ENOTFOUND)
			}
			if message := ferry.ErrorMessage(err); message == "" || len(message) > 1000 {
				t.Errorf("error message has %d bytes, want 1 to 1000: %q", len(message), message)
			}
			return
		}

		lower := strings.ToLower(dest.URL)
		if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
			t.Errorf("URL = %q, want an http:// or https:// prefix", dest.URL)
		}
		u, err := url.Parse(dest.URL)
		if err != nil {
			t.Fatalf("url.Parse(%q) error = %v, want nil", dest.URL, err)
		}
		if u.Host == "" || u.Hostname() == "" {
			t.Errorf("url.Parse(%q) host = %q, want a non-empty host", dest.URL, u.Host)
		}

		// A percent-encoded destination may carry qstash_token or upstash-*
		// parameters in its own query, and those are delivered. The request
		// query must add none of them.
		destPart, _, _ := strings.Cut(rawURI, "?")
		destPart = destPart[len(publishPrefix):]
		ownQuery := ""
		if lowerPart := strings.ToLower(destPart); strings.HasPrefix(lowerPart, "http%3a") || strings.HasPrefix(lowerPart, "https%3a") {
			decoded, err := url.PathUnescape(destPart)
			if err != nil {
				t.Fatalf("url.PathUnescape(%q) error = %v, but parseDestination accepted it", destPart, err)
			}
			base, _, _ := strings.Cut(decoded, "#")
			_, ownQuery, _ = strings.Cut(base, "?")
		}
		if got, want := countFerryParameters(u.RawQuery), countFerryParameters(ownQuery); got != want {
			t.Errorf("URL = %q has %d qstash_token or upstash-* parameters, want %d from the destination's own query", dest.URL, got, want)
		}

		for key := range dest.Config {
			if !strings.HasPrefix(strings.ToLower(key), "upstash-") {
				t.Errorf("Config has key %q, want only upstash-* keys", key)
			}
		}
	})
}

// countFerryParameters counts the parameters of rawQuery that Ferry takes
// out of a request query: qstash_token and upstash-*, in any letter case.
func countFerryParameters(rawQuery string) int {
	count := 0
	for _, pair := range strings.Split(rawQuery, "&") {
		rawKey, _, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			continue
		}
		lowerKey := strings.ToLower(key)
		if lowerKey == "qstash_token" || strings.HasPrefix(lowerKey, "upstash-") {
			count++
		}
	}
	return count
}
