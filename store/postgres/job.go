package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// Every job transaction locks the job row (SELECT ... FOR UPDATE) before
// it touches the job's messages, so transactions on one job serialize and
// always take the row locks in the same order: job, then message.

// JobInsert implements store.Store.
func (db *DB) JobInsert(ctx context.Context, params *store.JobInsertParams) (*store.JobInsertResult, error) {
	job := params.Job
	now := store.Millis(params.Now)
	var result store.JobInsertResult

	err := db.inTx(ctx, "insert job "+job.ID, func(tx pgx.Tx) error {
		result = store.JobInsertResult{}
		if key := params.IdempotencyKey; key != "" {
			firstID, hash, err := reserveIdempotencyKey(ctx, tx, key, job.ID, params.RequestHash, now,
				now+params.IdempotencyWindow.Milliseconds())
			if err != nil {
				return err
			}
			if firstID != job.ID {
				if hash != params.RequestHash {
					return store.ErrIdempotencyKeyReused
				}
				first, err := jobForUpdate(ctx, tx, firstID, false)
				if err != nil {
					return err
				}
				if first == nil {
					return fmt.Errorf("job %s of idempotency key %q: %w", firstID, key, store.ErrNotFound)
				}
				result = store.JobInsertResult{Job: first, Existing: true}
				return nil
			}
		}

		stored := *job
		stored.IdempotencyKey = params.IdempotencyKey
		if _, err := tx.Exec(ctx, `INSERT INTO jobs (`+store.JobColumns+`) VALUES (`+dollars(1, store.JobColumnCount)+`)`,
			store.JobValues(&stored)...); err != nil {
			return fmt.Errorf("insert job %s: %w", job.ID, err)
		}
		if err := insertJobRun(ctx, tx, params.FirstRun); err != nil {
			return err
		}
		if err := insertMessages(ctx, tx, params.Now, params.FirstRun); err != nil {
			return err
		}
		if err := insertJobEvent(ctx, tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
			Run: params.FirstRun.JobRun, Detail: "created"}); err != nil {
			return err
		}
		result = store.JobInsertResult{Job: &stored}
		return nil
	})
	if errors.Is(err, store.ErrIdempotencyKeyReused) {
		return nil, store.ErrIdempotencyKeyReused
	} else if err != nil {
		return nil, err
	}
	if !result.Existing {
		db.wakeIfDue(params.Now, params.FirstRun.NotBefore)
	}
	return &result, nil
}

// reserveIdempotencyKey reserves key for jobID and returns jobID, or
// returns the job id and request hash of an unexpired reservation. As in
// reserveDeduplicationID, a concurrent reservation of the same key makes
// the upsert wait for its transaction, so one create wins.
func reserveIdempotencyKey(ctx context.Context, tx pgx.Tx, key, jobID, hash string, now, expiresAt int64) (string, string, error) {
	var reserved string
	err := tx.QueryRow(ctx, `INSERT INTO job_idempotency (key, job_id, request_hash, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, request_hash = excluded.request_hash,
			expires_at = excluded.expires_at
		WHERE job_idempotency.expires_at <= $5
		RETURNING job_id`, key, jobID, hash, expiresAt, now).Scan(&reserved)
	if err == nil {
		return reserved, hash, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("reserve idempotency key: %w", err)
	}

	var storedHash string
	if err := tx.QueryRow(ctx, `SELECT job_id, request_hash FROM job_idempotency WHERE key = $1`, key).
		Scan(&reserved, &storedHash); err != nil {
		return "", "", fmt.Errorf("look up idempotency key: %w", err)
	}
	return reserved, storedHash, nil
}

// insertJobRun stores the scheduled run that message m delivers, or
// resets the run row to it when the run exists.
func insertJobRun(ctx context.Context, tx pgx.Tx, m *ferry.Message) error {
	run := &ferry.JobRun{JobID: m.JobID, Run: m.JobRun, MessageID: m.ID, State: ferry.JobRunScheduled,
		ScheduledAt: m.NotBefore, HasMore: true}
	if _, err := tx.Exec(ctx, `INSERT INTO job_runs (`+store.JobRunColumns+`) VALUES (`+dollars(1, store.JobRunColumnCount)+`)
		ON CONFLICT (job_id, run) DO UPDATE SET message_id = excluded.message_id, state = excluded.state,
			scheduled_at = excluded.scheduled_at, started_at = 0, finished_at = 0, error = ''`,
		store.JobRunValues(run)...); err != nil {
		return fmt.Errorf("insert run %d of job %s: %w", m.JobRun, m.JobID, err)
	}
	return nil
}

func insertJobEvent(ctx context.Context, tx pgx.Tx, e *ferry.JobEvent) error {
	if _, err := tx.Exec(ctx, `INSERT INTO job_events (job_id, time, state, run, detail) VALUES ($1, $2, $3, $4, $5)`,
		e.JobID, store.Millis(e.Time), string(e.State), e.Run, validText(e.Detail)); err != nil {
		return fmt.Errorf("insert %s event of job %s: %w", e.State, e.JobID, err)
	}
	return nil
}

// updateJob writes every mutable column of j.
func updateJob(ctx context.Context, tx pgx.Tx, j *ferry.Job) error {
	_, err := tx.Exec(ctx, `UPDATE jobs SET state = $1, started_runs = $2, processed_runs = $3, processed_results = $4,
			stored_results = $5, cursor = $6, current_run = $7, current_message_id = $8, next_run_at = $9,
			started_at = $10, completed_at = $11, timeout_at = $12, updated_at = $13, completion_reason = $14,
			completion_note = $15, error = $16, last_response_status = $17, last_response_body = $18,
			retried_count = $19
		WHERE id = $20`,
		string(j.State), j.StartedRuns, j.ProcessedRuns, j.ProcessedResults, j.StoredResults, nilIfEmpty(j.Cursor),
		j.CurrentRun, j.CurrentMessageID, store.Millis(j.NextRunAt), store.Millis(j.StartedAt),
		store.Millis(j.CompletedAt), store.Millis(j.TimeoutAt), store.Millis(j.UpdatedAt), j.CompletionReason,
		validText(j.CompletionNote), validText(j.Error), j.LastResponseStatus, nilIfEmpty(j.LastResponseBody),
		j.RetriedCount, j.ID)
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

// updateJobRun writes the outcome columns of r.
func updateJobRun(ctx context.Context, tx pgx.Tx, r *ferry.JobRun) error {
	_, err := tx.Exec(ctx, `UPDATE job_runs SET message_id = $1, state = $2, started_at = $3, finished_at = $4,
			processed = $5, result_count = $6, has_more = $7, cursor = $8, error = $9
		WHERE job_id = $10 AND run = $11`,
		r.MessageID, string(r.State), store.Millis(r.StartedAt), store.Millis(r.FinishedAt), r.Processed,
		r.ResultCount, r.HasMore, nilIfEmpty(r.Cursor), validText(r.Error), r.JobID, r.Run)
	if err != nil {
		return fmt.Errorf("update run %d of job %s: %w", r.Run, r.JobID, err)
	}
	return nil
}

// jobForUpdate returns the job with id, locked until the transaction ends
// when lock is set, or nil when there is none.
func jobForUpdate(ctx context.Context, tx pgx.Tx, id string, lock bool) (*ferry.Job, error) {
	query := `SELECT ` + store.JobColumns + ` FROM jobs WHERE id = $1`
	if lock {
		query += ` FOR UPDATE`
	}
	var s store.JobScan
	err := tx.QueryRow(ctx, query, id).Scan(s.Dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return s.Job(), nil
}

// jobRun returns run of job, or nil when there is none.
func jobRun(ctx context.Context, tx pgx.Tx, jobID string, run int) (*ferry.JobRun, error) {
	var s store.JobRunScan
	err := tx.QueryRow(ctx, `SELECT `+store.JobRunColumns+` FROM job_runs WHERE job_id = $1 AND run = $2`, jobID, run).
		Scan(s.Dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read run %d of job %s: %w", run, jobID, err)
	}
	return s.JobRun(), nil
}

// messageInTx returns the message with id, or nil when there is none.
func messageInTx(ctx context.Context, tx pgx.Tx, id string) (*ferry.Message, error) {
	m, err := scanMessage(tx.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read message %s: %w", id, err)
	}
	return m, nil
}

// cancelJobMessage cancels message id when it waits or is in flight, as
// MessageCancel does. attempts, when positive, restricts the cancel to an
// active message with that claim count.
func cancelJobMessage(ctx context.Context, tx pgx.Tx, id string, attempts int, now time.Time) error {
	m, err := messageInTx(ctx, tx, id)
	if err != nil || m == nil || !store.MessageLive(m.State) {
		return err
	}
	if attempts > 0 && (m.State != ferry.MessageStateActive || m.Attempts != attempts) {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE messages SET state = 'CANCELED', due_at = NULL, lease_owner = '', updated_at = $1
		WHERE id = $2`, store.Millis(now), id); err != nil {
		return fmt.Errorf("cancel message %s: %w", id, err)
	}
	var events []*ferry.Event
	if m.State == ferry.MessageStateActive {
		events = append(events, &ferry.Event{MessageID: id, State: ferry.MessageStateCancelRequested, Time: now,
			URL: m.URL, Retried: m.Retried})
	}
	events = append(events, &ferry.Event{MessageID: id, State: ferry.MessageStateCanceled, Time: now, URL: m.URL,
		Retried: m.Retried})
	return insertEvents(ctx, tx, events...)
}

// JobRunStart implements store.Store.
func (db *DB) JobRunStart(ctx context.Context, params *store.JobRunStartParams) (bool, error) {
	m := params.Message
	var proceed bool

	err := db.inTx(ctx, "start run of job "+m.JobID, func(tx pgx.Tx) error {
		proceed = false
		job, err := jobForUpdate(ctx, tx, m.JobID, true)
		if err != nil {
			return err
		}
		reject := job == nil || job.State.Terminal() || m.JobRun != job.CurrentRun
		adopt := false
		if !reject && m.ID != job.CurrentMessageID {
			current, err := messageInTx(ctx, tx, job.CurrentMessageID)
			if err != nil {
				return err
			}
			reject = current != nil && store.MessageLive(current.State)
			adopt = !reject
		}
		if reject {
			return cancelJobMessage(ctx, tx, m.ID, m.Attempts, params.Now)
		}

		proceed = true
		if adopt {
			job.CurrentMessageID = m.ID
		}
		if job.State == ferry.JobStatePending {
			job.State = ferry.JobStateProcessing
			job.StartedAt = params.Now
			if err := insertJobEvent(ctx, tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
				Run: m.JobRun, Detail: "run 1 started"}); err != nil {
				return err
			}
		}
		job.StartedRuns = max(job.StartedRuns, m.JobRun)
		job.UpdatedAt = params.Now
		if err := updateJob(ctx, tx, job); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE job_runs SET state = 'running', message_id = $1,
				started_at = CASE WHEN started_at = 0 THEN $2 ELSE started_at END
			WHERE job_id = $3 AND run = $4`, m.ID, store.Millis(params.Now), m.JobID, m.JobRun); err != nil {
			return fmt.Errorf("start run %d of job %s: %w", m.JobRun, m.JobID, err)
		}
		attempt := &ferry.JobAttempt{JobID: m.JobID, Run: m.JobRun, MessageID: m.ID, Attempt: m.Attempts,
			Retried: m.Retried, StartedAt: params.Now}
		if _, err := tx.Exec(ctx, `INSERT INTO job_attempts (`+store.JobAttemptColumns+`)
			VALUES (`+dollars(1, store.JobAttemptColumnCount)+`) ON CONFLICT (message_id, attempt) DO NOTHING`,
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

	err := db.inTx(ctx, "record run of job "+m.JobID, func(tx pgx.Tx) error {
		result = store.JobRunRecordResult{}
		job, err := jobForUpdate(ctx, tx, m.JobID, true)
		if err != nil {
			return err
		}
		applied, err := recordJobMessage(ctx, tx, params)
		if err != nil || !applied {
			return err
		}
		result.Applied = true
		result.Job = job

		finished := store.FinishedAttempt(params)
		finished.Error = validText(finished.Error)
		if _, err := tx.Exec(ctx, `INSERT INTO job_attempts (`+store.JobAttemptColumns+`)
			VALUES (`+dollars(1, store.JobAttemptColumnCount)+`)
			ON CONFLICT (message_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
				latency_ms = excluded.latency_ms, response_status = excluded.response_status, error = excluded.error,
				outcome = excluded.outcome`,
			store.JobAttemptValues(finished)...); err != nil {
			return fmt.Errorf("record attempt %d of message %s: %w", m.Attempts, m.ID, err)
		}

		if job == nil || job.State.Terminal() || m.JobRun != job.CurrentRun {
			return nil
		}
		run, err := jobRun(ctx, tx, job.ID, m.JobRun)
		if err != nil || run == nil || run.State == ferry.JobRunSucceeded {
			return err
		}

		if params.Outcome == ferry.AttemptRetry {
			if _, err := tx.Exec(ctx, `UPDATE job_runs SET state = 'retrying' WHERE job_id = $1 AND run = $2`,
				job.ID, run.Run); err != nil {
				return fmt.Errorf("update run %d of job %s: %w", run.Run, job.ID, err)
			}
			_, err := tx.Exec(ctx, `UPDATE jobs SET updated_at = $1 WHERE id = $2`, store.Millis(params.Now), job.ID)
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
		if err := updateJob(ctx, tx, &changed); err != nil {
			return err
		}
		if err := updateJobRun(ctx, tx, &changedRun); err != nil {
			return err
		}
		if len(adv.Results) > 0 {
			rows := make([][]any, len(adv.Results))
			for i, item := range adv.Results {
				rows[i] = []any{job.ID, adv.FirstResultSeq + i, run.Run, item}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"job_results"}, []string{"job_id", "seq", "run", "item"},
				pgx.CopyFromRows(rows)); err != nil {
				return fmt.Errorf("insert results of job %s: %w", job.ID, err)
			}
		}
		if adv.Next != nil {
			if err := insertJobRun(ctx, tx, adv.Next); err != nil {
				return err
			}
			if err := insertMessages(ctx, tx, params.Now, adv.Next); err != nil {
				return err
			}
			result.Scheduled = true
		}
		if adv.Event != nil {
			if err := insertJobEvent(ctx, tx, adv.Event); err != nil {
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
	if result.Scheduled {
		db.wakeIfDue(params.Now, result.Job.NextRunAt)
	} else if result.Applied && params.Outcome == ferry.AttemptRetry {
		db.wakeIfDue(params.Now, params.NextAt)
	}
	return &result, nil
}

// recordJobMessage applies the message transition of params with the
// compare-and-set of the Mark methods, and records its events and
// dead-letter entry. It returns false when the transition was dropped.
func recordJobMessage(ctx context.Context, tx pgx.Tx, params *store.JobRunRecordParams) (bool, error) {
	id, attempts, now := params.Message.ID, params.Message.Attempts, params.Now
	r := params.Result

	switch params.Outcome {
	case ferry.AttemptDelivered:
		m, err := finishAttempt(ctx, tx, id, attempts, now, `state = 'DELIVERED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return false, err
		}
		return true, insertEvents(ctx, tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateDelivered,
			Time: now, URL: m.URL, Retried: m.Retried, ResponseStatus: r.ResponseStatus})

	case ferry.AttemptRetry:
		m, err := finishAttempt(ctx, tx, id, attempts, now,
			`state = 'RETRY', retried = retried + 1, lease_owner = '', due_at = $1`, store.Millis(params.NextAt))
		if err != nil || m == nil {
			return false, err
		}
		// The ERROR event belongs to the attempt that failed, so it carries
		// the retry count before the increment.
		return true, insertEvents(ctx, tx,
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: now, URL: m.URL,
				Retried: m.Retried - 1, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
				ResponseBody: r.ResponseBody, Error: r.Error},
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateRetry, Time: now, URL: m.URL,
				Retried: m.Retried, NextDeliveryTime: params.NextAt})

	case ferry.AttemptFailed:
		m, err := finishAttempt(ctx, tx, id, attempts, now, `state = 'FAILED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dlq (id, message_id, created_at, response_status, response_header,
				response_body, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			params.DLQID, m.ID, store.Millis(now), r.ResponseStatus, store.MarshalHeader(r.ResponseHeader),
			nonNil(r.ResponseBody), validText(r.Error)); err != nil {
			return false, fmt.Errorf("insert dlq entry %s: %w", params.DLQID, err)
		}
		return true, insertEvents(ctx, tx,
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: now, URL: m.URL,
				Retried: m.Retried, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
				ResponseBody: r.ResponseBody, Error: r.Error},
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateFailed, Time: now, URL: m.URL,
				Retried: m.Retried, ResponseStatus: r.ResponseStatus, Error: r.Error})
	}
	return false, fmt.Errorf("unknown attempt outcome %q", params.Outcome)
}

// JobFinish implements store.Store.
func (db *DB) JobFinish(ctx context.Context, params *store.JobFinishParams) (*ferry.Job, bool, error) {
	var job *ferry.Job
	var applied bool
	err := db.inTx(ctx, "finish job "+params.ID, func(tx pgx.Tx) error {
		applied = false
		var err error
		if job, err = jobForUpdate(ctx, tx, params.ID, true); err != nil {
			return err
		}
		if job == nil {
			return store.ErrNotFound
		}
		if job.State.Terminal() || (params.RequireExpired && job.TimeoutAt.After(params.Now)) {
			return nil
		}

		if err := cancelJobMessage(ctx, tx, job.CurrentMessageID, 0, params.Now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE job_runs SET state = 'cancelled', finished_at = $1
			WHERE job_id = $2 AND run = $3 AND state IN ('scheduled', 'running', 'retrying')`,
			store.Millis(params.Now), job.ID, job.CurrentRun); err != nil {
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
		if err := updateJob(ctx, tx, job); err != nil {
			return err
		}
		detail := params.Reason
		if params.Note != "" {
			detail += ": " + params.Note
		} else if job.Error != "" {
			detail += ": " + job.Error
		}
		applied = true
		return insertJobEvent(ctx, tx, &ferry.JobEvent{JobID: job.ID, Time: params.Now, State: job.State,
			Run: job.CurrentRun, Detail: detail})
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, store.ErrNotFound
	} else if err != nil {
		return nil, false, err
	}
	return job, applied, nil
}

// JobRetry implements store.Store.
func (db *DB) JobRetry(ctx context.Context, params *store.JobRetryParams) (*ferry.Job, error) {
	var job *ferry.Job
	var next *ferry.Message
	var prepareErr error
	err := db.inTx(ctx, "retry job "+params.ID, func(tx pgx.Tx) error {
		prepareErr = nil
		var err error
		if job, err = jobForUpdate(ctx, tx, params.ID, true); err != nil {
			return err
		}
		if job == nil {
			return store.ErrNotFound
		}
		current, err := messageInTx(ctx, tx, job.CurrentMessageID)
		if err != nil {
			return err
		}
		var event *ferry.JobEvent
		next, event, prepareErr = params.Prepare(job, current)
		if prepareErr != nil {
			return prepareErr
		}
		if current != nil {
			if err := cancelJobMessage(ctx, tx, current.ID, 0, params.Now); err != nil {
				return err
			}
		}
		if err := updateJob(ctx, tx, job); err != nil {
			return err
		}
		if err := insertJobRun(ctx, tx, next); err != nil {
			return err
		}
		if err := insertMessages(ctx, tx, params.Now, next); err != nil {
			return err
		}
		if event != nil {
			return insertJobEvent(ctx, tx, event)
		}
		return nil
	})
	switch {
	case prepareErr != nil:
		return nil, prepareErr
	case errors.Is(err, store.ErrNotFound):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, err
	}
	db.wakeIfDue(params.Now, next.NotBefore)
	return job, nil
}

// JobGet implements store.Store.
func (db *DB) JobGet(ctx context.Context, id string) (*ferry.Job, error) {
	var s store.JobScan
	err := db.pool.QueryRow(ctx, `SELECT `+store.JobColumns+` FROM jobs WHERE id = $1`, id).Scan(s.Dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, wrapError("get job "+id, err)
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
	args := append(w.Args, limit)

	rows, err := db.pool.Query(ctx, `SELECT `+store.JobColumns+` FROM jobs WHERE `+w.SQL()+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, wrapError("list jobs", err)
	}
	defer rows.Close()
	var jobs []*ferry.Job
	for rows.Next() {
		var s store.JobScan
		if err := rows.Scan(s.Dest()...); err != nil {
			return nil, wrapError("list jobs", err)
		}
		jobs = append(jobs, s.Job())
	}
	return jobs, wrapRowsError("list jobs", rows.Err())
}

// JobRunList implements store.Store.
func (db *DB) JobRunList(ctx context.Context, params *store.JobRunListParams) ([]*ferry.JobRun, error) {
	w := newWhere()
	w.Add("job_id = ?", params.JobID)
	w.Add("run > ?", params.AfterRun)
	if len(params.Runs) > 0 {
		w.Add("run = ANY(?)", params.Runs)
	}
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	args := append(w.Args, limit)

	op := "list runs of job " + params.JobID
	rows, err := db.pool.Query(ctx, `SELECT `+store.JobRunColumns+` FROM job_runs WHERE `+w.SQL()+
		` ORDER BY run LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, wrapError(op, err)
	}
	var runs []*ferry.JobRun
	for rows.Next() {
		var s store.JobRunScan
		if err := rows.Scan(s.Dest()...); err != nil {
			rows.Close()
			return nil, wrapError(op, err)
		}
		runs = append(runs, s.JobRun())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrapError(op, err)
	}
	if len(runs) == 0 {
		return runs, nil
	}

	rows, err = db.pool.Query(ctx, `SELECT `+store.JobAttemptColumns+` FROM job_attempts
		WHERE job_id = $1 AND run BETWEEN $2 AND $3 ORDER BY run, started_at, message_id, attempt`,
		params.JobID, runs[0].Run, runs[len(runs)-1].Run)
	if err != nil {
		return nil, wrapError(op, err)
	}
	defer rows.Close()
	var attempts []*ferry.JobAttempt
	for rows.Next() {
		var s store.JobAttemptScan
		if err := rows.Scan(s.Dest()...); err != nil {
			return nil, wrapError(op, err)
		}
		attempts = append(attempts, s.JobAttempt())
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError(op, err)
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
	op := "list results of job " + params.JobID
	rows, err := db.pool.Query(ctx, `SELECT job_id, seq, run, item FROM job_results
		WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, params.JobID, params.AfterSeq, limit)
	if err != nil {
		return nil, wrapError(op, err)
	}
	defer rows.Close()
	var results []*ferry.JobResult
	for rows.Next() {
		r := &ferry.JobResult{}
		if err := rows.Scan(&r.JobID, &r.Seq, &r.Run, &r.Item); err != nil {
			return nil, wrapError(op, err)
		}
		results = append(results, r)
	}
	return results, wrapRowsError(op, rows.Err())
}

// JobEventList implements store.Store.
func (db *DB) JobEventList(ctx context.Context, params *store.JobEventListParams) ([]*ferry.JobEvent, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 1000
	}
	op := "list events of job " + params.JobID
	rows, err := db.pool.Query(ctx, `SELECT id, job_id, time, state, run, detail FROM job_events
		WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3`, params.JobID, params.AfterID, limit)
	if err != nil {
		return nil, wrapError(op, err)
	}
	defer rows.Close()
	var events []*ferry.JobEvent
	for rows.Next() {
		e := &ferry.JobEvent{}
		var at int64
		var state string
		if err := rows.Scan(&e.ID, &e.JobID, &at, &state, &e.Run, &e.Detail); err != nil {
			return nil, wrapError(op, err)
		}
		e.Time = store.FromMillis(at)
		e.State = ferry.JobState(state)
		events = append(events, e)
	}
	return events, wrapRowsError(op, rows.Err())
}

// JobListExpired implements store.Store.
func (db *DB) JobListExpired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT id FROM jobs
		WHERE state IN ('pending', 'processing') AND timeout_at <= $1
		ORDER BY timeout_at, id LIMIT $2`, store.Millis(now), limit)
	if err != nil {
		return nil, wrapError("list expired jobs", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrapError("list expired jobs", err)
	}
	return ids, nil
}

// JobIdempotencyDeleteExpired implements store.Store.
func (db *DB) JobIdempotencyDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error) {
	return db.deleteBatch(ctx, "delete expired idempotency keys", `DELETE FROM job_idempotency WHERE key IN (
		SELECT key FROM job_idempotency WHERE expires_at < $1 LIMIT $2)`, store.Millis(params.Before), params.Limit)
}

// dollars returns n parameter markers starting at $from.
func dollars(from, n int) string {
	marks := make([]string, n)
	for i := range marks {
		marks[i] = "$" + strconv.Itoa(from+i)
	}
	return strings.Join(marks, ", ")
}

// wrapRowsError wraps a non-nil error of a row iteration.
func wrapRowsError(op string, err error) error {
	if err == nil {
		return nil
	}
	return wrapError(op, err)
}

// nilIfEmpty returns nil for an empty slice, which pgx sends as NULL.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
