package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden with the current output")

// Fixed times of the golden values, with milliseconds so that a lost
// fraction shows.
var (
	goldenCreatedAt = time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	goldenNotBefore = goldenCreatedAt.Add(90 * time.Second)
)

// encodeLikeServer encodes v as the HTTP API writes its responses:
// json.Encoder with HTML escaping off.
func encodeLikeServer(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	encoder := json.NewEncoder(&buf)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v); err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// checkGolden compares the JSON encoding of v with testdata/golden/name.json.
// The golden file holds the encoding indented by json.Indent, which changes
// only whitespace, so key order, escaping and number forms are pinned
// exactly. With -update the file is rewritten instead.
func checkGolden(t *testing.T, name string, v any) []byte {
	t.Helper()
	data := encodeLikeServer(t, v)
	var indented bytes.Buffer
	if err := json.Indent(&indented, data, "", "  "); err != nil {
		t.Fatalf("indent %s: %v", data, err)
	}
	indented.WriteByte('\n')

	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return data
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v; run go test ./wire -update to create it", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("JSON of %s differs from %s; run go test ./wire -update if the change is intended\ngot:\n%s\nwant:\n%s",
			name, path, indented.Bytes(), want)
	}
	return data
}

// fields decodes a JSON object into its undecoded fields.
func fields(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", data, err)
	}
	return m
}

// checkAbsent reports each key of keys that the object has.
func checkAbsent(t *testing.T, object map[string]json.RawMessage, keys ...string) {
	t.Helper()
	for _, key := range keys {
		if v, ok := object[key]; ok {
			t.Errorf("key %s is present with %s, want it omitted", key, v)
		}
	}
}

// checkField reports a field whose JSON is not want.
func checkField(t *testing.T, object map[string]json.RawMessage, key, want string) {
	t.Helper()
	got, ok := object[key]
	if !ok {
		t.Errorf("key %s is missing, want %s", key, want)
		return
	}
	if string(got) != want {
		t.Errorf("%s = %s, want %s", key, got, want)
	}
}

// fullMessage returns a message with every field that the wire form shows.
func fullMessage() *ferry.Message {
	return &ferry.Message{
		ID:     "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",
		State:  ferry.MessageStateCreated,
		URL:    "https://example.com/hook?a=1&b=<2>",
		Method: http.MethodPut,
		Header: http.Header{
			"Content-Type": {"application/json"},
			"X-Multi":      {"one", "two"},
		},
		Body:            []byte(`{"order":42}`),
		MaxRetries:      5,
		Retried:         2,
		RetryDelayExpr:  "1000 * pow(2, retried)",
		Timeout:         30 * time.Second,
		NotBefore:       goldenNotBefore,
		CreatedAt:       goldenCreatedAt,
		Labels:          []string{"billing", "eu"},
		CallerIP:        "203.0.113.7",
		Callback:        "https://example.com/callback",
		FailureCallback: "https://example.com/failure",
		CallbackHeader: http.Header{
			"Upstash-Callback-Retries": {"1"},
		},
		FailureCallbackHeader: http.Header{
			"Upstash-Failure-Callback-Forward-X-Key": {"k"},
		},
		TopicName:    "orders",
		EndpointName: "primary",
		QueueName:    "queue-a",
		ScheduleID:   "scd_01HZZZZZZZZZZZZZZZZZZZZZZZ",
	}
}

// minimalMessage returns a message with an empty body and no headers.
func minimalMessage() *ferry.Message {
	return &ferry.Message{
		ID:        "msg_01HYYYYYYYYYYYYYYYYYYYYYYY",
		URL:       "https://example.com/empty",
		Method:    http.MethodPost,
		NotBefore: goldenCreatedAt,
		CreatedAt: goldenCreatedAt,
	}
}

func TestMessageGolden(t *testing.T) {
	data := checkGolden(t, "message", NewMessage(fullMessage()))
	object := fields(t, data)

	checkField(t, object, "header", `{"Content-Type":["application/json"],"X-Multi":["one","two"]}`)
	checkField(t, object, "topicName", `"orders"`)
	checkField(t, object, "urlGroup", `"orders"`)
	checkField(t, object, "callerIP", `"203.0.113.7"`)
	checkField(t, object, "notBefore", "1893553535678")
	checkField(t, object, "createdAt", "1893553445678")
	checkField(t, object, "body", `"{\"order\":42}"`)
	checkAbsent(t, object, "bodyBase64")
}

func TestMessageEmptyBodyGolden(t *testing.T) {
	data := checkGolden(t, "message_empty_body", NewMessage(minimalMessage()))
	checkAbsent(t, fields(t, data), "body", "bodyBase64", "header", "topicName", "urlGroup", "labels", "label")
}

func TestMessageBinaryBodyGolden(t *testing.T) {
	m := minimalMessage()
	m.Body = []byte{0xff, 0xfe, 'a', 0x00}
	data := checkGolden(t, "message_binary_body", NewMessage(m))
	object := fields(t, data)
	checkField(t, object, "bodyBase64", `"//5hAA=="`)
	checkAbsent(t, object, "body")
}

func TestDLQMessageGolden(t *testing.T) {
	entry := &ferry.DLQEntry{
		ID:             "dlq_01HXXXXXXXXXXXXXXXXXXXXXXX",
		Message:        fullMessage(),
		CreatedAt:      goldenCreatedAt.Add(time.Hour),
		ResponseStatus: http.StatusInternalServerError,
		ResponseHeader: http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}},
		ResponseBody:   []byte("database is down"),
		Error:          "destination answered 500",
	}
	data := checkGolden(t, "dlq_entry", NewDLQMessage(entry))
	object := fields(t, data)
	checkField(t, object, "dlqId", `"dlq_01HXXXXXXXXXXXXXXXXXXXXXXX"`)
	checkField(t, object, "responseStatus", "500")
	checkField(t, object, "responseHeader", `{"Content-Type":["text/plain"],"Set-Cookie":["a=1","b=2"]}`)
	checkField(t, object, "responseBody", `"database is down"`)
	checkAbsent(t, object, "responseBodyBase64")
}

func TestDLQMessageNoResponseGolden(t *testing.T) {
	entry := &ferry.DLQEntry{
		ID:        "dlq_01HWWWWWWWWWWWWWWWWWWWWWWW",
		Message:   minimalMessage(),
		CreatedAt: goldenCreatedAt,
		Error:     "timed out after 1s without a response",
	}
	data := checkGolden(t, "dlq_entry_no_response", NewDLQMessage(entry))
	object := fields(t, data)

	// responseStatus stays in the object when no response arrived, as 0.
	checkField(t, object, "responseStatus", "0")
	checkAbsent(t, object, "responseHeader", "responseBody", "responseBodyBase64", "body", "bodyBase64")
}

func TestDLQMessageBinaryResponseGolden(t *testing.T) {
	entry := &ferry.DLQEntry{
		ID:             "dlq_01HVVVVVVVVVVVVVVVVVVVVVVV",
		Message:        minimalMessage(),
		CreatedAt:      goldenCreatedAt,
		ResponseStatus: http.StatusBadGateway,
		ResponseBody:   []byte{0x1f, 0x8b, 0x08, 0x00},
	}
	data := checkGolden(t, "dlq_entry_binary_response", NewDLQMessage(entry))
	object := fields(t, data)
	checkField(t, object, "responseBodyBase64", `"H4sIAA=="`)
	checkAbsent(t, object, "responseBody")
}

// errorEvent returns the ERROR event of a failed attempt of fullMessage.
func errorEvent() *ferry.Event {
	return &ferry.Event{
		ID:               17,
		MessageID:        "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",
		State:            ferry.MessageStateError,
		Time:             goldenCreatedAt.Add(2 * time.Minute),
		URL:              "https://example.com/hook?a=1&b=<2>",
		Retried:          2,
		ResponseStatus:   http.StatusServiceUnavailable,
		ResponseHeader:   http.Header{"Retry-After": {"10"}},
		ResponseBody:     []byte("try later"),
		Error:            "destination answered 503",
		Message:          fullMessage(),
		NextDeliveryTime: goldenCreatedAt.Add(3 * time.Minute),
	}
}

func TestEventGolden(t *testing.T) {
	data := checkGolden(t, "event", NewEvent(errorEvent()))
	object := fields(t, data)
	checkField(t, object, "state", `"ERROR"`)
	checkField(t, object, "responseHeaders", `{"Retry-After":["10"]}`)
	checkField(t, object, "responseHeader", `{"Retry-After":["10"]}`)
	checkField(t, object, "retryDelayExpression", `"1000 * pow(2, retried)"`)
	checkField(t, object, "retryDelayExpr", `"1000 * pow(2, retried)"`)
	checkField(t, object, "header", `{"Content-Type":["application/json"],"X-Multi":["one","two"]}`)

	// Event bodies are base64 even when they are valid UTF-8.
	checkField(t, object, "body", `"eyJvcmRlciI6NDJ9"`)
	checkField(t, object, "responseBody", `"dHJ5IGxhdGVy"`)
}

func TestEventWithoutMessageGolden(t *testing.T) {
	e := &ferry.Event{
		ID:        3,
		MessageID: "msg_01HUUUUUUUUUUUUUUUUUUUUUUU",
		State:     ferry.MessageStateCanceled,
		Time:      goldenCreatedAt,
		URL:       "https://example.com/gone",
	}
	data := checkGolden(t, "event_without_message", NewEvent(e))
	object := fields(t, data)
	checkField(t, object, "state", `"CANCELED"`)
	checkField(t, object, "retried", "0")
	checkAbsent(t, object, "header", "body", "responseHeaders", "responseHeader", "nextDeliveryTime", "maxRetries")
}

func TestEventsPageGolden(t *testing.T) {
	list := []Event{NewEvent(errorEvent())}

	data := checkGolden(t, "events_page", EventsResponse{Cursor: "17", Events: list})
	checkField(t, fields(t, data), "cursor", `"17"`)

	data = checkGolden(t, "logs_last_page", LogsResponse{Logs: list})
	object := fields(t, data)
	checkAbsent(t, object, "cursor", "events")
	if _, ok := object["logs"]; !ok {
		t.Errorf("key logs is missing from %s", data)
	}
}

func TestCallbackBodyGolden(t *testing.T) {
	body := CallbackBody{
		Status:          http.StatusOK,
		Header:          http.Header{"Content-Type": {"text/plain"}},
		Body:            "b2s=",
		Retried:         0,
		MaxRetries:      3,
		SourceMessageID: "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",
		URL:             "https://example.com/hook",
		Method:          http.MethodPost,
		SourceHeader:    http.Header{"Content-Type": {"application/json"}},
		SourceBody:      "e30=",
		NotBefore:       "1893553445678",
		CreatedAt:       "1893553445678",
		CallerIP:        "203.0.113.7",
	}
	data := checkGolden(t, "callback_body", body)
	object := fields(t, data)
	checkField(t, object, "notBefore", `"1893553445678"`)
	checkAbsent(t, object, "error", "dlqId", "topicName", "scheduleId")
}

func TestSplitBody(t *testing.T) {
	tests := []struct {
		name             string
		body             []byte
		wantText, want64 string
	}{
		{"empty", nil, "", ""},
		{"text", []byte("héllo"), "héllo", ""},
		{"invalid UTF-8", []byte{0xc3, 0x28}, "", "wyg="},
		{"NUL bytes are valid UTF-8", []byte{'a', 0x00}, "a\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, b64 := SplitBody(tt.body)
			if text != tt.wantText || b64 != tt.want64 {
				t.Errorf("SplitBody(%q) = %q, %q; want %q, %q", tt.body, text, b64, tt.wantText, tt.want64)
			}
		})
	}
}
