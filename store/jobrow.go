package store

import (
	"time"

	"github.com/ferryhq/ferry"
)

// This file holds the row encodings of the job tables, shared by the
// backends: the column lists, the values to write and the scan targets.
// Durations are stored as milliseconds and times as Unix milliseconds,
// with 0 for an unset time.

// JobColumns are the columns of the jobs table, in the order of JobValues
// and JobScan.Dest.
const JobColumns = `id, state, url, input, label, target_results, max_runs, continuation_delay_ms, backoff_factor,
	max_continuation_delay_ms, run_timeout_ms, timeout_ms, retries, retry_delay_expr, caller_ip, started_runs,
	processed_runs, processed_results, stored_results, cursor, current_run, current_message_id, next_run_at,
	created_at, started_at, completed_at, timeout_at, updated_at, completion_reason, completion_note, error,
	last_response_status, last_response_body, retried_count, idempotency_key`

// JobColumnCount is the number of JobColumns.
const JobColumnCount = 35

// JobValues returns the values of JobColumns for j.
func JobValues(j *ferry.Job) []any {
	input := j.Input
	if input == nil {
		input = []byte("null")
	}
	return []any{j.ID, string(j.State), j.URL, input, j.Label, j.TargetResults, j.MaxRuns,
		j.ContinuationDelay.Milliseconds(), j.BackoffFactor, j.MaxContinuationDelay.Milliseconds(),
		j.RunTimeout.Milliseconds(), j.Timeout.Milliseconds(), j.Retries, j.RetryDelayExpr, j.CallerIP, j.StartedRuns,
		j.ProcessedRuns, j.ProcessedResults, j.StoredResults, nilIfEmpty(j.Cursor), j.CurrentRun, j.CurrentMessageID,
		Millis(j.NextRunAt), Millis(j.CreatedAt), Millis(j.StartedAt), Millis(j.CompletedAt), Millis(j.TimeoutAt),
		Millis(j.UpdatedAt), j.CompletionReason, j.CompletionNote, j.Error, j.LastResponseStatus,
		nilIfEmpty(j.LastResponseBody), j.RetriedCount, j.IdempotencyKey}
}

// JobScan receives the JobColumns of one row.
type JobScan struct {
	job                               ferry.Job
	state                             string
	continuationMS, maxContinuationMS int64
	runTimeoutMS, timeoutMS           int64
	nextRunAt, createdAt, startedAt   int64
	completedAt, timeoutAt, updatedAt int64
}

// Dest returns the scan targets of JobColumns.
func (s *JobScan) Dest() []any {
	j := &s.job
	return []any{&j.ID, &s.state, &j.URL, &j.Input, &j.Label, &j.TargetResults, &j.MaxRuns, &s.continuationMS,
		&j.BackoffFactor, &s.maxContinuationMS, &s.runTimeoutMS, &s.timeoutMS, &j.Retries, &j.RetryDelayExpr,
		&j.CallerIP, &j.StartedRuns, &j.ProcessedRuns, &j.ProcessedResults, &j.StoredResults, &j.Cursor,
		&j.CurrentRun, &j.CurrentMessageID, &s.nextRunAt, &s.createdAt, &s.startedAt, &s.completedAt, &s.timeoutAt,
		&s.updatedAt, &j.CompletionReason, &j.CompletionNote, &j.Error, &j.LastResponseStatus,
		&j.LastResponseBody, &j.RetriedCount, &j.IdempotencyKey}
}

// Job returns the scanned job.
func (s *JobScan) Job() *ferry.Job {
	j := s.job
	j.State = ferry.JobState(s.state)
	j.ContinuationDelay = time.Duration(s.continuationMS) * time.Millisecond
	j.MaxContinuationDelay = time.Duration(s.maxContinuationMS) * time.Millisecond
	j.RunTimeout = time.Duration(s.runTimeoutMS) * time.Millisecond
	j.Timeout = time.Duration(s.timeoutMS) * time.Millisecond
	j.NextRunAt = FromMillis(s.nextRunAt)
	j.CreatedAt = FromMillis(s.createdAt)
	j.StartedAt = FromMillis(s.startedAt)
	j.CompletedAt = FromMillis(s.completedAt)
	j.TimeoutAt = FromMillis(s.timeoutAt)
	j.UpdatedAt = FromMillis(s.updatedAt)
	j.Cursor = nilIfEmpty(j.Cursor)
	j.LastResponseBody = nilIfEmpty(j.LastResponseBody)
	return &j
}

// JobRunColumns are the columns of the job_runs table, in the order of
// JobRunValues and JobRunScan.Dest.
const JobRunColumns = `job_id, run, message_id, state, scheduled_at, started_at, finished_at, processed,
	result_count, has_more, cursor, error`

// JobRunColumnCount is the number of JobRunColumns.
const JobRunColumnCount = 12

// JobRunValues returns the values of JobRunColumns for r.
func JobRunValues(r *ferry.JobRun) []any {
	return []any{r.JobID, r.Run, r.MessageID, string(r.State), Millis(r.ScheduledAt), Millis(r.StartedAt),
		Millis(r.FinishedAt), r.Processed, r.ResultCount, r.HasMore, nilIfEmpty(r.Cursor), r.Error}
}

// JobRunScan receives the JobRunColumns of one row.
type JobRunScan struct {
	run                                ferry.JobRun
	state                              string
	scheduledAt, startedAt, finishedAt int64
}

// Dest returns the scan targets of JobRunColumns.
func (s *JobRunScan) Dest() []any {
	r := &s.run
	return []any{&r.JobID, &r.Run, &r.MessageID, &s.state, &s.scheduledAt, &s.startedAt, &s.finishedAt,
		&r.Processed, &r.ResultCount, &r.HasMore, &r.Cursor, &r.Error}
}

// JobRun returns the scanned run.
func (s *JobRunScan) JobRun() *ferry.JobRun {
	r := s.run
	r.State = ferry.JobRunState(s.state)
	r.ScheduledAt = FromMillis(s.scheduledAt)
	r.StartedAt = FromMillis(s.startedAt)
	r.FinishedAt = FromMillis(s.finishedAt)
	r.Cursor = nilIfEmpty(r.Cursor)
	return &r
}

// JobAttemptColumns are the columns of the job_attempts table, in the
// order of JobAttemptValues and JobAttemptScan.Dest.
const JobAttemptColumns = `message_id, attempt, job_id, run, retried, started_at, finished_at, latency_ms,
	response_status, error, outcome`

// JobAttemptColumnCount is the number of JobAttemptColumns.
const JobAttemptColumnCount = 11

// JobAttemptValues returns the values of JobAttemptColumns for a.
func JobAttemptValues(a *ferry.JobAttempt) []any {
	return []any{a.MessageID, a.Attempt, a.JobID, a.Run, a.Retried, Millis(a.StartedAt), Millis(a.FinishedAt),
		a.Latency.Milliseconds(), a.ResponseStatus, a.Error, a.Outcome}
}

// JobAttemptScan receives the JobAttemptColumns of one row.
type JobAttemptScan struct {
	attempt                          ferry.JobAttempt
	startedAt, finishedAt, latencyMS int64
}

// Dest returns the scan targets of JobAttemptColumns.
func (s *JobAttemptScan) Dest() []any {
	a := &s.attempt
	return []any{&a.MessageID, &a.Attempt, &a.JobID, &a.Run, &a.Retried, &s.startedAt, &s.finishedAt,
		&s.latencyMS, &a.ResponseStatus, &a.Error, &a.Outcome}
}

// JobAttempt returns the scanned attempt.
func (s *JobAttemptScan) JobAttempt() *ferry.JobAttempt {
	a := s.attempt
	a.StartedAt = FromMillis(s.startedAt)
	a.FinishedAt = FromMillis(s.finishedAt)
	a.Latency = time.Duration(s.latencyMS) * time.Millisecond
	return &a
}

// FinishedAttempt returns the attempt row that params records.
func FinishedAttempt(params *JobRunRecordParams) *ferry.JobAttempt {
	m := params.Message
	return &ferry.JobAttempt{
		JobID: m.JobID, Run: m.JobRun, MessageID: m.ID, Attempt: m.Attempts, Retried: m.Retried,
		StartedAt: params.Started, FinishedAt: params.Now, Latency: params.Now.Sub(params.Started),
		ResponseStatus: params.Result.ResponseStatus, Error: params.Result.Error, Outcome: params.Outcome,
	}
}

// AttachAttempts sets the Attempts of each run from attempts, keeping
// their order.
func AttachAttempts(runs []*ferry.JobRun, attempts []*ferry.JobAttempt) {
	byRun := make(map[int]*ferry.JobRun, len(runs))
	for _, r := range runs {
		byRun[r.Run] = r
		r.Attempts = nil
	}
	for _, a := range attempts {
		if r := byRun[a.Run]; r != nil {
			r.Attempts = append(r.Attempts, a)
		}
	}
}

// MessageLive reports whether a message in state s still waits or is in
// flight.
func MessageLive(s ferry.MessageState) bool {
	switch s {
	case ferry.MessageStateCreated, ferry.MessageStateRetry, ferry.MessageStateActive:
		return true
	}
	return false
}

// nilIfEmpty returns nil for an empty slice, so NULL and empty read the
// same.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
