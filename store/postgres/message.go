package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

const messageColumns = `id, state, url, method, header, body, max_retries, retried, attempts,
	retry_delay_expr, timeout_ms, not_before, due_at, lease_owner, created_at, labels, dedup_id, caller_ip,
	callback, failure_callback, callback_header, failure_callback_header, topic_name, endpoint_name,
	queue_name, schedule_id, callback_of, job_id, job_run, flow_control_key, flow_control_parallelism,
	flow_control_rate, flow_control_period_ms`

// MessageInsert implements store.Store.
func (db *DB) MessageInsert(ctx context.Context, params *store.MessageInsertParams) (*store.MessageInsertResult, error) {
	m := params.Message
	now := store.Millis(params.Now)
	var result store.MessageInsertResult

	err := db.inTx(ctx, "insert message "+m.ID, func(tx pgx.Tx) error {
		var err error
		result, err = insertDeduplicated(ctx, tx, params, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !result.Deduplicated {
		db.wakeIfDue(params.Now, m.NotBefore)
	}
	return &result, nil
}

// insertDeduplicated stores params.Message unless its deduplication id is
// live, in which case it returns the first message.
func insertDeduplicated(ctx context.Context, tx pgx.Tx, params *store.MessageInsertParams, now int64) (store.MessageInsertResult, error) {
	m := params.Message
	if m.DeduplicationID != "" {
		firstID, err := reserveDeduplicationID(ctx, tx, m.DeduplicationID, m.ID, now,
			now+params.DeduplicationWindow.Milliseconds())
		if err != nil {
			return store.MessageInsertResult{}, err
		}
		if firstID != m.ID {
			return store.MessageInsertResult{MessageID: firstID, Deduplicated: true}, nil
		}
	}

	if err := insertMessages(ctx, tx, params.Now, m); err != nil {
		return store.MessageInsertResult{}, err
	}
	return store.MessageInsertResult{MessageID: m.ID}, nil
}

// insertMessages stores each message in state CREATED with its CREATED
// event.
func insertMessages(ctx context.Context, tx pgx.Tx, now time.Time, msgs ...*ferry.Message) error {
	for _, m := range msgs {
		host, path := store.URLParts(m.URL)
		_, err := tx.Exec(ctx, `INSERT INTO messages (`+messageColumns+`, updated_at, url_host, url_path)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
				$21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36)`,
			m.ID, string(ferry.MessageStateCreated), m.URL, m.Method, store.MarshalHeader(m.Header), nonNil(m.Body),
			m.MaxRetries, 0, 0, m.RetryDelayExpr, m.Timeout.Milliseconds(), store.Millis(m.NotBefore),
			store.Millis(m.NotBefore), "", store.Millis(now), store.MarshalStrings(m.Labels), m.DeduplicationID,
			m.CallerIP, m.Callback, m.FailureCallback, store.MarshalHeader(m.CallbackHeader),
			store.MarshalHeader(m.FailureCallbackHeader), m.TopicName, m.EndpointName, m.QueueName, m.ScheduleID,
			m.CallbackOf, m.JobID, m.JobRun, m.FlowControlKey, m.FlowControlParallelism, m.FlowControlRate,
			m.FlowControlPeriod.Milliseconds(), store.Millis(now), host, path)
		if errorCode(err) == codeUniqueViolation {
			return fmt.Errorf("insert message %s: id already exists: %w", m.ID, err)
		} else if err != nil {
			return fmt.Errorf("insert message %s: %w", m.ID, err)
		}

		if err := insertEvents(ctx, tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateCreated,
			Time: now, URL: m.URL, NextDeliveryTime: m.NotBefore}); err != nil {
			return err
		}
		if err := ensureGroups(ctx, tx, m, now); err != nil {
			return err
		}
	}
	return nil
}

// reserveDeduplicationID reserves dedupID for messageID until expiresAt and
// returns messageID, or returns the id of the message holding an unexpired
// reservation.
//
// The upsert takes over only an expired row. When another transaction
// inserts the same id concurrently, PostgreSQL makes the upsert wait for
// that transaction to end. After a commit the upsert finds the live row,
// changes nothing and returns no row, and the SELECT, which runs on a new
// snapshot under READ COMMITTED, reads the winner's message id. So exactly
// one of the concurrent inserts stores a message.
func reserveDeduplicationID(ctx context.Context, tx pgx.Tx, dedupID, messageID string, now, expiresAt int64) (string, error) {
	var reserved string
	err := tx.QueryRow(ctx, `INSERT INTO dedup (id, message_id, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET message_id = excluded.message_id, expires_at = excluded.expires_at
		WHERE dedup.expires_at <= $4
		RETURNING message_id`, dedupID, messageID, expiresAt, now).Scan(&reserved)
	if err == nil {
		return reserved, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("reserve deduplication id: %w", err)
	}

	// The conflicting row is live, and the upsert locked it, so it stays
	// until this transaction ends.
	if err := tx.QueryRow(ctx, `SELECT message_id FROM dedup WHERE id = $1`, dedupID).Scan(&reserved); err != nil {
		return "", fmt.Errorf("look up deduplication id: %w", err)
	}
	return reserved, nil
}

// MessageMarkDelivered implements store.Store.
func (db *DB) MessageMarkDelivered(ctx context.Context, params *store.MessageMarkDeliveredParams) (bool, error) {
	var applied bool
	err := db.inTx(ctx, "mark message "+params.ID+" delivered", func(tx pgx.Tx) error {
		m, err := finishAttempt(ctx, tx, params.ID, params.Attempts, params.Now,
			`state = 'DELIVERED', due_at = NULL, lease_owner = ''`)
		applied = m != nil
		if err != nil || m == nil {
			return err
		}
		if err := insertEvents(ctx, tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateDelivered,
			Time: params.Now, URL: m.URL, Retried: m.Retried, ResponseStatus: params.ResponseStatus}); err != nil {
			return err
		}
		return insertMessages(ctx, tx, params.Now, params.Callbacks...)
	})
	if applied && err == nil {
		db.wakeIfDue(params.Now, notBefores(params.Callbacks)...)
	}
	return applied, err
}

// MessageMarkRetry implements store.Store.
func (db *DB) MessageMarkRetry(ctx context.Context, params *store.MessageMarkRetryParams) (bool, error) {
	var applied bool
	err := db.inTx(ctx, "mark message "+params.ID+" for retry", func(tx pgx.Tx) error {
		m, err := finishAttempt(ctx, tx, params.ID, params.Attempts, params.Now,
			`state = 'RETRY', retried = retried + 1, lease_owner = '', due_at = $1`, store.Millis(params.NextAt))
		applied = m != nil
		if err != nil || m == nil {
			return err
		}

		// The ERROR event belongs to the attempt that failed, so it carries
		// the retry count before the increment.
		r := params.Result
		if err := insertEvents(ctx, tx,
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: params.Now, URL: m.URL,
				Retried: m.Retried - 1, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
				ResponseBody: r.ResponseBody, Error: r.Error},
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateRetry, Time: params.Now, URL: m.URL,
				Retried: m.Retried, NextDeliveryTime: params.NextAt}); err != nil {
			return err
		}
		return insertMessages(ctx, tx, params.Now, params.Callbacks...)
	})
	if applied && err == nil {
		db.wakeIfDue(params.Now, append(notBefores(params.Callbacks), params.NextAt)...)
	}
	return applied, err
}

// MessageMarkFailed implements store.Store.
func (db *DB) MessageMarkFailed(ctx context.Context, params *store.MessageMarkFailedParams) (string, bool, error) {
	var applied bool
	err := db.inTx(ctx, "mark message "+params.ID+" failed", func(tx pgx.Tx) error {
		m, err := finishAttempt(ctx, tx, params.ID, params.Attempts, params.Now,
			`state = 'FAILED', due_at = NULL, lease_owner = ''`)
		applied = m != nil
		if err != nil || m == nil {
			return err
		}

		r := params.Result
		if _, err := tx.Exec(ctx, `INSERT INTO dlq (id, message_id, created_at, response_status, response_header,
				response_body, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			params.DLQID, m.ID, store.Millis(params.Now), r.ResponseStatus, store.MarshalHeader(r.ResponseHeader),
			nonNil(r.ResponseBody), validText(r.Error)); err != nil {
			return fmt.Errorf("insert dlq entry %s: %w", params.DLQID, err)
		}
		if err := insertEvents(ctx, tx,
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: params.Now, URL: m.URL,
				Retried: m.Retried, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
				ResponseBody: r.ResponseBody, Error: r.Error},
			&ferry.Event{MessageID: m.ID, State: ferry.MessageStateFailed, Time: params.Now, URL: m.URL,
				Retried: m.Retried, ResponseStatus: r.ResponseStatus, Error: r.Error}); err != nil {
			return err
		}
		return insertMessages(ctx, tx, params.Now, params.Callbacks...)
	})
	if err != nil || !applied {
		return "", applied, err
	}
	db.wakeIfDue(params.Now, notBefores(params.Callbacks)...)
	return params.DLQID, true, nil
}

// notBefores returns the delivery times of msgs.
func notBefores(msgs []*ferry.Message) []time.Time {
	times := make([]time.Time, len(msgs))
	for i, m := range msgs {
		times[i] = m.NotBefore
	}
	return times
}

// finishAttempt applies set to the message when it is ACTIVE with the given
// attempt count, and returns the updated message, or nil when the
// compare-and-set found another state or attempt. set numbers its
// parameters from $1, matching args.
func finishAttempt(ctx context.Context, tx pgx.Tx, id string, attempts int, now time.Time, set string, args ...any) (*ferry.Message, error) {
	n := len(args)
	query := fmt.Sprintf(`UPDATE messages SET %s, updated_at = $%d
		WHERE id = $%d AND state = 'ACTIVE' AND attempts = $%d
		RETURNING %s`, set, n+1, n+2, n+3, messageColumns)
	args = append(args, store.Millis(now), id, attempts)

	m, err := scanMessage(tx.QueryRow(ctx, query, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("update message %s: %w", id, err)
	}
	if err := wakeGroups(ctx, tx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// MessageReleaseLeases implements store.Store.
func (db *DB) MessageReleaseLeases(ctx context.Context, owner string, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE messages SET due_at = $1, updated_at = $1
		WHERE state = 'ACTIVE' AND lease_owner = $2`, store.Millis(now), owner)
	if err != nil {
		return 0, wrapError("release leases of "+owner, err)
	}
	if tag.RowsAffected() > 0 {
		db.wakeIfDue(now, now)
	}
	return int(tag.RowsAffected()), nil
}

// MessageGet implements store.Store.
func (db *DB) MessageGet(ctx context.Context, id string) (*ferry.Message, error) {
	row := db.pool.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1`, id)
	m, err := scanMessage(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, wrapError("get message "+id, err)
	}
	return m, nil
}

func scanMessage(row pgx.Row) (*ferry.Message, error) {
	var m messageScan
	if err := row.Scan(m.dest()...); err != nil {
		return nil, err
	}
	return m.message()
}

// messageScan receives the messageColumns of one row.
type messageScan struct {
	m                                     ferry.Message
	state, header, labels                 string
	callbackHeader, failureCallbackHeader string
	timeoutMS, notBefore, createdAt       int64
	dueAt                                 *int64
	flowControlPeriodMS                   int64
}

func (s *messageScan) dest() []any {
	m := &s.m
	return []any{&m.ID, &s.state, &m.URL, &m.Method, &s.header, &m.Body, &m.MaxRetries, &m.Retried, &m.Attempts,
		&m.RetryDelayExpr, &s.timeoutMS, &s.notBefore, &s.dueAt, &m.LeaseOwner, &s.createdAt, &s.labels,
		&m.DeduplicationID, &m.CallerIP, &m.Callback, &m.FailureCallback, &s.callbackHeader, &s.failureCallbackHeader,
		&m.TopicName, &m.EndpointName, &m.QueueName, &m.ScheduleID, &m.CallbackOf, &m.JobID, &m.JobRun,
		&m.FlowControlKey, &m.FlowControlParallelism, &m.FlowControlRate, &s.flowControlPeriodMS}
}

func (s *messageScan) message() (*ferry.Message, error) {
	m := s.m
	var err error
	m.State = ferry.MessageState(s.state)
	if m.Header, err = store.UnmarshalHeader(s.header); err != nil {
		return nil, err
	}
	if m.Labels, err = store.UnmarshalStrings(s.labels); err != nil {
		return nil, err
	}
	if m.CallbackHeader, err = store.UnmarshalHeader(s.callbackHeader); err != nil {
		return nil, err
	}
	if m.FailureCallbackHeader, err = store.UnmarshalHeader(s.failureCallbackHeader); err != nil {
		return nil, err
	}
	m.Timeout = time.Duration(s.timeoutMS) * time.Millisecond
	m.FlowControlPeriod = time.Duration(s.flowControlPeriodMS) * time.Millisecond
	m.NotBefore = store.FromMillis(s.notBefore)
	m.CreatedAt = store.FromMillis(s.createdAt)
	if s.dueAt != nil {
		m.DueAt = store.FromMillis(*s.dueAt)
	}
	return &m, nil
}

// prefixed qualifies each column of a comma-separated list with prefix.
func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// nonNil returns b, or an empty slice for nil, which pgx would send as
// NULL. An empty body is stored as an empty value, as in the SQLite store.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
