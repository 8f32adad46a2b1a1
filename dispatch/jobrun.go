package dispatch

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// JobRuns records the attempts of job-run messages. Package jobs
// implements it over the store.
type JobRuns interface {
	// StartRun is called after a job-run message is claimed and before it
	// is sent. It returns false when the run must not be sent because its
	// job ended or another message delivers the run; the message is then
	// cancelled. An error is logged and the attempt is sent anyway, because
	// its result is recorded with a compare-and-set either way.
	StartRun(ctx context.Context, m *ferry.Message, now time.Time) (bool, error)

	// RecordRun records the outcome of an attempt, with the update of its
	// job, in one transaction.
	RecordRun(ctx context.Context, a *JobAttempt) (JobRecord, error)
}

// JobAttempt is the outcome of one delivery attempt of a job run.
type JobAttempt struct {
	// Message is the claimed message.
	Message *ferry.Message

	// Outcome is ferry.AttemptDelivered (2xx), ferry.AttemptRetry or
	// ferry.AttemptFailed (retries exhausted or a non-retryable 489).
	Outcome string

	// Result is the response or the error of the attempt.
	Result store.AttemptResult

	// BodyTruncated reports a response body longer than the dispatcher's
	// MaxResponseBody; Result.ResponseBody holds its start.
	BodyTruncated bool

	// MaxResponseBody is the dispatcher's response body limit in bytes.
	MaxResponseBody int

	// Started is when the attempt was sent, Now when it ended.
	Started time.Time
	Now     time.Time

	// NextAt is when the next attempt is due, for ferry.AttemptRetry.
	NextAt time.Time

	// DLQID is the dead-letter id to create, for ferry.AttemptFailed.
	DLQID string
}

// JobRecord reports what RecordRun stored.
type JobRecord struct {
	// Applied reports that the message transition applied.
	Applied bool

	// Scheduled reports that the message of a next run was stored.
	Scheduled bool
}

// attemptJobRun delivers one attempt of a job run and records its outcome
// through cfg.Jobs. The outcome is decided as for other messages; only the
// recording differs.
func (d *Dispatcher) attemptJobRun(ctx context.Context, m *ferry.Message) {
	proceed, err := d.cfg.Jobs.StartRun(ctx, m, d.cfg.Now())
	if err != nil {
		d.logger.Error("recording the start of a job run failed; sending it anyway", "message_id", m.ID,
			"job_id", m.JobID, "run", m.JobRun, "error", err)
	} else if !proceed {
		d.logger.Info("job run not sent because its job ended or moved on; message cancelled", "message_id", m.ID,
			"job_id", m.JobID, "run", m.JobRun)
		return
	}

	start := d.cfg.Now()
	res := d.send(ctx, m)
	now := d.cfg.Now()
	d.cfg.Metrics.observeAttempt(res, now.Sub(start))

	a := &JobAttempt{
		Message: m, Result: res.attemptResult(), BodyTruncated: res.truncated,
		MaxResponseBody: d.cfg.MaxResponseBody, Started: start, Now: now,
	}
	switch {
	case res.ok():
		a.Outcome = ferry.AttemptDelivered
	case res.nonRetryable() || m.Retried >= m.MaxRetries:
		a.Outcome = ferry.AttemptFailed
		a.DLQID = ferry.NewDLQID()
	default:
		a.Outcome = ferry.AttemptRetry
		a.NextAt = now.Add(d.cfg.Retry.Delay(m.Retried, m.RetryDelayExpr, res.header, now))
	}

	rec, err := d.cfg.Jobs.RecordRun(ctx, a)
	d.checkRecorded(m, a.Outcome, rec.Applied, err)
	if !rec.Applied {
		return
	}
	switch a.Outcome {
	case ferry.AttemptDelivered:
		d.cfg.Metrics.delivered()
	case ferry.AttemptRetry:
		d.cfg.Metrics.retried()
		d.logger.Info("job run attempt failed; retry scheduled", "message_id", m.ID, "job_id", m.JobID,
			"run", m.JobRun, "retried", m.Retried, "max_retries", m.MaxRetries, "status", res.status,
			"error", res.errText(), "next_attempt_at", a.NextAt.UTC().Format(time.RFC3339Nano))
	case ferry.AttemptFailed:
		d.cfg.Metrics.failed()
		d.logger.Warn("job run failed for good; message moved to the dead-letter queue", "message_id", m.ID,
			"job_id", m.JobID, "run", m.JobRun, "dlq_id", a.DLQID, "status", res.status, "error", res.errText(),
			"non_retryable", res.nonRetryable())
	}
	if rec.Scheduled || a.Outcome == ferry.AttemptRetry {
		d.Notify()
	}
}
