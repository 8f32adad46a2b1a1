package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
)

// quietPeriod is how long a test keeps watching after an expected request,
// to catch a duplicate. Ferry stores a callback in the same transaction as
// the attempt it reports and wakes the dispatcher at once, so a duplicate
// would arrive well within it.
const quietPeriod = time.Second

// callAPI sends a request with the test token to the server at baseURL and
// returns the status and body.
func callAPI(t *testing.T, baseURL, method, path string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the response: %v", method, path, err)
	}
	return resp.StatusCode, body
}

// waitForCount polls until the destination has received want requests and
// fails the test after timeout.
func waitForCount(t *testing.T, d *destination, want int, timeout time.Duration) {
	t.Helper()
	if !ferrytest.WaitFor(t.Context(), timeout, func() bool { return d.count() >= want }) {
		t.Fatalf("destination received %d requests within %v, want %d", d.count(), timeout, want)
	}
}

// checkCountStays fails the test when the destination receives more than
// want requests during quietPeriod.
func checkCountStays(t *testing.T, d *destination, want int, receiver string) {
	t.Helper()
	time.Sleep(quietPeriod)
	if got := d.count(); got != want {
		t.Errorf("%s received %d requests, want exactly %d", receiver, got, want)
	}
}

// callbackReport is the JSON body of a callback or failure-callback
// delivery. Times are strings of Unix milliseconds, so decoding fails when
// they arrive as numbers.
type callbackReport struct {
	Status          int                 `json:"status"`
	Header          map[string][]string `json:"header"`
	Body            string              `json:"body"`
	Error           string              `json:"error"`
	Retried         int                 `json:"retried"`
	MaxRetries      int                 `json:"maxRetries"`
	SourceMessageID string              `json:"sourceMessageId"`
	URL             string              `json:"url"`
	Method          string              `json:"method"`
	SourceHeader    map[string][]string `json:"sourceHeader"`
	SourceBody      string              `json:"sourceBody"`
	NotBefore       string              `json:"notBefore"`
	CreatedAt       string              `json:"createdAt"`
	CallerIP        string              `json:"callerIP"`
	DLQID           string              `json:"dlqId"`
}

// decodeReport decodes the body of a callback delivery and checks its
// signature against keys with signature.Verifier.
func decodeReport(t *testing.T, del *delivery, keys store.SigningKeys) callbackReport {
	t.Helper()
	verifier := signature.Verifier{CurrentKey: keys.Current, NextKey: keys.Next}
	if err := verifier.Verify(del.Header.Get("Upstash-Signature"), del.URL, del.Body); err != nil {
		t.Errorf("callback to %s: signature did not verify: %v", del.URL, err)
	}
	if got := del.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("callback to %s: Content-Type = %q, want application/json", del.URL, got)
	}
	var report callbackReport
	if err := json.Unmarshal(del.Body, &report); err != nil {
		t.Fatalf("callback to %s: body %s does not decode: %v", del.URL, del.Body, err)
	}
	return report
}

// decodeBase64 decodes a standard base64 field of a callback body.
func decodeBase64(t *testing.T, field, value string) string {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		t.Errorf("%s %q is not standard base64: %v", field, value, err)
	}
	return string(data)
}

// checkMillisString reports a field that is not a string of Unix
// milliseconds within a day of now.
func checkMillisString(t *testing.T, field, value string) {
	t.Helper()
	ms, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		t.Errorf("%s = %q, want a string of Unix milliseconds", field, value)
		return
	}
	if d := time.Since(time.UnixMilli(ms)); d < -time.Hour || d > 24*time.Hour {
		t.Errorf("%s = %s is %v from now, want a recent time in milliseconds", field, value, d)
	}
}

func TestFailureCallbackThenDLQRetry(t *testing.T) {
	var healthy atomic.Bool
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if !healthy.Load() {
			w.Header().Set("X-Failure-Reason", "disk full")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("boom"))
		}
	})
	callback := newDestination(t, nil)
	failure := newDestination(t, nil)
	p := startFerry(t, "")
	keys := fetchKeys(t, p.URL)
	for _, d := range []*destination{dest, callback, failure} {
		d.trust(keys)
	}

	msg := mustPublish(t, p.URL, dest.url("/orders"), []byte("payload"), http.Header{
		"Content-Type":             {"text/plain"},
		"Upstash-Retries":          {"0"},
		"Upstash-Callback":         {callback.url("/attempt")},
		"Upstash-Failure-Callback": {failure.url("/failed")},
	})

	waitForCount(t, failure, 1, 15*time.Second)
	waitForCount(t, callback, 1, 15*time.Second)
	checkCountStays(t, failure, 1, "failure callback")
	checkCountStays(t, callback, 1, "callback")
	if got := dest.count(); got != 1 {
		t.Errorf("destination received %d requests, want 1 with Upstash-Retries: 0", got)
	}

	report := decodeReport(t, failure.all()[0], keys)
	if !strings.HasPrefix(report.DLQID, "dlq_") {
		t.Fatalf("failure callback dlqId = %q, want a dlq_ id", report.DLQID)
	}
	if report.Status != http.StatusInternalServerError {
		t.Errorf("failure callback status = %d, want 500", report.Status)
	}
	if got := decodeBase64(t, "body", report.Body); got != "boom" {
		t.Errorf("failure callback body = %q, want boom", got)
	}
	if got := report.Header["X-Failure-Reason"]; len(got) != 1 || got[0] != "disk full" {
		t.Errorf("failure callback header X-Failure-Reason = %v, want [disk full]", got)
	}
	if report.SourceMessageID != msg.ID {
		t.Errorf("failure callback sourceMessageId = %q, want %q", report.SourceMessageID, msg.ID)
	}
	if report.URL != dest.url("/orders") || report.Method != http.MethodPost {
		t.Errorf("failure callback url, method = %q, %q, want %q, POST", report.URL, report.Method, dest.url("/orders"))
	}
	if got := decodeBase64(t, "sourceBody", report.SourceBody); got != "payload" {
		t.Errorf("failure callback sourceBody = %q, want payload", got)
	}
	if got := report.SourceHeader["Content-Type"]; len(got) != 1 || got[0] != "text/plain" {
		t.Errorf("failure callback sourceHeader Content-Type = %v, want [text/plain]", got)
	}
	if report.Retried != 0 || report.MaxRetries != 0 {
		t.Errorf("failure callback retried, maxRetries = %d, %d, want 0, 0", report.Retried, report.MaxRetries)
	}
	if report.CallerIP != "127.0.0.1" {
		t.Errorf("failure callback callerIP = %q, want 127.0.0.1", report.CallerIP)
	}
	checkMillisString(t, "notBefore", report.NotBefore)
	checkMillisString(t, "createdAt", report.CreatedAt)

	attempt := decodeReport(t, callback.all()[0], keys)
	if attempt.Status != http.StatusInternalServerError || attempt.SourceMessageID != msg.ID {
		t.Errorf("callback status %d for %s, want 500 for %s", attempt.Status, attempt.SourceMessageID, msg.ID)
	}
	if attempt.DLQID != "" {
		t.Errorf("callback dlqId = %q, want none on the regular callback", attempt.DLQID)
	}

	status, body := callAPI(t, p.URL, http.MethodGet, "/v2/dlq/"+report.DLQID, nil)
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"messageId":"`+msg.ID+`"`)) {
		t.Fatalf("GET /v2/dlq/%s = %d %s, want the entry of %s", report.DLQID, status, body, msg.ID)
	}

	// The destination recovers, and the entry is retried.
	healthy.Store(true)
	status, body = callAPI(t, p.URL, http.MethodPost, "/v2/dlq/retry/"+report.DLQID, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST /v2/dlq/retry/%s = %d %s, want 201", report.DLQID, status, body)
	}
	var retried struct {
		MessageID string `json:"messageId"`
	}
	if err := json.Unmarshal(body, &retried); err != nil || !strings.HasPrefix(retried.MessageID, "msg_") {
		t.Fatalf("retry response %s has no messageId (%v)", body, err)
	}

	st := openStore(t, p.DB)
	waitState(t, st, retried.MessageID, ferry.MessageStateDelivered, 15*time.Second)
	waitForCount(t, callback, 2, 15*time.Second)
	checkCountStays(t, failure, 1, "failure callback after the successful retry")
	checkCountStays(t, callback, 2, "callback after the successful retry")

	deliveries := dest.all()
	if len(deliveries) != 2 || deliveries[1].MessageID != retried.MessageID {
		t.Errorf("destination received %d requests, want 2 with the second from %s", len(deliveries), retried.MessageID)
	}
	dest.checkSignatures(t)
	success := decodeReport(t, callback.all()[1], keys)
	if success.Status != http.StatusOK || success.SourceMessageID != retried.MessageID {
		t.Errorf("second callback status %d for %s, want 200 for %s", success.Status, success.SourceMessageID, retried.MessageID)
	}

	status, body = callAPI(t, p.URL, http.MethodGet, "/v2/dlq/"+report.DLQID, nil)
	if status != http.StatusNotFound {
		t.Errorf("GET /v2/dlq/%s after the retry = %d %s, want 404", report.DLQID, status, body)
	}
}

func TestCallbackReportsTimeout(t *testing.T) {
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		// Hold the request until Ferry gives up on it. The 10 s bound only
		// keeps a broken run from hanging.
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	callback := newDestination(t, nil)
	p := startFerry(t, "")
	keys := fetchKeys(t, p.URL)
	callback.trust(keys)

	msg := mustPublish(t, p.URL, dest.url("/slow"), []byte("payload"), http.Header{
		"Upstash-Timeout":  {"1s"},
		"Upstash-Retries":  {"0"},
		"Upstash-Callback": {callback.url("/attempt")},
	})
	waitForCount(t, callback, 1, 15*time.Second)
	checkCountStays(t, callback, 1, "callback")

	report := decodeReport(t, callback.all()[0], keys)
	if report.Status != 0 {
		t.Errorf("callback status = %d, want 0 without an HTTP response", report.Status)
	}
	if !strings.Contains(report.Error, "timed out") {
		t.Errorf("callback error = %q, want a text about the timeout", report.Error)
	}
	if report.Body != "" || len(report.Header) != 0 {
		t.Errorf("callback body %q and header %v, want both empty without a response", report.Body, report.Header)
	}
	if report.SourceMessageID != msg.ID {
		t.Errorf("callback sourceMessageId = %q, want %q", report.SourceMessageID, msg.ID)
	}

	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateFailed, 5*time.Second)
}

// publishMany publishes n messages to dest from parallel workers and
// returns their ids.
func publishMany(t *testing.T, baseURL, dest string, n int, header http.Header) []string {
	t.Helper()
	const workers = 16
	ids := make([]string, n)
	errs := make(chan error, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, err := publish(t.Context(), baseURL, dest, []byte(strconv.Itoa(i)), header)
				if err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// dlqSize returns the number of dead-letter entries, up to limit.
func dlqSize(t *testing.T, st store.Store, limit int) int {
	t.Helper()
	entries, err := st.DLQList(t.Context(), &store.DLQListParams{Limit: limit})
	if err != nil {
		t.Fatalf("list dead-letter queue: %v", err)
	}
	return len(entries)
}

func TestDLQRetryAllCommand(t *testing.T) {
	const messages = 1000
	var healthy atomic.Bool
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	p := startFerry(t, "")
	dest.trust(fetchKeys(t, p.URL))
	st := openStore(t, p.DB)

	published := publishMany(t, p.URL, dest.url("/bulk"), messages, http.Header{"Upstash-Retries": {"0"}})
	if !ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool { return dlqSize(t, st, 2*messages) >= messages }) {
		t.Fatalf("dead-letter queue has %d entries after 30s, want %d", dlqSize(t, st, 2*messages), messages)
	}
	if got := dest.count(); got != messages {
		t.Errorf("destination received %d failing requests, want %d", got, messages)
	}

	healthy.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferrytest.Binary(t), "dlq", "retry", "--all", "--json", "--url", p.URL, "--token", testToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ferry dlq retry --all: %v\nstderr: %s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("ferry dlq retry --all wrote to stderr, which is not a terminal: %q", stderr.String())
	}

	var out struct {
		Responses []struct {
			MessageID string `json:"messageId"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("ferry dlq retry --all --json printed invalid JSON: %v\n%.500s", err, stdout.String())
	}
	retried := map[string]bool{}
	for _, r := range out.Responses {
		retried[r.MessageID] = true
	}
	if len(out.Responses) != messages || len(retried) != messages {
		t.Fatalf("ferry dlq retry --all returned %d responses with %d distinct ids, want %d",
			len(out.Responses), len(retried), messages)
	}
	for _, id := range published {
		if retried[id] {
			t.Fatalf("retry reused the failed message id %s", id)
		}
	}

	// Every new message reaches the now healthy destination.
	if !ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool { return dest.respondedCount() >= 2*messages }) {
		t.Fatalf("destination answered %d requests after 30s, want %d", dest.respondedCount(), 2*messages)
	}
	checkCountStays(t, dest, 2*messages, "destination")
	counts := dest.attemptCounts()
	for id := range retried {
		if counts[id] != 1 {
			t.Fatalf("new message %s reached the destination %d times, want 1", id, counts[id])
		}
	}
	dest.checkSignatures(t)

	notDelivered := 0
	for id := range retried {
		m, err := st.MessageGet(t.Context(), id)
		if err != nil {
			t.Fatalf("read message %s: %v", id, err)
		}
		if m.State != ferry.MessageStateDelivered {
			notDelivered++
		}
	}
	if notDelivered > 0 {
		t.Errorf("%d of %d new messages are not DELIVERED", notDelivered, messages)
	}

	if n := dlqSize(t, st, 10); n != 0 {
		t.Errorf("dead-letter queue has %d entries after the retry, want 0", n)
	}
	status, body := callAPI(t, p.URL, http.MethodGet, "/v2/dlq", nil)
	if status != http.StatusOK || string(bytes.TrimSpace(body)) != `{"messages":[]}` {
		t.Errorf("GET /v2/dlq after the retry = %d %s, want 200 {\"messages\":[]}", status, body)
	}
}

func TestSignaturesAcrossKeyRotation(t *testing.T) {
	dest := newDestination(t, nil)
	p := startFerry(t, "")
	old := fetchKeys(t, p.URL)

	// The destination keeps the pair it fetched before the rotation.
	dest.trust(old)
	mustPublish(t, p.URL, dest.url("/before"), []byte("before"), nil)
	waitForCount(t, dest, 1, 15*time.Second)

	status, body := callAPI(t, p.URL, http.MethodPost, "/v2/keys/rotate", nil)
	if status != http.StatusOK {
		t.Fatalf("POST /v2/keys/rotate = %d %s", status, body)
	}
	rotated := fetchKeys(t, p.URL)
	if rotated.Current != old.Next || rotated.Next == old.Next || rotated.Next == old.Current {
		t.Fatalf("keys after rotation = %+v, want current %q and a new next key", rotated, old.Next)
	}

	mustPublish(t, p.URL, dest.url("/after"), []byte("after"), nil)
	waitForCount(t, dest, 2, 15*time.Second)
	dest.checkSignatures(t)

	deliveries := dest.all()
	before, after := deliveries[0], deliveries[1]
	verify := func(del *delivery, current, next string) error {
		v := signature.Verifier{CurrentKey: current, NextKey: next}
		return v.Verify(del.Header.Get("Upstash-Signature"), del.URL, del.Body)
	}
	if err := verify(before, old.Current, ""); err != nil {
		t.Errorf("delivery before the rotation does not verify with the old current key: %v", err)
	}
	if err := verify(after, rotated.Current, ""); err != nil {
		t.Errorf("delivery after the rotation does not verify with the new current key: %v", err)
	}
	if err := verify(after, old.Current, ""); err == nil {
		t.Errorf("delivery after the rotation verifies with the old current key alone, want it signed with the new key")
	}

	// A second rotation retires the key the old pair knew as next, so only
	// receivers that updated their pair keep verifying.
	status, body = callAPI(t, p.URL, http.MethodPost, "/v2/rotate", nil)
	if status != http.StatusOK {
		t.Fatalf("POST /v2/rotate = %d %s", status, body)
	}
	twice := fetchKeys(t, p.URL)
	if twice.Current != rotated.Next {
		t.Fatalf("current key after the second rotation = %q, want %q", twice.Current, rotated.Next)
	}
	mustPublish(t, p.URL, dest.url("/twice"), []byte("twice"), nil)
	waitForCount(t, dest, 3, 15*time.Second)
	third := dest.all()[2]
	if err := verify(third, rotated.Current, rotated.Next); err != nil {
		t.Errorf("delivery after the second rotation does not verify with the pair of the first: %v", err)
	}
	if err := verify(third, old.Current, old.Next); err == nil {
		t.Errorf("delivery after the second rotation verifies with the pair from before both rotations")
	}
}
