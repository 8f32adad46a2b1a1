package jobs_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Claim settings of these tests: a run's lease is its 30 s run timeout
// plus leaseMargin.
const leaseMargin = 5 * time.Second

// insertJob stores a job created at at with target results, run timeout
// 30 s, three retries and a one-hour timeout.
func insertJob(t *testing.T, st store.Store, at time.Time, target int) *ferry.Job {
	t.Helper()
	spec, err := jobs.ParseSpec([]byte(`{"url": "http://127.0.0.1:3000/job", "runTimeout": "30s", "targetResults": ` +
		strconv.Itoa(target) + `}`))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	job := spec.NewJob(at, "127.0.0.1")
	m := jobs.NewRunMessage(job, 1, at, at)
	job.CurrentMessageID = m.ID
	if _, err := st.JobInsert(t.Context(), &store.JobInsertParams{Job: job, FirstRun: m, Now: at}); err != nil {
		t.Fatalf("JobInsert: %v", err)
	}
	return job
}

func getJob(t *testing.T, st store.Store, id string) *ferry.Job {
	t.Helper()
	job, err := st.JobGet(t.Context(), id)
	if err != nil {
		t.Fatalf("JobGet(%s): %v", id, err)
	}
	return job
}

// claim leases message id at at and records the start of the attempt.
func claim(t *testing.T, st store.Store, at time.Time, id string) *ferry.Message {
	t.Helper()
	msgs, err := st.MessageClaim(t.Context(), &store.MessageClaimParams{Owner: "node-a", Limit: 10, Now: at,
		DefaultTimeout: time.Minute, LeaseMargin: leaseMargin})
	if err != nil {
		t.Fatalf("MessageClaim: %v", err)
	}
	for _, m := range msgs {
		if m.ID == id {
			if _, err := st.JobRunStart(t.Context(), &store.JobRunStartParams{Message: m, Now: at}); err != nil {
				t.Fatalf("JobRunStart: %v", err)
			}
			return m
		}
	}
	t.Fatalf("MessageClaim at %v did not claim %s", at, id)
	return nil
}

// answer records a 200 response with body for m at time at.
func answer(t *testing.T, st store.Store, m *ferry.Message, at time.Time, body string) {
	t.Helper()
	record(t, st, &dispatch.JobAttempt{Message: m, Outcome: ferry.AttemptDelivered,
		Result:          store.AttemptResult{ResponseStatus: http.StatusOK, ResponseBody: []byte(body)},
		MaxResponseBody: 1 << 20, Started: at.Add(-40 * time.Millisecond), Now: at})
}

func record(t *testing.T, st store.Store, a *dispatch.JobAttempt) {
	t.Helper()
	rec, err := jobs.NewRunner(st, nil).RecordRun(t.Context(), a)
	if err != nil || !rec.Applied {
		t.Fatalf("RecordRun(%s) = %+v, %v; want applied", a.Outcome, rec, err)
	}
}

// diagnose returns the findings for job id at at.
func diagnose(t *testing.T, st store.Store, id string, at time.Time) []wire.JobFinding {
	t.Helper()
	findings, err := jobs.Diagnose(t.Context(), st, getJob(t, st, id), at, jobs.DiagnoseOptions{})
	if err != nil {
		t.Fatalf("Diagnose: %v", err)
	}
	return findings
}

// requireFinding fails unless findings has one with reason whose detail
// contains every part and whose command is "ferry jobs <action> <id>".
func requireFinding(t *testing.T, findings []wire.JobFinding, id, reason, action string, parts ...string) {
	t.Helper()
	for _, f := range findings {
		if f.Reason != reason {
			continue
		}
		if !strings.HasPrefix(f.Command, "ferry jobs "+action+" "+id) {
			t.Errorf("%s command = %q, want ferry jobs %s %s", reason, f.Command, action, id)
		}
		for _, p := range parts {
			if !strings.Contains(f.Detail, p) {
				t.Errorf("%s detail %q does not contain %q", reason, f.Detail, p)
			}
		}
		return
	}
	t.Fatalf("findings %+v have no %s", findings, reason)
}

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

func TestDiagnoseHealthyJob(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	if f := diagnose(t, st, job.ID, t0.Add(30*time.Second)); len(f) != 0 {
		t.Errorf("findings for a job due 30 s ago = %+v, want none within the start grace", f)
	}
	m := claim(t, st, t0, job.CurrentMessageID)
	if f := diagnose(t, st, job.ID, t0.Add(10*time.Second)); len(f) != 0 {
		t.Errorf("findings for a run in flight within its deadline = %+v, want none", f)
	}
	answer(t, st, m, t0.Add(time.Second), `{"processed": 10}`)
	if f := diagnose(t, st, job.ID, t0.Add(2*time.Second)); len(f) != 0 {
		t.Errorf("findings for a job with its next run due = %+v, want none", f)
	}
}

func TestDiagnoseRetryBackoff(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	m := claim(t, st, t0, job.CurrentMessageID)
	next := t0.Add(10 * time.Minute)
	record(t, st, &dispatch.JobAttempt{Message: m, Outcome: ferry.AttemptRetry, NextAt: next,
		Result:  store.AttemptResult{ResponseStatus: 503, Error: "destination answered 503"},
		Started: t0, Now: t0.Add(250 * time.Millisecond)})

	findings := diagnose(t, st, job.ID, t0.Add(time.Minute))
	requireFinding(t, findings, job.ID, jobs.ReasonRetryBackoff, "retry",
		"attempt 1 of 4 failed with status 503 in 250 ms", "next attempt at 2025-03-14T09:10:00.000Z", "(in 9m0s)")
}

func TestDiagnoseDeadLettered(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	m := claim(t, st, t0, job.CurrentMessageID)
	// A node without the jobs hook records the failure on the message only.
	if _, _, err := st.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{ID: m.ID, Attempts: m.Attempts,
		Now: t0, DLQID: "dlq_stuck", Result: store.AttemptResult{ResponseStatus: 500}}); err != nil {
		t.Fatalf("MessageMarkFailed: %v", err)
	}
	findings := diagnose(t, st, job.ID, t0.Add(time.Minute))
	requireFinding(t, findings, job.ID, jobs.ReasonDeadLettered, "retry", "dead-letter queue as dlq_stuck", "last status 500")
}

func TestDiagnoseLeaseExpired(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	claim(t, st, t0, job.CurrentMessageID)
	// The lease is the 30 s run timeout plus the 5 s margin.
	findings := diagnose(t, st, job.ID, t0.Add(50*time.Second))
	requireFinding(t, findings, job.ID, jobs.ReasonPastDeadline, "retry",
		"attempt 1 (started 2025-03-14T09:00:00.000Z)", "lease expired at 2025-03-14T09:00:35.000Z", "overdue 15s")
}

func TestDiagnoseInFlightPastDeadline(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	claim(t, st, t0, job.CurrentMessageID)
	findings := diagnose(t, st, job.ID, t0.Add(32*time.Second))
	requireFinding(t, findings, job.ID, jobs.ReasonPastDeadline, "watch",
		"past its deadline 2025-03-14T09:00:30.000Z", "lease expires at 2025-03-14T09:00:35.000Z")
}

func TestDiagnoseNoProgress(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	at := t0
	answer(t, st, claim(t, st, at, job.CurrentMessageID), at, `{"processed": 7}`)
	for range 5 {
		at = at.Add(time.Second)
		answer(t, st, claim(t, st, at, getJob(t, st, job.ID).CurrentMessageID), at, `{"processed": 0}`)
	}
	findings := diagnose(t, st, job.ID, at)
	requireFinding(t, findings, job.ID, jobs.ReasonNoProgress, "complete",
		"no progress in the last 5 runs", "runs 2 to 6", "7 of 100 results")
	if f := findings[len(findings)-1]; !strings.Contains(f.Command, `--reason "no progress"`) {
		t.Errorf("command = %q, want a reason", f.Command)
	}

	// One run with results among the latest five clears the finding.
	answer(t, st, claim(t, st, at, getJob(t, st, job.ID).CurrentMessageID), at, `{"processed": 1}`)
	if f := diagnose(t, st, job.ID, at); len(f) != 0 {
		t.Errorf("findings after a run with results = %+v, want none", f)
	}
}

func TestDiagnoseDeadlinePassed(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	answer(t, st, claim(t, st, t0, job.CurrentMessageID), t0, `{"processed": 1}`)
	late := job.TimeoutAt.Add(90 * time.Second)
	findings := diagnose(t, st, job.ID, late)
	requireFinding(t, findings, job.ID, jobs.ReasonDeadlinePassed, "cancel",
		"deadline 2025-03-14T10:00:00.000Z passed 1m30s ago", "sweeper")
}

func TestDiagnoseNeverStarted(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	findings := diagnose(t, st, job.ID, t0.Add(3*time.Minute))
	requireFinding(t, findings, job.ID, jobs.ReasonNeverStarted, "cancel",
		"pending and never started", "due at 2025-03-14T09:00:00.000Z (3m0s ago)")
}

func TestDiagnoseRunOverdue(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	answer(t, st, claim(t, st, t0, job.CurrentMessageID), t0, `{"processed": 1}`)
	findings := diagnose(t, st, job.ID, t0.Add(5*time.Minute))
	requireFinding(t, findings, job.ID, jobs.ReasonRunOverdue, "cancel", "run 2 was due at", "(5m0s ago)")
}

func TestDiagnoseRunLostThenRetry(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	if _, err := st.MessageCancel(t.Context(), &store.MessageCancelParams{IDs: []string{job.CurrentMessageID}, Now: t0}); err != nil {
		t.Fatalf("MessageCancel: %v", err)
	}
	findings := diagnose(t, st, job.ID, t0)
	requireFinding(t, findings, job.ID, jobs.ReasonRunLost, "retry", "run 1's message", "CANCELED outside the job")

	// The suggested command works: the run gets a new message.
	retried, err := st.JobRetry(t.Context(), &store.JobRetryParams{ID: job.ID, Now: t0, Prepare: jobs.PrepareRetry(t0)})
	if err != nil {
		t.Fatalf("JobRetry: %v", err)
	}
	if retried.CurrentMessageID == job.CurrentMessageID || retried.CurrentRun != 1 || retried.RetriedCount != 1 {
		t.Errorf("retried job: message %s, run %d, retried %d", retried.CurrentMessageID, retried.CurrentRun, retried.RetriedCount)
	}
	if f := diagnose(t, st, job.ID, t0); len(f) != 0 {
		t.Errorf("findings after the retry = %+v, want none", f)
	}
}

func TestDiagnoseEndedJobs(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	m := claim(t, st, t0, job.CurrentMessageID)
	record(t, st, &dispatch.JobAttempt{Message: m, Outcome: ferry.AttemptFailed, DLQID: "dlq_ended",
		Result:  store.AttemptResult{ResponseStatus: 489, ResponseBody: []byte("bad keyword"), Error: "destination answered 489"},
		Started: t0, Now: t0})
	findings := diagnose(t, st, job.ID, t0)
	requireFinding(t, findings, job.ID, jobs.ReasonFailed, "retry", "run 1 failed after 1 attempts", "last response status 489")

	done := insertJob(t, st, t0, 5)
	answer(t, st, claim(t, st, t0, done.CurrentMessageID), t0, `{"processed": 5}`)
	if f := diagnose(t, st, done.ID, t0); len(f) != 0 {
		t.Errorf("findings for a completed job = %+v, want none", f)
	}
}

func TestFindStuckListsOnlyStuckJobs(t *testing.T) {
	st := openStore(t)
	done := insertJob(t, st, t0, 1)
	answer(t, st, claim(t, st, t0, done.CurrentMessageID), t0, `{"processed": 1}`)
	healthy := insertJob(t, st, t0.Add(4*time.Minute), 100)
	stuck := insertJob(t, st, t0, 100)

	got, scanned, err := jobs.FindStuck(t.Context(), st, t0.Add(5*time.Minute), jobs.DiagnoseOptions{})
	if err != nil {
		t.Fatalf("FindStuck: %v", err)
	}
	if scanned != 2 {
		t.Errorf("scanned %d unfinished jobs, want 2", scanned)
	}
	if len(got) != 1 || got[0].Job.ID != stuck.ID || got[0].Findings[0].Reason != jobs.ReasonNeverStarted {
		t.Errorf("FindStuck = %+v, want only %s as never started (healthy %s)", got, stuck.ID, healthy.ID)
	}
}

func TestInspectTimeline(t *testing.T) {
	st := openStore(t)
	job := insertJob(t, st, t0, 100)
	m := claim(t, st, t0, job.CurrentMessageID)
	record(t, st, &dispatch.JobAttempt{Message: m, Outcome: ferry.AttemptRetry, NextAt: t0.Add(2 * time.Second),
		Result: store.AttemptResult{ResponseStatus: 502, Error: "destination answered 502"}, Started: t0,
		Now: t0.Add(120 * time.Millisecond)})
	m = claim(t, st, t0.Add(2*time.Second), job.CurrentMessageID)
	answer(t, st, m, t0.Add(3*time.Second), `{"processed": 20, "results": [1, 2]}`)

	in, err := jobs.Inspect(t.Context(), st, job.ID, t0.Add(4*time.Second), jobs.DiagnoseOptions{})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	var lines []string
	for _, e := range in.Timeline {
		lines = append(lines, e.Time.Format("05.000")+" "+e.Kind+" "+e.Text)
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"00.000 state job pending: created",
		"00.000 state job processing: run 1 started",
		"00.000 run run 1 due",
		"00.000 attempt run 1 attempt 1 (Upstash-Retried 0, message " + m.ID + "): status 502 in 120 ms, retry (destination answered 502)",
		"02.000 attempt run 1 attempt 2 (Upstash-Retried 1, message " + m.ID + "): status 200 in 40 ms, delivered",
		"03.000 run run 1 counted: processed 20, stored 2 results, hasMore true",
		"03.000 next next: run 2 due at 2025-03-14T09:00:03.000Z",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("timeline lacks %q:\n%s", want, text)
		}
	}
	if len(in.Findings) != 0 {
		t.Errorf("findings = %+v, want none", in.Findings)
	}
	if _, err := jobs.Inspect(t.Context(), st, "job_missing", t0, jobs.DiagnoseOptions{}); err != store.ErrNotFound {
		t.Errorf("Inspect(job_missing) error = %v, want ErrNotFound", err)
	}
}
