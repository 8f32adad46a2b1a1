package jobs

import (
	"fmt"
	"time"

	"github.com/ferryhq/ferry"
)

// RunRetryable reports whether a retry at now may replace the current run
// of a job that is not terminal. That holds when the run's message is
// gone, finished without the job advancing, waits in retry backoff, or is
// active with an expired lease. A run that waits for its first delivery
// or is in flight under a live lease is left alone.
func RunRetryable(current *ferry.Message, now time.Time) bool {
	if current == nil {
		return true
	}
	switch current.State {
	case ferry.MessageStateCreated:
		return false
	case ferry.MessageStateActive:
		return !current.DueAt.After(now)
	}
	return true
}

// PrepareRetry returns the store.JobRetryParams.Prepare function of a
// retry at now. A job in error or timeout resumes after its last counted
// run with its counters and cursor, and its timeout starts again. A job
// that is not terminal gets a new message for its current run when
// RunRetryable allows it. Completed and cancelled jobs are final.
func PrepareRetry(now time.Time) func(job *ferry.Job, current *ferry.Message) (*ferry.Message, *ferry.JobEvent, error) {
	return func(job *ferry.Job, current *ferry.Message) (*ferry.Message, *ferry.JobEvent, error) {
		previous := job.State
		switch job.State {
		case ferry.JobStateCompleted, ferry.JobStateCancelled:
			return nil, nil, ferry.Errorf(ferry.ECONFLICT, "job %s is %s, which is final; only jobs in error or timeout can be retried",
				job.ID, job.State)
		case ferry.JobStateError, ferry.JobStateTimeout:
			job.TimeoutAt = now.Add(job.Timeout)
		default:
			if !RunRetryable(current, now) {
				return nil, nil, ferry.Errorf(ferry.ECONFLICT, "job %s is %s and its run %d is %s; retry applies to jobs in error "+
					"or timeout and to runs that are stuck (see ferry jobs inspect %s)", job.ID, job.State, job.CurrentRun,
					describeMessageState(current), job.ID)
			}
		}

		run := job.ProcessedRuns + 1
		job.State = ferry.JobStatePending
		if job.StartedRuns > 0 {
			job.State = ferry.JobStateProcessing
		}
		job.Error = ""
		job.CompletionReason = ""
		job.CompletionNote = ""
		job.CompletedAt = time.Time{}
		job.LastResponseStatus = 0
		job.LastResponseBody = nil
		job.RetriedCount++
		job.CurrentRun = run

		m := NewRunMessage(job, run, now, now)
		job.CurrentMessageID = m.ID
		job.NextRunAt = now
		job.UpdatedAt = now
		event := &ferry.JobEvent{JobID: job.ID, Time: now, State: job.State, Run: run,
			Detail: fmt.Sprintf("retried from %s: run %d starts again with %d results counted", previous, run, job.ProcessedResults)}
		return m, event, nil
	}
}

// describeMessageState names the state of a run message for messages.
func describeMessageState(m *ferry.Message) string {
	switch {
	case m == nil:
		return "without a message"
	case m.State == ferry.MessageStateCreated:
		return "scheduled for " + m.NotBefore.UTC().Format(time.RFC3339)
	case m.State == ferry.MessageStateActive:
		return "in flight until its lease expires at " + m.DueAt.UTC().Format(time.RFC3339)
	}
	return "in message state " + string(m.State)
}
