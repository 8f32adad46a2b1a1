package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/golden with the current output")

// callbackCreatedAt is the fixed creation time of the golden messages, with
// milliseconds so that a lost fraction shows.
var callbackCreatedAt = time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

// checkCallbackGolden compares body with testdata/golden/name.json. The
// golden file holds body indented by json.Indent, which changes only
// whitespace, so key order, escaping and number forms are pinned exactly.
// With -update the file is rewritten instead.
func checkCallbackGolden(t *testing.T, name string, body []byte) {
	t.Helper()
	var indented bytes.Buffer
	if err := json.Indent(&indented, body, "", "  "); err != nil {
		t.Fatalf("callback body %s is not JSON: %v", body, err)
	}
	indented.WriteByte('\n')

	path := filepath.Join("testdata", "golden", name+".json")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v; run go test ./dispatch -run Callback -update to create it", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("callback body %s differs from %s; run go test ./dispatch -run Callback -update if the change is intended\ngot:\n%s\nwant:\n%s",
			name, path, indented.Bytes(), want)
	}
}

// callbackSource returns a message with a callback and a failure callback,
// in its second attempt.
func callbackSource() *ferry.Message {
	return &ferry.Message{
		ID:     "msg_01HZZZZZZZZZZZZZZZZZZZZZZZ",
		State:  ferry.MessageStateActive,
		URL:    "https://example.com/hook?a=1",
		Method: http.MethodPost,
		Header: http.Header{
			"Content-Type": {"application/json"},
			"X-Multi":      {"one", "two"},
		},
		Body:            []byte(`{"order":42}`),
		MaxRetries:      2,
		Retried:         1,
		Attempts:        2,
		NotBefore:       callbackCreatedAt.Add(time.Minute),
		CreatedAt:       callbackCreatedAt,
		CallerIP:        "203.0.113.7",
		Callback:        "https://example.com/callback",
		FailureCallback: "https://example.com/failure",
		CallbackHeader:  http.Header{"Upstash-Callback-Retries": {"4"}},
		FailureCallbackHeader: http.Header{
			"Upstash-Failure-Callback-Forward-X-Key": {"secret"},
		},
	}
}

// serverErrorResult is an attempt to which the destination responded with
// status 500.
func serverErrorResult() *result {
	return &result{
		status: http.StatusInternalServerError,
		header: http.Header{"Content-Type": {"text/plain"}, "X-Trace": {"a", "b"}},
		body:   []byte("boom"),
	}
}

// callbackFields decodes a callback body into its undecoded fields.
func callbackFields(t *testing.T, body []byte) map[string]json.RawMessage {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("callback body %s is not a JSON object: %v", body, err)
	}
	return fields
}

func checkCallbackField(t *testing.T, fields map[string]json.RawMessage, key, want string) {
	t.Helper()
	if got, ok := fields[key]; !ok {
		t.Errorf("key %s is missing, want %s", key, want)
	} else if string(got) != want {
		t.Errorf("%s = %s, want %s", key, got, want)
	}
}

func TestCallbackBodyAttemptGolden(t *testing.T) {
	body := callbackBody(callbackSource(), serverErrorResult(), "")
	checkCallbackGolden(t, "callback_attempt", body)

	fields := callbackFields(t, body)
	checkCallbackField(t, fields, "status", "500")
	checkCallbackField(t, fields, "header", `{"Content-Type":["text/plain"],"X-Trace":["a","b"]}`)
	checkCallbackField(t, fields, "body", `"Ym9vbQ=="`)
	checkCallbackField(t, fields, "retried", "1")
	checkCallbackField(t, fields, "maxRetries", "2")
	checkCallbackField(t, fields, "sourceMessageId", `"msg_01HZZZZZZZZZZZZZZZZZZZZZZZ"`)
	checkCallbackField(t, fields, "url", `"https://example.com/hook?a=1"`)
	checkCallbackField(t, fields, "method", `"POST"`)
	checkCallbackField(t, fields, "sourceHeader", `{"Content-Type":["application/json"],"X-Multi":["one","two"]}`)
	checkCallbackField(t, fields, "sourceBody", `"eyJvcmRlciI6NDJ9"`)
	checkCallbackField(t, fields, "notBefore", `"1893553505678"`)
	checkCallbackField(t, fields, "createdAt", `"1893553445678"`)
	checkCallbackField(t, fields, "callerIP", `"203.0.113.7"`)
	for _, key := range []string{"dlqId", "error"} {
		if v, ok := fields[key]; ok {
			t.Errorf("key %s is present with %s, want it omitted after an attempt with a response", key, v)
		}
	}
}

func TestCallbackBodyFailureGolden(t *testing.T) {
	body := callbackBody(callbackSource(), serverErrorResult(), "dlq_01HXXXXXXXXXXXXXXXXXXXXXXX")
	checkCallbackGolden(t, "callback_failure", body)
	checkCallbackField(t, callbackFields(t, body), "dlqId", `"dlq_01HXXXXXXXXXXXXXXXXXXXXXXX"`)
}

func TestCallbackBodyNoResponseGolden(t *testing.T) {
	m := callbackSource()
	m.Header = nil
	m.Body = nil
	res := &result{err: errors.New("timed out after 1s without a response")}
	body := callbackBody(m, res, "")
	checkCallbackGolden(t, "callback_no_response", body)

	fields := callbackFields(t, body)
	checkCallbackField(t, fields, "status", "0")
	checkCallbackField(t, fields, "error", `"timed out after 1s without a response"`)
	checkCallbackField(t, fields, "body", `""`)
	checkCallbackField(t, fields, "sourceBody", `""`)

	// The SDKs read header and sourceHeader as objects, never null.
	checkCallbackField(t, fields, "header", "{}")
	checkCallbackField(t, fields, "sourceHeader", "{}")
}

func TestCallbacksPerAttempt(t *testing.T) {
	now := callbackCreatedAt.Add(time.Hour)
	src := callbackSource()

	retry := callbacks(src, serverErrorResult(), "", now)
	if len(retry) != 1 {
		t.Fatalf("callbacks after a failed attempt with a retry left = %d, want 1 (the callback only)", len(retry))
	}
	cb := retry[0]
	if cb.URL != src.Callback {
		t.Errorf("callback URL = %q, want %q", cb.URL, src.Callback)
	}
	if cb.Method != http.MethodPost {
		t.Errorf("callback method = %q, want POST", cb.Method)
	}
	if got := cb.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("callback Content-Type = %q, want application/json", got)
	}
	if cb.CallbackOf != src.ID {
		t.Errorf("callback CallbackOf = %q, want %q", cb.CallbackOf, src.ID)
	}
	if cb.Callback != "" || cb.FailureCallback != "" {
		t.Errorf("callback message has callbacks %q, %q of its own, want none", cb.Callback, cb.FailureCallback)
	}
	if cb.MaxRetries != 4 {
		t.Errorf("callback MaxRetries = %d, want 4 from Upstash-Callback-Retries", cb.MaxRetries)
	}
	if !cb.NotBefore.Equal(now) || cb.ID == "" || cb.ID == src.ID {
		t.Errorf("callback id %q not before %v, want a new id due at %v", cb.ID, cb.NotBefore, now)
	}
	if _, ok := callbackFields(t, cb.Body)["dlqId"]; ok {
		t.Errorf("callback body of a non-final attempt has dlqId: %s", cb.Body)
	}

	final := callbacks(src, serverErrorResult(), "dlq_1", now)
	if len(final) != 2 {
		t.Fatalf("callbacks after the final failure = %d, want 2 (callback and failure callback)", len(final))
	}
	if final[0].URL != src.Callback {
		t.Errorf("first message URL = %q, want the callback %q", final[0].URL, src.Callback)
	}
	if _, ok := callbackFields(t, final[0].Body)["dlqId"]; ok {
		t.Errorf("regular callback body has dlqId: %s", final[0].Body)
	}
	failure := final[1]
	if failure.URL != src.FailureCallback {
		t.Errorf("second message URL = %q, want the failure callback %q", failure.URL, src.FailureCallback)
	}
	checkCallbackField(t, callbackFields(t, failure.Body), "dlqId", `"dlq_1"`)
	if got := failure.Header.Get("X-Key"); got != "secret" {
		t.Errorf("failure callback X-Key = %q, want secret from Upstash-Failure-Callback-Forward-X-Key", got)
	}
	if failure.MaxRetries != src.MaxRetries {
		t.Errorf("failure callback MaxRetries = %d, want the source's %d", failure.MaxRetries, src.MaxRetries)
	}

	delivered := callbacks(src, &result{status: http.StatusOK}, "", now)
	if len(delivered) != 1 || delivered[0].URL != src.Callback {
		t.Errorf("callbacks after a delivery = %d, want the callback only", len(delivered))
	}

	noCallbacks := callbackSource()
	noCallbacks.Callback, noCallbacks.FailureCallback = "", ""
	if got := callbacks(noCallbacks, serverErrorResult(), "dlq_1", now); len(got) != 0 {
		t.Errorf("callbacks of a message without callback URLs = %d, want 0", len(got))
	}

	onlyFailure := callbackSource()
	onlyFailure.Callback = ""
	if got := callbacks(onlyFailure, serverErrorResult(), "", now); len(got) != 0 {
		t.Errorf("callbacks of a non-final attempt with only a failure callback = %d, want 0", len(got))
	}
	if got := callbacks(onlyFailure, serverErrorResult(), "dlq_1", now); len(got) != 1 || got[0].URL != onlyFailure.FailureCallback {
		t.Errorf("callbacks of a final failure with only a failure callback = %d, want the failure callback only", len(got))
	}
}
