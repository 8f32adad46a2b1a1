package wire

import (
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/duration"
)

// This file holds the JSON shapes of Ferry's jobs API under /v1/jobs and
// of the run protocol between Ferry and a job handler. Unlike the QStash
// routes, times are RFC 3339 strings in UTC and durations use the QStash
// duration syntax ("30s", "1d10h30m").

// JobCreateRequest is the body of POST /v1/jobs. Omitted fields take the
// server defaults that docs/jobs.md lists.
type JobCreateRequest struct {
	URL                  string          `json:"url"`
	Input                json.RawMessage `json:"input,omitempty"`
	TargetResults        int             `json:"targetResults"`
	MaxRuns              int             `json:"maxRuns,omitempty"`
	ContinuationDelay    string          `json:"continuationDelay,omitempty"`
	BackoffFactor        float64         `json:"backoffFactor,omitempty"`
	MaxContinuationDelay string          `json:"maxContinuationDelay,omitempty"`
	RunTimeout           string          `json:"runTimeout,omitempty"`
	Timeout              string          `json:"timeout,omitempty"`

	// Retries is a pointer because zero retries differs from the default.
	Retries    *int   `json:"retries,omitempty"`
	RetryDelay string `json:"retryDelay,omitempty"`
	Label      string `json:"label,omitempty"`
}

// Job is a job as the jobs API returns it.
type Job struct {
	ID                   string          `json:"id"`
	Status               string          `json:"status"`
	URL                  string          `json:"url"`
	Input                json.RawMessage `json:"input"`
	Label                string          `json:"label,omitempty"`
	TargetResults        int             `json:"targetResults"`
	MaxRuns              int             `json:"maxRuns"`
	ContinuationDelay    string          `json:"continuationDelay"`
	BackoffFactor        float64         `json:"backoffFactor"`
	MaxContinuationDelay string          `json:"maxContinuationDelay"`
	RunTimeout           string          `json:"runTimeout"`
	Timeout              string          `json:"timeout"`
	Retries              int             `json:"retries"`
	RetryDelay           string          `json:"retryDelay,omitempty"`

	// ProcessedRuns counts the runs whose response was recorded, StartedRuns
	// the runs whose first attempt started.
	ProcessedRuns    int `json:"processedRuns"`
	StartedRuns      int `json:"startedRuns"`
	ProcessedResults int `json:"processedResults"`
	StoredResults    int `json:"storedResults"`

	// Progress is processedResults as a percentage of targetResults,
	// capped at 100.
	Progress float64 `json:"progress"`

	// Cursor is the cursor of the last counted run, null for none.
	Cursor json.RawMessage `json:"cursor"`

	CreatedAt   time.Time  `json:"createdAt"`
	StartedAt   *time.Time `json:"startedAt"`
	CompletedAt *time.Time `json:"completedAt"`
	TimeoutAt   time.Time  `json:"timeoutAt"`
	NextRunAt   *time.Time `json:"nextRunAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`

	CompletionReason   string `json:"completionReason,omitempty"`
	CompletionNote     string `json:"completionNote,omitempty"`
	Error              string `json:"error,omitempty"`
	LastResponseStatus int    `json:"lastResponseStatus,omitempty"`
	LastResponseBody   string `json:"lastResponseBody,omitempty"`

	// RetriedCount counts how often the job was resumed by a retry.
	RetriedCount int `json:"retriedCount"`

	// CurrentRun is the run scheduled or in progress, with its attempts.
	// Only GET /v1/jobs/{id} fills it in.
	CurrentRun *JobRun `json:"currentRun,omitempty"`
}

// JobRun is one run of a job with its delivery attempts.
type JobRun struct {
	Run       int    `json:"run"`
	MessageID string `json:"messageId"`
	Status    string `json:"status"`

	// MessageState is the state of the run's message; GET /v1/jobs/{id}
	// fills it in for the current run.
	MessageState string `json:"messageState,omitempty"`

	ScheduledAt time.Time       `json:"scheduledAt"`
	StartedAt   *time.Time      `json:"startedAt"`
	FinishedAt  *time.Time      `json:"finishedAt"`
	Processed   int             `json:"processed"`
	Results     int             `json:"results"`
	HasMore     bool            `json:"hasMore"`
	Cursor      json.RawMessage `json:"cursor"`
	Error       string          `json:"error,omitempty"`
	Attempts    []JobAttempt    `json:"attempts"`
}

// JobAttempt is one delivery attempt of a run.
type JobAttempt struct {
	Attempt    int        `json:"attempt"`
	MessageID  string     `json:"messageId"`
	Retried    int        `json:"retried"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	LatencyMs  int64      `json:"latencyMs"`

	// Status is the response status, 0 when no response arrived.
	Status  int    `json:"status"`
	Error   string `json:"error,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// JobListResponse is the response body of GET /v1/jobs. Cursor is
// omitted on the last page.
type JobListResponse struct {
	Jobs   []Job  `json:"jobs"`
	Cursor string `json:"cursor,omitempty"`
}

// JobRunsResponse is the response body of GET /v1/jobs/{id}/runs.
type JobRunsResponse struct {
	Runs   []JobRun `json:"runs"`
	Cursor string   `json:"cursor,omitempty"`
}

// JobResult is one stored result item.
type JobResult struct {
	Seq  int             `json:"seq"`
	Run  int             `json:"run"`
	Item json.RawMessage `json:"item"`
}

// JobResultsResponse is the response body of GET /v1/jobs/{id}/results.
type JobResultsResponse struct {
	Results []JobResult `json:"results"`
	Cursor  string      `json:"cursor,omitempty"`
}

// JobActionRequest is the optional body of POST /v1/jobs/{id}/cancel and
// the body of POST /v1/jobs/{id}/complete, where Reason is required.
type JobActionRequest struct {
	Reason string `json:"reason,omitempty"`
}

// JobFinding is one reason why a job looks stuck, with the CLI command
// that acts on it.
type JobFinding struct {
	JobID   string `json:"jobId"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
	Command string `json:"command"`
}

// JobStuck is a job that looks stuck, with every finding.
type JobStuck struct {
	Job      Job          `json:"job"`
	Findings []JobFinding `json:"findings"`
}

// JobStuckResponse is the response body of GET /v1/jobs/stuck.
type JobStuckResponse struct {
	Jobs []JobStuck `json:"jobs"`

	// Scanned is the number of unfinished jobs examined.
	Scanned int `json:"scanned"`
}

// JobTimelineEntry is one line of a job's timeline.
type JobTimelineEntry struct {
	Time time.Time `json:"time"`

	// Kind is "state", "run", "attempt" or "next".
	Kind string `json:"kind"`
	Run  int    `json:"run,omitempty"`
	Text string `json:"text"`
}

// JobInspection is the response body of GET /v1/jobs/{id}/diagnosis.
type JobInspection struct {
	Job      Job                `json:"job"`
	Timeline []JobTimelineEntry `json:"timeline"`
	Findings []JobFinding       `json:"findings"`
}

// JobRunRequest is the JSON body that Ferry POSTs to a job handler for
// each run.
type JobRunRequest struct {
	JobID string `json:"jobId"`

	// Run is the 1-based run number.
	Run int `json:"run"`

	Input json.RawMessage `json:"input"`

	// Cursor is the previous run's cursor, null on the first run or when
	// the previous run returned none.
	Cursor json.RawMessage `json:"cursor"`

	ProcessedResults int `json:"processedResults"`
	TargetResults    int `json:"targetResults"`

	// Deadline is when the whole job times out.
	Deadline time.Time `json:"deadline"`

	// RunTimeoutMs is the HTTP deadline of this delivery in milliseconds;
	// a response that arrives later is lost and the run is retried.
	RunTimeoutMs int64 `json:"runTimeoutMs"`
}

// JobRunResponse is the JSON body of a job handler's 2xx response.
type JobRunResponse struct {
	// Processed is the number of results the run processed. Required.
	Processed int `json:"processed"`

	// Cursor is handed to the next run; omit it or send null for none.
	Cursor json.RawMessage `json:"cursor,omitempty"`

	// Results are items for Ferry to store.
	Results []json.RawMessage `json:"results,omitempty"`

	// HasMore false completes the job; omitted means true.
	HasMore *bool `json:"hasMore,omitempty"`
}

// NewJob converts a stored job to its wire form, without CurrentRun.
func NewJob(j *ferry.Job) Job {
	w := Job{
		ID:                   j.ID,
		Status:               string(j.State),
		URL:                  j.URL,
		Input:                rawOrNull(j.Input),
		Label:                j.Label,
		TargetResults:        j.TargetResults,
		MaxRuns:              j.MaxRuns,
		ContinuationDelay:    duration.Format(j.ContinuationDelay),
		BackoffFactor:        j.BackoffFactor,
		MaxContinuationDelay: duration.Format(j.MaxContinuationDelay),
		RunTimeout:           duration.Format(j.RunTimeout),
		Timeout:              duration.Format(j.Timeout),
		Retries:              j.Retries,
		RetryDelay:           j.RetryDelayExpr,
		ProcessedRuns:        j.ProcessedRuns,
		StartedRuns:          j.StartedRuns,
		ProcessedResults:     j.ProcessedResults,
		StoredResults:        j.StoredResults,
		Progress:             Progress(j.ProcessedResults, j.TargetResults),
		Cursor:               rawOrNull(j.Cursor),
		CreatedAt:            j.CreatedAt.UTC(),
		StartedAt:            timeOrNil(j.StartedAt),
		CompletedAt:          timeOrNil(j.CompletedAt),
		TimeoutAt:            j.TimeoutAt.UTC(),
		NextRunAt:            timeOrNil(j.NextRunAt),
		UpdatedAt:            j.UpdatedAt.UTC(),
		CompletionReason:     j.CompletionReason,
		CompletionNote:       j.CompletionNote,
		Error:                j.Error,
		LastResponseStatus:   j.LastResponseStatus,
		RetriedCount:         j.RetriedCount,
	}
	if len(j.LastResponseBody) > 0 {
		w.LastResponseBody = strings.ToValidUTF8(string(j.LastResponseBody), "\uFFFD")
	}
	return w
}

// Progress returns processed as a percentage of target, capped at 100 and
// rounded to one decimal.
func Progress(processed, target int) float64 {
	if target <= 0 {
		return 0
	}
	p := float64(processed) * 100 / float64(target)
	if p > 100 {
		p = 100
	}
	return math.Round(p*10) / 10
}

// NewJobRun converts a stored run with its attempts to its wire form.
func NewJobRun(r *ferry.JobRun) JobRun {
	w := JobRun{
		Run:         r.Run,
		MessageID:   r.MessageID,
		Status:      string(r.State),
		ScheduledAt: r.ScheduledAt.UTC(),
		StartedAt:   timeOrNil(r.StartedAt),
		FinishedAt:  timeOrNil(r.FinishedAt),
		Processed:   r.Processed,
		Results:     r.ResultCount,
		HasMore:     r.HasMore,
		Cursor:      rawOrNull(r.Cursor),
		Error:       r.Error,
		Attempts:    make([]JobAttempt, 0, len(r.Attempts)),
	}
	for _, a := range r.Attempts {
		w.Attempts = append(w.Attempts, JobAttempt{
			Attempt:    a.Attempt,
			MessageID:  a.MessageID,
			Retried:    a.Retried,
			StartedAt:  a.StartedAt.UTC(),
			FinishedAt: timeOrNil(a.FinishedAt),
			LatencyMs:  a.Latency.Milliseconds(),
			Status:     a.ResponseStatus,
			Error:      a.Error,
			Outcome:    a.Outcome,
		})
	}
	return w
}

// rawOrNull returns b as JSON, or null for nil.
func rawOrNull(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}

// timeOrNil returns a pointer to t in UTC, or nil for the zero time.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
