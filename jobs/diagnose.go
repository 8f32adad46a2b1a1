package jobs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Reasons of findings. The first group explains why an unfinished job
// looks stuck; the second explains a job that ended without completing.
const (
	ReasonRetryBackoff   = "retry_backoff"
	ReasonDeadLettered   = "dead_lettered"
	ReasonPastDeadline   = "in_flight_past_deadline"
	ReasonNoProgress     = "no_progress"
	ReasonDeadlinePassed = "deadline_passed"
	ReasonNeverStarted   = "never_started"
	ReasonRunOverdue     = "run_overdue"
	ReasonRunLost        = "run_lost"

	ReasonFailed   = "failed"
	ReasonTimedOut = "timed_out"
)

// Defaults of DiagnoseOptions.
const (
	NoProgressRunsDefault = 5
	StartGraceDefault     = time.Minute
	MaxScannedDefault     = 1000
)

// DiagnoseStore is the part of store.Store that diagnosis reads.
type DiagnoseStore interface {
	JobGet(ctx context.Context, id string) (*ferry.Job, error)
	JobList(ctx context.Context, params *store.JobListParams) ([]*ferry.Job, error)
	JobRunList(ctx context.Context, params *store.JobRunListParams) ([]*ferry.JobRun, error)
	JobEventList(ctx context.Context, params *store.JobEventListParams) ([]*ferry.JobEvent, error)
	MessageGet(ctx context.Context, id string) (*ferry.Message, error)
	DLQList(ctx context.Context, params *store.DLQListParams) ([]*ferry.DLQEntry, error)
}

// DiagnoseOptions tunes what counts as stuck. Zero fields take the
// defaults.
type DiagnoseOptions struct {
	// NoProgressRuns is the number of latest counted runs that must all
	// have processed zero results for a no_progress finding.
	NoProgressRuns int

	// StartGrace is how long a due run may wait for its first claim before
	// it counts as never started or overdue.
	StartGrace time.Duration

	// MaxScanned bounds the number of unfinished jobs FindStuck examines.
	MaxScanned int
}

func (o DiagnoseOptions) withDefaults() DiagnoseOptions {
	if o.NoProgressRuns <= 0 {
		o.NoProgressRuns = NoProgressRunsDefault
	}
	if o.StartGrace <= 0 {
		o.StartGrace = StartGraceDefault
	}
	if o.MaxScanned <= 0 {
		o.MaxScanned = MaxScannedDefault
	}
	return o
}

// FindStuck examines unfinished jobs, newest first, and returns those with
// findings, together with the number of jobs examined.
func FindStuck(ctx context.Context, st DiagnoseStore, now time.Time, opts DiagnoseOptions) ([]wire.JobStuck, int, error) {
	opts = opts.withDefaults()
	var stuck []wire.JobStuck
	scanned := 0
	before := ""
	for scanned < opts.MaxScanned {
		page, err := st.JobList(ctx, &store.JobListParams{
			States:   []ferry.JobState{ferry.JobStatePending, ferry.JobStateProcessing},
			BeforeID: before,
			Limit:    min(100, opts.MaxScanned-scanned),
		})
		if err != nil {
			return nil, scanned, err
		}
		for _, job := range page {
			findings, err := Diagnose(ctx, st, job, now, opts)
			if err != nil {
				return nil, scanned, err
			}
			if len(findings) > 0 {
				stuck = append(stuck, wire.JobStuck{Job: wire.NewJob(job), Findings: findings})
			}
		}
		scanned += len(page)
		if len(page) < 100 {
			break
		}
		before = page[len(page)-1].ID
	}
	return stuck, scanned, nil
}

// Diagnose returns the findings for job at now. An unfinished job gets
// every reason it looks stuck, and a job in error or timeout gets why it
// ended. A healthy, completed or cancelled job has none.
func Diagnose(ctx context.Context, st DiagnoseStore, job *ferry.Job, now time.Time, opts DiagnoseOptions) ([]wire.JobFinding, error) {
	opts = opts.withDefaults()
	d := &diagnosis{job: job, now: now}

	switch job.State {
	case ferry.JobStateError:
		detail := "job ended in error: " + job.Error
		if job.LastResponseStatus != 0 {
			detail += fmt.Sprintf("; last response status %d", job.LastResponseStatus)
		}
		d.add(ReasonFailed, "retry", detail+"; fix the handler, then resume the job from run %d", job.ProcessedRuns+1)
		return d.findings, nil
	case ferry.JobStateTimeout:
		d.add(ReasonTimedOut, "retry", "job timed out: %s; resume it with a new timeout from run %d",
			job.Error, job.ProcessedRuns+1)
		return d.findings, nil
	case ferry.JobStateCompleted, ferry.JobStateCancelled:
		return nil, nil
	}

	if !now.Before(job.TimeoutAt) {
		d.add(ReasonDeadlinePassed, "cancel", "deadline %s passed %s ago but the job was not moved to timeout; "+
			"the sweeper runs on the leader node, so check that a Ferry node is running", stamp(job.TimeoutAt),
			since(job.TimeoutAt, now))
	}
	if err := d.currentRun(ctx, st, opts); err != nil {
		return nil, err
	}
	if err := d.progress(ctx, st, opts); err != nil {
		return nil, err
	}
	return d.findings, nil
}

// diagnosis collects the findings for one job.
type diagnosis struct {
	job      *ferry.Job
	now      time.Time
	findings []wire.JobFinding
}

// add records a finding whose command is "ferry jobs <action> <id>".
func (d *diagnosis) add(reason, action, format string, args ...any) {
	command := "ferry jobs " + action + " " + d.job.ID
	if action == "complete" {
		command += ` --reason "no progress"`
	}
	d.findings = append(d.findings, wire.JobFinding{JobID: d.job.ID, Reason: reason,
		Detail: fmt.Sprintf(format, args...), Command: command})
}

// currentRun examines the message of the job's current run.
func (d *diagnosis) currentRun(ctx context.Context, st DiagnoseStore, opts DiagnoseOptions) error {
	job, now := d.job, d.now
	n := job.CurrentRun
	m, err := st.MessageGet(ctx, job.CurrentMessageID)
	if errors.Is(err, store.ErrNotFound) {
		d.add(ReasonRunLost, "retry", "run %d's message %s no longer exists, so the job cannot advance", n, job.CurrentMessageID)
		return nil
	} else if err != nil {
		return err
	}
	runs, err := st.JobRunList(ctx, &store.JobRunListParams{JobID: job.ID, Runs: []int{n}})
	if err != nil {
		return err
	}
	var attempts []*ferry.JobAttempt
	if len(runs) == 1 {
		attempts = runs[0].Attempts
	}

	switch m.State {
	case ferry.MessageStateRetry:
		last := lastFinished(attempts, m.ID)
		failure := "status unknown"
		if last != nil {
			failure = describeAttempt(last)
		}
		d.add(ReasonRetryBackoff, "retry", "run %d is in retry backoff: attempt %d of %d failed with %s; next attempt at %s "+
			"(in %s); retrying the job delivers the run now", n, m.Retried, m.MaxRetries+1, failure, stamp(m.DueAt),
			until(now, m.DueAt))

	case ferry.MessageStateFailed:
		entries, err := st.DLQList(ctx, &store.DLQListParams{Filter: &store.MessageFilter{MessageIDs: []string{m.ID}}, Limit: 1})
		if err != nil {
			return err
		}
		where := "its dead-letter entry was deleted"
		if len(entries) == 1 {
			where = fmt.Sprintf("it is in the dead-letter queue as %s (last status %d)", entries[0].ID, entries[0].ResponseStatus)
		}
		d.add(ReasonDeadLettered, "retry", "run %d's message %s failed for good and %s, but the job was not updated", n, m.ID, where)

	case ferry.MessageStateCanceled, ferry.MessageStateDelivered:
		d.add(ReasonRunLost, "retry", "run %d's message %s is %s outside the job, so the job cannot advance", n, m.ID, m.State)

	case ferry.MessageStateActive:
		var started time.Time
		for _, a := range attempts {
			if a.MessageID == m.ID && a.Attempt == m.Attempts {
				started = a.StartedAt
			}
		}
		deadline := started.Add(job.RunTimeout)
		switch {
		case !m.DueAt.After(now):
			d.add(ReasonPastDeadline, "retry", "run %d attempt %d (started %s) is in flight past its deadline; its lease "+
				"expired at %s, so it is re-delivered when a dispatcher claims it (overdue %s; check that a Ferry node is running)",
				n, m.Attempts, stampOrUnknown(started), stamp(m.DueAt), since(m.DueAt, now))
		case !started.IsZero() && now.After(deadline):
			d.add(ReasonPastDeadline, "watch", "run %d attempt %d started %s is in flight past its deadline %s without a "+
				"recorded result; its lease expires at %s, and re-delivery follows then", n, m.Attempts, stamp(started),
				stamp(deadline), stamp(m.DueAt))
		}

	case ferry.MessageStateCreated:
		if now.Sub(m.NotBefore) > opts.StartGrace {
			if job.State == ferry.JobStatePending {
				d.add(ReasonNeverStarted, "cancel", "pending and never started: run 1 was due at %s (%s ago) and no "+
					"dispatcher claimed it; check that a Ferry node is running", stamp(m.NotBefore), since(m.NotBefore, now))
			} else {
				d.add(ReasonRunOverdue, "cancel", "run %d was due at %s (%s ago) and no dispatcher claimed it; check that "+
					"a Ferry node is running", n, stamp(m.NotBefore), since(m.NotBefore, now))
			}
		}
	}
	return nil
}

// progress reports when each of the latest counted runs processed nothing.
func (d *diagnosis) progress(ctx context.Context, st DiagnoseStore, opts DiagnoseOptions) error {
	job := d.job
	window := opts.NoProgressRuns
	if job.ProcessedRuns < window {
		return nil
	}
	first := job.ProcessedRuns - window + 1
	runs, err := st.JobRunList(ctx, &store.JobRunListParams{JobID: job.ID, AfterRun: first - 1, Limit: window})
	if err != nil {
		return err
	}
	counted := 0
	for _, r := range runs {
		if r.State != ferry.JobRunSucceeded || r.Run > job.ProcessedRuns {
			continue
		}
		if r.Processed > 0 {
			return nil
		}
		counted++
	}
	if counted == window {
		d.add(ReasonNoProgress, "complete", "no progress in the last %d runs: runs %d to %d each processed 0 results "+
			"(%d of %d results so far)", window, first, job.ProcessedRuns, job.ProcessedResults, job.TargetResults)
	}
	return nil
}

// Inspect returns job id with its timeline and findings at now, or
// store.ErrNotFound.
func Inspect(ctx context.Context, st DiagnoseStore, id string, now time.Time, opts DiagnoseOptions) (*wire.JobInspection, error) {
	job, err := st.JobGet(ctx, id)
	if err != nil {
		return nil, err
	}
	timeline, err := Timeline(ctx, st, job)
	if err != nil {
		return nil, err
	}
	findings, err := Diagnose(ctx, st, job, now, opts)
	if err != nil {
		return nil, err
	}
	if findings == nil {
		findings = []wire.JobFinding{}
	}
	return &wire.JobInspection{Job: wire.NewJob(job), Timeline: timeline, Findings: findings}, nil
}

// maxTimelineRuns bounds the runs a timeline reads; MaxRunsLimit runs
// fit.
const maxTimelineRuns = MaxRunsLimit

// Timeline returns the state changes, runs and attempts of job in time
// order, followed by the next run when one is due.
func Timeline(ctx context.Context, st DiagnoseStore, job *ferry.Job) ([]wire.JobTimelineEntry, error) {
	// rank orders entries of the same millisecond: a job's start before
	// its runs, a run's due time before its attempts and its end, and the
	// job's end last.
	const (
		rankStart = iota
		rankDue
		rankAttempt
		rankRunEnd
		rankEnd
	)
	var entries []wire.JobTimelineEntry
	var ranks []int
	add := func(at time.Time, kind string, rank, run int, format string, args ...any) {
		entries = append(entries, wire.JobTimelineEntry{Time: at.UTC(), Kind: kind, Run: run, Text: fmt.Sprintf(format, args...)})
		ranks = append(ranks, rank)
	}

	events, err := st.JobEventList(ctx, &store.JobEventListParams{JobID: job.ID})
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		text := "job " + string(e.State)
		if e.Detail != "" {
			text += ": " + e.Detail
		}
		rank := rankStart
		if e.State.Terminal() {
			rank = rankEnd
		}
		add(e.Time, "state", rank, e.Run, "%s", text)
	}

	after := 0
	for after < maxTimelineRuns {
		runs, err := st.JobRunList(ctx, &store.JobRunListParams{JobID: job.ID, AfterRun: after, Limit: 100})
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			add(r.ScheduledAt, "run", rankDue, r.Run, "run %d due (message %s)", r.Run, r.MessageID)
			for _, a := range r.Attempts {
				add(a.StartedAt, "attempt", rankAttempt, r.Run, "run %d attempt %d (Upstash-Retried %d, message %s): %s",
					r.Run, a.Attempt, a.Retried, a.MessageID, describeAttempt(a))
			}
			switch r.State {
			case ferry.JobRunSucceeded:
				add(r.FinishedAt, "run", rankRunEnd, r.Run, "run %d counted: processed %d, stored %d results, hasMore %v",
					r.Run, r.Processed, r.ResultCount, r.HasMore)
			case ferry.JobRunFailed:
				add(r.FinishedAt, "run", rankRunEnd, r.Run, "run %d failed: %s", r.Run, r.Error)
			case ferry.JobRunCancelled:
				add(r.FinishedAt, "run", rankRunEnd, r.Run, "run %d cancelled", r.Run)
			}
		}
		if len(runs) < 100 {
			break
		}
		after = runs[len(runs)-1].Run
	}

	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if !entries[a].Time.Equal(entries[b].Time) {
			return entries[a].Time.Before(entries[b].Time)
		}
		return ranks[a] < ranks[b]
	})
	sorted := make([]wire.JobTimelineEntry, len(entries))
	for i, k := range order {
		sorted[i] = entries[k]
	}
	entries = sorted
	if !job.State.Terminal() && !job.NextRunAt.IsZero() {
		add(job.NextRunAt, "next", rankEnd, job.CurrentRun, "next: run %d due at %s", job.CurrentRun, stamp(job.NextRunAt))
	}
	if entries == nil {
		entries = []wire.JobTimelineEntry{}
	}
	return entries, nil
}

// lastFinished returns the latest attempt of message id with a recorded
// result, or nil.
func lastFinished(attempts []*ferry.JobAttempt, id string) *ferry.JobAttempt {
	var last *ferry.JobAttempt
	for _, a := range attempts {
		if a.MessageID == id && !a.FinishedAt.IsZero() {
			last = a
		}
	}
	return last
}

// describeAttempt summarizes the result of an attempt.
func describeAttempt(a *ferry.JobAttempt) string {
	if a.FinishedAt.IsZero() {
		return "no result recorded"
	}
	var parts []string
	if a.ResponseStatus != 0 {
		parts = append(parts, fmt.Sprintf("status %d", a.ResponseStatus))
	} else {
		parts = append(parts, "no response")
	}
	parts = append(parts, fmt.Sprintf("in %d ms", a.Latency.Milliseconds()))
	text := strings.Join(parts, " ")
	if a.Outcome != "" {
		text += ", " + a.Outcome
	}
	if a.Error != "" && a.Outcome != ferry.AttemptDelivered {
		text += " (" + a.Error + ")"
	}
	return text
}

func stamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func stampOrUnknown(t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return stamp(t)
}

// since returns the time from t to now, rounded for reading.
func since(t, now time.Time) string {
	return roundDuration(now.Sub(t)).String()
}

// until returns the time from now to t, or "0s" when t has passed.
func until(now, t time.Time) string {
	return roundDuration(max(t.Sub(now), 0)).String()
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
