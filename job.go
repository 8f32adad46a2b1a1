package ferry

import (
	"time"

	"github.com/oklog/ulid/v2"
)

// JobState is the lifecycle state of a job: pending until its first run
// starts, processing while runs go on, then one of the terminal states.
type JobState string

const (
	// JobStatePending is a job whose first run has not started yet.
	JobStatePending JobState = "pending"

	// JobStateProcessing is a job with a run scheduled, in flight or in
	// retry backoff.
	JobStateProcessing JobState = "processing"

	// JobStateCompleted is terminal: the target was met, the handler had
	// no more results, the run limit was reached, or a user completed the
	// job by hand.
	JobStateCompleted JobState = "completed"

	// JobStateError is terminal until a retry: a run failed for good or
	// responded with an invalid response.
	JobStateError JobState = "error"

	// JobStateTimeout is terminal until a retry: the whole-job timeout
	// passed before the job completed.
	JobStateTimeout JobState = "timeout"

	// JobStateCancelled is terminal: a user cancelled the job.
	JobStateCancelled JobState = "cancelled"
)

// JobStates returns every job state.
func JobStates() []JobState {
	return []JobState{JobStatePending, JobStateProcessing, JobStateCompleted, JobStateError,
		JobStateTimeout, JobStateCancelled}
}

// Terminal reports whether no further run happens in state s without a
// retry.
func (s JobState) Terminal() bool {
	switch s {
	case JobStatePending, JobStateProcessing:
		return false
	}
	return true
}

// Completion reasons, set when a job reaches a terminal state.
const (
	// JobReasonTargetMet: processedResults reached targetResults.
	JobReasonTargetMet = "target_met"

	// JobReasonNoMoreResults: a run responded hasMore false.
	JobReasonNoMoreResults = "no_more_results"

	// JobReasonMaxRunsReached: the job counted maxRuns runs without
	// meeting its target.
	JobReasonMaxRunsReached = "max_runs_reached"

	// JobReasonManual: a user completed the job through the API.
	JobReasonManual = "manual"

	// JobReasonRunFailed: a run exhausted its delivery retries or responded
	// 489 with Upstash-NonRetryable-Error.
	JobReasonRunFailed = "run_failed"

	// JobReasonInvalidResponse: a run responded 2xx with a body that breaks
	// the run protocol.
	JobReasonInvalidResponse = "invalid_response"

	// JobReasonTimeout: the whole-job timeout passed.
	JobReasonTimeout = "timeout"

	// JobReasonCancelled: a user cancelled the job.
	JobReasonCancelled = "cancelled"
)

// Job is long-running work that an HTTP endpoint does in runs. Each run is
// a message to URL; the handler's response reports how many results it
// processed and whether there are more.
type Job struct {
	// ID is "job_" followed by a ULID.
	ID    string
	State JobState

	// URL receives every run.
	URL string

	// Input is the JSON value that every run carries unchanged.
	Input []byte

	// Label tags the job and its run messages for filtering.
	Label string

	// TargetResults completes the job once ProcessedResults reaches it.
	TargetResults int

	// MaxRuns completes the job once that many runs were counted.
	MaxRuns int

	// ContinuationDelay, BackoffFactor and MaxContinuationDelay set the
	// wait before run n ≥ 2: min(MaxContinuationDelay,
	// ContinuationDelay·BackoffFactor^(n-1)).
	ContinuationDelay    time.Duration
	BackoffFactor        float64
	MaxContinuationDelay time.Duration

	// RunTimeout is the HTTP deadline of one delivery attempt of a run.
	RunTimeout time.Duration

	// Timeout is the time from creation (or from the last retry) until
	// the job times out.
	Timeout time.Duration

	// Retries is the number of delivery retries of one run.
	Retries int

	// RetryDelayExpr is the retry-delay expression of run messages, or
	// empty for the default backoff.
	RetryDelayExpr string

	// CallerIP is the address the job was created from.
	CallerIP string

	// StartedRuns is the highest run number whose first attempt started.
	StartedRuns int

	// ProcessedRuns counts the runs whose response was recorded; each run
	// counts once.
	ProcessedRuns int

	// ProcessedResults sums the processed counts of the counted runs.
	ProcessedResults int

	// StoredResults is the number of result items stored for the job.
	StoredResults int

	// Cursor is the JSON cursor of the last counted run, nil for none.
	Cursor []byte

	// CurrentRun is the number of the run scheduled or in progress, and
	// CurrentMessageID the message that delivers it.
	CurrentRun       int
	CurrentMessageID string

	// NextRunAt is when the current run is due, zero once the job ended.
	NextRunAt time.Time

	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	TimeoutAt   time.Time
	UpdatedAt   time.Time

	// CompletionReason is one of the JobReason constants, set in terminal
	// states.
	CompletionReason string

	// CompletionNote is the reason a user gave when completing or
	// cancelling the job.
	CompletionNote string

	// Error describes why the job is in error or timed out.
	Error string

	// LastResponseStatus and LastResponseBody are the last response of the
	// handler that ended the job, kept for the error state.
	LastResponseStatus int
	LastResponseBody   []byte

	// RetriedCount counts how often the job was resumed by a retry.
	RetriedCount int

	// IdempotencyKey is the Idempotency-Key the job was created with.
	IdempotencyKey string
}

// JobRunState is the state of one run of a job.
type JobRunState string

const (
	// JobRunScheduled is a run whose message waits for its delivery time.
	JobRunScheduled JobRunState = "scheduled"

	// JobRunRunning is a run with an attempt in flight.
	JobRunRunning JobRunState = "running"

	// JobRunRetrying is a run whose last attempt failed and whose next
	// attempt is scheduled.
	JobRunRetrying JobRunState = "retrying"

	// JobRunSucceeded is a run whose response was counted.
	JobRunSucceeded JobRunState = "succeeded"

	// JobRunFailed is a run that failed for good or responded with an
	// invalid response.
	JobRunFailed JobRunState = "failed"

	// JobRunCancelled is a run whose job ended before it was counted.
	JobRunCancelled JobRunState = "cancelled"
)

// JobRun is one run of a job.
type JobRun struct {
	JobID string

	// Run is the 1-based run number.
	Run int

	// MessageID is the message that delivers the run. A retry of the job
	// replaces it with a new message.
	MessageID string

	State JobRunState

	ScheduledAt time.Time
	StartedAt   time.Time
	FinishedAt  time.Time

	// Processed is the handler's processed count, ResultCount the number
	// of result items it returned.
	Processed   int
	ResultCount int

	// HasMore is the handler's hasMore response.
	HasMore bool

	// Cursor is the JSON cursor the handler returned, nil for none.
	Cursor []byte

	// Error describes a failed run.
	Error string

	// Attempts are the delivery attempts of the run, oldest first. Readers
	// fill them in.
	Attempts []*JobAttempt
}

// Outcomes of a job-run delivery attempt.
const (
	AttemptDelivered = "delivered"
	AttemptRetry     = "retry"
	AttemptFailed    = "failed"
)

// JobAttempt is one delivery attempt of a run.
type JobAttempt struct {
	JobID     string
	Run       int
	MessageID string

	// Attempt is the message's claim count at the attempt, from 1.
	Attempt int

	// Retried is the Upstash-Retried value the attempt carried.
	Retried int

	StartedAt time.Time

	// FinishedAt is zero while no result was recorded, which stays so
	// when the attempt's lease expired.
	FinishedAt time.Time
	Latency    time.Duration

	// ResponseStatus is zero when no HTTP response arrived.
	ResponseStatus int
	Error          string

	// Outcome is AttemptDelivered, AttemptRetry or AttemptFailed, or empty
	// while no result was recorded.
	Outcome string
}

// JobEvent records one state change of a job.
type JobEvent struct {
	ID     int64
	JobID  string
	Time   time.Time
	State  JobState
	Run    int
	Detail string
}

// JobResult is one result item that a run returned.
type JobResult struct {
	JobID string

	// Seq numbers the job's results from 1 in the order they were stored.
	Seq int
	Run int

	// Item is the item's JSON.
	Item []byte
}

// NewJobID returns a new job id: "job_" and a ULID, so ids sort by
// creation time.
func NewJobID() string {
	return "job_" + ulid.Make().String()
}
