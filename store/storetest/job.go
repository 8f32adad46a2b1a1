package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// jobTests are the conformance tests of store.JobStore. They drive the
// store with the fixed clock and the jobs package's Runner, which records
// run outcomes as the dispatcher does.
var jobTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"JobInsertRoundTrip", testJobInsertRoundTrip},
	{"JobIdempotencyKey", testJobIdempotencyKey},
	{"JobIdempotencyKeyConcurrent", testJobIdempotencyKeyConcurrent},
	{"JobRunCountsAndSchedulesNext", testJobRunCountsAndSchedulesNext},
	{"JobDuplicateRunNotCounted", testJobDuplicateRunNotCounted},
	{"JobReplayAfterCompletion", testJobReplayAfterCompletion},
	{"JobCompletionReasons", testJobCompletionReasons},
	{"JobInvalidResponse", testJobInvalidResponse},
	{"JobRunRetryAndFail", testJobRunRetryAndFail},
	{"JobSweepKeepsCompletion", testJobSweepKeepsCompletion},
	{"JobSweepThenLateResult", testJobSweepThenLateResult},
	{"JobFinishNotExpired", testJobFinishNotExpired},
	{"JobCancelInFlight", testJobCancelInFlight},
	{"JobRetryResumesFromCursor", testJobRetryResumesFromCursor},
	{"JobStartAdoptsReplacement", testJobStartAdoptsReplacement},
	{"JobListFilters", testJobListFilters},
	{"JobResultsPaging", testJobResultsPaging},
}

// jobMessageTimeout is the run timeout of the suite's jobs.
const jobMessageTimeout = 30 * time.Second

// newJob returns a pending job created at at, with run 1 due at once.
func newJob(target, maxRuns int, at time.Time) *ferry.Job {
	return &ferry.Job{
		ID:                   ferry.NewJobID(),
		State:                ferry.JobStatePending,
		URL:                  "https://handler.example/job",
		Input:                []byte(`{"keyword":"san"}`),
		Label:                "suite",
		TargetResults:        target,
		MaxRuns:              maxRuns,
		BackoffFactor:        1,
		MaxContinuationDelay: time.Minute,
		RunTimeout:           jobMessageTimeout,
		Timeout:              time.Hour,
		Retries:              2,
		CurrentRun:           1,
		NextRunAt:            at,
		CreatedAt:            at,
		TimeoutAt:            at.Add(time.Hour),
		UpdatedAt:            at,
	}
}

// insertJob stores job with the message of its first run.
func insertJob(t *testing.T, s store.Store, job *ferry.Job, at time.Time) *ferry.Message {
	t.Helper()
	m := jobs.NewRunMessage(job, 1, job.NextRunAt, at)
	job.CurrentMessageID = m.ID
	res, err := s.JobInsert(t.Context(), &store.JobInsertParams{Job: job, FirstRun: m, Now: at})
	if err != nil {
		t.Fatalf("JobInsert(%s): %v", job.ID, err)
	}
	if res.Existing || res.Job.ID != job.ID {
		t.Fatalf("JobInsert(%s) = job %s, existing %v; want the new job", job.ID, res.Job.ID, res.Existing)
	}
	return m
}

func getJob(t *testing.T, s store.Store, id string) *ferry.Job {
	t.Helper()
	job, err := s.JobGet(t.Context(), id)
	if err != nil {
		t.Fatalf("JobGet(%s): %v", id, err)
	}
	return job
}

// startRun claims message id at at and records the start of its attempt.
func startRun(t *testing.T, s store.Store, id string, at time.Time) *ferry.Message {
	t.Helper()
	m := claimOne(t, s, "node-a", at, id)
	proceed, err := s.JobRunStart(t.Context(), &store.JobRunStartParams{Message: m, Now: at})
	if err != nil {
		t.Fatalf("JobRunStart(%s): %v", id, err)
	}
	if !proceed {
		t.Fatalf("JobRunStart(%s) = false, want the run sent", id)
	}
	return m
}

// answer records a 200 response with body for the claimed message m at at,
// as the dispatcher does.
func answer(t *testing.T, s store.Store, m *ferry.Message, at time.Time, body string) dispatch.JobRecord {
	t.Helper()
	return record(t, s, &dispatch.JobAttempt{Message: m, Outcome: ferry.AttemptDelivered,
		Result:          store.AttemptResult{ResponseStatus: http.StatusOK, ResponseBody: []byte(body)},
		MaxResponseBody: 1 << 20, Started: at, Now: at})
}

func record(t *testing.T, s store.Store, a *dispatch.JobAttempt) dispatch.JobRecord {
	t.Helper()
	rec, err := jobs.NewRunner(s, nil).RecordRun(t.Context(), a)
	if err != nil {
		t.Fatalf("RecordRun(%s, %s): %v", a.Message.ID, a.Outcome, err)
	}
	return rec
}

// runBody decodes the run request that message m carries.
func runBody(t *testing.T, m *ferry.Message) wire.JobRunRequest {
	t.Helper()
	var body wire.JobRunRequest
	if err := json.Unmarshal(m.Body, &body); err != nil {
		t.Fatalf("decode run body of %s: %v", m.ID, err)
	}
	return body
}

// page returns the response body of a run with n processed results and
// items, a cursor naming the run, and hasMore true.
func page(run, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = strconv.Quote(fmt.Sprintf("r%d-%d", run, i))
	}
	b, _ := json.Marshal(map[string]any{"processed": n, "cursor": fmt.Sprintf("c%d", run),
		"results": json.RawMessage("[" + strings.Join(items, ",") + "]")})
	return string(b)
}

func testJobInsertRoundTrip(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	job.ContinuationDelay = 2 * time.Second
	job.BackoffFactor = 1.5
	job.RetryDelayExpr = "1000"
	job.CallerIP = "127.0.0.1"
	m := insertJob(t, s, job, now)

	got := getJob(t, s, job.ID)
	want := *job
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("JobGet = %+v\nwant %+v", got, &want)
	}

	msg := get(t, s, m.ID)
	if msg.JobID != job.ID || msg.JobRun != 1 {
		t.Errorf("run message JobID, JobRun = %q, %d; want %q, 1", msg.JobID, msg.JobRun, job.ID)
	}
	if msg.Header.Get(jobs.HeaderJobID) != job.ID || msg.Header.Get(jobs.HeaderJobRun) != "1" {
		t.Errorf("run message headers = %v, want %s and run 1", msg.Header, job.ID)
	}
	if msg.Timeout != jobMessageTimeout || msg.MaxRetries != 2 || msg.RetryDelayExpr != "1000" {
		t.Errorf("run message timeout, retries, delay = %v, %d, %q", msg.Timeout, msg.MaxRetries, msg.RetryDelayExpr)
	}

	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	if len(runs) != 1 || runs[0].Run != 1 || runs[0].MessageID != m.ID || runs[0].State != ferry.JobRunScheduled {
		t.Fatalf("runs = %+v, want run 1 scheduled with message %s", runs, m.ID)
	}
	events, err := s.JobEventList(t.Context(), &store.JobEventListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobEventList: %v", err)
	}
	if len(events) != 1 || events[0].State != ferry.JobStatePending {
		t.Errorf("events = %+v, want one pending event", events)
	}

	if _, err := s.JobGet(t.Context(), "job_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobGet(job_missing) error = %v, want ErrNotFound", err)
	}
}

func testJobIdempotencyKey(t *testing.T, s store.Store) {
	create := func(hash string, at time.Time) (*store.JobInsertResult, error) {
		job := newJob(10, 5, at)
		m := jobs.NewRunMessage(job, 1, at, at)
		job.CurrentMessageID = m.ID
		return s.JobInsert(t.Context(), &store.JobInsertParams{Job: job, FirstRun: m, IdempotencyKey: "key-1",
			IdempotencyWindow: 24 * time.Hour, RequestHash: hash, Now: at})
	}

	var ids []string
	for i := range 3 {
		res, err := create("hash-a", now.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if res.Existing != (i > 0) {
			t.Errorf("create %d: Existing = %v, want %v", i, res.Existing, i > 0)
		}
		ids = append(ids, res.Job.ID)
	}
	if ids[1] != ids[0] || ids[2] != ids[0] {
		t.Errorf("job ids = %v, want one job", ids)
	}
	list, err := s.JobList(t.Context(), &store.JobListParams{})
	if err != nil {
		t.Fatalf("JobList: %v", err)
	}
	if len(list) != 1 {
		t.Errorf("JobList has %d jobs, want 1", len(list))
	}
	if list[0].IdempotencyKey != "key-1" {
		t.Errorf("IdempotencyKey = %q, want key-1", list[0].IdempotencyKey)
	}

	if _, err := create("hash-b", now.Add(time.Hour)); !errors.Is(err, store.ErrIdempotencyKeyReused) {
		t.Errorf("create with another request: error = %v, want ErrIdempotencyKeyReused", err)
	}

	// After the window the key is free again.
	res, err := create("hash-b", now.Add(25*time.Hour))
	if err != nil {
		t.Fatalf("create after the window: %v", err)
	}
	if res.Existing || res.Job.ID == ids[0] {
		t.Errorf("create after the window returned job %s, existing %v; want a new job", res.Job.ID, res.Existing)
	}

	n, err := s.JobIdempotencyDeleteExpired(t.Context(), &store.CleanupParams{Before: now.Add(50 * time.Hour), Limit: 10})
	if err != nil || n != 1 {
		t.Errorf("JobIdempotencyDeleteExpired = %d, %v; want 1, nil", n, err)
	}
}

func testJobIdempotencyKeyConcurrent(t *testing.T, s store.Store) {
	const creators = 8
	ids := make([]string, creators)
	errs := make([]error, creators)
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() {
			job := newJob(10, 5, now)
			m := jobs.NewRunMessage(job, 1, now, now)
			job.CurrentMessageID = m.ID
			res, err := s.JobInsert(t.Context(), &store.JobInsertParams{Job: job, FirstRun: m,
				IdempotencyKey: "same", IdempotencyWindow: time.Hour, RequestHash: "h", Now: now})
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = res.Job.ID
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("create %d returned job %s, create 0 returned %s", i, id, ids[0])
		}
	}
	list, err := s.JobList(t.Context(), &store.JobListParams{})
	if err != nil {
		t.Fatalf("JobList: %v", err)
	}
	if len(list) != 1 {
		t.Errorf("JobList has %d jobs after %d concurrent creates with one key, want 1", len(list), creators)
	}
}

func testJobRunCountsAndSchedulesNext(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	job.ContinuationDelay = 2 * time.Second
	job.BackoffFactor = 2
	m1 := insertJob(t, s, job, now)

	claimed := startRun(t, s, m1.ID, now)
	if got := getJob(t, s, job.ID); got.State != ferry.JobStateProcessing || !got.StartedAt.Equal(now) || got.StartedRuns != 1 {
		t.Fatalf("after start: state %s, startedAt %v, startedRuns %d; want processing, %v, 1",
			got.State, got.StartedAt, got.StartedRuns, now)
	}

	done := now.Add(time.Second)
	rec := record(t, s, &dispatch.JobAttempt{Message: claimed, Outcome: ferry.AttemptDelivered,
		Result:          store.AttemptResult{ResponseStatus: http.StatusOK, ResponseBody: []byte(page(1, 20))},
		MaxResponseBody: 1 << 20, Started: now, Now: done})
	if !rec.Applied || !rec.Scheduled {
		t.Fatalf("record = %+v, want applied and scheduled", rec)
	}
	got := getJob(t, s, job.ID)
	if got.ProcessedRuns != 1 || got.ProcessedResults != 20 || got.StoredResults != 20 || got.CurrentRun != 2 {
		t.Errorf("after run 1: runs %d, processed %d, stored %d, current %d; want 1, 20, 20, 2",
			got.ProcessedRuns, got.ProcessedResults, got.StoredResults, got.CurrentRun)
	}
	if string(got.Cursor) != `"c1"` {
		t.Errorf("cursor = %s, want \"c1\"", got.Cursor)
	}
	// Run 2 waits continuationDelay·backoffFactor^(2-1) = 4 s.
	if want := done.Add(4 * time.Second); !got.NextRunAt.Equal(want) {
		t.Errorf("NextRunAt = %v, want %v", got.NextRunAt, want)
	}
	if got.StartedRuns != 1 {
		t.Errorf("StartedRuns = %d before run 2 started, want 1", got.StartedRuns)
	}

	m2 := get(t, s, got.CurrentMessageID)
	if m2.JobRun != 2 || !m2.NotBefore.Equal(got.NextRunAt) {
		t.Errorf("run 2 message: run %d, notBefore %v; want 2, %v", m2.JobRun, m2.NotBefore, got.NextRunAt)
	}
	body := runBody(t, m2)
	if body.Run != 2 || string(body.Cursor) != `"c1"` || body.ProcessedResults != 20 || body.TargetResults != 100 ||
		!body.Deadline.Equal(job.TimeoutAt) || body.RunTimeoutMs != jobMessageTimeout.Milliseconds() {
		t.Errorf("run 2 body = %+v", body)
	}
	if msg := get(t, s, m1.ID); msg.State != ferry.MessageStateDelivered {
		t.Errorf("run 1 message state = %s, want DELIVERED", msg.State)
	}

	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	if len(runs) != 2 {
		t.Fatalf("JobRunList = %d runs, want 2", len(runs))
	}
	r1 := runs[0]
	if r1.State != ferry.JobRunSucceeded || r1.Processed != 20 || r1.ResultCount != 20 || !r1.HasMore {
		t.Errorf("run 1 = %+v, want succeeded with 20 processed", r1)
	}
	if len(r1.Attempts) != 1 {
		t.Fatalf("run 1 has %d attempts, want 1", len(r1.Attempts))
	}
	a := r1.Attempts[0]
	if a.ResponseStatus != 200 || a.Outcome != ferry.AttemptDelivered || a.Latency != time.Second || a.Attempt != 1 {
		t.Errorf("run 1 attempt = %+v, want status 200, delivered, latency 1s", a)
	}
	if runs[1].State != ferry.JobRunScheduled || runs[1].MessageID != m2.ID {
		t.Errorf("run 2 = %+v, want scheduled with message %s", runs[1], m2.ID)
	}
}

func testJobDuplicateRunNotCounted(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	// Run 2 waits, so claims at now find only the messages of run 1.
	job.ContinuationDelay = 10 * time.Minute
	job.MaxContinuationDelay = 10 * time.Minute
	m1 := insertJob(t, s, job, now)
	claimed := startRun(t, s, m1.ID, now)
	answer(t, s, claimed, now, page(1, 20))
	before := getJob(t, s, job.ID)

	// A second message for run 1, as a dead-letter retry or a republish of
	// the run would make, is delivered too.
	dup := jobs.NewRunMessage(job, 1, now, now)
	insert(t, s, dup, now)
	dupClaimed := claimOne(t, s, "node-a", now, dup.ID)
	proceed, err := s.JobRunStart(t.Context(), &store.JobRunStartParams{Message: dupClaimed, Now: now})
	if err != nil {
		t.Fatalf("JobRunStart(duplicate): %v", err)
	}
	if proceed {
		t.Errorf("JobRunStart(duplicate of a counted run) = true, want false")
	}
	if got := get(t, s, dup.ID); got.State != ferry.MessageStateCanceled {
		t.Errorf("duplicate message state = %s, want CANCELED", got.State)
	}

	// Its response, recorded without the start check, is not counted either.
	dup2 := jobs.NewRunMessage(job, 1, now, now)
	insert(t, s, dup2, now)
	dup2Claimed := claimOne(t, s, "node-a", now, dup2.ID)
	rec := answer(t, s, dup2Claimed, now, page(1, 20))
	if !rec.Applied || rec.Scheduled {
		t.Errorf("record of duplicate = %+v, want applied without a new run", rec)
	}
	after := getJob(t, s, job.ID)
	if after.ProcessedRuns != before.ProcessedRuns || after.ProcessedResults != before.ProcessedResults ||
		after.StoredResults != before.StoredResults || after.CurrentRun != before.CurrentRun {
		t.Errorf("after duplicate: runs %d, processed %d, stored %d, current %d; want %d, %d, %d, %d",
			after.ProcessedRuns, after.ProcessedResults, after.StoredResults, after.CurrentRun,
			before.ProcessedRuns, before.ProcessedResults, before.StoredResults, before.CurrentRun)
	}
}

func testJobReplayAfterCompletion(t *testing.T, s store.Store) {
	job := newJob(20, 50, now)
	m1 := insertJob(t, s, job, now)
	claimed := startRun(t, s, m1.ID, now)
	if rec := answer(t, s, claimed, now, page(1, 20)); rec.Scheduled {
		t.Fatalf("record = %+v, want no next run", rec)
	}
	completed := getJob(t, s, job.ID)
	if completed.State != ferry.JobStateCompleted || completed.CompletionReason != ferry.JobReasonTargetMet {
		t.Fatalf("job = %s (%s), want completed (target_met)", completed.State, completed.CompletionReason)
	}

	// A replayed delivery of run 1 and a stray run 2 change nothing.
	for _, run := range []int{1, 2} {
		replay := jobs.NewRunMessage(job, run, now, now)
		insert(t, s, replay, now)
		replayed := claimOne(t, s, "node-a", now.Add(time.Minute), replay.ID)
		proceed, err := s.JobRunStart(t.Context(), &store.JobRunStartParams{Message: replayed, Now: now.Add(time.Minute)})
		if err != nil || proceed {
			t.Errorf("JobRunStart(replay of run %d) = %v, %v; want false, nil", run, proceed, err)
		}

		again := jobs.NewRunMessage(job, run, now, now)
		insert(t, s, again, now)
		againClaimed := claimOne(t, s, "node-a", now.Add(time.Minute), again.ID)
		answer(t, s, againClaimed, now.Add(time.Minute), page(run, 20))
	}

	after := getJob(t, s, job.ID)
	if !reflect.DeepEqual(after, completed) {
		t.Errorf("job changed after replays:\n got %+v\nwant %+v", after, completed)
	}
	results, err := s.JobResultList(t.Context(), &store.JobResultListParams{JobID: job.ID, Limit: 1000})
	if err != nil {
		t.Fatalf("JobResultList: %v", err)
	}
	if len(results) != 20 {
		t.Errorf("stored %d results after replays, want 20", len(results))
	}
}

func testJobCompletionReasons(t *testing.T, s store.Store) {
	cases := []struct {
		name       string
		target     int
		maxRuns    int
		answers    []string
		wantReason string
		wantRuns   int
	}{
		{"target met on the last allowed run", 40, 2, []string{page(1, 20), page(2, 20)}, ferry.JobReasonTargetMet, 2},
		{"max runs without target", 100, 2, []string{page(1, 20), page(2, 20)}, ferry.JobReasonMaxRunsReached, 2},
		{"no more results", 100, 50, []string{page(1, 20), `{"processed": 5, "hasMore": false}`}, ferry.JobReasonNoMoreResults, 2},
		{"target beats no more results", 25, 50, []string{`{"processed": 30, "hasMore": false}`}, ferry.JobReasonTargetMet, 1},
	}
	for i, c := range cases {
		at := now.Add(time.Duration(i) * time.Hour)
		job := newJob(c.target, c.maxRuns, at)
		m := insertJob(t, s, job, at)
		for _, body := range c.answers {
			claimed := startRun(t, s, m.ID, at)
			answer(t, s, claimed, at, body)
			if next := getJob(t, s, job.ID); !next.State.Terminal() {
				m = get(t, s, next.CurrentMessageID)
			}
		}
		got := getJob(t, s, job.ID)
		if got.State != ferry.JobStateCompleted || got.CompletionReason != c.wantReason || got.ProcessedRuns != c.wantRuns {
			t.Errorf("%s: state %s, reason %s, runs %d; want completed, %s, %d",
				c.name, got.State, got.CompletionReason, got.ProcessedRuns, c.wantReason, c.wantRuns)
		}
		if !got.NextRunAt.IsZero() || !got.CompletedAt.Equal(at) {
			t.Errorf("%s: NextRunAt %v, CompletedAt %v; want zero, %v", c.name, got.NextRunAt, got.CompletedAt, at)
		}
	}
}

func testJobInvalidResponse(t *testing.T, s store.Store) {
	cases := []struct {
		body      string
		wantField string
	}{
		{`not json`, "not a JSON object"},
		{`{"processed": "20"}`, "processed"},
		{`{"processed": 1.5}`, "processed"},
		{`{"hasMore": false}`, "processed"},
		{`{"processed": 2, "results": {"a": 1}}`, "results"},
		{`{"processed": 2, "hasMore": "no"}`, "hasMore"},
	}
	for i, c := range cases {
		at := now.Add(time.Duration(i) * time.Minute)
		job := newJob(100, 50, at)
		m := insertJob(t, s, job, at)
		claimed := startRun(t, s, m.ID, at)
		rec := answer(t, s, claimed, at, c.body)
		if !rec.Applied || rec.Scheduled {
			t.Errorf("%s: record = %+v, want applied without a next run", c.body, rec)
		}
		got := getJob(t, s, job.ID)
		if got.State != ferry.JobStateError || got.CompletionReason != ferry.JobReasonInvalidResponse {
			t.Errorf("%s: state %s (%s), want error (invalid_response)", c.body, got.State, got.CompletionReason)
		}
		if !strings.Contains(got.Error, c.wantField) {
			t.Errorf("%s: Error = %q, want it to name %q", c.body, got.Error, c.wantField)
		}
		if got.LastResponseStatus != 200 || string(got.LastResponseBody) != c.body {
			t.Errorf("%s: last response %d %q, want 200 with the body", c.body, got.LastResponseStatus, got.LastResponseBody)
		}
		if got.ProcessedRuns != 0 {
			t.Errorf("%s: ProcessedRuns = %d, want 0", c.body, got.ProcessedRuns)
		}
	}
}

func testJobRunRetryAndFail(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	m := insertJob(t, s, job, now)
	failure := store.AttemptResult{ResponseStatus: 500, ResponseBody: []byte("database down"), Error: "destination answered 500"}

	// Attempts 1 and 2 fail and are retried; attempt 3 exhausts the
	// message's two retries.
	at := now
	for attempt := 1; attempt <= 3; attempt++ {
		claimed := startRun(t, s, m.ID, at)
		a := &dispatch.JobAttempt{Message: claimed, Result: failure, Started: at, Now: at.Add(100 * time.Millisecond)}
		if attempt < 3 {
			a.Outcome = ferry.AttemptRetry
			a.NextAt = at.Add(time.Second)
		} else {
			a.Outcome = ferry.AttemptFailed
			a.DLQID = "dlq_job_" + strconv.Itoa(attempt)
		}
		if rec := record(t, s, a); !rec.Applied {
			t.Fatalf("attempt %d: record not applied", attempt)
		}
		if attempt < 3 {
			runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
			if err != nil {
				t.Fatalf("JobRunList: %v", err)
			}
			if runs[0].State != ferry.JobRunRetrying {
				t.Errorf("attempt %d: run state = %s, want retrying", attempt, runs[0].State)
			}
			if got := getJob(t, s, job.ID); got.State != ferry.JobStateProcessing {
				t.Errorf("attempt %d: job state = %s, want processing", attempt, got.State)
			}
		}
		at = at.Add(time.Second)
	}

	got := getJob(t, s, job.ID)
	if got.State != ferry.JobStateError || got.CompletionReason != ferry.JobReasonRunFailed {
		t.Fatalf("job = %s (%s), want error (run_failed)", got.State, got.CompletionReason)
	}
	if got.LastResponseStatus != 500 || string(got.LastResponseBody) != "database down" {
		t.Errorf("last response = %d %q, want 500 \"database down\"", got.LastResponseStatus, got.LastResponseBody)
	}
	if !strings.Contains(got.Error, "500") || !strings.Contains(got.Error, "3 attempts") {
		t.Errorf("Error = %q, want the status and the attempt count", got.Error)
	}
	if msg := get(t, s, m.ID); msg.State != ferry.MessageStateFailed {
		t.Errorf("run message state = %s, want FAILED", msg.State)
	}
	if _, err := s.DLQGet(t.Context(), "dlq_job_3"); err != nil {
		t.Errorf("DLQGet(dlq_job_3): %v", err)
	}

	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	if len(runs[0].Attempts) != 3 {
		t.Fatalf("run 1 has %d attempts, want 3", len(runs[0].Attempts))
	}
	for i, a := range runs[0].Attempts {
		if a.Attempt != i+1 || a.Retried != i || a.ResponseStatus != 500 || a.Latency != 100*time.Millisecond {
			t.Errorf("attempt %d = %+v, want attempt %d, retried %d, status 500, latency 100ms", i, a, i+1, i)
		}
	}
	if runs[0].State != ferry.JobRunFailed {
		t.Errorf("run state = %s, want failed", runs[0].State)
	}
}

// testJobSweepKeepsCompletion runs the sweeper's two steps around a
// completion at the same instant: the sweeper lists the job as expired,
// the run's response completes it, and the sweeper's compare-and-set then
// leaves the completion alone.
func testJobSweepKeepsCompletion(t *testing.T, s store.Store) {
	job := newJob(20, 50, now)
	job.TimeoutAt = now.Add(time.Minute)
	m := insertJob(t, s, job, now)
	claimed := startRun(t, s, m.ID, now)

	deadline := job.TimeoutAt
	ids, err := s.JobListExpired(t.Context(), deadline, 10)
	if err != nil {
		t.Fatalf("JobListExpired: %v", err)
	}
	if !slices.Equal(ids, []string{job.ID}) {
		t.Fatalf("JobListExpired = %v, want [%s]", ids, job.ID)
	}

	answer(t, s, claimed, deadline, page(1, 20))

	got, applied, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: job.ID, Now: deadline,
		State: ferry.JobStateTimeout, Reason: ferry.JobReasonTimeout, RequireExpired: true, ErrorOf: jobs.TimeoutError})
	if err != nil {
		t.Fatalf("JobFinish: %v", err)
	}
	if applied {
		t.Errorf("JobFinish applied to a job completed in the same instant")
	}
	if got.State != ferry.JobStateCompleted {
		t.Errorf("JobFinish returned state %s, want completed", got.State)
	}
	stored := getJob(t, s, job.ID)
	if stored.State != ferry.JobStateCompleted || stored.CompletionReason != ferry.JobReasonTargetMet || stored.Error != "" {
		t.Errorf("job = %s (%s, error %q), want completed (target_met) without error",
			stored.State, stored.CompletionReason, stored.Error)
	}
}

// testJobSweepThenLateResult is the other order: the sweeper times the job
// out first, and the run's response arriving in the same instant changes
// nothing.
func testJobSweepThenLateResult(t *testing.T, s store.Store) {
	job := newJob(20, 50, now)
	job.TimeoutAt = now.Add(time.Minute)
	m := insertJob(t, s, job, now)
	claimed := startRun(t, s, m.ID, now)
	answer(t, s, claimed, now, page(1, 10))
	next := getJob(t, s, job.ID)
	claimed2 := startRun(t, s, next.CurrentMessageID, now)

	deadline := job.TimeoutAt
	got, applied, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: job.ID, Now: deadline,
		State: ferry.JobStateTimeout, Reason: ferry.JobReasonTimeout, RequireExpired: true, ErrorOf: jobs.TimeoutError})
	if err != nil || !applied {
		t.Fatalf("JobFinish = %v, %v; want applied", applied, err)
	}
	if got.State != ferry.JobStateTimeout || !strings.Contains(got.Error, "10 of 20 results after 1 runs") {
		t.Errorf("timed-out job: state %s, error %q", got.State, got.Error)
	}
	if msg := get(t, s, claimed2.ID); msg.State != ferry.MessageStateCanceled {
		t.Errorf("run 2 message state = %s, want CANCELED", msg.State)
	}
	requireStates(t, messageEvents(t, s, claimed2.ID), ferry.MessageStateCreated, ferry.MessageStateActive,
		ferry.MessageStateCancelRequested, ferry.MessageStateCanceled)

	if rec := answer(t, s, claimed2, deadline, page(2, 10)); rec.Applied {
		t.Errorf("late answer after the timeout was applied")
	}
	after := getJob(t, s, job.ID)
	if after.State != ferry.JobStateTimeout || after.ProcessedResults != 10 || after.ProcessedRuns != 1 {
		t.Errorf("after the late answer: state %s, processed %d, runs %d; want timeout, 10, 1",
			after.State, after.ProcessedResults, after.ProcessedRuns)
	}
	if ids, _ := s.JobListExpired(t.Context(), deadline.Add(time.Hour), 10); len(ids) != 0 {
		t.Errorf("JobListExpired after the timeout = %v, want none", ids)
	}
}

func testJobFinishNotExpired(t *testing.T, s store.Store) {
	job := newJob(20, 50, now)
	insertJob(t, s, job, now)
	got, applied, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: job.ID, Now: job.TimeoutAt.Add(-time.Millisecond),
		State: ferry.JobStateTimeout, Reason: ferry.JobReasonTimeout, RequireExpired: true})
	if err != nil || applied || got.State != ferry.JobStatePending {
		t.Errorf("JobFinish before the timeout = %s, %v, %v; want pending, false, nil", got.State, applied, err)
	}
	if _, _, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: "job_missing", Now: now,
		State: ferry.JobStateCancelled}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobFinish(job_missing) error = %v, want ErrNotFound", err)
	}
}

func testJobCancelInFlight(t *testing.T, s store.Store) {
	job := newJob(20, 50, now)
	m := insertJob(t, s, job, now)
	claimed := startRun(t, s, m.ID, now)

	got, applied, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: job.ID, Now: now,
		State: ferry.JobStateCancelled, Reason: ferry.JobReasonCancelled, Note: "not needed"})
	if err != nil || !applied {
		t.Fatalf("JobFinish(cancel) = %v, %v", applied, err)
	}
	if got.State != ferry.JobStateCancelled || got.CompletionNote != "not needed" || !got.CompletedAt.Equal(now) {
		t.Errorf("cancelled job = %+v", got)
	}
	if rec := answer(t, s, claimed, now, page(1, 20)); rec.Applied {
		t.Errorf("answer after the cancel was applied")
	}
	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	if runs[0].State != ferry.JobRunCancelled {
		t.Errorf("run state = %s, want cancelled", runs[0].State)
	}
	again, applied, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: job.ID, Now: now,
		State: ferry.JobStateCompleted, Reason: ferry.JobReasonManual})
	if err != nil || applied || again.State != ferry.JobStateCancelled {
		t.Errorf("JobFinish on a cancelled job = %s, %v, %v; want cancelled, false, nil", again.State, applied, err)
	}
}

func testJobRetryResumesFromCursor(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	m := insertJob(t, s, job, now)
	answer(t, s, startRun(t, s, m.ID, now), now, page(1, 20))
	m2 := get(t, s, getJob(t, s, job.ID).CurrentMessageID)
	claimed2 := startRun(t, s, m2.ID, now)
	record(t, s, &dispatch.JobAttempt{Message: claimed2, Outcome: ferry.AttemptFailed, DLQID: "dlq_retry_test",
		Result: store.AttemptResult{ResponseStatus: 489, Error: "destination answered 489"}, Started: now, Now: now})
	failed := getJob(t, s, job.ID)
	if failed.State != ferry.JobStateError {
		t.Fatalf("job state = %s, want error", failed.State)
	}

	at := now.Add(2 * time.Hour)
	resumed, err := s.JobRetry(t.Context(), &store.JobRetryParams{ID: job.ID, Now: at, Prepare: jobs.PrepareRetry(at)})
	if err != nil {
		t.Fatalf("JobRetry: %v", err)
	}
	got := getJob(t, s, job.ID)
	if !reflect.DeepEqual(got, resumed) {
		t.Errorf("JobRetry returned %+v, stored %+v", resumed, got)
	}
	if got.State != ferry.JobStateProcessing || got.RetriedCount != 1 || got.CurrentRun != 2 || got.Error != "" {
		t.Errorf("resumed job: state %s, retried %d, current run %d, error %q; want processing, 1, 2, none",
			got.State, got.RetriedCount, got.CurrentRun, got.Error)
	}
	if got.ProcessedRuns != 1 || got.ProcessedResults != 20 || string(got.Cursor) != `"c1"` {
		t.Errorf("resumed job counters: runs %d, processed %d, cursor %s; want 1, 20, \"c1\"",
			got.ProcessedRuns, got.ProcessedResults, got.Cursor)
	}
	if want := at.Add(job.Timeout); !got.TimeoutAt.Equal(want) {
		t.Errorf("TimeoutAt = %v, want %v", got.TimeoutAt, want)
	}

	m3 := get(t, s, got.CurrentMessageID)
	body := runBody(t, m3)
	if m3.ID == m2.ID || body.Run != 2 || string(body.Cursor) != `"c1"` || body.ProcessedResults != 20 {
		t.Errorf("resumed run message %s: run %d, cursor %s, processed %d; want a new message for run 2 after \"c1\"",
			m3.ID, body.Run, body.Cursor, body.ProcessedResults)
	}
	events, err := s.JobEventList(t.Context(), &store.JobEventListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobEventList: %v", err)
	}
	if last := events[len(events)-1]; last.State != ferry.JobStateProcessing || !strings.Contains(last.Detail, "retried from error") {
		t.Errorf("last event = %+v, want the retry", last)
	}

	// The resumed run counts and the job goes on.
	answer(t, s, startRun(t, s, m3.ID, at), at, page(2, 20))
	if after := getJob(t, s, job.ID); after.ProcessedRuns != 2 || after.ProcessedResults != 40 || after.CurrentRun != 3 {
		t.Errorf("after the resumed run: runs %d, processed %d, current %d; want 2, 40, 3",
			after.ProcessedRuns, after.ProcessedResults, after.CurrentRun)
	}

	// A job whose run waits normally cannot be retried.
	_, err = s.JobRetry(t.Context(), &store.JobRetryParams{ID: job.ID, Now: at, Prepare: jobs.PrepareRetry(at)})
	if ferry.ErrorCode(err) != ferry.ECONFLICT {
		t.Errorf("JobRetry of a healthy job: error %v, want a conflict", err)
	}
	if _, err := s.JobRetry(t.Context(), &store.JobRetryParams{ID: "job_missing", Now: at,
		Prepare: jobs.PrepareRetry(at)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobRetry(job_missing) error = %v, want ErrNotFound", err)
	}
}

// testJobStartAdoptsReplacement covers a run message that failed outside
// the jobs hook and a replacement message for the same run, as a
// dead-letter retry makes.
func testJobStartAdoptsReplacement(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	m := insertJob(t, s, job, now)
	claimed := claimOne(t, s, "node-a", now, m.ID)
	if _, _, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{ID: claimed.ID,
		Attempts: claimed.Attempts, Now: now, DLQID: "dlq_outside", Result: store.AttemptResult{ResponseStatus: 500}}); err != nil {
		t.Fatalf("MessageMarkFailed: %v", err)
	}

	replacement := *get(t, s, m.ID)
	replacement.ID = ferry.NewMessageID()
	insert(t, s, &replacement, now)
	replaced := startRun(t, s, replacement.ID, now)
	if got := getJob(t, s, job.ID); got.CurrentMessageID != replacement.ID {
		t.Errorf("CurrentMessageID = %s, want the adopted %s", got.CurrentMessageID, replacement.ID)
	}
	answer(t, s, replaced, now, page(1, 20))
	if got := getJob(t, s, job.ID); got.ProcessedRuns != 1 || got.CurrentRun != 2 {
		t.Errorf("after the adopted run: runs %d, current %d; want 1, 2", got.ProcessedRuns, got.CurrentRun)
	}
}

func testJobListFilters(t *testing.T, s store.Store) {
	var ids []string
	for i := range 5 {
		at := now.Add(time.Duration(i) * time.Minute)
		job := newJob(10, 5, at)
		job.Label = "even"
		if i%2 == 1 {
			job.Label = "odd"
		}
		insertJob(t, s, job, at)
		ids = append(ids, job.ID)
	}
	if _, _, err := s.JobFinish(t.Context(), &store.JobFinishParams{ID: ids[0], Now: now,
		State: ferry.JobStateCancelled, Reason: ferry.JobReasonCancelled}); err != nil {
		t.Fatalf("JobFinish: %v", err)
	}

	list := func(params *store.JobListParams) []string {
		t.Helper()
		jobs, err := s.JobList(t.Context(), params)
		if err != nil {
			t.Fatalf("JobList(%+v): %v", params, err)
		}
		out := make([]string, len(jobs))
		for i, j := range jobs {
			out[i] = j.ID
		}
		return out
	}
	if got, want := list(&store.JobListParams{}), []string{ids[4], ids[3], ids[2], ids[1], ids[0]}; !slices.Equal(got, want) {
		t.Errorf("all jobs = %v, want newest first %v", got, want)
	}
	if got, want := list(&store.JobListParams{Labels: []string{"odd"}}), []string{ids[3], ids[1]}; !slices.Equal(got, want) {
		t.Errorf("label odd = %v, want %v", got, want)
	}
	if got, want := list(&store.JobListParams{States: []ferry.JobState{ferry.JobStateCancelled}}), []string{ids[0]}; !slices.Equal(got, want) {
		t.Errorf("state cancelled = %v, want %v", got, want)
	}
	if got, want := list(&store.JobListParams{From: now.Add(time.Minute), To: now.Add(3 * time.Minute)}),
		[]string{ids[3], ids[2], ids[1]}; !slices.Equal(got, want) {
		t.Errorf("created range = %v, want %v", got, want)
	}
	if got, want := list(&store.JobListParams{Limit: 2}), []string{ids[4], ids[3]}; !slices.Equal(got, want) {
		t.Errorf("first page = %v, want %v", got, want)
	}
	if got, want := list(&store.JobListParams{Limit: 2, BeforeID: ids[3]}), []string{ids[2], ids[1]}; !slices.Equal(got, want) {
		t.Errorf("second page = %v, want %v", got, want)
	}
}

func testJobResultsPaging(t *testing.T, s store.Store) {
	job := newJob(100, 50, now)
	m := insertJob(t, s, job, now)
	answer(t, s, startRun(t, s, m.ID, now), now, page(1, 3))
	m2 := getJob(t, s, job.ID).CurrentMessageID
	answer(t, s, startRun(t, s, m2, now), now, `{"processed": 2, "results": [{"name": "a"}, {"name": "b"}]}`)

	first, err := s.JobResultList(t.Context(), &store.JobResultListParams{JobID: job.ID, Limit: 4})
	if err != nil {
		t.Fatalf("JobResultList: %v", err)
	}
	if len(first) != 4 {
		t.Fatalf("first page has %d results, want 4", len(first))
	}
	for i, r := range first {
		if r.Seq != i+1 {
			t.Errorf("result %d has seq %d", i, r.Seq)
		}
	}
	if string(first[0].Item) != `"r1-0"` || first[3].Run != 2 || string(first[3].Item) != `{"name":"a"}` {
		t.Errorf("first page = %s (run %d) ... %s (run %d)", first[0].Item, first[0].Run, first[3].Item, first[3].Run)
	}
	rest, err := s.JobResultList(t.Context(), &store.JobResultListParams{JobID: job.ID, AfterSeq: 4})
	if err != nil {
		t.Fatalf("JobResultList: %v", err)
	}
	if len(rest) != 1 || rest[0].Seq != 5 || string(rest[0].Item) != `{"name":"b"}` {
		t.Errorf("second page = %+v, want result 5", rest)
	}
}
