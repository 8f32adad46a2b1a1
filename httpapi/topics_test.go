package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/ferryhq/ferry/wire"
)

func TestTopicRoutes(t *testing.T) {
	s := newTestServer(t, nil)

	resp := s.sendOK(t, http.MethodGet, "/v2/topics", "", http.StatusOK)
	if string(resp.body) != "[]\n" {
		t.Errorf("empty topic list = %s, want []", resp.body)
	}

	s.sendOK(t, http.MethodPost, "/v2/topics/fans/endpoints",
		`{"endpoints": [{"url": "https://b.example/"}, {"name": "a", "url": "https://a.example/"}]}`, http.StatusOK)
	s.sendOK(t, http.MethodPost, "/v2/topics/fans/endpoints", `{"endpoints": [{"name": "a", "url": "https://a2.example/"}]}`,
		http.StatusOK)

	resp = s.sendOK(t, http.MethodGet, "/v2/topics/fans", "", http.StatusOK)
	var g wire.URLGroup
	decodeInto(t, resp, &g)
	want := []wire.Endpoint{{URL: "https://b.example/"}, {Name: "a", URL: "https://a2.example/"}}
	if g.Name != "fans" || !reflect.DeepEqual(g.Endpoints, want) || g.CreatedAt != testNow.UnixMilli() {
		t.Errorf("group = %+v, want fans with endpoints %+v created at the test clock", g, want)
	}

	// An endpoint without a name has no name field.
	var raw struct {
		Endpoints []map[string]json.RawMessage `json:"endpoints"`
	}
	decodeInto(t, resp, &raw)
	if _, ok := raw.Endpoints[0]["name"]; ok {
		t.Errorf("unnamed endpoint is %s, want no name field", resp.body)
	}

	resp = s.sendOK(t, http.MethodGet, "/v2/topics", "", http.StatusOK)
	var list []wire.URLGroup
	decodeInto(t, resp, &list)
	if len(list) != 1 || list[0].Name != "fans" || len(list[0].Endpoints) != 2 {
		t.Errorf("topic list = %s, want fans with two endpoints", resp.body)
	}

	checkError(t, s.send(t, http.MethodDelete, "/v2/topics/fans/endpoints", `{"endpoints": [{"url": "https://c.example/"}]}`),
		http.StatusNotFound, "endpoint https://c.example/ not found in URL group fans")
	s.sendOK(t, http.MethodDelete, "/v2/topics/fans/endpoints", `{"endpoints": [{"name": "a"}]}`, http.StatusOK)
	s.sendOK(t, http.MethodDelete, "/v2/topics/fans/endpoints", `{"endpoints": [{"url": "https://b.example/"}]}`, http.StatusOK)
	checkError(t, s.send(t, http.MethodGet, "/v2/topics/fans", ""), http.StatusNotFound, "topic fans not found")
	checkError(t, s.send(t, http.MethodDelete, "/v2/topics/fans/endpoints", `{"endpoints": [{"name": "a"}]}`),
		http.StatusNotFound, "topic fans not found")

	s.sendOK(t, http.MethodPost, "/v2/topics/other/endpoints", `{"endpoints": [{"url": "https://o.example/"}]}`, http.StatusOK)
	s.sendOK(t, http.MethodDelete, "/v2/topics/other", "", http.StatusOK)
	checkError(t, s.send(t, http.MethodGet, "/v2/topics/other", ""), http.StatusNotFound, "topic other not found")
	s.sendOK(t, http.MethodDelete, "/v2/topics/other", "", http.StatusOK)
}

func TestTopicRoutesReject(t *testing.T) {
	s := newTestServer(t, nil)
	tests := []struct {
		name        string
		method      string
		target      string
		body        string
		wantStatus  int
		wantMessage string
	}{
		{"invalid name", http.MethodPost, "/v2/topics/a%20b/endpoints", `{"endpoints": [{"url": "https://a.example/"}]}`,
			http.StatusBadRequest, `invalid URL group name "a%20b": use 1 to 256 letters, digits, hyphens, underscores and periods`},
		{"no body", http.MethodPost, "/v2/topics/g/endpoints", "", http.StatusBadRequest,
			`missing endpoints: send {"endpoints": [{"url": "https://your.app/path"}]}`},
		{"no endpoints", http.MethodPost, "/v2/topics/g/endpoints", `{"endpoints": []}`, http.StatusBadRequest,
			`missing endpoints: send {"endpoints": [{"url": "https://your.app/path"}]}`},
		{"endpoint without url", http.MethodPost, "/v2/topics/g/endpoints", `{"endpoints": [{"name": "a"}]}`,
			http.StatusBadRequest, `missing url of an endpoint: each endpoint needs {"url": "https://your.app/path"}`},
		{"endpoint url without scheme", http.MethodPost, "/v2/topics/g/endpoints", `{"endpoints": [{"url": "example.com"}]}`,
			http.StatusBadRequest, `invalid endpoint url "example.com": expected an http:// or https:// URL with a host`},
		{"endpoint name with control character", http.MethodPost, "/v2/topics/g/endpoints",
			`{"endpoints": [{"name": "a\nb", "url": "https://a.example/"}]}`, http.StatusBadRequest,
			"invalid endpoint name \"a\\nb\": use at most 256 characters without control characters"},
		{"remove without url or name", http.MethodDelete, "/v2/topics/g/endpoints", `{"endpoints": [{}]}`,
			http.StatusBadRequest, `missing url and name of an endpoint: name the endpoint to remove by "url" or "name"`},
		{"get missing", http.MethodGet, "/v2/topics/g", "", http.StatusNotFound, "topic g not found"},
		{"unknown sub-route", http.MethodGet, "/v2/topics/g/members", "", http.StatusNotFound,
			"route not found: GET /v2/topics/g/members"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, s.send(t, tc.method, tc.target, tc.body), tc.wantStatus, tc.wantMessage)
		})
	}
	if resp := s.send(t, http.MethodGet, "/v2/topics/g/endpoints", ""); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET endpoints status = %d, want 405", resp.status)
	}
}

func TestPublishToURLGroup(t *testing.T) {
	s := newTestServer(t, nil)
	s.sendOK(t, http.MethodPost, "/v2/topics/pair/endpoints",
		`{"endpoints": [{"name": "first", "url": "https://one.example/in"}, {"url": "https://two.example/in?x=1"}]}`, http.StatusOK)

	publish := func() []wire.PublishResponse {
		t.Helper()
		resp := s.publish(t, "/v2/publish/pair?tenant=7", headers("Upstash-Deduplication-Id", "d-1", "Content-Type", "text/plain"), "hello")
		if resp.status != http.StatusOK {
			t.Fatalf("publish to a group: status %d, body %s", resp.status, resp.body)
		}
		var out []wire.PublishResponse
		decodeInto(t, resp, &out)
		return out
	}

	first := publish()
	if len(first) != 2 || first[0].URL != "https://one.example/in?tenant=7" || first[1].URL != "https://two.example/in?x=1&tenant=7" ||
		first[0].Deduplicated || first[1].Deduplicated {
		t.Fatalf("publish returned %+v, want one new message per endpoint with the query appended", first)
	}
	one, two := s.message(t, first[0].MessageID), s.message(t, first[1].MessageID)
	if one.TopicName != "pair" || one.EndpointName != "first" || two.TopicName != "pair" || two.EndpointName != "" {
		t.Errorf("messages have topic/endpoint %q/%q and %q/%q, want pair/first and pair/\"\"",
			one.TopicName, one.EndpointName, two.TopicName, two.EndpointName)
	}
	if string(two.Body) != "hello" || two.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("second message body %q, header %v; want hello with text/plain", two.Body, two.Header)
	}

	// The same deduplication id is deduplicated per endpoint.
	again := publish()
	if len(again) != 2 || again[0].MessageID != first[0].MessageID || !again[0].Deduplicated ||
		again[1].MessageID != first[1].MessageID || !again[1].Deduplicated {
		t.Errorf("repeated publish returned %+v, want both deduplicated to %+v", again, first)
	}

	resp := s.sendOK(t, http.MethodGet, "/v2/messages/"+first[0].MessageID, "", http.StatusOK)
	fields := rawFields(t, resp.body)
	if string(fields["topicName"]) != `"pair"` || string(fields["urlGroup"]) != `"pair"` || string(fields["endpointName"]) != `"first"` {
		t.Errorf("message %s lacks topicName, urlGroup and endpointName", resp.body)
	}

	checkError(t, s.publish(t, "/v2/publish/nobody", nil, ""), http.StatusNotFound, "topic nobody not found")
}
