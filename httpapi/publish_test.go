package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/retrydelay"
	"github.com/ferryhq/ferry/store/sqlite"
)

// testNow is the clock of every test server, so that delivery times are
// exact.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const testToken = "t"

// tokenMessage is the error message of a request without a valid token.
const tokenMessage = "missing or invalid token: send the header Authorization: Bearer <token> (or the query parameter qstash_token)"

// hookTarget is the request target of a publish to https://example.com/hook.
const hookTarget = "/v2/publish/https://example.com/hook"

// testServer is a Server on a real SQLite store, served over HTTP on
// 127.0.0.1.
type testServer struct {
	url    string
	client *http.Client
	store  *sqlite.DB
}

// openStore opens a SQLite store in a temporary directory that is closed
// when the test ends.
func openStore(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "ferry.db"))
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("closing the store: %v", err)
		}
	})
	return db
}

// newTestServer starts a Server with token testToken and clock testNow.
// configure, when not nil, changes the Config before the Server is built.
func newTestServer(t *testing.T, configure func(*Config)) *testServer {
	t.Helper()
	db := openStore(t)
	cfg := Config{
		Store: db,
		Token: testToken,
		Now:   func() time.Time { return testNow },
	}
	if configure != nil {
		configure(&cfg)
	}

	srv := httptest.NewServer(NewServer(cfg))
	t.Cleanup(srv.Close)
	return &testServer{url: srv.URL, client: srv.Client(), store: db}
}

// response is a received HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request whose path and query are exactly target. Setting
// URL.Opaque keeps the client from escaping the path again.
func (s *testServer) do(t *testing.T, method, target string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("http.NewRequest: %v", err)
	}
	path, query, _ := strings.Cut(target, "?")
	req.URL.Opaque = path
	req.URL.RawQuery = query
	for name, values := range header {
		req.Header[name] = values
	}

	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response to %s %s: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// publish sends a POST to target with the test token, unless header has
// its own Authorization.
func (s *testServer) publish(t *testing.T, target string, header http.Header, body string) response {
	t.Helper()
	withToken := header.Clone()
	if withToken == nil {
		withToken = http.Header{}
	}
	if _, ok := withToken["Authorization"]; !ok {
		withToken.Set("Authorization", "Bearer "+testToken)
	}
	return s.do(t, http.MethodPost, target, withToken, body)
}

// publishOK publishes and returns the id of the stored message, failing
// the test unless the status is 200.
func (s *testServer) publishOK(t *testing.T, target string, header http.Header, body string) string {
	t.Helper()
	resp := s.publish(t, target, header, body)
	if resp.status != http.StatusOK {
		t.Fatalf("POST %s status = %d, want 200 (body %s)", target, resp.status, resp.body)
	}
	return decodeMessageID(t, resp)
}

// message returns the stored message with the given id.
func (s *testServer) message(t *testing.T, id string) *ferry.Message {
	t.Helper()
	m, err := s.store.MessageGet(context.Background(), id)
	if err != nil {
		t.Fatalf("MessageGet(%q): %v", id, err)
	}
	return m
}

// headers builds a header from name and value pairs, canonicalizing the
// names as a client does.
func headers(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

// decodeObject checks the JSON Content-Type of resp and decodes its body
// as a JSON object.
func decodeObject(t *testing.T, resp response) map[string]any {
	t.Helper()
	if got := resp.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want %q", got, "application/json")
	}
	var object map[string]any
	if err := json.Unmarshal(resp.body, &object); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", resp.body, err)
	}
	return object
}

// decodeMessageID returns the messageId of a publish response.
func decodeMessageID(t *testing.T, resp response) string {
	t.Helper()
	object := decodeObject(t, resp)
	id, _ := object["messageId"].(string)
	if !strings.HasPrefix(id, "msg_") {
		t.Fatalf("messageId = %q, want a msg_ prefix (body %s)", id, resp.body)
	}
	return id
}

// checkError checks that resp has the status and is exactly the JSON
// object {"error": message}.
func checkError(t *testing.T, resp response, wantStatus int, wantMessage string) {
	t.Helper()
	if resp.status != wantStatus {
		t.Errorf("status = %d, want %d (body %s)", resp.status, wantStatus, resp.body)
	}
	object := decodeObject(t, resp)
	if got := object["error"]; got != wantMessage {
		t.Errorf("error = %q, want %q", got, wantMessage)
	}
	if len(object) != 1 {
		t.Errorf("body %s has %d fields, want only error", resp.body, len(object))
	}
}

func TestPublishRejects(t *testing.T) {
	s := newTestServer(t, nil)
	bearer := "Bearer " + testToken
	inMinute := strconv.FormatInt(testNow.Add(time.Minute).Unix(), 10)
	longDelay := strings.Repeat("1", 250) + "x"

	tests := []struct {
		name        string
		method      string
		target      string
		header      http.Header
		wantStatus  int
		wantMessage string
	}{
		{
			name:        "missing token",
			target:      hookTarget,
			header:      headers(),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "wrong token",
			target:      hookTarget,
			header:      headers("Authorization", "Bearer nope"),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "token prefix only",
			target:      hookTarget,
			header:      headers("Authorization", "Bearer "+testToken+"x"),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "empty bearer token",
			target:      hookTarget,
			header:      headers("Authorization", "Bearer "),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "basic scheme",
			target:      hookTarget,
			header:      headers("Authorization", "Basic dDp0"),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "wrong query token",
			target:      hookTarget + "?qstash_token=nope",
			header:      headers(),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "query token ignored beside wrong header",
			target:      hookTarget + "?qstash_token=" + testToken,
			header:      headers("Authorization", "Bearer nope"),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "unknown route without token",
			method:      http.MethodGet,
			target:      "/v2/nothing",
			header:      headers(),
			wantStatus:  http.StatusUnauthorized,
			wantMessage: tokenMessage,
		},
		{
			name:        "method TRACE",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Method", "TRACE"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Method header "TRACE": expected one of GET, POST, PUT, PATCH, DELETE`,
		},
		{
			name:        "delay unknown unit",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", "10x"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header: invalid duration "10x": unknown unit "x"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`,
		},
		{
			name:        "delay negative",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", "-1s"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header: invalid duration "-1s": sign "-" is not allowed; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`,
		},
		{
			name:        "delay bare number",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", "10"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header: invalid duration "10": missing unit after "10"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`,
		},
		{
			name:        "delay over one year",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", "366d"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header "366d": expected a delay of at most 365d`,
		},
		{
			name:        "delay one second over one year",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", "365d1s"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header "365d1s": expected a delay of at most 365d`,
		},
		{
			name:        "delay too long to echo",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Delay", longDelay),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Delay header "` + longDelay[:200] + `...": expected a duration such as 30s or 1d10h30m`,
		},
		{
			name:        "not-before text",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Not-Before", "abc"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Not-Before header "abc": expected a Unix time in seconds, such as 1893553505`,
		},
		{
			name:        "not-before negative",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Not-Before", "-5"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Not-Before header "-5": expected a Unix time in seconds, such as ` + inMinute,
		},
		{
			name:        "not-before in milliseconds",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Not-Before", "1893553505000"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Not-Before header "1893553505000": expected a time at most 365d ahead`,
		},
		{
			name:        "not-before decimal",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Not-Before", "1893553505.5"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Not-Before header "1893553505.5": expected a Unix time in seconds, such as 1893553505`,
		},
		{
			name:        "retries negative",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Retries", "-1"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retries header "-1": expected an integer from 0 to 100`,
		},
		{
			name:        "retries text",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Retries", "abc"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retries header "abc": expected an integer from 0 to 100`,
		},
		{
			name:        "retries over maximum",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Retries", "101"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retries header "101": expected an integer from 0 to 100`,
		},
		{
			name:        "retries in query",
			target:      hookTarget + "?upstash-retries=abc",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retries header "abc": expected an integer from 0 to 100`,
		},
		{
			name:        "retry delay wrong arity",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Retry-Delay", "pow(2)"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retry-Delay header: invalid retry delay expression "pow(2)": pow takes 2 arguments, got 1`,
		},
		{
			name:        "retry delay unknown identifier",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Retry-Delay", "foo"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retry-Delay header: invalid retry delay expression "foo": unknown identifier "foo" at position 1; use the variable retried or one of the functions pow, exp, sqrt, abs, floor, ceil, round, min, max`,
		},
		{
			name:        "timeout zero",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Timeout", "0s"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Timeout header "0s": expected a duration from 1s to 2h`,
		},
		{
			name:        "timeout over maximum",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Timeout", "3h"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Timeout header "3h": expected a duration from 1s to 2h`,
		},
		{
			name:        "timeout one second over maximum",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Timeout", "2h1s"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Timeout header "2h1s": expected a duration from 1s to 2h`,
		},
		{
			name:        "timeout without number",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Timeout", "x"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Timeout header: invalid duration "x": missing number before unit "x"; use a number followed by s, m, h or d, e.g. 30s or 1d10h30m`,
		},
		{
			name:        "content-based deduplication maybe",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Content-Based-Deduplication", "maybe"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Content-Based-Deduplication header "maybe": expected true or false`,
		},
		{
			name:        "header forward yes",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Header-Forward", "yes"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Header-Forward header "yes": expected true or false`,
		},
		{
			name:        "deduplication id too long",
			target:      hookTarget,
			header:      headers("Authorization", bearer, "Upstash-Deduplication-Id", strings.Repeat("d", 513)),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Deduplication-Id header "` + strings.Repeat("d", 200) + `...": expected at most 512 bytes`,
		},
		{
			name:        "destination without scheme",
			target:      "/v2/publish/example.com/hook",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid destination "example.com/hook": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "destination ftp",
			target:      "/v2/publish/ftp://example.com/file",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid destination "ftp://example.com/file": must be an http:// or https:// URL such as https://your.app/path`,
		},
		{
			name:        "destination without host",
			target:      "/v2/publish/http://",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid destination "http://": the URL has no host; use a form such as https://your.app/path`,
		},
		{
			name:        "destination empty",
			target:      "/v2/publish/",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: "a non-empty destination must be provided: publish to /v2/publish/https://your.app/path",
		},
		{
			name:        "destination missing",
			target:      "/v2/publish",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid request path "/v2/publish": expected /v2/publish/{destination}`,
		},
		{
			name:        "destination url group",
			target:      "/v2/publish/mygroup",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusNotFound,
			wantMessage: "topic mygroup not found",
		},
		{
			name:        "unknown route",
			method:      http.MethodGet,
			target:      "/v2/nothing",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusNotFound,
			wantMessage: "route not found: GET /v2/nothing",
		},
		{
			name:        "unknown version",
			target:      "/v3/publish/https://example.com/hook",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusNotFound,
			wantMessage: "route not found: POST /v3/publish/https://example.com/hook",
		},
		{
			name:        "metrics without gatherer",
			method:      http.MethodGet,
			target:      "/metrics",
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusNotFound,
			wantMessage: "route not found: GET /metrics",
		},
		{
			name:        "publish with GET",
			method:      http.MethodGet,
			target:      hookTarget,
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusMethodNotAllowed,
			wantMessage: "method GET not allowed on this route; use POST",
		},
		{
			name:        "publish with PUT",
			method:      http.MethodPut,
			target:      hookTarget,
			header:      headers("Authorization", bearer),
			wantStatus:  http.StatusMethodNotAllowed,
			wantMessage: "method PUT not allowed on this route; use POST",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			resp := s.do(t, method, tt.target, tt.header, "body")
			checkError(t, resp, tt.wantStatus, tt.wantMessage)
			if tt.wantStatus == http.StatusMethodNotAllowed {
				if got := resp.header.Get("Allow"); got != http.MethodPost {
					t.Errorf("Allow = %q, want %q", got, http.MethodPost)
				}
			}
		})
	}
}

func TestErrorBodyText(t *testing.T) {
	s := newTestServer(t, nil)
	resp := s.do(t, http.MethodPost, hookTarget, nil, "")

	// HTML escaping would send <token> as \u003ctoken\u003e.
	want := `{"error":"` + tokenMessage + `"}` + "\n"
	if string(resp.body) != want {
		t.Errorf("body = %q, want %q", resp.body, want)
	}
}

func TestPublishBodyLimit(t *testing.T) {
	s := newTestServer(t, func(cfg *Config) { cfg.MaxBodyBytes = 16 })

	id := s.publishOK(t, hookTarget, nil, strings.Repeat("a", 16))
	if got := s.message(t, id).Body; string(got) != strings.Repeat("a", 16) {
		t.Errorf("Body = %q, want 16 bytes of a", got)
	}

	resp := s.publish(t, hookTarget, nil, strings.Repeat("a", 17))
	checkError(t, resp, http.StatusRequestEntityTooLarge,
		"request body exceeds the maximum of 16 bytes; send a smaller body or raise --max-body-bytes")
}

func TestPublishStoresMessage(t *testing.T) {
	s := newTestServer(t, nil)
	header := headers(
		"Content-Type", "application/json",
		"Upstash-Method", "put",
		"Upstash-Forward-X-Custom", "v1",
		"upstash-forward-x-lower-case", "v2",
		"Upstash-Forward-Authorization", "Bearer downstream",
		"Upstash-Label", " a, b ,,c",
		"Upstash-Retries", "5",
		"Upstash-Timeout", "30s",
		"Upstash-Retry-Delay", "pow(2, retried) * 1000",
		"Upstash-Delay", "90s",
		"Upstash-Unknown-Setting", "ignored",
		"X-Not-Forwarded", "y",
	)
	target := "/v2/publish/https://example.com/hook/a%2Fb?b=2&a=%2F+1"

	resp := s.publish(t, target, header, `{"k":1}`)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	object := decodeObject(t, resp)
	if len(object) != 1 {
		t.Errorf("body %s has %d fields, want only messageId", resp.body, len(object))
	}
	id := decodeMessageID(t, resp)
	m := s.message(t, id)

	if m.ID != id {
		t.Errorf("ID = %q, want %q", m.ID, id)
	}
	if m.State != ferry.MessageStateCreated {
		t.Errorf("State = %q, want %q", m.State, ferry.MessageStateCreated)
	}
	if want := "https://example.com/hook/a%2Fb?b=2&a=%2F+1"; m.URL != want {
		t.Errorf("URL = %q, want %q", m.URL, want)
	}
	if m.Method != http.MethodPut {
		t.Errorf("Method = %q, want %q", m.Method, http.MethodPut)
	}
	wantHeader := http.Header{
		"Content-Type":  {"application/json"},
		"X-Custom":      {"v1"},
		"X-Lower-Case":  {"v2"},
		"Authorization": {"Bearer downstream"},
	}
	if !reflect.DeepEqual(m.Header, wantHeader) {
		t.Errorf("Header = %v, want %v", m.Header, wantHeader)
	}
	if string(m.Body) != `{"k":1}` {
		t.Errorf("Body = %q, want %q", m.Body, `{"k":1}`)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(m.Labels, want) {
		t.Errorf("Labels = %q, want %q", m.Labels, want)
	}
	if m.MaxRetries != 5 {
		t.Errorf("MaxRetries = %d, want 5", m.MaxRetries)
	}
	if m.Timeout != 30*time.Second {
		t.Errorf("Timeout = %v, want 30s", m.Timeout)
	}
	if want := "pow(2, retried) * 1000"; m.RetryDelayExpr != want {
		t.Errorf("RetryDelayExpr = %q, want %q", m.RetryDelayExpr, want)
	}
	if want := testNow.Add(90 * time.Second); !m.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", m.NotBefore, want)
	}
	if !m.CreatedAt.Equal(testNow) {
		t.Errorf("CreatedAt = %v, want %v", m.CreatedAt, testNow)
	}
	if m.DeduplicationID != "" {
		t.Errorf("DeduplicationID = %q, want empty", m.DeduplicationID)
	}
	if m.CallerIP != "127.0.0.1" {
		t.Errorf("CallerIP = %q, want %q", m.CallerIP, "127.0.0.1")
	}
}

func TestPublishDefaults(t *testing.T) {
	s := newTestServer(t, nil)
	m := s.message(t, s.publishOK(t, hookTarget, nil, ""))

	if m.URL != "https://example.com/hook" {
		t.Errorf("URL = %q, want %q", m.URL, "https://example.com/hook")
	}
	if m.Method != http.MethodPost {
		t.Errorf("Method = %q, want %q", m.Method, http.MethodPost)
	}
	if len(m.Header) != 0 {
		t.Errorf("Header = %v, want none", m.Header)
	}
	if len(m.Body) != 0 {
		t.Errorf("Body = %q, want empty", m.Body)
	}
	if m.MaxRetries != DefaultRetriesDefault {
		t.Errorf("MaxRetries = %d, want %d", m.MaxRetries, DefaultRetriesDefault)
	}
	if m.Timeout != 0 {
		t.Errorf("Timeout = %v, want 0", m.Timeout)
	}
	if m.RetryDelayExpr != "" {
		t.Errorf("RetryDelayExpr = %q, want empty", m.RetryDelayExpr)
	}
	if !m.NotBefore.Equal(testNow) {
		t.Errorf("NotBefore = %v, want %v", m.NotBefore, testNow)
	}
	if len(m.Labels) != 0 {
		t.Errorf("Labels = %q, want none", m.Labels)
	}
}

func TestPublishDefaultRetriesConfig(t *testing.T) {
	tests := []struct {
		name       string
		configured int
		want       int
	}{
		{name: "zero means default", configured: 0, want: DefaultRetriesDefault},
		{name: "negative means none", configured: -1, want: 0},
		{name: "positive kept", configured: 7, want: 7},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, func(cfg *Config) { cfg.DefaultRetries = tt.configured })
			m := s.message(t, s.publishOK(t, hookTarget, nil, ""))
			if m.MaxRetries != tt.want {
				t.Errorf("MaxRetries = %d, want %d", m.MaxRetries, tt.want)
			}
		})
	}
}

func TestPublishBlankHeadersIgnored(t *testing.T) {
	s := newTestServer(t, nil)
	names := []string{
		"Upstash-Method", "Upstash-Delay", "Upstash-Not-Before", "Upstash-Retries",
		"Upstash-Retry-Delay", "Upstash-Timeout", "Upstash-Label", "Upstash-Header-Forward",
		"Upstash-Deduplication-Id", "Upstash-Content-Based-Deduplication",
	}

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m := s.message(t, s.publishOK(t, hookTarget, headers(name, " "), ""))
			if m.Method != http.MethodPost {
				t.Errorf("Method = %q, want %q", m.Method, http.MethodPost)
			}
			if !m.NotBefore.Equal(testNow) {
				t.Errorf("NotBefore = %v, want %v", m.NotBefore, testNow)
			}
			if m.MaxRetries != DefaultRetriesDefault {
				t.Errorf("MaxRetries = %d, want %d", m.MaxRetries, DefaultRetriesDefault)
			}
			if m.RetryDelayExpr != "" {
				t.Errorf("RetryDelayExpr = %q, want empty", m.RetryDelayExpr)
			}
			if m.Timeout != 0 {
				t.Errorf("Timeout = %v, want 0", m.Timeout)
			}
			if len(m.Labels) != 0 {
				t.Errorf("Labels = %q, want none", m.Labels)
			}
			if m.DeduplicationID != "" {
				t.Errorf("DeduplicationID = %q, want empty", m.DeduplicationID)
			}
		})
	}
}

func TestPublishSchedule(t *testing.T) {
	s := newTestServer(t, nil)
	unix := func(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }

	tests := []struct {
		name   string
		target string
		header http.Header
		want   time.Time
	}{
		{name: "no schedule", target: hookTarget, header: headers(), want: testNow},
		{name: "delay seconds", target: hookTarget, header: headers("Upstash-Delay", "90s"), want: testNow.Add(90 * time.Second)},
		{name: "delay groups", target: hookTarget, header: headers("Upstash-Delay", "1d10h30m"), want: testNow.Add(34*time.Hour + 30*time.Minute)},
		{name: "delay zero", target: hookTarget, header: headers("Upstash-Delay", "0s"), want: testNow},
		{name: "delay one year", target: hookTarget, header: headers("Upstash-Delay", "365d"), want: testNow.Add(MaxDelay)},
		{name: "delay with spaces", target: hookTarget, header: headers("Upstash-Delay", " 5m "), want: testNow.Add(5 * time.Minute)},
		{name: "delay in query", target: hookTarget + "?upstash-delay=2m", header: headers(), want: testNow.Add(2 * time.Minute)},
		{name: "not-before", target: hookTarget, header: headers("Upstash-Not-Before", unix(time.Hour)), want: testNow.Add(time.Hour)},
		{name: "not-before one year", target: hookTarget, header: headers("Upstash-Not-Before", unix(MaxDelay)), want: testNow.Add(MaxDelay)},
		{name: "not-before in past", target: hookTarget, header: headers("Upstash-Not-Before", unix(-time.Hour)), want: testNow},
		{name: "not-before zero", target: hookTarget, header: headers("Upstash-Not-Before", "0"), want: testNow},
		{name: "not-before in query", target: hookTarget + "?Upstash-Not-Before=" + unix(time.Hour), header: headers(), want: testNow.Add(time.Hour)},
		{
			name:   "not-before wins over delay",
			target: hookTarget,
			header: headers("Upstash-Delay", "90s", "Upstash-Not-Before", unix(time.Hour)),
			want:   testNow.Add(time.Hour),
		},
		{
			name:   "not-before wins over invalid delay",
			target: hookTarget,
			header: headers("Upstash-Delay", "10x", "Upstash-Not-Before", unix(time.Hour)),
			want:   testNow.Add(time.Hour),
		},
		{
			name:   "past not-before wins over delay",
			target: hookTarget,
			header: headers("Upstash-Delay", "90s", "Upstash-Not-Before", unix(-time.Hour)),
			want:   testNow,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := s.message(t, s.publishOK(t, tt.target, tt.header, ""))
			if !m.NotBefore.Equal(tt.want) {
				t.Errorf("NotBefore = %v, want %v", m.NotBefore, tt.want)
			}
			if m.URL != "https://example.com/hook" {
				t.Errorf("URL = %q, want %q", m.URL, "https://example.com/hook")
			}
		})
	}
}

func TestPublishQueryConfig(t *testing.T) {
	s := newTestServer(t, nil)

	tests := []struct {
		name        string
		target      string
		header      http.Header
		wantURL     string
		wantRetries int
		wantMethod  string
	}{
		{
			name:        "retries in query",
			target:      hookTarget + "?a=1&upstash-retries=7&b=2",
			header:      headers(),
			wantURL:     "https://example.com/hook?a=1&b=2",
			wantRetries: 7,
			wantMethod:  http.MethodPost,
		},
		{
			name:        "retries in query any case",
			target:      hookTarget + "?UPSTASH-RETRIES=8",
			header:      headers(),
			wantURL:     "https://example.com/hook",
			wantRetries: 8,
			wantMethod:  http.MethodPost,
		},
		{
			name:        "header wins over query",
			target:      hookTarget + "?upstash-retries=7",
			header:      headers("Upstash-Retries", "2"),
			wantURL:     "https://example.com/hook",
			wantRetries: 2,
			wantMethod:  http.MethodPost,
		},
		{
			name:        "method in query",
			target:      hookTarget + "?upstash-method=delete&x=y",
			header:      headers(),
			wantURL:     "https://example.com/hook?x=y",
			wantRetries: DefaultRetriesDefault,
			wantMethod:  http.MethodDelete,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := s.message(t, s.publishOK(t, tt.target, tt.header, ""))
			checkQueryConfig(t, m, tt.wantURL, tt.wantRetries, tt.wantMethod)
		})
	}
}

func checkQueryConfig(t *testing.T, m *ferry.Message, wantURL string, wantRetries int, wantMethod string) {
	t.Helper()
	if m.URL != wantURL {
		t.Errorf("URL = %q, want %q", m.URL, wantURL)
	}
	if m.MaxRetries != wantRetries {
		t.Errorf("MaxRetries = %d, want %d", m.MaxRetries, wantRetries)
	}
	if m.Method != wantMethod {
		t.Errorf("Method = %q, want %q", m.Method, wantMethod)
	}
}

func TestPublishQueryToken(t *testing.T) {
	s := newTestServer(t, nil)

	resp := s.do(t, http.MethodPost, hookTarget+"?x=1&qstash_token="+testToken+"&y=2", nil, "")
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	if got := s.message(t, decodeMessageID(t, resp)).URL; got != "https://example.com/hook?x=1&y=2" {
		t.Errorf("URL = %q, want %q", got, "https://example.com/hook?x=1&y=2")
	}
}

func TestPublishHeaderForward(t *testing.T) {
	s := newTestServer(t, nil)

	for _, value := range []string{"true", "True", "TRUE"} {
		t.Run(value, func(t *testing.T) {
			header := headers(
				"Upstash-Header-Forward", value,
				"Content-Type", "text/plain",
				"X-Trace", "1",
				"Cookie", "a=b",
				"Proxy-Authorization", "Basic eA==",
				"Upstash-Retries", "1",
				"Upstash-Forward-X-Extra", "e",
			)
			m := s.message(t, s.publishOK(t, hookTarget, header, "x"))

			for name, want := range map[string]string{
				"Content-Type": "text/plain",
				"X-Trace":      "1",
				"Cookie":       "a=b",
				"X-Extra":      "e",
				"User-Agent":   "Go-http-client/1.1",
			} {
				if got := m.Header.Get(name); got != want {
					t.Errorf("Header %s = %q, want %q", name, got, want)
				}
			}
			for name := range m.Header {
				if strings.HasPrefix(name, "Upstash-") {
					t.Errorf("Header has %s, want no Upstash-* header", name)
				}
			}
			for _, name := range []string{"Authorization", "Host", "Proxy-Authorization", "Content-Length", "Connection"} {
				if got, ok := m.Header[name]; ok {
					t.Errorf("Header %s = %q, want it absent", name, got)
				}
			}
			if m.MaxRetries != 1 {
				t.Errorf("MaxRetries = %d, want 1", m.MaxRetries)
			}
		})
	}

	t.Run("false", func(t *testing.T) {
		header := headers("Upstash-Header-Forward", "false", "X-Trace", "1", "Content-Type", "text/plain")
		m := s.message(t, s.publishOK(t, hookTarget, header, "x"))
		want := http.Header{"Content-Type": {"text/plain"}}
		if !reflect.DeepEqual(m.Header, want) {
			t.Errorf("Header = %v, want %v", m.Header, want)
		}
	})
}

func TestPublishDeduplicationID(t *testing.T) {
	s := newTestServer(t, nil)
	header := headers("Upstash-Deduplication-Id", "order-1")

	first := s.publish(t, hookTarget, header, "one")
	if first.status != http.StatusOK {
		t.Fatalf("first status = %d, want 200 (body %s)", first.status, first.body)
	}
	firstID := decodeMessageID(t, first)
	if _, ok := decodeObject(t, first)["deduplicated"]; ok {
		t.Errorf("first body %s has deduplicated, want it omitted", first.body)
	}

	second := s.publish(t, hookTarget, header, "two")
	if second.status != http.StatusAccepted {
		t.Errorf("second status = %d, want 202 (body %s)", second.status, second.body)
	}
	want := map[string]any{"messageId": firstID, "deduplicated": true}
	if got := decodeObject(t, second); !reflect.DeepEqual(got, want) {
		t.Errorf("second body = %v, want %v", got, want)
	}

	if got := s.message(t, firstID).DeduplicationID; got != "id:order-1" {
		t.Errorf("DeduplicationID = %q, want %q", got, "id:order-1")
	}
	if got := s.message(t, firstID).Body; string(got) != "one" {
		t.Errorf("stored Body = %q, want %q", got, "one")
	}

	otherID := s.publishOK(t, hookTarget, headers("Upstash-Deduplication-Id", "order-2"), "one")
	if otherID == firstID {
		t.Errorf("other deduplication id returned %q, want a new message", otherID)
	}
}

func TestPublishContentBasedDeduplication(t *testing.T) {
	s := newTestServer(t, nil)
	on := headers("Upstash-Content-Based-Deduplication", "True")

	firstID := s.publishOK(t, hookTarget, on, "same")

	t.Run("same body and destination", func(t *testing.T) {
		resp := s.publish(t, hookTarget, on, "same")
		if resp.status != http.StatusAccepted {
			t.Errorf("status = %d, want 202 (body %s)", resp.status, resp.body)
		}
		want := map[string]any{"messageId": firstID, "deduplicated": true}
		if got := decodeObject(t, resp); !reflect.DeepEqual(got, want) {
			t.Errorf("body = %v, want %v", got, want)
		}
	})

	t.Run("different body", func(t *testing.T) {
		if id := s.publishOK(t, hookTarget, on, "other"); id == firstID {
			t.Errorf("messageId = %q, want a new message", id)
		}
	})

	t.Run("different destination", func(t *testing.T) {
		if id := s.publishOK(t, "/v2/publish/https://example.com/other", on, "same"); id == firstID {
			t.Errorf("messageId = %q, want a new message", id)
		}
	})

	t.Run("different forwarded header", func(t *testing.T) {
		header := on.Clone()
		header.Set("Upstash-Forward-X-Tenant", "b")
		if id := s.publishOK(t, hookTarget, header, "same"); id == firstID {
			t.Errorf("messageId = %q, want a new message", id)
		}
	})

	t.Run("turned off", func(t *testing.T) {
		off := headers("Upstash-Content-Based-Deduplication", "false")
		first := s.publishOK(t, "/v2/publish/https://example.com/off", off, "same")
		second := s.publishOK(t, "/v2/publish/https://example.com/off", off, "same")
		if first == second {
			t.Errorf("both publishes returned %q, want two messages", first)
		}
	})

	t.Run("deduplication id wins", func(t *testing.T) {
		header := on.Clone()
		header.Set("Upstash-Deduplication-Id", "explicit")
		id := s.publishOK(t, hookTarget, header, "same")
		if id == firstID {
			t.Errorf("messageId = %q, want a new message", id)
		}
		if got := s.message(t, id).DeduplicationID; got != "id:explicit" {
			t.Errorf("DeduplicationID = %q, want %q", got, "id:explicit")
		}
	})
}

func TestPublishNotify(t *testing.T) {
	var calls atomic.Int64
	s := newTestServer(t, func(cfg *Config) { cfg.Notify = func() { calls.Add(1) } })
	header := headers("Upstash-Deduplication-Id", "once")

	s.publishOK(t, hookTarget, header, "")
	if got := calls.Load(); got != 1 {
		t.Errorf("Notify calls after publish = %d, want 1", got)
	}

	s.publish(t, hookTarget, header, "")
	if got := calls.Load(); got != 1 {
		t.Errorf("Notify calls after deduplicated publish = %d, want 1", got)
	}

	s.publish(t, hookTarget, headers("Upstash-Retries", "abc"), "")
	if got := calls.Load(); got != 1 {
		t.Errorf("Notify calls after rejected publish = %d, want 1", got)
	}
}

func TestHealthWithoutToken(t *testing.T) {
	s := newTestServer(t, nil)

	for _, path := range []string{"/health", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			resp := s.do(t, http.MethodGet, path, nil, "")
			if resp.status != http.StatusOK {
				t.Errorf("status = %d, want 200", resp.status)
			}
			want := map[string]any{"status": "ok"}
			if got := decodeObject(t, resp); !reflect.DeepEqual(got, want) {
				t.Errorf("body = %v, want %v", got, want)
			}
		})
	}
}

func TestPublishRawPath(t *testing.T) {
	s := newTestServer(t, nil)

	tests := []struct {
		name    string
		path    string
		wantURL string
	}{
		{name: "double slash", path: "/v2/publish/https://example.com/x", wantURL: "https://example.com/x"},
		{name: "encoded slash", path: "/v2/publish/https://example.com/a%2Fb?x=1", wantURL: "https://example.com/a%2Fb?x=1"},
		{name: "dot segments", path: "/v2/publish/https://example.com/a/../b", wantURL: "https://example.com/a/../b"},
		{name: "encoded destination", path: "/v2/publish/https%3A%2F%2Fexample.com%2Fa%3Fq%3D1?y=2", wantURL: "https://example.com/a?q=1&y=2"},
		{name: "mixed case prefix", path: "/v2/Publish/https://example.com/x", wantURL: "https://example.com/x"},
	}

	// The requests are built the way a Go client usually builds them, to
	// show that net/http sends the path without cleaning it.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, s.url+tt.path, strings.NewReader(""))
			if err != nil {
				t.Fatalf("http.NewRequest: %v", err)
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			httpResp, err := s.client.Do(req)
			if err != nil {
				t.Fatalf("POST %s: %v", tt.path, err)
			}
			defer httpResp.Body.Close()
			body, err := io.ReadAll(httpResp.Body)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			resp := response{status: httpResp.StatusCode, header: httpResp.Header, body: body}
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
			}
			if got := s.message(t, decodeMessageID(t, resp)).URL; got != tt.wantURL {
				t.Errorf("URL = %q, want %q", got, tt.wantURL)
			}
		})
	}
}

func TestPublishAbsoluteFormTarget(t *testing.T) {
	s := newTestServer(t, nil)
	host := strings.TrimPrefix(s.url, "http://")

	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatalf("net.Dial: %v", err)
	}
	defer conn.Close()
	request := "POST " + s.url + "/v2/publish/https://example.com/x?a=1&qstash_token=" + testToken + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: close\r\n\r\nhi"
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("writing the request: %v", err)
	}

	httpResp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("http.ReadResponse: %v", err)
	}
	defer httpResp.Body.Close()
	body, err := io.ReadAll(httpResp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	resp := response{status: httpResp.StatusCode, header: httpResp.Header, body: body}
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	m := s.message(t, decodeMessageID(t, resp))
	if m.URL != "https://example.com/x?a=1" {
		t.Errorf("URL = %q, want %q", m.URL, "https://example.com/x?a=1")
	}
	if string(m.Body) != "hi" {
		t.Errorf("Body = %q, want %q", m.Body, "hi")
	}
}

func FuzzPublishHeaders(f *testing.F) {
	inHour := strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10)
	f.Add("", "", "", "", "", "", "", "")
	f.Add("90s", "5", "pow(2, retried) * 1000", "30s", "PUT", "", "false", "true")
	f.Add("1d10h30m", "0", "1000", "2h", "get", inHour, "True", "false")
	f.Add("10x", "-1", "pow(2)", "0s", "TRACE", "abc", "maybe", "yes")
	f.Add("-1s", "abc", "foo", "3h", "", "-5", "", "")
	f.Add("366d", "101", "retried(", "x", "post", "99999999999999999999", "", "")
	f.Add("365d", "100", "min(1, max(2, 3))", "1s", "DELETE", "0", "TRUE", "TRUE")
	f.Add(" 5m ", "+3", "1e3", "90m", "patch", "9223372036854775807", "", "")
	f.Add("99999999999999999999d", "9999999999999999999999", strings.Repeat("(", 100), "1.5s", "\x00", "1893553505.5", "", "")
	f.Add(strings.Repeat("1s", 200), " 7 ", "\xff", "µs", "GET\r\nX: y", "-0", "", "")
	f.Add(strings.Repeat("9", 300)+"x", "", strings.Repeat("1+", 600)+"1", "", "", "", "", "")

	db := openStore(f)
	handler := NewServer(Config{
		Store: db,
		Token: testToken,
		Now:   func() time.Time { return testNow },
	})

	f.Fuzz(func(t *testing.T, delay, retries, retryDelay, timeout, method, notBefore, contentBased, forward string) {
		req := httptest.NewRequest(http.MethodPost, hookTarget, strings.NewReader("body"))
		req.Header.Set("Authorization", "Bearer "+testToken)
		for name, value := range map[string]string{
			"Upstash-Delay":                       delay,
			"Upstash-Retries":                     retries,
			"Upstash-Retry-Delay":                 retryDelay,
			"Upstash-Timeout":                     timeout,
			"Upstash-Method":                      method,
			"Upstash-Not-Before":                  notBefore,
			"Upstash-Content-Based-Deduplication": contentBased,
			"Upstash-Header-Forward":              forward,
		} {
			req.Header[name] = []string{value}
		}
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, req)

		status := recorder.Code
		var object map[string]any
		if err := json.Unmarshal(recorder.Body.Bytes(), &object); err != nil {
			t.Fatalf("status %d body %q is not a JSON object: %v", status, recorder.Body.Bytes(), err)
		}
		if got := recorder.Header().Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want %q", got, "application/json")
		}

		if status < 200 || status > 299 {
			if status < 400 || status > 499 {
				t.Errorf("status = %d, want 2xx or 4xx (body %s)", status, recorder.Body.Bytes())
			}
			message, _ := object["error"].(string)
			if message == "" {
				t.Errorf("body %s has no error message", recorder.Body.Bytes())
			}
			if len(message) > 2000 {
				t.Errorf("error message has %d bytes, want at most 2000", len(message))
			}
			return
		}

		if status != http.StatusOK && status != http.StatusAccepted {
			t.Errorf("status = %d, want 200 or 202", status)
		}
		id, _ := object["messageId"].(string)
		m, err := db.MessageGet(context.Background(), id)
		if err != nil {
			t.Fatalf("MessageGet(%q): %v", id, err)
		}
		checkStoredMessage(t, m)
	})
}

// checkStoredMessage checks that the settings of an accepted message are
// within the limits that the publish headers allow.
func checkStoredMessage(t *testing.T, m *ferry.Message) {
	t.Helper()
	if !slices.Contains(publish.AllowedMethods, m.Method) {
		t.Errorf("Method = %q, want one of %v", m.Method, publish.AllowedMethods)
	}
	if m.MaxRetries < 0 || m.MaxRetries > MaxRetries {
		t.Errorf("MaxRetries = %d, want 0 to %d", m.MaxRetries, MaxRetries)
	}
	if m.Timeout < 0 || m.Timeout > MaxTimeout {
		t.Errorf("Timeout = %v, want 0 to %v", m.Timeout, MaxTimeout)
	}
	if m.NotBefore.Before(testNow) || m.NotBefore.After(testNow.Add(MaxDelay)) {
		t.Errorf("NotBefore = %v, want %v to %v", m.NotBefore, testNow, testNow.Add(MaxDelay))
	}
	if m.RetryDelayExpr != "" {
		if _, err := retrydelay.Parse(m.RetryDelayExpr); err != nil {
			t.Errorf("stored RetryDelayExpr %q does not parse: %v", m.RetryDelayExpr, err)
		}
	}
	if m.URL != "https://example.com/hook" {
		t.Errorf("URL = %q, want %q", m.URL, "https://example.com/hook")
	}
}
