package jobs_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/sqlite"
)

func TestContinuationDelay(t *testing.T) {
	job := &ferry.Job{ContinuationDelay: 2 * time.Second, BackoffFactor: 2, MaxContinuationDelay: 10 * time.Second}
	cases := []struct {
		run  int
		want time.Duration
	}{
		{1, 0},
		{2, 4 * time.Second}, // 2 s · 2^1
		{3, 8 * time.Second}, // 2 s · 2^2
		{4, 10 * time.Second},
		{60, 10 * time.Second},
		{5000, 10 * time.Second}, // 2^4999 overflows to +Inf
	}
	for _, c := range cases {
		if got := jobs.ContinuationDelay(job, c.run); got != c.want {
			t.Errorf("ContinuationDelay(run %d) = %v, want %v", c.run, got, c.want)
		}
	}
	flat := &ferry.Job{ContinuationDelay: 3 * time.Second, BackoffFactor: 1, MaxContinuationDelay: time.Minute}
	if got := jobs.ContinuationDelay(flat, 7); got != 3*time.Second {
		t.Errorf("ContinuationDelay with factor 1 = %v, want 3s", got)
	}
}

func TestParseSpecDefaults(t *testing.T) {
	spec, err := jobs.ParseSpec([]byte(`{"url": "https://handler.example/job", "targetResults": 100}`))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	if spec.MaxRuns != 50 || spec.ContinuationDelay != 0 || spec.BackoffFactor != 1 ||
		spec.MaxContinuationDelay != time.Minute || spec.RunTimeout != 5*time.Minute || spec.Timeout != time.Hour ||
		spec.Retries != 3 || string(spec.Input) != "null" {
		t.Errorf("defaults = %+v", spec)
	}

	// A continuation delay above the default cap raises the cap.
	spec, err = jobs.ParseSpec([]byte(`{"url": "http://127.0.0.1:3000/", "targetResults": 1, "continuationDelay": "2m"}`))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	if spec.MaxContinuationDelay != 2*time.Minute {
		t.Errorf("MaxContinuationDelay = %v, want 2m", spec.MaxContinuationDelay)
	}

	a, _ := jobs.ParseSpec([]byte(`{"url": "http://127.0.0.1:3000/", "targetResults": 1, "input": {"a": 1}}`))
	b, _ := jobs.ParseSpec([]byte(`{ "input" : { "a" : 1 }, "targetResults": 1, "url": "http://127.0.0.1:3000/"}`))
	c, _ := jobs.ParseSpec([]byte(`{"url": "http://127.0.0.1:3000/", "targetResults": 2, "input": {"a": 1}}`))
	if a.Hash != b.Hash {
		t.Errorf("hashes differ for the same request formatted differently")
	}
	if a.Hash == c.Hash {
		t.Errorf("hashes equal for different requests")
	}
}

func TestParseSpecRejects(t *testing.T) {
	cases := []struct {
		body string
		want []string
	}{
		{`[]`, []string{"JSON object"}},
		{`{"targetResults": 5}`, []string{"missing field url"}},
		{`{"url": "ftp://x", "targetResults": 5}`, []string{"url", `"ftp://x"`, "http://"}},
		{`{"url": "http://x"}`, []string{"missing field targetResults", "1 to"}},
		{`{"url": "http://x", "targetResults": 0}`, []string{"targetResults 0", "an integer from 1"}},
		{`{"url": "http://x", "targetResults": 2.5}`, []string{"targetResults 2.5"}},
		{`{"url": "http://x", "targetResults": "5"}`, []string{`targetResults "5"`}},
		{`{"url": "http://x", "targetResults": 5, "maxRuns": 10001}`, []string{"maxRuns 10001", "1 to 10000"}},
		{`{"url": "http://x", "targetResults": 5, "continuationDelay": "5x"}`, []string{`continuationDelay "5x"`, "duration"}},
		{`{"url": "http://x", "targetResults": 5, "continuationDelay": 5}`, []string{"continuationDelay 5"}},
		{`{"url": "http://x", "targetResults": 5, "backoffFactor": 0.5}`, []string{"backoffFactor 0.5", "1 to 10"}},
		{`{"url": "http://x", "targetResults": 5, "runTimeout": "0s"}`, []string{`runTimeout "0s"`, "1s to 2h"}},
		{`{"url": "http://x", "targetResults": 5, "timeout": "31d"}`, []string{`timeout "31d"`, "30d"}},
		{`{"url": "http://x", "targetResults": 5, "retries": -1}`, []string{"retries -1", "0 to 100"}},
		{`{"url": "http://x", "targetResults": 5, "retryDelay": "pow("}`, []string{"retryDelay"}},
		{`{"url": "http://x", "targetResults": 5, "label": "a,b"}`, []string{`label "a,b"`, "commas"}},
		{`{"url": "http://x", "targetResults": 5, "colour": "red"}`, []string{`unknown field "colour"`, "allowed fields"}},
	}
	for _, c := range cases {
		_, err := jobs.ParseSpec([]byte(c.body))
		if err == nil {
			t.Errorf("ParseSpec(%s) succeeded, want an error", c.body)
			continue
		}
		if ferry.ErrorCode(err) != ferry.EINVALID {
			t.Errorf("ParseSpec(%s) error code = %s, want invalid", c.body, ferry.ErrorCode(err))
		}
		for _, w := range c.want {
			if !strings.Contains(ferry.ErrorMessage(err), w) {
				t.Errorf("ParseSpec(%s) error %q does not contain %q", c.body, ferry.ErrorMessage(err), w)
			}
		}
	}
}

func TestParseRunResponse(t *testing.T) {
	resp, err := jobs.ParseRunResponse([]byte(`{"processed": 3, "cursor": {"page": 2}, "results": [1, "two", {"x": 3}]}`), false, 1024)
	if err != nil {
		t.Fatalf("ParseRunResponse: %v", err)
	}
	if resp.Processed != 3 || string(resp.Cursor) != `{"page":2}` || len(resp.Results) != 3 || !resp.HasMore {
		t.Errorf("response = %+v", resp)
	}
	resp, err = jobs.ParseRunResponse([]byte(`{"processed": 0, "cursor": null, "hasMore": false}`), false, 1024)
	if err != nil || resp.Cursor != nil || resp.HasMore {
		t.Errorf("null cursor and hasMore false = %+v, %v", resp, err)
	}

	many := `{"processed": 1, "results": [` + strings.TrimSuffix(strings.Repeat("1,", jobs.MaxRunResults+1), ",") + `]}`
	cases := []struct {
		body      string
		truncated bool
		want      string
	}{
		{``, false, "body is empty"},
		{`[1]`, false, "not a JSON object"},
		{`{"processed": -1}`, false, "processed is -1"},
		{`{"processed": true}`, false, "processed is true"},
		{`{"processed": 1, "results": "x"}`, false, "results is a string"},
		{many, false, "1001 items"},
		{`{"processed": 1, "hasMore": null}`, false, "hasMore is null"},
		{`{"processed": 1}`, true, "exceeds the limit of 1024 bytes"},
	}
	for _, c := range cases {
		_, err := jobs.ParseRunResponse([]byte(c.body), c.truncated, 1024)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRunResponse(%.40s) error = %v, want %q", c.body, err, c.want)
		}
	}
}

func TestNewRunMessage(t *testing.T) {
	at := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	job := &ferry.Job{ID: "job_1", URL: "http://127.0.0.1:3000/job", Input: []byte(`{"k":1}`), TargetResults: 10,
		ProcessedResults: 4, Cursor: []byte(`"next"`), Retries: 5, RetryDelayExpr: "100", RunTimeout: 7 * time.Second,
		TimeoutAt: at.Add(time.Hour), Label: "nightly", CallerIP: "127.0.0.1"}
	m := jobs.NewRunMessage(job, 3, at.Add(time.Second), at)
	if m.JobID != "job_1" || m.JobRun != 3 || m.MaxRetries != 5 || m.RetryDelayExpr != "100" || m.Timeout != 7*time.Second ||
		!m.NotBefore.Equal(at.Add(time.Second)) || m.Method != "POST" {
		t.Errorf("message = %+v", m)
	}
	if m.Header.Get("Ferry-Job-Id") != "job_1" || m.Header.Get("Ferry-Job-Run") != "3" ||
		m.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", m.Header)
	}
	if len(m.Labels) != 1 || m.Labels[0] != "nightly" {
		t.Errorf("labels = %v", m.Labels)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(m.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"jobId": `"job_1"`, "run": "3", "input": `{"k":1}`, "cursor": `"next"`,
		"processedResults": "4", "targetResults": "10", "deadline": `"2025-03-14T10:00:00Z"`, "runTimeoutMs": "7000"}
	for k, v := range want {
		if string(body[k]) != v {
			t.Errorf("body %s = %s, want %s", k, body[k], v)
		}
	}
}

// raceStore completes a job between the sweeper's listing and its
// compare-and-set, the moment a real completion can slip in.
type raceStore struct {
	store.Store
	between func()
}

func (s *raceStore) JobListExpired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids, err := s.Store.JobListExpired(ctx, now, limit)
	if err == nil && len(ids) > 0 && s.between != nil {
		s.between()
		s.between = nil
	}
	return ids, err
}

func TestSweeperKeepsJobCompletedMeanwhile(t *testing.T) {
	st := openStore(t)
	at := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	finished := insertJob(t, st, at, 20)
	expired := insertJob(t, st, at, 20)
	deadline := at.Add(time.Hour)

	rs := &raceStore{Store: st, between: func() {
		m := claim(t, st, at, finished.CurrentMessageID)
		answer(t, st, m, deadline, `{"processed": 20}`)
	}}
	sweeper := jobs.NewSweeper(jobs.SweeperConfig{Store: rs, Now: func() time.Time { return deadline }})
	if n := sweeper.Sweep(t.Context()); n != 1 {
		t.Errorf("Sweep timed out %d jobs, want 1", n)
	}

	if got := getJob(t, st, finished.ID); got.State != ferry.JobStateCompleted || got.CompletionReason != ferry.JobReasonTargetMet {
		t.Errorf("job completed during the sweep is %s (%s), want completed (target_met)", got.State, got.CompletionReason)
	}
	got := getJob(t, st, expired.ID)
	if got.State != ferry.JobStateTimeout || got.CompletionReason != ferry.JobReasonTimeout ||
		!strings.Contains(got.Error, "0 of 20 results after 0 runs") {
		t.Errorf("expired job = %s (%s, %q), want timeout with the reason", got.State, got.CompletionReason, got.Error)
	}
	m, err := st.MessageGet(t.Context(), expired.CurrentMessageID)
	if err != nil || m.State != ferry.MessageStateCanceled {
		t.Errorf("expired job's run message = %v, %v; want CANCELED", m, err)
	}
	if n := sweeper.Sweep(t.Context()); n != 0 {
		t.Errorf("second Sweep timed out %d jobs, want 0", n)
	}
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
