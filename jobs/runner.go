// Package jobs runs Ferry's jobs: long-running work that an HTTP endpoint
// does in runs. It validates create requests, builds run messages, records
// run outcomes for the dispatcher (Runner), times out jobs (Sweeper) and
// explains jobs that look stuck (Diagnose, FindStuck, Inspect).
//
// docs/jobs.md describes the API and the run protocol.
package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/store"
)

// Runner records job-run attempts for the dispatcher. It implements
// dispatch.JobRuns.
type Runner struct {
	store  store.JobStore
	logger *slog.Logger
}

var _ dispatch.JobRuns = (*Runner)(nil)

// NewRunner returns a Runner over st. A nil logger discards.
func NewRunner(st store.JobStore, logger *slog.Logger) *Runner {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{store: st, logger: logger.With("component", "jobs")}
}

// StartRun implements dispatch.JobRuns.
func (r *Runner) StartRun(ctx context.Context, m *ferry.Message, now time.Time) (bool, error) {
	return r.store.JobRunStart(ctx, &store.JobRunStartParams{Message: m, Now: now})
}

// RecordRun implements dispatch.JobRuns.
func (r *Runner) RecordRun(ctx context.Context, a *dispatch.JobAttempt) (dispatch.JobRecord, error) {
	params := &store.JobRunRecordParams{
		Message: a.Message, Outcome: a.Outcome, Result: a.Result,
		Started: a.Started, Now: a.Now, NextAt: a.NextAt, DLQID: a.DLQID,
	}
	switch a.Outcome {
	case ferry.AttemptDelivered:
		resp, parseErr := ParseRunResponse(a.Result.ResponseBody, a.BodyTruncated, a.MaxResponseBody)
		params.Advance = func(job *ferry.Job, run *ferry.JobRun) (*store.JobAdvance, error) {
			if parseErr != nil {
				return AdvanceInvalid(job, run, a.Result, parseErr, a.Now), nil
			}
			return AdvanceCounted(job, run, resp, a.Now), nil
		}
	case ferry.AttemptFailed:
		params.Advance = func(job *ferry.Job, run *ferry.JobRun) (*store.JobAdvance, error) {
			return AdvanceFailed(job, run, a.Message, a.Result, a.Now), nil
		}
	}

	res, err := r.store.JobRunRecord(ctx, params)
	if err != nil {
		return dispatch.JobRecord{}, err
	}
	if res.Counted && res.Job != nil && res.Job.State.Terminal() {
		level := slog.LevelInfo
		if res.Job.State == ferry.JobStateError {
			level = slog.LevelWarn
		}
		r.logger.Log(ctx, level, "job finished", "job_id", res.Job.ID, "state", res.Job.State,
			"reason", res.Job.CompletionReason, "runs", res.Job.ProcessedRuns,
			"processed_results", res.Job.ProcessedResults, "error", res.Job.Error)
	} else if res.Applied && !res.Counted && a.Outcome != ferry.AttemptRetry {
		r.logger.Info("job run response not counted because the job ended or the run was already counted",
			"job_id", a.Message.JobID, "run", a.Message.JobRun, "message_id", a.Message.ID)
	}
	return dispatch.JobRecord{Applied: res.Applied, Scheduled: res.Scheduled}, nil
}

// AdvanceCounted counts a valid response of run into job and decides the
// next step. The job completes when the target is met, when the handler has
// no more results, or when maxRuns runs were counted, checked in that order.
// Otherwise it times out when its timeout has passed, or the next run is
// scheduled after its continuation delay.
func AdvanceCounted(job *ferry.Job, run *ferry.JobRun, resp *RunResponse, now time.Time) *store.JobAdvance {
	adv := &store.JobAdvance{Results: resp.Results, FirstResultSeq: job.StoredResults + 1}

	job.ProcessedRuns++
	job.ProcessedResults += resp.Processed
	job.StoredResults += len(resp.Results)
	job.Cursor = resp.Cursor
	job.UpdatedAt = now

	run.State = ferry.JobRunSucceeded
	run.FinishedAt = now
	run.Processed = resp.Processed
	run.ResultCount = len(resp.Results)
	run.HasMore = resp.HasMore
	run.Cursor = resp.Cursor
	run.Error = ""

	switch {
	case job.ProcessedResults >= job.TargetResults:
		finish(job, adv, ferry.JobStateCompleted, ferry.JobReasonTargetMet, now,
			fmt.Sprintf("target met: %d of %d results after %d runs", job.ProcessedResults, job.TargetResults, job.ProcessedRuns))
	case !resp.HasMore:
		finish(job, adv, ferry.JobStateCompleted, ferry.JobReasonNoMoreResults, now,
			fmt.Sprintf("run %d answered hasMore false: %d of %d results", run.Run, job.ProcessedResults, job.TargetResults))
	case job.ProcessedRuns >= job.MaxRuns:
		finish(job, adv, ferry.JobStateCompleted, ferry.JobReasonMaxRunsReached, now,
			fmt.Sprintf("maxRuns %d reached with %d of %d results", job.MaxRuns, job.ProcessedResults, job.TargetResults))
	case !now.Before(job.TimeoutAt):
		job.Error = TimeoutError(job)
		finish(job, adv, ferry.JobStateTimeout, ferry.JobReasonTimeout, now, job.Error)
	default:
		next := run.Run + 1
		m := NewRunMessage(job, next, now.Add(ContinuationDelay(job, next)), now)
		job.CurrentRun = next
		job.CurrentMessageID = m.ID
		job.NextRunAt = m.NotBefore
		adv.Next = m
	}
	return adv
}

// AdvanceInvalid moves job to error because run responded with status 2xx and a body
// that breaks the run protocol.
func AdvanceInvalid(job *ferry.Job, run *ferry.JobRun, res store.AttemptResult, parseErr error, now time.Time) *store.JobAdvance {
	adv := &store.JobAdvance{}
	job.Error = fmt.Sprintf("run %d: %v", run.Run, parseErr)
	job.LastResponseStatus = res.ResponseStatus
	job.LastResponseBody = res.ResponseBody
	run.State = ferry.JobRunFailed
	run.FinishedAt = now
	run.Error = parseErr.Error()
	finish(job, adv, ferry.JobStateError, ferry.JobReasonInvalidResponse, now, job.Error)
	return adv
}

// AdvanceFailed moves job to error because run m exhausted its delivery
// retries or responded non-retryable.
func AdvanceFailed(job *ferry.Job, run *ferry.JobRun, m *ferry.Message, res store.AttemptResult, now time.Time) *store.JobAdvance {
	adv := &store.JobAdvance{}
	what := res.Error
	if what == "" {
		what = fmt.Sprintf("handler answered %d", res.ResponseStatus)
	}
	if body := strings.TrimSpace(strings.ToValidUTF8(string(res.ResponseBody), "\uFFFD")); body != "" {
		what += ": " + echo(body)
	}
	job.Error = fmt.Sprintf("run %d failed after %d attempts: %s", run.Run, m.Retried+1, what)
	job.LastResponseStatus = res.ResponseStatus
	job.LastResponseBody = res.ResponseBody
	run.State = ferry.JobRunFailed
	run.FinishedAt = now
	run.Error = what
	finish(job, adv, ferry.JobStateError, ferry.JobReasonRunFailed, now, job.Error)
	return adv
}

// TimeoutError describes the timeout of job for its Error field.
func TimeoutError(job *ferry.Job) string {
	return fmt.Sprintf("job timed out at %s with %d of %d results after %d runs",
		job.TimeoutAt.UTC().Format(time.RFC3339), job.ProcessedResults, job.TargetResults, job.ProcessedRuns)
}

// finish moves job to a terminal state and records the event.
func finish(job *ferry.Job, adv *store.JobAdvance, state ferry.JobState, reason string, now time.Time, detail string) {
	job.State = state
	job.CompletionReason = reason
	job.CompletedAt = now
	job.NextRunAt = time.Time{}
	job.UpdatedAt = now
	adv.Event = &ferry.JobEvent{JobID: job.ID, Time: now, State: state, Run: job.CurrentRun, Detail: detail}
}
