package store

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhq/ferry"
)

// ErrIdempotencyKeyReused is returned by JobInsert when the idempotency
// key is reserved by an earlier create with a different request.
var ErrIdempotencyKeyReused = errors.New("store: idempotency key reused with a different request")

// JobStore persists jobs, their runs, attempts, results and events. A
// job-run message carries the job id and run number. The store updates
// the message and its job in one transaction, so a crash never counts a
// run without its message or the reverse.
type JobStore interface {
	// JobInsert stores a new job with its first run and the message that
	// delivers it, in one transaction. With an IdempotencyKey reserved by
	// an unexpired earlier create, it stores nothing and returns that job
	// with Existing set when RequestHash matches, and
	// ErrIdempotencyKeyReused otherwise.
	JobInsert(ctx context.Context, params *JobInsertParams) (*JobInsertResult, error)

	// JobGet returns a job by id, or ErrNotFound.
	JobGet(ctx context.Context, id string) (*ferry.Job, error)

	// JobList returns jobs newest first.
	JobList(ctx context.Context, params *JobListParams) ([]*ferry.Job, error)

	// JobRunList returns runs of a job in run order, with their attempts.
	JobRunList(ctx context.Context, params *JobRunListParams) ([]*ferry.JobRun, error)

	// JobResultList returns stored result items of a job in order.
	JobResultList(ctx context.Context, params *JobResultListParams) ([]*ferry.JobResult, error)

	// JobEventList returns the state changes of a job, oldest first.
	JobEventList(ctx context.Context, params *JobEventListParams) ([]*ferry.JobEvent, error)

	// JobRunStart records that a claimed job-run message is about to be
	// sent: the job moves to processing, the run to running, and the
	// attempt is stored. It returns false, after cancelling the message,
	// when the run must not be sent: its job is gone or terminal, the
	// message is not for the current run, or another live message
	// delivers that run. A message for the current run whose current
	// message has finished (for example a dead-letter retry) becomes the
	// current message.
	JobRunStart(ctx context.Context, params *JobRunStartParams) (bool, error)

	// JobRunRecord records the outcome of an attempt of a job-run message
	// in one transaction. It applies the message transition with the
	// compare-and-set of the Mark methods and stores the attempt. When the
	// run counts, it also stores the job update from params.Advance with
	// its results and next run. A run counts once: only while its job is
	// not terminal, it is the job's current run, and it was not counted
	// before.
	JobRunRecord(ctx context.Context, params *JobRunRecordParams) (*JobRunRecordResult, error)

	// JobFinish moves a job that is not terminal to a terminal state and
	// cancels its waiting or active run message, in one transaction. It
	// returns the job and false, changing nothing, when the job is
	// already terminal or RequireExpired is set and the job's timeout has
	// not passed. It returns ErrNotFound for an unknown id.
	JobFinish(ctx context.Context, params *JobFinishParams) (*ferry.Job, bool, error)

	// JobRetry resumes a job with a new message for its current run, which
	// params.Prepare builds after changing the job. It returns
	// ErrNotFound for an unknown id, and Prepare's error unchanged.
	JobRetry(ctx context.Context, params *JobRetryParams) (*ferry.Job, error)

	// JobListExpired returns up to limit ids of jobs that are not terminal
	// and whose timeout is at or before now, earliest timeout first.
	JobListExpired(ctx context.Context, now time.Time, limit int) ([]string, error)

	// JobIdempotencyDeleteExpired deletes up to Limit idempotency keys that
	// expired before Before.
	JobIdempotencyDeleteExpired(ctx context.Context, params *CleanupParams) (int, error)
}

// JobInsertParams describes a job to store.
type JobInsertParams struct {
	// Job is the new job in state pending with CurrentRun 1 and
	// CurrentMessageID set to FirstRun's id.
	Job *ferry.Job

	// FirstRun is the message that delivers run 1.
	FirstRun *ferry.Message

	// IdempotencyKey, when set, is reserved for IdempotencyWindow.
	IdempotencyKey    string
	IdempotencyWindow time.Duration

	// RequestHash identifies the create request, so a repeat with the same
	// key is distinguished from a different request.
	RequestHash string

	Now time.Time
}

// JobInsertResult is the outcome of JobInsert.
type JobInsertResult struct {
	// Job is the stored job, or the earlier job when Existing is set.
	Job *ferry.Job

	// Existing reports a repeat of an earlier create with the same
	// idempotency key and request.
	Existing bool
}

// JobListParams selects jobs. Empty fields do not filter.
type JobListParams struct {
	States []ferry.JobState
	Labels []string

	// From and To bound the creation time, both inclusive.
	From, To time.Time

	// BeforeID continues after the job with this id, toward older jobs.
	BeforeID string

	// Limit caps the number of jobs; zero means 100.
	Limit int
}

// JobRunListParams pages through the runs of a job.
type JobRunListParams struct {
	JobID string

	// AfterRun returns runs with a larger number.
	AfterRun int

	// Runs, when set, selects these run numbers only.
	Runs []int

	// Limit caps the number of runs; zero means 100.
	Limit int
}

// JobResultListParams pages through the results of a job.
type JobResultListParams struct {
	JobID string

	// AfterSeq returns results with a larger sequence number.
	AfterSeq int

	// Limit caps the number of results; zero means 100.
	Limit int
}

// JobEventListParams pages through the events of a job.
type JobEventListParams struct {
	JobID   string
	AfterID int64

	// Limit caps the number of events; zero means 1000.
	Limit int
}

// JobRunStartParams describes an attempt that is about to be sent.
type JobRunStartParams struct {
	// Message is the claimed message, with its Attempts and Retried.
	Message *ferry.Message
	Now     time.Time
}

// JobRunRecordParams records the outcome of one attempt of a run.
type JobRunRecordParams struct {
	// Message is the claimed message. Its ID and Attempts are compared as
	// in the Mark methods.
	Message *ferry.Message

	// Outcome is ferry.AttemptDelivered, ferry.AttemptRetry or
	// ferry.AttemptFailed.
	Outcome string

	Result AttemptResult

	// Started is when the attempt was sent, Now when it ended.
	Started time.Time
	Now     time.Time

	// NextAt is when the next attempt is due, for AttemptRetry.
	NextAt time.Time

	// DLQID is the dead-letter id to create, for AttemptFailed.
	DLQID string

	// Advance is called for AttemptDelivered and AttemptFailed when the
	// run counts, inside the transaction, with copies of the job and the
	// run as stored. It changes them to their new state and returns what
	// else to store.
	Advance func(job *ferry.Job, run *ferry.JobRun) (*JobAdvance, error)
}

// JobAdvance is the data a counted run adds besides the job and run
// updates.
type JobAdvance struct {
	// Results are the JSON items to store, numbered from
	// FirstResultSeq.
	Results        [][]byte
	FirstResultSeq int

	// Next is the message of the next run, nil when the job ended. Its
	// JobRun names the run row to create.
	Next *ferry.Message

	// Event is a state change to record, or nil.
	Event *ferry.JobEvent
}

// JobRunRecordResult is the outcome of JobRunRecord.
type JobRunRecordResult struct {
	// Applied reports that the message transition applied; false means
	// another claim or a cancel got there first and nothing changed.
	Applied bool

	// Counted reports that Advance ran and its changes were stored.
	Counted bool

	// Job is the job after the transaction, nil when it does not exist.
	Job *ferry.Job

	// Scheduled reports that a next-run message was stored.
	Scheduled bool
}

// JobFinishParams moves a job to a terminal state.
type JobFinishParams struct {
	ID    string
	Now   time.Time
	State ferry.JobState

	// Reason is the completion reason and Note a reason the user gave.
	Reason string
	Note   string

	// ErrorOf, when set, returns the job's Error text from the job as
	// stored before the change, such as the description of a timeout.
	ErrorOf func(job *ferry.Job) string

	// RequireExpired applies the change only when the job's timeout is at
	// or before Now, which the sweeper uses.
	RequireExpired bool
}

// JobRetryParams resumes a job.
type JobRetryParams struct {
	ID  string
	Now time.Time

	// Prepare changes the job to its resumed state, including
	// CurrentRun, CurrentMessageID and the event to record, and returns
	// the message of the current run. current is the job's current run
	// message as stored, or nil when it no longer exists. Prepare runs in
	// the transaction; its error aborts the retry.
	Prepare func(job *ferry.Job, current *ferry.Message) (*ferry.Message, *ferry.JobEvent, error)
}
