package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// managementClock is the settable clock of a management test. The server
// reads it for every request, and the tests pass it to the store calls that
// stand in for the dispatcher, so every stored time is exact.
type managementClock struct {
	ms atomic.Int64
}

func (c *managementClock) now() time.Time { return time.UnixMilli(c.ms.Load()).UTC() }

// advance moves the clock forward by d and returns the new time.
func (c *managementClock) advance(d time.Duration) time.Time {
	return time.UnixMilli(c.ms.Add(d.Milliseconds())).UTC()
}

// newManagementServer starts a Server on a real SQLite store whose clock
// starts at testNow.
func newManagementServer(t *testing.T) (*testServer, *managementClock) {
	t.Helper()
	clock := &managementClock{}
	clock.ms.Store(testNow.UnixMilli())
	s := newTestServer(t, func(cfg *Config) { cfg.Now = clock.now })
	return s, clock
}

// send sends a request with the test token and body, which may be empty.
func (s *testServer) send(t *testing.T, method, target, body string) response {
	t.Helper()
	return s.do(t, method, target, headers("Authorization", "Bearer "+testToken), body)
}

// sendOK sends a request and fails the test unless the status is want.
func (s *testServer) sendOK(t *testing.T, method, target, body string, want int) response {
	t.Helper()
	resp := s.send(t, method, target, body)
	if resp.status != want {
		t.Fatalf("%s %s status = %d, want %d (body %s)", method, target, resp.status, want, resp.body)
	}
	return resp
}

// rawFields decodes a JSON object into its fields, undecoded, so a test
// can tell an absent key from an empty value.
func rawFields(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatalf("body %s is not a JSON object: %v", data, err)
	}
	return fields
}

// decodeInto decodes a response body into v.
func decodeInto(t *testing.T, resp response, v any) {
	t.Helper()
	if err := json.Unmarshal(resp.body, v); err != nil {
		t.Fatalf("body %s does not decode into %T: %v", resp.body, v, err)
	}
}

// storeMessage inserts m at the clock's time, filling in the id, method,
// destination and delivery time when they are unset, and returns m.
func storeMessage(t *testing.T, s *testServer, clock *managementClock, m *ferry.Message) *ferry.Message {
	t.Helper()
	now := clock.now()
	if m.ID == "" {
		m.ID = ferry.NewMessageID()
	}
	if m.Method == "" {
		m.Method = http.MethodPost
	}
	if m.URL == "" {
		m.URL = "https://example.com/hook"
	}
	if m.NotBefore.IsZero() {
		m.NotBefore = now
	}
	m.CreatedAt = now
	_, err := s.store.MessageInsert(context.Background(), &store.MessageInsertParams{
		Message: m, DeduplicationWindow: time.Minute, Now: now,
	})
	if err != nil {
		t.Fatalf("MessageInsert(%s): %v", m.ID, err)
	}
	return m
}

// claimOnly claims the due messages at the clock's time and fails the test
// unless message id is the only one, so each test controls which message
// an attempt belongs to.
func claimOnly(t *testing.T, s *testServer, clock *managementClock, id string) *ferry.Message {
	t.Helper()
	claimed, err := s.store.MessageClaim(context.Background(), &store.MessageClaimParams{
		Owner: "test-node", Limit: 100, Now: clock.now(), DefaultTimeout: time.Minute, LeaseMargin: time.Minute,
	})
	if err != nil {
		t.Fatalf("MessageClaim: %v", err)
	}
	if len(claimed) != 1 || claimed[0].ID != id {
		ids := make([]string, len(claimed))
		for i, m := range claimed {
			ids[i] = m.ID
		}
		t.Fatalf("MessageClaim claimed %v, want only %s", ids, id)
	}
	return claimed[0]
}

// deadLetter stores m, claims it one second later and records a final
// failed attempt with result one second after that. It returns the id of
// the dead-letter entry.
func deadLetter(t *testing.T, s *testServer, clock *managementClock, m *ferry.Message, result store.AttemptResult) string {
	t.Helper()
	storeMessage(t, s, clock, m)
	clock.advance(time.Second)
	claimed := claimOnly(t, s, clock, m.ID)
	clock.advance(time.Second)
	dlqID, applied, err := s.store.MessageMarkFailed(context.Background(), &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: claimed.Attempts, Now: clock.now(), Result: result, DLQID: ferry.NewDLQID(),
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkFailed(%s) = %v, %v; want applied", m.ID, applied, err)
	}
	return dlqID
}

// deliverMessage stores m, claims it and records a 200 response.
func deliverMessage(t *testing.T, s *testServer, clock *managementClock, m *ferry.Message) {
	t.Helper()
	storeMessage(t, s, clock, m)
	clock.advance(time.Second)
	claimed := claimOnly(t, s, clock, m.ID)
	clock.advance(time.Second)
	applied, err := s.store.MessageMarkDelivered(context.Background(), &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: claimed.Attempts, Now: clock.now(), ResponseStatus: http.StatusOK,
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkDelivered(%s) = %v, %v; want applied", m.ID, applied, err)
	}
}

// serverError is the result of an attempt to which the destination
// responded with status 500.
var serverError = store.AttemptResult{
	ResponseStatus: http.StatusInternalServerError,
	ResponseHeader: http.Header{"Content-Type": {"text/plain"}, "X-Trace": {"a", "b"}},
	ResponseBody:   []byte("boom"),
	Error:          "destination answered 500",
}

// stateOf returns the stored state of message id.
func stateOf(t *testing.T, s *testServer, id string) ferry.MessageState {
	t.Helper()
	return s.message(t, id).State
}

func TestMessageGetFields(t *testing.T) {
	s, _ := newManagementServer(t)
	id := s.publishOK(t, hookTarget+"?a=1", headers(
		"Content-Type", "text/plain",
		"Upstash-Forward-X-Custom", "one",
		"Upstash-Retries", "2",
		"Upstash-Delay", "10s",
		"Upstash-Retry-Delay", "1000 * retried",
		"Upstash-Label", "billing",
		"Upstash-Callback", "https://example.com/callback",
		"Upstash-Failure-Callback", "https://example.com/failure",
	), "hello")

	resp := s.sendOK(t, http.MethodGet, "/v2/messages/"+id, "", http.StatusOK)
	fields := rawFields(t, resp.body)
	want := map[string]string{
		"messageId":            strconv.Quote(id),
		"url":                  `"https://example.com/hook?a=1"`,
		"method":               `"POST"`,
		"header":               `{"Content-Type":["text/plain"],"X-Custom":["one"]}`,
		"body":                 `"hello"`,
		"maxRetries":           `2`,
		"retryDelayExpression": `"1000 * retried"`,
		"notBefore":            strconv.FormatInt(testNow.Add(10*time.Second).UnixMilli(), 10),
		"createdAt":            strconv.FormatInt(testNow.UnixMilli(), 10),
		"callback":             `"https://example.com/callback"`,
		"failureCallback":      `"https://example.com/failure"`,
		"callerIP":             `"127.0.0.1"`,
		"label":                `"billing"`,
		"labels":               `["billing"]`,
	}
	for key, value := range want {
		got, ok := fields[key]
		if !ok {
			t.Errorf("field %s is missing from %s", key, resp.body)
			continue
		}
		var gotValue, wantValue any
		json.Unmarshal(got, &gotValue)
		json.Unmarshal([]byte(value), &wantValue)
		if !reflect.DeepEqual(gotValue, wantValue) {
			t.Errorf("field %s = %s, want %s", key, got, value)
		}
	}
	for _, key := range []string{"bodyBase64", "topicName", "urlGroup", "queueName", "scheduleId"} {
		if _, ok := fields[key]; ok {
			t.Errorf("field %s is present in %s, want it omitted", key, resp.body)
		}
	}
}

func TestMessageGetBodyForms(t *testing.T) {
	s, _ := newManagementServer(t)
	binary := string([]byte{0xff, 0xfe, 0x00, 0x01})

	binaryID := s.publishOK(t, hookTarget, nil, binary)
	fields := rawFields(t, s.sendOK(t, http.MethodGet, "/v2/messages/"+binaryID, "", http.StatusOK).body)
	if got, want := string(fields["bodyBase64"]), strconv.Quote(base64.StdEncoding.EncodeToString([]byte(binary))); got != want {
		t.Errorf("bodyBase64 = %s, want %s", got, want)
	}
	if _, ok := fields["body"]; ok {
		t.Errorf("body is present for a non-UTF-8 body, want only bodyBase64")
	}

	emptyID := s.publishOK(t, hookTarget, nil, "")
	fields = rawFields(t, s.sendOK(t, http.MethodGet, "/v2/messages/"+emptyID, "", http.StatusOK).body)
	for _, key := range []string{"body", "bodyBase64", "header"} {
		if _, ok := fields[key]; ok {
			t.Errorf("field %s is present for an empty body without headers, want it omitted", key)
		}
	}
}

func TestManagementNotFound(t *testing.T) {
	s, _ := newManagementServer(t)
	tests := []struct {
		method, target, message string
	}{
		{http.MethodGet, "/v2/messages/msg_missing",
			"message msg_missing not found; delivered and failed messages stay readable for the message retention only"},
		{http.MethodDelete, "/v2/messages/msg_missing", "message msg_missing not found or already finished"},
		{http.MethodGet, "/v2/dlq/dlq_missing", "dlq entry dlq_missing not found; it was deleted, retried or expired"},
		{http.MethodDelete, "/v2/dlq/dlq_missing", "dlq entry dlq_missing not found; it was deleted, retried or expired"},
		{http.MethodPost, "/v2/dlq/retry/dlq_missing", "dlq entry dlq_missing not found; it was deleted, retried or expired"},
		{http.MethodGet, "/v2/nothing", "route not found: GET /v2/nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			checkError(t, s.send(t, tt.method, tt.target, ""), http.StatusNotFound, tt.message)
		})
	}
}

func TestMessageCancelOne(t *testing.T) {
	s, _ := newManagementServer(t)
	id := s.publishOK(t, hookTarget, nil, "x")
	other := s.publishOK(t, hookTarget, nil, "y")

	resp := s.sendOK(t, http.MethodDelete, "/v2/messages/"+id, "", http.StatusOK)
	if got := string(resp.body); got != "{\"cancelled\":1}\n" {
		t.Errorf("body = %q, want {\"cancelled\":1}", got)
	}
	if got := stateOf(t, s, id); got != ferry.MessageStateCanceled {
		t.Errorf("state of the cancelled message = %s, want CANCELED", got)
	}
	if got := stateOf(t, s, other); got != ferry.MessageStateCreated {
		t.Errorf("state of the other message = %s, want CREATED", got)
	}

	checkError(t, s.send(t, http.MethodDelete, "/v2/messages/"+id, ""), http.StatusNotFound,
		"message "+id+" not found or already finished")
}

func TestMessageCancelFinished(t *testing.T) {
	s, clock := newManagementServer(t)
	delivered := &ferry.Message{}
	deliverMessage(t, s, clock, delivered)
	failed := &ferry.Message{}
	deadLetter(t, s, clock, failed, serverError)

	for _, id := range []string{delivered.ID, failed.ID} {
		checkError(t, s.send(t, http.MethodDelete, "/v2/messages/"+id, ""), http.StatusNotFound,
			"message "+id+" not found or already finished")
	}
	if got := stateOf(t, s, delivered.ID); got != ferry.MessageStateDelivered {
		t.Errorf("state of the delivered message = %s, want DELIVERED", got)
	}
	if got := stateOf(t, s, failed.ID); got != ferry.MessageStateFailed {
		t.Errorf("state of the failed message = %s, want FAILED", got)
	}
}

func TestMessageCancelActive(t *testing.T) {
	s, clock := newManagementServer(t)
	m := storeMessage(t, s, clock, &ferry.Message{})
	claimOnly(t, s, clock, m.ID)

	s.sendOK(t, http.MethodDelete, "/v2/messages/"+m.ID, "", http.StatusOK)

	events, err := s.store.EventList(context.Background(), &store.EventListParams{MessageID: m.ID})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	var states []ferry.MessageState
	for _, e := range events {
		states = append(states, e.State)
	}
	want := []ferry.MessageState{ferry.MessageStateCreated, ferry.MessageStateActive,
		ferry.MessageStateCancelRequested, ferry.MessageStateCanceled}
	if !slices.Equal(states, want) {
		t.Errorf("event states = %v, want %v", states, want)
	}
}

// cancelCase is one bulk cancel: the request, built from the ids of the
// test's waiting messages, and the indexes of the messages it must cancel.
type cancelCase struct {
	name   string
	target func(ids []string) string
	body   func(ids []string) string
	cancel []int
}

// fixedTarget returns a target builder that ignores the ids.
func fixedTarget(target string) func([]string) string {
	return func([]string) string { return target }
}

func TestMessagesCancelBulk(t *testing.T) {
	// Each case stores a delivered message, which no cancel may touch, and
	// four waiting messages, created one minute apart:
	//   0: /a, label x, queue q1
	//   1: /a, label y
	//   2: /b, label x, queue q2
	//   3: /b, no label
	created := func(i int) string {
		return strconv.FormatInt(testNow.Add(time.Duration(i)*time.Minute).UnixMilli(), 10)
	}
	tests := []cancelCase{
		{name: "JSON body ids", target: fixedTarget("/v2/messages"),
			body: func(ids []string) string {
				return `{"messageIds":["` + ids[0] + `","` + ids[2] + `","msg_missing"]}`
			}, cancel: []int{0, 2}},
		{name: "JSON body empty list", target: fixedTarget("/v2/messages"),
			body: func([]string) string { return `{"messageIds":[]}` }},
		{name: "no body cancels all", target: fixedTarget("/v2/messages"), cancel: []int{0, 1, 2, 3}},
		{name: "query ids repeated",
			target: func(ids []string) string { return "/v2/messages?messageIds=" + ids[1] + "&messageIds=" + ids[3] },
			cancel: []int{1, 3}},
		{name: "query ids comma-separated",
			target: func(ids []string) string { return "/v2/messages?messageIds=" + ids[1] + "," + ids[2] },
			cancel: []int{1, 2}},
		{name: "url filter", target: fixedTarget("/v2/messages?url=https://example.com/b"), cancel: []int{2, 3}},
		{name: "label filter", target: fixedTarget("/v2/messages?label=x"), cancel: []int{0, 2}},
		{name: "label filter repeated", target: fixedTarget("/v2/messages?label=x&label=y"), cancel: []int{0, 1, 2}},
		{name: "queue filter", target: fixedTarget("/v2/messages?queueName=q2"), cancel: []int{2}},
		{name: "filters combine with AND", target: fixedTarget("/v2/messages?url=https://example.com/a&label=x"),
			cancel: []int{0}},
		{name: "from date", target: fixedTarget("/v2/messages?fromDate=" + created(2)), cancel: []int{2, 3}},
		{name: "to date", target: fixedTarget("/v2/messages?toDate=" + created(1)), cancel: []int{0, 1}},
		{name: "date range", target: fixedTarget("/v2/messages?fromDate=" + created(1) + "&toDate=" + created(2)),
			cancel: []int{1, 2}},
		{name: "count ignored with a filter", target: fixedTarget("/v2/messages?label=x&count=1"), cancel: []int{0, 2}},
		{name: "count ignored on cancel all", target: fixedTarget("/v2/messages?count=1"), cancel: []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clock := newManagementServer(t)
			delivered := &ferry.Message{URL: "https://example.com/a", Labels: []string{"x"}}
			deliverMessage(t, s, clock, delivered)
			clock.ms.Store(testNow.UnixMilli())

			waiting := []*ferry.Message{
				{URL: "https://example.com/a", Labels: []string{"x"}, QueueName: "q1"},
				{URL: "https://example.com/a", Labels: []string{"y"}},
				{URL: "https://example.com/b", Labels: []string{"x"}, QueueName: "q2"},
				{URL: "https://example.com/b"},
			}
			ids := make([]string, len(waiting))
			for i, m := range waiting {
				if i > 0 {
					clock.advance(time.Minute)
				}
				// The messages are due an hour later, so no claim of the
				// setup picks them up.
				m.NotBefore = clock.now().Add(time.Hour)
				ids[i] = storeMessage(t, s, clock, m).ID
			}
			body := ""
			if tt.body != nil {
				body = tt.body(ids)
			}

			resp := s.sendOK(t, http.MethodDelete, tt.target(ids), body, http.StatusOK)
			var got struct {
				Cancelled *int `json:"cancelled"`
			}
			decodeInto(t, resp, &got)
			if got.Cancelled == nil || *got.Cancelled != len(tt.cancel) {
				t.Errorf("response %s, want cancelled %d", resp.body, len(tt.cancel))
			}
			for i, id := range ids {
				want := ferry.MessageStateCreated
				if slices.Contains(tt.cancel, i) {
					want = ferry.MessageStateCanceled
				}
				if state := stateOf(t, s, id); state != want {
					t.Errorf("message %d state = %s, want %s", i, state, want)
				}
			}
			if state := stateOf(t, s, delivered.ID); state != ferry.MessageStateDelivered {
				t.Errorf("delivered message state = %s, want DELIVERED", state)
			}
		})
	}
}

func TestMessagesCancelInvalid(t *testing.T) {
	s, _ := newManagementServer(t)
	id := s.publishOK(t, hookTarget, nil, "x")
	tests := []struct {
		name, target, body, message string
	}{
		{"from date not a number", "/v2/messages?fromDate=yesterday", "",
			`invalid fromDate parameter "yesterday": expected Unix time in milliseconds`},
		{"to date negative", "/v2/messages?toDate=-5", "",
			`invalid toDate parameter "-5": expected Unix time in milliseconds`},
		{"JSON body", "/v2/messages", "{messageIds}",
			`invalid JSON body: invalid character 'm' looking for beginning of object key string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, s.send(t, http.MethodDelete, tt.target, tt.body), http.StatusBadRequest, tt.message)
		})
	}
	if got := stateOf(t, s, id); got != ferry.MessageStateCreated {
		t.Errorf("state after rejected cancels = %s, want CREATED", got)
	}
}

// dlqPage is the part of a GET /v2/dlq response that the tests read.
type dlqPage struct {
	Messages []struct {
		DLQID          string              `json:"dlqId"`
		MessageID      string              `json:"messageId"`
		ResponseStatus *int                `json:"responseStatus"`
		ResponseHeader map[string][]string `json:"responseHeader"`
		ResponseBody   string              `json:"responseBody"`
	} `json:"messages"`
	Cursor string `json:"cursor"`
}

func (p dlqPage) ids() []string {
	ids := make([]string, len(p.Messages))
	for i, m := range p.Messages {
		ids[i] = m.DLQID
	}
	return ids
}

// dlqFixture is five dead-letter entries, oldest first:
//
//	0: /a, label x, 500, three retries
//	1: /a, label y, 404, two retries
//	2: /b, label x, 500
//	3: /b, no label, 0 (timed out)
//	4: /a, label x, 500, non-UTF-8 response body
type dlqFixture struct {
	ids      []string
	messages []*ferry.Message
}

func newDLQFixture(t *testing.T, s *testServer, clock *managementClock) dlqFixture {
	t.Helper()
	notFound := store.AttemptResult{ResponseStatus: http.StatusNotFound, ResponseBody: []byte("no such page"),
		Error: "destination answered 404"}
	timeout := store.AttemptResult{Error: "timed out after 1s without a response"}
	binary := serverError
	binary.ResponseBody = []byte{0xff, 0x00, 0xfe}

	specs := []struct {
		m      *ferry.Message
		result store.AttemptResult
	}{
		{&ferry.Message{URL: "https://example.com/a", Labels: []string{"x"}, MaxRetries: 3}, serverError},
		{&ferry.Message{URL: "https://example.com/a", Labels: []string{"y"}, MaxRetries: 2}, notFound},
		{&ferry.Message{URL: "https://example.com/b", Labels: []string{"x"}}, serverError},
		{&ferry.Message{URL: "https://example.com/b"}, timeout},
		{&ferry.Message{URL: "https://example.com/a", Labels: []string{"x"}}, binary},
	}
	var f dlqFixture
	for _, spec := range specs {
		spec.m.Body = []byte("payload")
		spec.m.Header = http.Header{"Content-Type": {"text/plain"}}
		f.ids = append(f.ids, deadLetter(t, s, clock, spec.m, spec.result))
		f.messages = append(f.messages, spec.m)
		clock.advance(time.Minute)
	}
	return f
}

// pick returns the entry ids at the given indexes.
func (f dlqFixture) pick(indexes ...int) []string {
	ids := make([]string, len(indexes))
	for i, index := range indexes {
		ids[i] = f.ids[index]
	}
	return ids
}

// remainingDLQ returns the ids of all entries left, oldest first.
func remainingDLQ(t *testing.T, s *testServer) []string {
	t.Helper()
	entries, err := s.store.DLQList(context.Background(), &store.DLQListParams{Limit: 1000})
	if err != nil {
		t.Fatalf("DLQList: %v", err)
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

// without returns ids minus the ones in remove, in order.
func without(ids []string, remove ...string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(remove, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestDLQListFields(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)

	resp := s.sendOK(t, http.MethodGet, "/v2/dlq", "", http.StatusOK)
	var page dlqPage
	decodeInto(t, resp, &page)
	if !slices.Equal(page.ids(), f.ids) {
		t.Fatalf("entries = %v, want %v (oldest first)", page.ids(), f.ids)
	}
	if _, ok := rawFields(t, resp.body)["cursor"]; ok {
		t.Errorf("cursor is present on the only page: %s", resp.body)
	}

	var wrapper struct {
		Messages []map[string]json.RawMessage `json:"messages"`
	}
	decodeInto(t, resp, &wrapper)
	entries := wrapper.Messages

	first := entries[0]
	checks := map[string]string{
		"dlqId":          strconv.Quote(f.ids[0]),
		"messageId":      strconv.Quote(f.messages[0].ID),
		"url":            `"https://example.com/a"`,
		"responseStatus": `500`,
		"responseHeader": `{"Content-Type":["text/plain"],"X-Trace":["a","b"]}`,
		"responseBody":   `"boom"`,
		"body":           `"payload"`,
		"header":         `{"Content-Type":["text/plain"]}`,
		"maxRetries":     `3`,
		"error":          `"destination answered 500"`,
	}
	for key, want := range checks {
		if got := string(first[key]); got != want {
			t.Errorf("entry 0 field %s = %s, want %s", key, got, want)
		}
	}

	// An attempt without an HTTP response still reports responseStatus, as
	// 0.
	if got := string(entries[3]["responseStatus"]); got != "0" {
		t.Errorf("entry 3 responseStatus = %q, want 0", got)
	}
	if got := string(entries[3]["error"]); got != `"timed out after 1s without a response"` {
		t.Errorf("entry 3 error = %s", got)
	}
	for _, key := range []string{"responseBody", "responseBodyBase64", "responseHeader"} {
		if _, ok := entries[3][key]; ok {
			t.Errorf("entry 3 has %s, want it omitted without a response", key)
		}
	}

	if got, want := string(entries[4]["responseBodyBase64"]), `"/wD+"`; got != want {
		t.Errorf("entry 4 responseBodyBase64 = %s, want %s", got, want)
	}
	if _, ok := entries[4]["responseBody"]; ok {
		t.Errorf("entry 4 has responseBody for a non-UTF-8 body, want only responseBodyBase64")
	}
}

func TestDLQListFilters(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)
	tests := []struct {
		query string
		want  []string
	}{
		{"responseStatus=500", f.pick(0, 2, 4)},
		{"responseStatus=404", f.pick(1)},
		{"responseStatus=0", f.pick(3)},
		{"responseStatus=404,0", f.pick(1, 3)},
		{"url=https://example.com/b", f.pick(2, 3)},
		{"label=x", f.pick(0, 2, 4)},
		{"label=x&responseStatus=500&url=https://example.com/a", f.pick(0, 4)},
		{"messageId=" + f.messages[1].ID, f.pick(1)},
		{"dlqIds=" + f.ids[1] + "&dlqIds=" + f.ids[3], f.pick(1, 3)},
		{"dlqIds=" + f.ids[0] + "," + f.ids[4], f.pick(0, 4)},
		{"label=none", nil},
		{"order=latestFirst", f.pick(4, 3, 2, 1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var page dlqPage
			decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/dlq?"+tt.query, "", http.StatusOK), &page)
			if got := page.ids(); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("entries = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDLQListPaging(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)

	for _, tt := range []struct {
		query string
		want  []string
		pages int
	}{
		{"count=2", f.ids, 3},
		{"count=5", f.ids, 1},
		{"count=1&label=x", f.pick(0, 2, 4), 3},
		{"count=2&order=latestFirst", f.pick(4, 3, 2, 1, 0), 3},
	} {
		t.Run(tt.query, func(t *testing.T) {
			var got []string
			cursor := ""
			pages := 0
			for pages < 10 {
				target := "/v2/dlq?" + tt.query
				if cursor != "" {
					target += "&cursor=" + cursor
				}
				resp := s.sendOK(t, http.MethodGet, target, "", http.StatusOK)
				pages++
				var page dlqPage
				decodeInto(t, resp, &page)
				got = append(got, page.ids()...)

				raw, ok := rawFields(t, resp.body)["cursor"]
				if !ok {
					break
				}
				if err := json.Unmarshal(raw, &cursor); err != nil || cursor == "" {
					t.Fatalf("cursor = %s, want a non-empty string or no cursor key", raw)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries over all pages = %v, want %v", got, tt.want)
			}
			if pages != tt.pages {
				t.Errorf("pages = %d, want %d", pages, tt.pages)
			}
		})
	}
}

func TestDLQListInvalid(t *testing.T) {
	s, _ := newManagementServer(t)
	tests := []struct {
		query, message string
	}{
		{"count=0", `invalid count parameter "0": expected an integer from 1 to 100`},
		{"count=101", `invalid count parameter "101": expected an integer from 1 to 100`},
		{"responseStatus=oops", `invalid responseStatus parameter "oops": expected an HTTP status code such as 500`},
		{"order=sideways", `invalid order parameter "sideways": expected latestFirst or earliestFirst`},
		{"fromDate=1.5", `invalid fromDate parameter "1.5": expected Unix time in milliseconds`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			checkError(t, s.send(t, http.MethodGet, "/v2/dlq?"+tt.query, ""), http.StatusBadRequest, tt.message)
		})
	}
}

func TestDLQGetAndDelete(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)
	id := f.ids[1]

	resp := s.sendOK(t, http.MethodGet, "/v2/dlq/"+id, "", http.StatusOK)
	fields := rawFields(t, resp.body)
	for key, want := range map[string]string{
		"dlqId":          strconv.Quote(id),
		"messageId":      strconv.Quote(f.messages[1].ID),
		"responseStatus": "404",
		"responseBody":   `"no such page"`,
	} {
		if got := string(fields[key]); got != want {
			t.Errorf("field %s = %s, want %s", key, got, want)
		}
	}

	s.sendOK(t, http.MethodDelete, "/v2/dlq/"+id, "", http.StatusOK)
	notFound := "dlq entry " + id + " not found; it was deleted, retried or expired"
	checkError(t, s.send(t, http.MethodDelete, "/v2/dlq/"+id, ""), http.StatusNotFound, notFound)
	checkError(t, s.send(t, http.MethodGet, "/v2/dlq/"+id, ""), http.StatusNotFound, notFound)

	if got, want := remainingDLQ(t, s), without(f.ids, id); !slices.Equal(got, want) {
		t.Errorf("entries left = %v, want %v", got, want)
	}
	// The failed message stays readable after its entry is gone.
	if got := stateOf(t, s, f.messages[1].ID); got != ferry.MessageStateFailed {
		t.Errorf("state of the message = %s, want FAILED", got)
	}
}

func TestDLQDeleteBulk(t *testing.T) {
	tests := []struct {
		name   string
		target func(f dlqFixture) string
		body   func(f dlqFixture) string
		delete []int
	}{
		{"JSON body ids", func(dlqFixture) string { return "/v2/dlq" },
			func(f dlqFixture) string {
				return `{"dlqIds":["` + f.ids[0] + `","` + f.ids[3] + `","dlq_missing"]}`
			}, []int{0, 3}},
		{"JSON body empty list", func(dlqFixture) string { return "/v2/dlq" },
			func(dlqFixture) string { return `{"dlqIds":[]}` }, nil},
		{"query ids repeated", func(f dlqFixture) string { return "/v2/dlq?dlqIds=" + f.ids[1] + "&dlqIds=" + f.ids[2] },
			nil, []int{1, 2}},
		{"query ids comma-separated", func(f dlqFixture) string { return "/v2/dlq?dlqIds=" + f.ids[1] + "," + f.ids[4] },
			nil, []int{1, 4}},
		{"query filter", func(dlqFixture) string { return "/v2/dlq?responseStatus=500&label=x" },
			nil, []int{0, 2, 4}},
		{"no selection deletes all", func(dlqFixture) string { return "/v2/dlq" }, nil, []int{0, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clock := newManagementServer(t)
			f := newDLQFixture(t, s, clock)
			body := ""
			if tt.body != nil {
				body = tt.body(f)
			}

			resp := s.sendOK(t, http.MethodDelete, tt.target(f), body, http.StatusOK)
			var got struct {
				Deleted *int `json:"deleted"`
			}
			decodeInto(t, resp, &got)
			if got.Deleted == nil || *got.Deleted != len(tt.delete) {
				t.Errorf("response %s, want deleted %d", resp.body, len(tt.delete))
			}
			if _, ok := rawFields(t, resp.body)["cursor"]; ok {
				t.Errorf("cursor is present after deleting everything selected: %s", resp.body)
			}
			if left, want := remainingDLQ(t, s), without(f.ids, f.pick(tt.delete...)...); !slices.Equal(left, want) {
				t.Errorf("entries left = %v, want %v", left, want)
			}
		})
	}
}

func TestDLQDeletePaging(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)

	resp := s.sendOK(t, http.MethodDelete, "/v2/dlq?count=3", "", http.StatusOK)
	fields := rawFields(t, resp.body)
	if got := string(fields["deleted"]); got != "3" {
		t.Errorf("first page deleted = %s, want 3", got)
	}
	if _, ok := fields["cursor"]; !ok {
		t.Errorf("first page has no cursor although two entries remain: %s", resp.body)
	}

	resp = s.sendOK(t, http.MethodDelete, "/v2/dlq?count=3", "", http.StatusOK)
	fields = rawFields(t, resp.body)
	if got := string(fields["deleted"]); got != "2" {
		t.Errorf("second page deleted = %s, want 2", got)
	}
	if _, ok := fields["cursor"]; ok {
		t.Errorf("last page has a cursor: %s", resp.body)
	}
	if left := remainingDLQ(t, s); len(left) != 0 {
		t.Errorf("entries left = %v, want none of %v", left, f.ids)
	}
}

func TestDLQRetryOne(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)
	failed := f.messages[0]

	resp := s.do(t, http.MethodPost, "/v2/dlq/retry/"+f.ids[0], headers(
		"Authorization", "Bearer "+testToken,
		"Upstash-Retries", "7",
		"Upstash-Delay", "30s",
	), "")
	if resp.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201 (body %s)", resp.status, resp.body)
	}
	newID := decodeMessageID(t, resp)
	if newID == failed.ID {
		t.Fatalf("retry reused the failed message id %s", newID)
	}

	checkError(t, s.send(t, http.MethodGet, "/v2/dlq/"+f.ids[0], ""), http.StatusNotFound,
		"dlq entry "+f.ids[0]+" not found; it was deleted, retried or expired")

	m := s.message(t, newID)
	if m.State != ferry.MessageStateCreated {
		t.Errorf("new message state = %s, want CREATED", m.State)
	}
	if m.MaxRetries != 7 {
		t.Errorf("new message MaxRetries = %d, want 7 from Upstash-Retries", m.MaxRetries)
	}
	if want := clock.now().Add(30 * time.Second); !m.NotBefore.Equal(want) {
		t.Errorf("new message NotBefore = %v, want %v from Upstash-Delay", m.NotBefore, want)
	}
	if m.URL != failed.URL || string(m.Body) != "payload" || !slices.Equal(m.Labels, failed.Labels) {
		t.Errorf("new message = %s %q labels %v, want %s %q labels %v",
			m.URL, m.Body, m.Labels, failed.URL, "payload", failed.Labels)
	}
	if got := m.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("new message Content-Type = %q, want the failed message's text/plain", got)
	}
	if m.Retried != 0 || m.Attempts != 0 {
		t.Errorf("new message Retried, Attempts = %d, %d, want 0, 0", m.Retried, m.Attempts)
	}

	var got struct {
		MessageID  string `json:"messageId"`
		MaxRetries int    `json:"maxRetries"`
	}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/messages/"+newID, "", http.StatusOK), &got)
	if got.MessageID != newID || got.MaxRetries != 7 {
		t.Errorf("GET /v2/messages/%s = %+v, want messageId %s and maxRetries 7", newID, got, newID)
	}

	// Without override headers the new message keeps the failed settings.
	resp = s.sendOK(t, http.MethodPost, "/v2/dlq/retry/"+f.ids[1], "", http.StatusCreated)
	if unchanged := s.message(t, decodeMessageID(t, resp)); unchanged.MaxRetries != f.messages[1].MaxRetries {
		t.Errorf("MaxRetries without override = %d, want %d", unchanged.MaxRetries, f.messages[1].MaxRetries)
	}
}

func TestDLQRetryRejectsInvalidHeader(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)

	resp := s.do(t, http.MethodPost, "/v2/dlq/retry/"+f.ids[0],
		headers("Authorization", "Bearer "+testToken, "Upstash-Retries", "many"), "")
	checkError(t, resp, http.StatusBadRequest, `invalid Upstash-Retries header "many": expected an integer from 0 to 100`)
	if got := remainingDLQ(t, s); !slices.Equal(got, f.ids) {
		t.Errorf("entries after a rejected retry = %v, want all of %v", got, f.ids)
	}
}

// retryPage is a POST /v2/dlq/retry response.
type retryPage struct {
	Responses []struct {
		MessageID string `json:"messageId"`
	} `json:"responses"`
}

func TestDLQRetryBulk(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newDLQFixture(t, s, clock)

	resp := s.do(t, http.MethodPost, "/v2/dlq/retry?dlqIds="+f.ids[1]+","+f.ids[3],
		headers("Authorization", "Bearer "+testToken, "Upstash-Retries", "5"), "")
	if resp.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201 (body %s)", resp.status, resp.body)
	}
	var page retryPage
	decodeInto(t, resp, &page)
	if len(page.Responses) != 2 {
		t.Fatalf("responses = %s, want 2", resp.body)
	}
	if _, ok := rawFields(t, resp.body)["cursor"]; ok {
		t.Errorf("cursor is present although every selected entry was retried: %s", resp.body)
	}
	for _, r := range page.Responses {
		m := s.message(t, r.MessageID)
		if m.MaxRetries != 5 || m.State != ferry.MessageStateCreated {
			t.Errorf("new message %s: MaxRetries %d state %s, want 5 and CREATED", m.ID, m.MaxRetries, m.State)
		}
	}
	if got, want := remainingDLQ(t, s), f.pick(0, 2, 4); !slices.Equal(got, want) {
		t.Errorf("entries left = %v, want %v", got, want)
	}

	// The rest, one per call, until the response has no cursor.
	retried := 0
	for calls := 1; calls <= 10; calls++ {
		resp := s.sendOK(t, http.MethodPost, "/v2/dlq/retry?count=1", "", http.StatusCreated)
		decodeInto(t, resp, &page)
		retried += len(page.Responses)
		_, more := rawFields(t, resp.body)["cursor"]
		if !more {
			if calls != 3 {
				t.Errorf("calls until the cursor was absent = %d, want 3", calls)
			}
			break
		}
	}
	if retried != 3 {
		t.Errorf("retried %d entries with count=1, want 3", retried)
	}
	if left := remainingDLQ(t, s); len(left) != 0 {
		t.Errorf("entries left = %v, want none", left)
	}
}

// eventsPage is the part of a GET /v2/events or /v2/logs response that the
// tests read.
type eventsPage struct {
	Events []eventSummary `json:"events"`
	Logs   []eventSummary `json:"logs"`
	Cursor string         `json:"cursor"`
}

type eventSummary struct {
	MessageID string `json:"messageId"`
	State     string `json:"state"`
	Time      int64  `json:"time"`
}

func (e eventSummary) String() string { return e.MessageID + "/" + e.State }

// eventsFixture stores four messages and returns their ids with every event,
// oldest first, each one second after the one before:
//
//	m1 (label a, /one): delivered
//	m2 (label b, /two): failed after one retry, retry delay expression set
//	m3 (label a, /one): cancelled while waiting
//	m4 (no label, /two): claimed, attempt in flight
type eventsFixture struct {
	m1, m2, m3, m4 string
	all            []eventSummary
}

func newEventsFixture(t *testing.T, s *testServer, clock *managementClock) eventsFixture {
	t.Helper()
	ctx := context.Background()
	var f eventsFixture
	var all []eventSummary
	record := func(id string, states ...ferry.MessageState) {
		for _, st := range states {
			all = append(all, eventSummary{MessageID: id, State: string(st)})
		}
	}

	m1 := &ferry.Message{URL: "https://example.com/one", Labels: []string{"a"}}
	deliverMessage(t, s, clock, m1)
	record(m1.ID, ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateDelivered)
	clock.advance(time.Second)

	m2 := storeMessage(t, s, clock, &ferry.Message{URL: "https://example.com/two", Labels: []string{"b"},
		MaxRetries: 1, RetryDelayExpr: "1000"})
	clock.advance(time.Second)
	claimed := claimOnly(t, s, clock, m2.ID)
	clock.advance(time.Second)
	applied, err := s.store.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: m2.ID, Attempts: claimed.Attempts, Now: clock.now(), Result: serverError, NextAt: clock.now().Add(time.Second),
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want applied", applied, err)
	}
	clock.advance(time.Second)
	claimed = claimOnly(t, s, clock, m2.ID)
	clock.advance(time.Second)
	_, applied, err = s.store.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: m2.ID, Attempts: claimed.Attempts, Now: clock.now(), Result: serverError, DLQID: ferry.NewDLQID(),
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkFailed = %v, %v; want applied", applied, err)
	}
	record(m2.ID, ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateRetry,
		ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateFailed)
	clock.advance(time.Second)

	m3 := storeMessage(t, s, clock, &ferry.Message{URL: "https://example.com/one", Labels: []string{"a"},
		NotBefore: clock.now().Add(time.Hour)})
	clock.advance(time.Second)
	s.sendOK(t, http.MethodDelete, "/v2/messages/"+m3.ID, "", http.StatusOK)
	record(m3.ID, ferry.MessageStateCreated, ferry.MessageStateCanceled)
	clock.advance(time.Second)

	m4 := storeMessage(t, s, clock, &ferry.Message{URL: "https://example.com/two"})
	clock.advance(time.Second)
	claimOnly(t, s, clock, m4.ID)
	record(m4.ID, ferry.MessageStateCreated, ferry.MessageStateActive)

	f.m1, f.m2, f.m3, f.m4 = m1.ID, m2.ID, m3.ID, m4.ID
	f.all = all
	return f
}

// of returns the events of the fixture for which keep is true, oldest
// first.
func (f eventsFixture) of(keep func(e eventSummary) bool) []string {
	var out []string
	for _, e := range f.all {
		if keep(e) {
			out = append(out, e.String())
		}
	}
	return out
}

func summaries(list []eventSummary) []string {
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.String()
	}
	return out
}

func reversed(list []string) []string {
	out := slices.Clone(list)
	slices.Reverse(out)
	return out
}

func TestEventsResponseKeys(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newEventsFixture(t, s, clock)
	want := reversed(f.of(func(eventSummary) bool { return true }))

	for _, tt := range []struct {
		path, key, otherKey string
	}{
		{"/v2/events", "events", "logs"},
		{"/v2/logs", "logs", "events"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp := s.sendOK(t, http.MethodGet, tt.path, "", http.StatusOK)
			fields := rawFields(t, resp.body)
			if _, ok := fields[tt.otherKey]; ok {
				t.Errorf("response has key %q, want only %q", tt.otherKey, tt.key)
			}
			if _, ok := fields["cursor"]; ok {
				t.Errorf("cursor is present on the only page")
			}
			var page eventsPage
			decodeInto(t, resp, &page)
			list := page.Events
			if tt.key == "logs" {
				list = page.Logs
			}
			if got := summaries(list); !slices.Equal(got, want) {
				t.Errorf("%s = %v, want %v (newest first)", tt.key, got, want)
			}
		})
	}
}

func TestEventFields(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newEventsFixture(t, s, clock)

	resp := s.sendOK(t, http.MethodGet, "/v2/events?order=earliestFirst&state=ERROR&messageId="+f.m2, "", http.StatusOK)
	var wrapper struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	decodeInto(t, resp, &wrapper)
	if len(wrapper.Events) != 2 {
		t.Fatalf("ERROR events of m2 = %d, want 2 (body %s)", len(wrapper.Events), resp.body)
	}
	first := wrapper.Events[0]
	for key, want := range map[string]string{
		"messageId":            strconv.Quote(f.m2),
		"state":                `"ERROR"`,
		"url":                  `"https://example.com/two"`,
		"responseStatus":       `500`,
		"responseHeaders":      `{"Content-Type":["text/plain"],"X-Trace":["a","b"]}`,
		"responseHeader":       `{"Content-Type":["text/plain"],"X-Trace":["a","b"]}`,
		"responseBody":         strconv.Quote(base64.StdEncoding.EncodeToString([]byte("boom"))),
		"retryDelayExpression": `"1000"`,
		"retryDelayExpr":       `"1000"`,
		"maxRetries":           `1`,
		"label":                `"b"`,
		"error":                `"destination answered 500"`,
		"retried":              `0`,
		"time":                 strconv.FormatInt(testNow.Add(5*time.Second).UnixMilli(), 10),
	} {
		if got := string(first[key]); got != want {
			t.Errorf("field %s = %s, want %s", key, got, want)
		}
	}
	if got := string(wrapper.Events[1]["retried"]); got != "1" {
		t.Errorf("second ERROR event retried = %s, want 1", got)
	}

	resp = s.sendOK(t, http.MethodGet, "/v2/events?state=CANCELED", "", http.StatusOK)
	var page eventsPage
	decodeInto(t, resp, &page)
	if got := summaries(page.Events); !slices.Equal(got, []string{f.m3 + "/CANCELED"}) {
		t.Errorf("CANCELED events = %v, want only m3, spelled CANCELED", got)
	}
}

func TestEventsFilters(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newEventsFixture(t, s, clock)
	timeOf := func(seconds int) string {
		return strconv.FormatInt(testNow.Add(time.Duration(seconds)*time.Second).UnixMilli(), 10)
	}
	state := func(states ...string) func(eventSummary) bool {
		return func(e eventSummary) bool { return slices.Contains(states, e.State) }
	}
	message := func(ids ...string) func(eventSummary) bool {
		return func(e eventSummary) bool { return slices.Contains(ids, e.MessageID) }
	}

	tests := []struct {
		query string
		want  []string
	}{
		{"state=DELIVERED", f.of(state("DELIVERED"))},
		{"state=IN_PROGRESS", f.of(state("ACTIVE", "RETRY", "ERROR"))},
		{"state=CANCELLED", f.of(state("CANCELED"))},
		{"state=canceled", f.of(state("CANCELED"))},
		{"state=DELIVERED,FAILED", f.of(state("DELIVERED", "FAILED"))},
		{"state=CREATED&state=RETRY", f.of(state("CREATED", "RETRY"))},
		{"messageId=" + f.m2, f.of(message(f.m2))},
		{"messageIds=" + f.m1 + "," + f.m4, f.of(message(f.m1, f.m4))},
		{"messageIds=" + f.m1 + "&messageIds=" + f.m3, f.of(message(f.m1, f.m3))},
		{"label=a", f.of(message(f.m1, f.m3))},
		{"label=a&state=CREATED", []string{f.m1 + "/CREATED", f.m3 + "/CREATED"}},
		{"url=https://example.com/two&state=ACTIVE", []string{f.m2 + "/ACTIVE", f.m2 + "/ACTIVE", f.m4 + "/ACTIVE"}},
		// m1's events are at 0 s, 1 s and 2 s, and m2's start at 3 s.
		{"fromDate=" + timeOf(2) + "&toDate=" + timeOf(3), []string{f.m1 + "/DELIVERED", f.m2 + "/CREATED"}},
		{"label=nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var page eventsPage
			decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/events?order=earliestFirst&"+tt.query, "", http.StatusOK), &page)
			if got := summaries(page.Events); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEventsOrderAndPaging(t *testing.T) {
	s, clock := newManagementServer(t)
	f := newEventsFixture(t, s, clock)
	oldestFirst := f.of(func(eventSummary) bool { return true })

	labelA := f.of(func(e eventSummary) bool { return e.MessageID == f.m1 || e.MessageID == f.m3 })

	// The fixture has 14 events, 5 of them with label a.
	tests := []struct {
		path, query string
		want        []string
		pages       int
		newestFirst bool
	}{
		{"/v2/events", "order=earliestFirst&count=3", oldestFirst, 5, false},
		{"/v2/events", "order=latestFirst&count=3", reversed(oldestFirst), 5, true},
		{"/v2/events", "count=3", reversed(oldestFirst), 5, true},
		{"/v2/logs", "order=earliestFirst&count=4", oldestFirst, 4, false},
		{"/v2/events", "order=earliestFirst&count=14", oldestFirst, 1, false},
		{"/v2/events", "order=earliestFirst&count=2&label=a", labelA, 3, false},
		{"/v2/logs", "order=latestFirst&count=2&label=a", reversed(labelA), 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.path+"?"+tt.query, func(t *testing.T) {
			var got []string
			var times []int64
			cursor := ""
			pages := 0
			for pages < 20 {
				target := tt.path + "?" + tt.query
				if cursor != "" {
					target += "&cursor=" + cursor
				}
				resp := s.sendOK(t, http.MethodGet, target, "", http.StatusOK)
				pages++
				var page eventsPage
				decodeInto(t, resp, &page)
				list := append(page.Events, page.Logs...)
				got = append(got, summaries(list)...)
				for _, e := range list {
					times = append(times, e.Time)
				}

				raw, ok := rawFields(t, resp.body)["cursor"]
				if !ok {
					break
				}
				if err := json.Unmarshal(raw, &cursor); err != nil || cursor == "" {
					t.Fatalf("cursor = %s, want a non-empty string or no cursor key", raw)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events over all pages = %v, want %v", got, tt.want)
			}
			if pages != tt.pages {
				t.Errorf("pages = %d, want %d", pages, tt.pages)
			}
			if tt.newestFirst {
				slices.Reverse(times)
			}
			if !slices.IsSorted(times) {
				t.Errorf("event times %v are not in the requested order (newest first: %v)", times, tt.newestFirst)
			}
		})
	}
}

func TestEventsInvalid(t *testing.T) {
	s, _ := newManagementServer(t)
	tests := []struct {
		path, query, message string
	}{
		{"/v2/events", "state=BOGUS", `invalid state parameter "BOGUS": expected one of CREATED, ACTIVE, RETRY, ERROR, ` +
			`DELIVERED, FAILED, CANCEL_REQUESTED, CANCELED, IN_PROGRESS`},
		{"/v2/events", "order=sideways", `invalid order parameter "sideways": expected latestFirst or earliestFirst`},
		{"/v2/events", "count=0", `invalid count parameter "0": expected an integer from 1 to 1000`},
		{"/v2/logs", "count=1001", `invalid count parameter "1001": expected an integer from 1 to 1000`},
		{"/v2/events", "count=ten", `invalid count parameter "ten": expected an integer from 1 to 1000`},
		{"/v2/events", "cursor=abc", `invalid cursor parameter "abc": pass the cursor of the previous page unchanged`},
		{"/v2/logs", "cursor=-1", `invalid cursor parameter "-1": pass the cursor of the previous page unchanged`},
		{"/v2/events", "fromDate=yesterday", `invalid fromDate parameter "yesterday": expected Unix time in milliseconds`},
	}
	for _, tt := range tests {
		t.Run(tt.path+"?"+tt.query, func(t *testing.T) {
			checkError(t, s.send(t, http.MethodGet, tt.path+"?"+tt.query, ""), http.StatusBadRequest, tt.message)
		})
	}
}

// keysResponse is the body of GET /v2/keys and of a rotation.
type keysResponse struct {
	Current string `json:"current"`
	Next    string `json:"next"`
}

func TestKeysRotate(t *testing.T) {
	var changed atomic.Pointer[store.SigningKeys]
	s := newTestServer(t, func(cfg *Config) {
		cfg.KeysChanged = func(k store.SigningKeys) { changed.Store(&k) }
	})
	initial := store.SigningKeys{Current: "sig_initial_current", Next: "sig_initial_next"}
	if err := s.store.SigningKeysSet(context.Background(), initial); err != nil {
		t.Fatalf("SigningKeysSet: %v", err)
	}

	var got keysResponse
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/keys", "", http.StatusOK), &got)
	if got.Current != initial.Current || got.Next != initial.Next {
		t.Fatalf("GET /v2/keys = %+v, want %+v", got, initial)
	}

	previous := got
	for _, path := range []string{"/v2/keys/rotate", "/v2/rotate"} {
		var rotated keysResponse
		decodeInto(t, s.sendOK(t, http.MethodPost, path, "", http.StatusOK), &rotated)
		if rotated.Current != previous.Next {
			t.Errorf("POST %s current = %q, want the previous next key %q", path, rotated.Current, previous.Next)
		}
		if rotated.Next == "" || rotated.Next == previous.Next || rotated.Next == previous.Current {
			t.Errorf("POST %s next = %q, want a new key (previous pair %+v)", path, rotated.Next, previous)
		}

		var read keysResponse
		decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/keys", "", http.StatusOK), &read)
		if read != rotated {
			t.Errorf("GET /v2/keys after POST %s = %+v, want %+v", path, read, rotated)
		}
		if k := changed.Load(); k == nil || k.Current != rotated.Current || k.Next != rotated.Next {
			t.Errorf("KeysChanged after POST %s got %v, want %+v", path, k, rotated)
		}
		previous = rotated
	}

	resp := s.send(t, http.MethodGet, "/v2/keys/rotate", "")
	if resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v2/keys/rotate status = %d, want 405", resp.status)
	}
}
