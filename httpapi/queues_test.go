package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// claimIDs claims every due message of s's store at the test clock.
func claimIDs(t *testing.T, s *testServer) []string {
	t.Helper()
	msgs, err := s.store.MessageClaim(context.Background(), &store.MessageClaimParams{
		Owner: "test", Limit: 100, Now: testNow, DefaultTimeout: time.Minute, LeaseMargin: time.Minute,
	})
	if err != nil {
		t.Fatalf("MessageClaim: %v", err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func TestEnqueueStoresQueueMessage(t *testing.T) {
	s := newTestServer(t, nil)
	first := s.publishOK(t, "/v2/enqueue/orders/https://example.com/hook?a=1", headers("Upstash-Retries", "2"), "one")
	second := s.publishOK(t, "/v2/Enqueue/orders/https://example.com/hook", nil, "two")

	m := s.message(t, first)
	if m.QueueName != "orders" || m.URL != "https://example.com/hook?a=1" || m.MaxRetries != 2 || string(m.Body) != "one" {
		t.Errorf("stored message = queue %q, url %q, retries %d, body %q; want orders, https://example.com/hook?a=1, 2, one",
			m.QueueName, m.URL, m.MaxRetries, m.Body)
	}

	q, err := s.store.QueueGet(context.Background(), "orders")
	if err != nil {
		t.Fatalf("QueueGet: %v", err)
	}
	if q.Parallelism != 1 || q.Lag != 2 {
		t.Errorf("auto-created queue = %+v, want parallelism 1 and lag 2", *q)
	}

	// Parallelism 1: only the first message starts.
	if got := claimIDs(t, s); !slices.Equal(got, []string{first}) {
		t.Errorf("claimed %v, want only %s before %s", got, first, second)
	}
}

func TestEnqueueRejects(t *testing.T) {
	s := newTestServer(t, nil)
	tests := []struct {
		name        string
		target      string
		header      http.Header
		wantStatus  int
		wantMessage string
	}{
		{
			name:       "delay",
			target:     "/v2/enqueue/q/https://example.com/hook",
			header:     headers("Upstash-Delay", "10s"),
			wantStatus: http.StatusBadRequest,
			wantMessage: "Upstash-Delay is not supported for queue messages: a queue starts each message as soon as the one " +
				"before it is done; publish to /v2/publish/ to delay a message",
		},
		{
			name:       "not before in the query",
			target:     "/v2/enqueue/q/https://example.com/hook?upstash-not-before=2000000000",
			wantStatus: http.StatusBadRequest,
			wantMessage: "Upstash-Not-Before is not supported for queue messages: a queue starts each message as soon as the " +
				"one before it is done; publish to /v2/publish/ to delay a message",
		},
		{
			name:       "flow control",
			target:     "/v2/enqueue/q/https://example.com/hook",
			header:     headers("Upstash-Flow-Control-Key", "k", "Upstash-Flow-Control-Value", "parallelism=1"),
			wantStatus: http.StatusBadRequest,
			wantMessage: "Upstash-Flow-Control-Key and Upstash-Flow-Control-Value are not supported for queue messages: " +
				"set the queue's parallelism with POST /v2/queues, or publish to /v2/publish/ with flow control",
		},
		{
			name:        "invalid queue name",
			target:      "/v2/enqueue/bad%20name/https://example.com/hook",
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid queue name "bad%20name": use 1 to 256 letters, digits, hyphens, underscores and periods`,
		},
		{
			name:        "missing destination",
			target:      "/v2/enqueue/q",
			wantStatus:  http.StatusBadRequest,
			wantMessage: "a queue name and a destination must be provided: enqueue to /v2/enqueue/{queue}/https://your.app/path",
		},
		{
			name:        "empty destination",
			target:      "/v2/enqueue/q/",
			wantStatus:  http.StatusBadRequest,
			wantMessage: "a non-empty destination must be provided: publish to /v2/publish/https://your.app/path",
		},
		{
			name:        "unknown URL group",
			target:      "/v2/enqueue/q/nobody",
			wantStatus:  http.StatusNotFound,
			wantMessage: "topic nobody not found",
		},
		{
			name:        "invalid header",
			target:      "/v2/enqueue/q/https://example.com/hook",
			header:      headers("Upstash-Retries", "-1"),
			wantStatus:  http.StatusBadRequest,
			wantMessage: `invalid Upstash-Retries header "-1": expected an integer from 0 to 100`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, s.publish(t, tc.target, tc.header, ""), tc.wantStatus, tc.wantMessage)
		})
	}

	resp := s.send(t, http.MethodGet, "/v2/enqueue/q/https://example.com/hook", "")
	if resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET enqueue status = %d, want 405", resp.status)
	}
	if _, err := s.store.QueueGet(context.Background(), "q"); err == nil {
		t.Errorf("a rejected enqueue created queue q")
	}
}

func TestQueueRoutes(t *testing.T) {
	s := newTestServer(t, nil)

	resp := s.sendOK(t, http.MethodGet, "/v2/queues", "", http.StatusOK)
	if string(resp.body) != "[]\n" {
		t.Errorf("empty queue list = %s, want []", resp.body)
	}

	resp = s.sendOK(t, http.MethodPost, "/v2/queues", `{"queueName": "jobs", "parallelism": 3, "paused": true}`, http.StatusOK)
	var q wire.Queue
	decodeInto(t, resp, &q)
	if q.Name != "jobs" || q.Parallelism != 3 || !q.Paused || q.CreatedAt != testNow.UnixMilli() {
		t.Errorf("upsert answer = %+v, want jobs, parallelism 3, paused, created at the test clock", q)
	}

	// Every field that the Python SDK reads is present.
	resp = s.sendOK(t, http.MethodGet, "/v2/queues", "", http.StatusOK)
	var list []map[string]json.RawMessage
	decodeInto(t, resp, &list)
	if len(list) != 1 {
		t.Fatalf("queue list = %s, want one queue", resp.body)
	}
	for _, field := range []string{"name", "parallelism", "createdAt", "updatedAt", "lag", "paused"} {
		if _, ok := list[0][field]; !ok {
			t.Errorf("queue list entry %s lacks %q", resp.body, field)
		}
	}

	s.sendOK(t, http.MethodPost, "/v2/queues/jobs/resume", "", http.StatusOK)
	s.sendOK(t, http.MethodPost, "/v2/queues/jobs/resume", "", http.StatusOK)
	resp = s.sendOK(t, http.MethodGet, "/v2/queues/jobs", "", http.StatusOK)
	decodeInto(t, resp, &q)
	if q.Paused || q.Parallelism != 3 {
		t.Errorf("queue after resume = %+v, want running with parallelism 3", q)
	}
	s.sendOK(t, http.MethodPost, "/v2/queues/jobs/pause", "", http.StatusOK)
	s.sendOK(t, http.MethodPost, "/v2/queues/jobs/pause", "", http.StatusOK)

	// An upsert without paused keeps the queue paused.
	resp = s.sendOK(t, http.MethodPost, "/v2/queues", `{"queueName": "jobs", "parallelism": 2}`, http.StatusOK)
	decodeInto(t, resp, &q)
	if !q.Paused || q.Parallelism != 2 {
		t.Errorf("queue after parallelism upsert = %+v, want paused with parallelism 2", q)
	}

	s.publishOK(t, "/v2/enqueue/jobs/https://example.com/a", nil, "")
	resp = s.sendOK(t, http.MethodGet, "/v2/queues/jobs", "", http.StatusOK)
	decodeInto(t, resp, &q)
	if q.Lag != 1 {
		t.Errorf("lag = %d, want 1", q.Lag)
	}

	s.sendOK(t, http.MethodDelete, "/v2/queues/jobs", "", http.StatusOK)
	checkError(t, s.send(t, http.MethodGet, "/v2/queues/jobs", ""), http.StatusNotFound, "queue jobs not found")
	resp = s.sendOK(t, http.MethodGet, "/v2/queues", "", http.StatusOK)
	if string(resp.body) != "[]\n" {
		t.Errorf("queue list after delete = %s, want []", resp.body)
	}
	s.sendOK(t, http.MethodDelete, "/v2/queues/jobs", "", http.StatusOK)
}

func TestQueueDeleteCancelsMessages(t *testing.T) {
	s := newTestServer(t, nil)
	id := s.publishOK(t, "/v2/enqueue/gone/https://example.com/a", nil, "")
	s.sendOK(t, http.MethodDelete, "/v2/queues/gone", "", http.StatusOK)
	if m := s.message(t, id); m.State != ferry.MessageStateCanceled {
		t.Errorf("message of the deleted queue is %s, want CANCELED", m.State)
	}
}

func TestQueueRoutesReject(t *testing.T) {
	s := newTestServer(t, nil)
	tests := []struct {
		name        string
		method      string
		target      string
		body        string
		wantStatus  int
		wantMessage string
	}{
		{"get missing", http.MethodGet, "/v2/queues/nope", "", http.StatusNotFound, "queue nope not found"},
		{"pause missing", http.MethodPost, "/v2/queues/nope/pause", "", http.StatusNotFound, "queue nope not found"},
		{"resume missing", http.MethodPost, "/v2/queues/nope/resume", "", http.StatusNotFound, "queue nope not found"},
		{"invalid name in path", http.MethodGet, "/v2/queues/a%2Fb", "", http.StatusBadRequest,
			`invalid queue name "a%2Fb": use 1 to 256 letters, digits, hyphens, underscores and periods`},
		{"missing body", http.MethodPost, "/v2/queues", "", http.StatusBadRequest,
			`missing queueName: send {"queueName": "my-queue", "parallelism": 1}`},
		{"missing name", http.MethodPost, "/v2/queues", `{"parallelism": 1}`, http.StatusBadRequest,
			`missing queueName: send {"queueName": "my-queue", "parallelism": 1}`},
		{"invalid name", http.MethodPost, "/v2/queues", `{"queueName": "a b"}`, http.StatusBadRequest,
			`invalid queue name "a b": use 1 to 256 letters, digits, hyphens, underscores and periods`},
		{"zero parallelism", http.MethodPost, "/v2/queues", `{"queueName": "q", "parallelism": 0}`, http.StatusBadRequest,
			"invalid parallelism 0: expected an integer from 1 to 10000"},
		{"text parallelism", http.MethodPost, "/v2/queues", `{"queueName": "q", "parallelism": "2"}`, http.StatusBadRequest,
			`invalid parallelism "2": expected an integer from 1 to 10000`},
		{"text paused", http.MethodPost, "/v2/queues", `{"queueName": "q", "paused": "yes"}`, http.StatusBadRequest,
			`invalid paused "yes": expected true or false`},
		{"not JSON", http.MethodPost, "/v2/queues", `queue`, http.StatusBadRequest,
			"invalid JSON body: invalid character 'q' looking for beginning of value"},
		{"unknown action", http.MethodPost, "/v2/queues/q/drain", "", http.StatusNotFound, "route not found: POST /v2/queues/q/drain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, s.send(t, tc.method, tc.target, tc.body), tc.wantStatus, tc.wantMessage)
		})
	}

	for _, tc := range []struct{ method, target string }{
		{http.MethodDelete, "/v2/queues"},
		{http.MethodPut, "/v2/queues/q"},
		{http.MethodGet, "/v2/queues/q/pause"},
	} {
		if resp := s.send(t, tc.method, tc.target, ""); resp.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s status = %d, want 405", tc.method, tc.target, resp.status)
		}
	}
}

func TestBatch(t *testing.T) {
	s := newTestServer(t, nil)
	s.sendOK(t, http.MethodPost, "/v2/topics/pair/endpoints",
		`{"endpoints": [{"url": "https://one.example/"}, {"name": "two", "url": "https://two.example/"}]}`, http.StatusOK)

	body := `[
		{"destination": "https://example.com/a", "headers": {"content-type": "text/plain", "upstash-retries": "1",
			"upstash-forward-x-tag": ["t1", "t2"], "upstash-telemetry-sdk": "ts"}, "body": "first"},
		{"destination": "https://example.com/b", "body": null, "queue": null},
		{"destination": "https://example.com/c", "headers": {"Upstash-Retries": "-1"}},
		{"destination": "pair", "body": "fan", "queue": ""},
		{"destination": "https://example.com/d", "queue": "lane", "body": ""},
		{"body": "no destination"},
		{"destination": "https://example.com/e", "queue": "bad name"},
		{"destination": "https://example.com/f", "queue": "lane", "headers": {"upstash-delay": "5s"}},
		{"destination": "nobody"},
		{"destination": "https://example.com/g", "headers": {"x": 5}},
		{"destination": 7},
		null
	]`
	resp := s.sendOK(t, http.MethodPost, "/v2/batch", body, http.StatusOK)
	var results []json.RawMessage
	decodeInto(t, resp, &results)
	if len(results) != 12 {
		t.Fatalf("batch returned %d results, want 12: %s", len(results), resp.body)
	}

	var one wire.PublishResponse
	decodeInto(t, response{body: results[0]}, &one)
	m := s.message(t, one.MessageID)
	if string(m.Body) != "first" || m.MaxRetries != 1 || m.Header.Get("Content-Type") != "text/plain" ||
		!slices.Equal(m.Header["X-Tag"], []string{"t1", "t2"}) {
		t.Errorf("item 0 stored body %q, retries %d, header %v; want first, 1, text/plain and X-Tag t1, t2",
			m.Body, m.MaxRetries, m.Header)
	}
	if _, ok := m.Header["Upstash-Telemetry-Sdk"]; ok {
		t.Errorf("item 0 forwards the telemetry header: %v", m.Header)
	}

	decodeInto(t, response{body: results[1]}, &one)
	if m := s.message(t, one.MessageID); len(m.Body) != 0 || m.QueueName != "" {
		t.Errorf("item 1 stored body %q in queue %q, want an empty body and no queue", m.Body, m.QueueName)
	}

	var group []wire.PublishResponse
	decodeInto(t, response{body: results[3]}, &group)
	if len(group) != 2 || group[0].URL != "https://one.example/" || group[1].URL != "https://two.example/" {
		t.Errorf("item 3 returned %s, want one result per endpoint in order", results[3])
	}

	decodeInto(t, response{body: results[4]}, &one)
	if m := s.message(t, one.MessageID); m.QueueName != "lane" {
		t.Errorf("item 4 stored in queue %q, want lane", m.QueueName)
	}

	wantErrors := map[int]string{
		2:  `item 2: invalid Upstash-Retries header "-1": expected an integer from 0 to 100`,
		5:  `item 5: missing destination: set "destination" to a URL or a URL group name`,
		6:  `item 6: invalid queue name "bad name": use 1 to 256 letters, digits, hyphens, underscores and periods`,
		7:  "item 7: Upstash-Delay is not supported for queue messages: a queue starts each message as soon as the one before it is done; publish to /v2/publish/ to delay a message",
		8:  "item 8: topic nobody not found",
		9:  `item 9: invalid header "x" in batch item: expected a string or an array of strings`,
		10: `item 10: invalid "destination" in batch item: expected a string`,
		11: `item 11: invalid batch item: expected an object such as {"destination": "https://your.app/path"}`,
	}
	for i, want := range wantErrors {
		fields := rawFields(t, results[i])
		var got string
		json.Unmarshal(fields["error"], &got)
		if got != want || len(fields) != 1 {
			t.Errorf("result %d = %s, want only the error %q", i, results[i], want)
		}
	}
}

func TestBatchRejectsBody(t *testing.T) {
	s := newTestServer(t, nil)
	const message = `invalid batch body: expected a JSON array of messages such as [{"destination": "https://your.app/path", "body": "..."}]`
	for _, body := range []string{"", "{}", `{"destination": "https://example.com"}`, "[", "not json"} {
		checkError(t, s.send(t, http.MethodPost, "/v2/batch", body), http.StatusBadRequest, message)
	}
	resp := s.sendOK(t, http.MethodPost, "/v2/batch", "[]", http.StatusOK)
	if string(resp.body) != "[]\n" {
		t.Errorf("empty batch returned %s, want []", resp.body)
	}
	if resp := s.send(t, http.MethodGet, "/v2/batch", ""); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v2/batch status = %d, want 405", resp.status)
	}
}
