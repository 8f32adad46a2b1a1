package jobhandler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/jobhandler"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/wire"
)

const (
	currentKey = "sig_testCurrentKey123456789012345"
	nextKey    = "sig_testNextKey12345678901234567"
)

var quiet = slog.New(slog.DiscardHandler)

// runBody is a run request of job_1, run 2.
const runBody = `{"jobId": "job_1", "run": 2, "input": {"keyword": "san"}, "cursor": 40, "processedResults": 40,
	"targetResults": 100, "deadline": "2030-01-02T03:04:05Z", "runTimeoutMs": 5000}`

// post sends body to h as Ferry would, signed with key unless key is
// empty, and returns the response.
func post(t *testing.T, h http.Handler, body, key string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + "/job"
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		token, err := signature.Sign(key, url, []byte(body), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Upstash-Signature", token)
	}
	req.Header.Set("Upstash-Retried", "1")
	req.Header.Set("Upstash-Message-Id", "msg_1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

func newHandler(t *testing.T, fn jobhandler.Func) *jobhandler.Handler {
	t.Helper()
	h, err := jobhandler.New(fn, jobhandler.Options{CurrentSigningKey: currentKey, NextSigningKey: nextKey, Logger: quiet})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

func TestHandlerDecodesRunAndEncodesResult(t *testing.T) {
	var got *jobhandler.Run
	var deadline time.Time
	h := newHandler(t, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		got = run
		deadline, _ = ctx.Deadline()
		return &jobhandler.Result{Processed: 2, Cursor: map[string]int{"offset": 42},
			Results: []any{"a", map[string]string{"name": "b"}}}, nil
	})
	resp := post(t, h, runBody, nextKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, readBody(t, resp))
	}
	var out wire.JobRunResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Processed != 2 || string(out.Cursor) != `{"offset":42}` || len(out.Results) != 2 || out.HasMore == nil || !*out.HasMore {
		t.Errorf("answer = %+v", out)
	}

	if got.JobID != "job_1" || got.Run != 2 || got.MessageID != "msg_1" || got.Retried != 1 || got.ProcessedResults != 40 ||
		got.TargetResults != 100 || got.Remaining() != 60 || got.RunTimeout != 5*time.Second ||
		!got.Deadline.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("run = %+v", got)
	}
	var in struct{ Keyword string }
	var offset int
	if err := got.DecodeInput(&in); err != nil || in.Keyword != "san" {
		t.Errorf("DecodeInput = %+v, %v", in, err)
	}
	if ok, err := got.DecodeCursor(&offset); !ok || err != nil || offset != 40 {
		t.Errorf("DecodeCursor = %d, %v, %v", offset, ok, err)
	}
	if deadline.IsZero() || time.Until(deadline) > 5*time.Second {
		t.Errorf("context deadline %v, want within the 5 s run timeout", deadline)
	}
}

func TestHandlerFirstRunHasNoCursor(t *testing.T) {
	h := newHandler(t, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		if ok, _ := run.DecodeCursor(new(int)); ok || run.Cursor != nil {
			return nil, errors.New("cursor present on the first run")
		}
		return &jobhandler.Result{Done: true}, nil
	})
	resp := post(t, h, `{"jobId": "job_1", "run": 1, "input": null, "cursor": null}`, currentKey)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"hasMore":false`) {
		t.Errorf("status %d, body %s; want 200 with hasMore false", resp.StatusCode, body)
	}
}

func TestHandlerFailures(t *testing.T) {
	cases := []struct {
		name       string
		fn         jobhandler.Func
		body       string
		key        string
		wantStatus int
		wantHeader [2]string
		wantBody   string
	}{
		{"permanent", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			return nil, jobhandler.Permanent(errors.New("unknown keyword"))
		}, runBody, currentKey, 489, [2]string{"Upstash-NonRetryable-Error", "true"}, "unknown keyword"},
		{"retry after", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			return nil, jobhandler.RetryAfter(errors.New("provider rate limit"), 1500*time.Millisecond)
		}, runBody, currentKey, http.StatusTooManyRequests, [2]string{"Retry-After", "2"}, "provider rate limit"},
		{"temporary", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			return nil, errors.New("database down")
		}, runBody, currentKey, http.StatusInternalServerError, [2]string{}, "database down"},
		{"panic", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			panic("boom")
		}, runBody, currentKey, http.StatusInternalServerError, [2]string{}, "panicked: boom"},
		{"nil result", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			return nil, nil
		}, runBody, currentKey, http.StatusInternalServerError, [2]string{}, "neither a result nor an error"},
		{"too many results", func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
			return &jobhandler.Result{Processed: 1, Results: make([]any, 1001)}, nil
		}, runBody, currentKey, 489, [2]string{"Upstash-NonRetryable-Error", "true"}, "at most 1000"},
		{"malformed run", nil, `{"run": "x"}`, currentKey, 489, [2]string{"Upstash-NonRetryable-Error", "true"}, "invalid run request"},
		{"unsigned", nil, runBody, "", http.StatusUnauthorized, [2]string{}, "invalid Upstash-Signature"},
		{"wrong key", nil, runBody, "sig_someoneElse1234567890123456", http.StatusUnauthorized, [2]string{}, "invalid Upstash-Signature"},
	}
	for _, c := range cases {
		fn := c.fn
		if fn == nil {
			fn = func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
				return nil, errors.New("the run function must not be called")
			}
		}
		resp := post(t, newHandler(t, fn), c.body, c.key)
		body := readBody(t, resp)
		if resp.StatusCode != c.wantStatus {
			t.Errorf("%s: status %d, want %d (body %s)", c.name, resp.StatusCode, c.wantStatus, body)
		}
		if c.wantHeader[0] != "" && resp.Header.Get(c.wantHeader[0]) != c.wantHeader[1] {
			t.Errorf("%s: %s = %q, want %q", c.name, c.wantHeader[0], resp.Header.Get(c.wantHeader[0]), c.wantHeader[1])
		}
		if !strings.Contains(body, c.wantBody) {
			t.Errorf("%s: body %s, want %q", c.name, body, c.wantBody)
		}
	}
}

func TestHandlerChecksConfiguredURL(t *testing.T) {
	h, err := jobhandler.New(func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
		return &jobhandler.Result{}, nil
	}, jobhandler.Options{CurrentSigningKey: currentKey, URL: "https://jobs.example/search", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// post signs for the test server's URL, which differs from Options.URL.
	if resp := post(t, h, runBody, currentKey); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(readBody(t, resp), "sub") {
		t.Errorf("status %d, want 401 naming the sub claim", resp.StatusCode)
	}
}

func TestHandlerRequiresKeysOrSkip(t *testing.T) {
	fn := func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) {
		return &jobhandler.Result{Processed: 1}, nil
	}
	if _, err := jobhandler.New(fn, jobhandler.Options{Logger: quiet}); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Errorf("New without keys: error %v, want no signing key", err)
	}

	var logs bytes.Buffer
	h, err := jobhandler.New(fn, jobhandler.Options{InsecureSkipVerify: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New with InsecureSkipVerify: %v", err)
	}
	if !strings.Contains(logs.String(), "SIGNATURE VERIFICATION IS OFF") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("logs = %q, want a warning that verification is off", logs.String())
	}
	if resp := post(t, h, runBody, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("unsigned run with verification off: status %d, want 200", resp.StatusCode)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	t.Setenv("QSTASH_CURRENT_SIGNING_KEY", currentKey)
	t.Setenv("QSTASH_NEXT_SIGNING_KEY", nextKey)
	t.Setenv(jobhandler.InsecureSkipVerifyVariable, "TRUE")
	opts := jobhandler.OptionsFromEnv()
	if opts.CurrentSigningKey != currentKey || opts.NextSigningKey != nextKey || !opts.InsecureSkipVerify {
		t.Errorf("OptionsFromEnv = %+v", opts)
	}
	t.Setenv(jobhandler.InsecureSkipVerifyVariable, "")
	if jobhandler.OptionsFromEnv().InsecureSkipVerify {
		t.Errorf("InsecureSkipVerify set without the variable")
	}
}

func TestHandlerRejectsGet(t *testing.T) {
	h := newHandler(t, func(context.Context, *jobhandler.Run) (*jobhandler.Result, error) { return &jobhandler.Result{}, nil })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/job", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Errorf("GET: status %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}
