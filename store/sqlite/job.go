package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// JobInsert implements store.Store.
func (db *DB) JobInsert(ctx context.Context, params *store.JobInsertParams) (*store.JobInsertResult, error) {
	job := params.Job
	now := store.Millis(params.Now)
	var result store.JobInsertResult

	err := db.write(ctx, func(tx *sql.Tx) error {
		result = store.JobInsertResult{}
		if key := params.IdempotencyKey; key != "" {
			var firstID, hash string
			err := tx.QueryRow(`SELECT job_id, request_hash FROM job_idempotency WHERE key = ? AND expires_at > ?`, key, now).
				Scan(&firstID, &hash)
			if err == nil {
				if hash != params.RequestHash {
					return store.ErrIdempotencyKeyReused
				}
				first, err := jobInTx(tx, firstID)
				if err != nil {
					return err
				}
				if first == nil {
					return fmt.Errorf("job %s of idempotency key %q: %w", firstID, key, store.ErrNotFound)
				}
				result = store.JobInsertResult{Job: first, Existing: true}
				return nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
			if _, err := tx.Exec(`INSERT INTO job_idempotency (key, job_id, request_hash, expires_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, request_hash = excluded.request_hash,
					expires_at = excluded.expires_at`,
				key, job.ID, params.RequestHash, now+params.IdempotencyWindow.Milliseconds()); err != nil {
				return fmt.Errorf("store idempotency key: %w", err)
			}
		}

		stored := *job
		stored.IdempotencyKey = params.IdempotencyKey
		if _, err := tx.Exec(`INSERT INTO jobs (`+store.JobColumns+`) VALUES (`+placeholders(store.JobColumnCount)+`)`,
			store.JobValues(&stored)...); err != nil {
			return fmt.Errorf("insert job %s: %w", job.ID, err)
		}
		if err := insertJobRun(tx, params.FirstRun); err != nil {
			return err
		}
		if err := insertMessage(tx, params.FirstRun, params.Now); err != nil {
			return err
		}
		if err := insertJobEvent(tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
			Run: params.FirstRun.JobRun, Detail: "created"}); err != nil {
			return err
		}
		result = store.JobInsertResult{Job: &stored}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &result, nil
}

// insertJobRun stores the scheduled run that message m delivers.
func insertJobRun(tx *sql.Tx, m *ferry.Message) error {
	run := &ferry.JobRun{JobID: m.JobID, Run: m.JobRun, MessageID: m.ID, State: ferry.JobRunScheduled,
		ScheduledAt: m.NotBefore, HasMore: true}
	if _, err := tx.Exec(`INSERT INTO job_runs (`+store.JobRunColumns+`) VALUES (`+placeholders(store.JobRunColumnCount)+`)
		ON CONFLICT (job_id, run) DO UPDATE SET message_id = excluded.message_id, state = excluded.state,
			scheduled_at = excluded.scheduled_at, started_at = 0, finished_at = 0, error = ''`,
		store.JobRunValues(run)...); err != nil {
		return fmt.Errorf("insert run %d of job %s: %w", m.JobRun, m.JobID, err)
	}
	return nil
}

func insertJobEvent(tx *sql.Tx, e *ferry.JobEvent) error {
	if _, err := tx.Exec(`INSERT INTO job_events (job_id, time, state, run, detail) VALUES (?, ?, ?, ?, ?)`,
		e.JobID, store.Millis(e.Time), string(e.State), e.Run, e.Detail); err != nil {
		return fmt.Errorf("insert %s event of job %s: %w", e.State, e.JobID, err)
	}
	return nil
}

// updateJob writes every mutable column of j.
func updateJob(tx *sql.Tx, j *ferry.Job) error {
	_, err := tx.Exec(`UPDATE jobs SET state = ?, started_runs = ?, processed_runs = ?, processed_results = ?,
			stored_results = ?, cursor = ?, current_run = ?, current_message_id = ?, next_run_at = ?, started_at = ?,
			completed_at = ?, timeout_at = ?, updated_at = ?, completion_reason = ?, completion_note = ?, error = ?,
			last_response_status = ?, last_response_body = ?, retried_count = ?
		WHERE id = ?`,
		string(j.State), j.StartedRuns, j.ProcessedRuns, j.ProcessedResults, j.StoredResults, nilIfEmpty(j.Cursor),
		j.CurrentRun, j.CurrentMessageID, store.Millis(j.NextRunAt), store.Millis(j.StartedAt),
		store.Millis(j.CompletedAt), store.Millis(j.TimeoutAt), store.Millis(j.UpdatedAt), j.CompletionReason,
		j.CompletionNote, j.Error, j.LastResponseStatus, nilIfEmpty(j.LastResponseBody), j.RetriedCount, j.ID)
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// updateJobRun writes the outcome columns of r.
func updateJobRun(tx *sql.Tx, r *ferry.JobRun) error {
	_, err := tx.Exec(`UPDATE job_runs SET message_id = ?, state = ?, started_at = ?, finished_at = ?, processed = ?,
			result_count = ?, has_more = ?, cursor = ?, error = ?
		WHERE job_id = ? AND run = ?`,
		r.MessageID, string(r.State), store.Millis(r.StartedAt), store.Millis(r.FinishedAt), r.Processed,
		r.ResultCount, r.HasMore, nilIfEmpty(r.Cursor), r.Error, r.JobID, r.Run)
	if err != nil {
		return fmt.Errorf("update run %d of job %s: %w", r.Run, r.JobID, err)
	}
	return nil
}

// jobInTx returns the job with id, or nil when there is none.
func jobInTx(tx *sql.Tx, id string) (*ferry.Job, error) {
	var s store.JobScan
	err := tx.QueryRow(`SELECT `+store.JobColumns+` FROM jobs WHERE id = ?`, id).Scan(s.Dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return s.Job(), nil
}

// jobRunInTx returns run of job, or nil when there is none.
func jobRunInTx(tx *sql.Tx, jobID string, run int) (*ferry.JobRun, error) {
	var s store.JobRunScan
	err := tx.QueryRow(`SELECT `+store.JobRunColumns+` FROM job_runs WHERE job_id = ? AND run = ?`, jobID, run).
		Scan(s.Dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read run %d of job %s: %w", run, jobID, err)
	}
	return s.JobRun(), nil
}

// messageInTx returns the message with id, or nil when there is none.
func messageInTx(tx *sql.Tx, id string) (*ferry.Message, error) {
	m, err := scanMessage(tx.QueryRow(`SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read message %s: %w", id, err)
	}
	return m, nil
}

// cancelJobMessage cancels message id when it waits or is in flight, as
// MessageCancel does. attempts, when positive, restricts the cancel to an
// active message with that claim count.
func cancelJobMessage(tx *sql.Tx, id string, attempts int, now int64) error {
	m, err := messageInTx(tx, id)
	if err != nil || m == nil || !store.MessageLive(m.State) {
		return err
	}
	if attempts > 0 && (m.State != ferry.MessageStateActive || m.Attempts != attempts) {
		return nil
	}
	if _, err := tx.Exec(`UPDATE messages SET state = 'CANCELED', due_at = NULL, lease_owner = '', updated_at = ?
		WHERE id = ?`, now, id); err != nil {
		return fmt.Errorf("cancel message %s: %w", id, err)
	}
	at := store.FromMillis(now)
	if m.State == ferry.MessageStateActive {
		if err := insertEvent(tx, &ferry.Event{MessageID: id, State: ferry.MessageStateCancelRequested, Time: at,
			URL: m.URL, Retried: m.Retried}); err != nil {
			return err
		}
	}
	return insertEvent(tx, &ferry.Event{MessageID: id, State: ferry.MessageStateCanceled, Time: at, URL: m.URL,
		Retried: m.Retried})
}

// JobRunStart implements store.Store.
func (db *DB) JobRunStart(ctx context.Context, params *store.JobRunStartParams) (bool, error) {
	m := params.Message
	now := store.Millis(params.Now)
	var proceed bool

	err := db.write(ctx, func(tx *sql.Tx) error {
		proceed = false
		job, err := jobInTx(tx, m.JobID)
		if err != nil {
			return err
		}
		reject := job == nil || job.State.Terminal() || m.JobRun != job.CurrentRun
		adopt := false
		if !reject && m.ID != job.CurrentMessageID {
			current, err := messageInTx(tx, job.CurrentMessageID)
			if err != nil {
				return err
			}
			reject = current != nil && store.MessageLive(current.State)
			adopt = !reject
		}
		if reject {
			return cancelJobMessage(tx, m.ID, m.Attempts, now)
		}

		proceed = true
		if adopt {
			job.CurrentMessageID = m.ID
		}
		if job.State == ferry.JobStatePending {
			job.State = ferry.JobStateProcessing
			job.StartedAt = params.Now
			if err := insertJobEvent(tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
				Run: m.JobRun, Detail: "run 1 started"}); err != nil {
				return err
			}
		}
		job.StartedRuns = max(job.StartedRuns, m.JobRun)
		job.UpdatedAt = params.Now
		if err := updateJob(tx, job); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE job_runs SET state = 'running', message_id = ?,
				started_at = CASE WHEN started_at = 0 THEN ? ELSE started_at END
			WHERE job_id = ? AND run = ?`, m.ID, now, m.JobID, m.JobRun); err != nil {
			return fmt.Errorf("start run %d of job %s: %w", m.JobRun, m.JobID, err)
		}
		attempt := &ferry.JobAttempt{JobID: m.JobID, Run: m.JobRun, MessageID: m.ID, Attempt: m.Attempts,
			Retried: m.Retried, StartedAt: params.Now}
		if _, err := tx.Exec(`INSERT INTO job_attempts (`+store.JobAttemptColumns+`)
			VALUES (`+placeholders(store.JobAttemptColumnCount)+`) ON CONFLICT (message_id, attempt) DO NOTHING`,
			store.JobAttemptValues(attempt)...); err != nil {
			return fmt.Errorf("insert attempt %d of message %s: %w", m.Attempts, m.ID, err)
		}
		return nil
	})
	return proceed, err
}

// JobRunRecord implements store.Store.
func (db *DB) JobRunRecord(ctx context.Context, params *store.JobRunRecordParams) (*store.JobRunRecordResult, error) {
	m := params.Message
	var result store.JobRunRecordResult

	err := db.write(ctx, func(tx *sql.Tx) error {
		result = store.JobRunRecordResult{}
		job, err := jobInTx(tx, m.JobID)
		if err != nil {
			return err
		}
		applied, err := recordJobMessage(tx, params)
		if err != nil || !applied {
			return err
		}
		result.Applied = true
		result.Job = job

		finished := store.FinishedAttempt(params)
		if _, err := tx.Exec(`INSERT INTO job_attempts (`+store.JobAttemptColumns+`)
			VALUES (`+placeholders(store.JobAttemptColumnCount)+`)
			ON CONFLICT (message_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
				latency_ms = excluded.latency_ms, response_status = excluded.response_status, error = excluded.error,
				outcome = excluded.outcome`,
			store.JobAttemptValues(finished)...); err != nil {
			return fmt.Errorf("record attempt %d of message %s: %w", m.Attempts, m.ID, err)
		}

		if job == nil || job.State.Terminal() || m.JobRun != job.CurrentRun {
			return nil
		}
		run, err := jobRunInTx(tx, job.ID, m.JobRun)
		if err != nil || run == nil || run.State == ferry.JobRunSucceeded {
			return err
		}

		if params.Outcome == ferry.AttemptRetry {
			_, err := tx.Exec(`UPDATE job_runs SET state = 'retrying' WHERE job_id = ? AND run = ?`, job.ID, run.Run)
			if err != nil {
				return fmt.Errorf("update run %d of job %s: %w", run.Run, job.ID, err)
			}
			_, err = tx.Exec(`UPDATE jobs SET updated_at = ? WHERE id = ?`, store.Millis(params.Now), job.ID)
			return err
		}
		if params.Advance == nil {
			return nil
		}

		changed, changedRun := *job, *run
		adv, err := params.Advance(&changed, &changedRun)
		if err != nil {
			return err
		}
		if err := updateJob(tx, &changed); err != nil {
			return err
		}
		if err := updateJobRun(tx, &changedRun); err != nil {
			return err
		}
		for i, item := range adv.Results {
			if _, err := tx.Exec(`INSERT INTO job_results (job_id, seq, run, item) VALUES (?, ?, ?, ?)`,
				job.ID, adv.FirstResultSeq+i, run.Run, item); err != nil {
				return fmt.Errorf("insert result of job %s: %w", job.ID, err)
			}
		}
		if adv.Next != nil {
			if err := insertJobRun(tx, adv.Next); err != nil {
				return err
			}
			if err := insertMessage(tx, adv.Next, params.Now); err != nil {
				return err
			}
			result.Scheduled = true
		}
		if adv.Event != nil {
			if err := insertJobEvent(tx, adv.Event); err != nil {
				return err
			}
		}
		result.Counted = true
		result.Job = &changed
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &result, nil
}

// recordJobMessage applies the message transition of params with the
// compare-and-set of the Mark methods, and records its events and
// dead-letter entry. It returns false when the transition was dropped.
func recordJobMessage(tx *sql.Tx, params *store.JobRunRecordParams) (bool, error) {
	id, attempts, now := params.Message.ID, params.Message.Attempts, params.Now
	r := params.Result

	switch params.Outcome {
	case ferry.AttemptDelivered:
		m, err := finishAttempt(tx, id, attempts, now, `state = 'DELIVERED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return false, err
		}
		return true, insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateDelivered, Time: now,
			URL: m.URL, Retried: m.Retried, ResponseStatus: r.ResponseStatus})

	case ferry.AttemptRetry:
		m, err := finishAttempt(tx, id, attempts, now,
			`state = 'RETRY', retried = retried + 1, lease_owner = '', due_at = ?`, store.Millis(params.NextAt))
		if err != nil || m == nil {
			return false, err
		}
		// The ERROR event belongs to the attempt that failed, so it carries
		// the retry count before the increment.
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: now, URL: m.URL,
			Retried: m.Retried - 1, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
			ResponseBody: r.ResponseBody, Error: r.Error}); err != nil {
			return false, err
		}
		return true, insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateRetry, Time: now,
			URL: m.URL, Retried: m.Retried, NextDeliveryTime: params.NextAt})

	case ferry.AttemptFailed:
		m, err := finishAttempt(tx, id, attempts, now, `state = 'FAILED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return false, err
		}
		if _, err := tx.Exec(`INSERT INTO dlq (id, message_id, created_at, response_status, response_header, response_body, error)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			params.DLQID, m.ID, store.Millis(now), r.ResponseStatus, store.MarshalHeader(r.ResponseHeader),
			nonNil(r.ResponseBody), r.Error); err != nil {
			return false, fmt.Errorf("insert dlq entry: %w", err)
		}
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: now, URL: m.URL,
			Retried: m.Retried, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
			ResponseBody: r.ResponseBody, Error: r.Error}); err != nil {
			return false, err
		}
		return true, insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateFailed, Time: now,
			URL: m.URL, Retried: m.Retried, ResponseStatus: r.ResponseStatus, Error: r.Error})
	}
	return false, fmt.Errorf("unknown attempt outcome %q", params.Outcome)
}

// JobFinish implements store.Store.
func (db *DB) JobFinish(ctx context.Context, params *store.JobFinishParams) (*ferry.Job, bool, error) {
	var job *ferry.Job
	var applied bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		applied = false
		var err error
		if job, err = jobInTx(tx, params.ID); err != nil {
			return err
		}
		if job == nil {
			return store.ErrNotFound
		}
		if job.State.Terminal() || (params.RequireExpired && job.TimeoutAt.After(params.Now)) {
			return nil
		}

		now := store.Millis(params.Now)
		if err := cancelJobMessage(tx, job.CurrentMessageID, 0, now); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE job_runs SET state = 'cancelled', finished_at = ?
			WHERE job_id = ? AND run = ? AND state IN ('scheduled', 'running', 'retrying')`,
			now, job.ID, job.CurrentRun); err != nil {
			return fmt.Errorf("cancel run %d of job %s: %w", job.CurrentRun, job.ID, err)
		}

		if params.ErrorOf != nil {
			job.Error = params.ErrorOf(job)
		}
		job.State = params.State
		job.CompletionReason = params.Reason
		job.CompletionNote = params.Note
		job.CompletedAt = params.Now
		job.NextRunAt = time.Time{}
		job.UpdatedAt = params.Now
		if err := updateJob(tx, job); err != nil {
			return err
		}
		detail := params.Reason
		if params.Note != "" {
			detail += ": " + params.Note
		} else if job.Error != "" {
			detail += ": " + job.Error
		}
		applied = true
		return insertJobEvent(tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
			Run: job.CurrentRun, Detail: detail})
	})
	if err != nil {
		return nil, false, err
	}
	return job, applied, nil
}

// JobRetry implements store.Store.
func (db *DB) JobRetry(ctx context.Context, params *store.JobRetryParams) (*ferry.Job, error) {
	var job *ferry.Job
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		if job, err = jobInTx(tx, params.ID); err != nil {
			return err
		}
		if job == nil {
			return store.ErrNotFound
		}
		current, err := messageInTx(tx, job.CurrentMessageID)
		if err != nil {
			return err
		}
		next, event, err := params.Prepare(job, current)
		if err != nil {
			return err
		}
		if current != nil {
			if err := cancelJobMessage(tx, current.ID, 0, store.Millis(params.Now)); err != nil {
				return err
			}
		}
		if err := updateJob(tx, job); err != nil {
			return err
		}
		if err := insertJobRun(tx, next); err != nil {
			return err
		}
		if err := insertMessage(tx, next, params.Now); err != nil {
			return err
		}
		if event != nil {
			return insertJobEvent(tx, event)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return job, nil
}

// JobGet implements store.Store.
func (db *DB) JobGet(ctx context.Context, id string) (*ferry.Job, error) {
	var s store.JobScan
	err := db.reader.QueryRowContext(ctx, `SELECT `+store.JobColumns+` FROM jobs WHERE id = ?`, id).Scan(s.Dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get job %s: %w", id, err)
	}
	return s.Job(), nil
}

// JobList implements store.Store.
func (db *DB) JobList(ctx context.Context, params *store.JobListParams) ([]*ferry.Job, error) {
	w := newWhere()
	states := make([]string, len(params.States))
	for i, s := range params.States {
		states[i] = string(s)
	}
	w.In("state", states)
	w.In("label", params.Labels)
	if !params.From.IsZero() {
		w.Add("created_at >= ?", store.Millis(params.From))
	}
	if !params.To.IsZero() {
		w.Add("created_at <= ?", store.Millis(params.To))
	}
	if params.BeforeID != "" {
		w.Add("id < ?", params.BeforeID)
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}

	rows, err := db.reader.QueryContext(ctx, `SELECT `+store.JobColumns+` FROM jobs WHERE `+w.SQL()+
		` ORDER BY id DESC LIMIT ?`, append(w.Args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list jobs: %w", err)
	}
	defer rows.Close()
	var jobs []*ferry.Job
	for rows.Next() {
		var s store.JobScan
		if err := rows.Scan(s.Dest()...); err != nil {
			return nil, fmt.Errorf("sqlite: list jobs: %w", err)
		}
		jobs = append(jobs, s.Job())
	}
	return jobs, rows.Err()
}

// JobRunList implements store.Store.
func (db *DB) JobRunList(ctx context.Context, params *store.JobRunListParams) ([]*ferry.JobRun, error) {
	w := newWhere()
	w.Add("job_id = ?", params.JobID)
	w.Add("run > ?", params.AfterRun)
	if len(params.Runs) > 0 {
		args := make([]any, len(params.Runs))
		for i, r := range params.Runs {
			args[i] = r
		}
		w.Add("run IN ("+placeholders(len(args))+")", args...)
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}

	rows, err := db.reader.QueryContext(ctx, `SELECT `+store.JobRunColumns+` FROM job_runs WHERE `+w.SQL()+
		` ORDER BY run LIMIT ?`, append(w.Args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs of job %s: %w", params.JobID, err)
	}
	var runs []*ferry.JobRun
	for rows.Next() {
		var s store.JobRunScan
		if err := rows.Scan(s.Dest()...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: list runs of job %s: %w", params.JobID, err)
		}
		runs = append(runs, s.JobRun())
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: list runs of job %s: %w", params.JobID, err)
	}
	if len(runs) == 0 {
		return runs, nil
	}

	args := []any{params.JobID, runs[0].Run, runs[len(runs)-1].Run}
	rows, err = db.reader.QueryContext(ctx, `SELECT `+store.JobAttemptColumns+` FROM job_attempts
		WHERE job_id = ? AND run BETWEEN ? AND ? ORDER BY run, started_at, message_id, attempt`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list attempts of job %s: %w", params.JobID, err)
	}
	defer rows.Close()
	var attempts []*ferry.JobAttempt
	for rows.Next() {
		var s store.JobAttemptScan
		if err := rows.Scan(s.Dest()...); err != nil {
			return nil, fmt.Errorf("sqlite: list attempts of job %s: %w", params.JobID, err)
		}
		attempts = append(attempts, s.JobAttempt())
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	store.AttachAttempts(runs, attempts)
	return runs, nil
}

// JobResultList implements store.Store.
func (db *DB) JobResultList(ctx context.Context, params *store.JobResultListParams) ([]*ferry.JobResult, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT job_id, seq, run, item FROM job_results
		WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, params.JobID, params.AfterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list results of job %s: %w", params.JobID, err)
	}
	defer rows.Close()
	var results []*ferry.JobResult
	for rows.Next() {
		r := &ferry.JobResult{}
		if err := rows.Scan(&r.JobID, &r.Seq, &r.Run, &r.Item); err != nil {
			return nil, fmt.Errorf("sqlite: list results of job %s: %w", params.JobID, err)
		}
		results = append(results, r)
	}
	return results, rows.Err()
}

// JobEventList implements store.Store.
func (db *DB) JobEventList(ctx context.Context, params *store.JobEventListParams) ([]*ferry.JobEvent, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT id, job_id, time, state, run, detail FROM job_events
		WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?`, params.JobID, params.AfterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events of job %s: %w", params.JobID, err)
	}
	defer rows.Close()
	var events []*ferry.JobEvent
	for rows.Next() {
		e := &ferry.JobEvent{}
		var at int64
		var state string
		if err := rows.Scan(&e.ID, &e.JobID, &at, &state, &e.Run, &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: list events of job %s: %w", params.JobID, err)
		}
		e.Time = store.FromMillis(at)
		e.State = ferry.JobState(state)
		events = append(events, e)
	}
	return events, rows.Err()
}

// JobListExpired implements store.Store.
func (db *DB) JobListExpired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id FROM jobs
		WHERE state IN ('pending', 'processing') AND timeout_at <= ?
		ORDER BY timeout_at, id LIMIT ?`, store.Millis(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list expired jobs: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: list expired jobs: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// JobIdempotencyDeleteExpired implements store.Store.
func (db *DB) JobIdempotencyDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error) {
	n, err := db.deleteBatch(ctx, `DELETE FROM job_idempotency WHERE key IN (
		SELECT key FROM job_idempotency WHERE expires_at < ? LIMIT ?)`, store.Millis(params.Before), params.Limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete expired idempotency keys: %w", err)
	}
	return n, nil
}

// nilIfEmpty returns nil for an empty slice, which the driver stores as
// NULL.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
