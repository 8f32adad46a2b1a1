package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

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
	var result *store.MessageInsertResult
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		result, err = insertDeduplicated(tx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// insertDeduplicated stores params.Message unless its deduplication id is
// live, in which case it returns the first message.
func insertDeduplicated(tx *sql.Tx, params *store.MessageInsertParams) (*store.MessageInsertResult, error) {
	m := params.Message
	now := store.Millis(params.Now)

	// A live deduplication id answers with the first message.
	if m.DeduplicationID != "" {
		var firstID string
		err := tx.QueryRow(`SELECT message_id FROM dedup WHERE id = ? AND expires_at > ?`, m.DeduplicationID, now).Scan(&firstID)
		if err == nil {
			return &store.MessageInsertResult{MessageID: firstID, Deduplicated: true}, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("look up deduplication id: %w", err)
		}

		expires := now + params.DeduplicationWindow.Milliseconds()
		if _, err := tx.Exec(`INSERT INTO dedup (id, message_id, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET message_id = excluded.message_id, expires_at = excluded.expires_at`,
			m.DeduplicationID, m.ID, expires); err != nil {
			return nil, fmt.Errorf("store deduplication id: %w", err)
		}
	}

	if err := insertMessage(tx, m, params.Now); err != nil {
		return nil, err
	}
	return &store.MessageInsertResult{MessageID: m.ID}, nil
}

// insertMessage stores m in state CREATED with its CREATED event.
func insertMessage(tx *sql.Tx, m *ferry.Message, now time.Time) error {
	host, path := store.URLParts(m.URL)
	_, err := tx.Exec(`INSERT INTO messages (`+messageColumns+`, updated_at, url_host, url_path)
		VALUES (`+placeholders(36)+`)`,
		m.ID, ferry.MessageStateCreated, m.URL, m.Method, store.MarshalHeader(m.Header), nonNil(m.Body),
		m.MaxRetries, 0, 0, m.RetryDelayExpr, m.Timeout.Milliseconds(), store.Millis(m.NotBefore),
		store.Millis(m.NotBefore), "", store.Millis(now), store.MarshalStrings(m.Labels), m.DeduplicationID, m.CallerIP,
		m.Callback, m.FailureCallback, store.MarshalHeader(m.CallbackHeader), store.MarshalHeader(m.FailureCallbackHeader),
		m.TopicName, m.EndpointName, m.QueueName, m.ScheduleID, m.CallbackOf, m.JobID, m.JobRun,
		m.FlowControlKey, m.FlowControlParallelism, m.FlowControlRate, m.FlowControlPeriod.Milliseconds(),
		store.Millis(now), host, path)
	if err != nil {
		return fmt.Errorf("insert message: %w", err)
	}
	if err := ensureGroups(tx, m, now); err != nil {
		return err
	}
	return insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateCreated, Time: now,
		URL: m.URL, NextDeliveryTime: m.NotBefore})
}

// insertMessages stores each message with insertMessage.
func insertMessages(tx *sql.Tx, msgs []*ferry.Message, now time.Time) error {
	for _, m := range msgs {
		if err := insertMessage(tx, m, now); err != nil {
			return err
		}
	}
	return nil
}

// MessageMarkDelivered implements store.Store.
func (db *DB) MessageMarkDelivered(ctx context.Context, params *store.MessageMarkDeliveredParams) (bool, error) {
	var applied bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		var m *ferry.Message
		m, err = finishAttempt(tx, params.ID, params.Attempts, params.Now,
			`state = 'DELIVERED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return err
		}
		applied = true
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateDelivered, Time: params.Now,
			URL: m.URL, Retried: m.Retried, ResponseStatus: params.ResponseStatus}); err != nil {
			return err
		}
		return insertMessages(tx, params.Callbacks, params.Now)
	})
	return applied, err
}

// MessageMarkRetry implements store.Store.
func (db *DB) MessageMarkRetry(ctx context.Context, params *store.MessageMarkRetryParams) (bool, error) {
	var applied bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		m, err := finishAttempt(tx, params.ID, params.Attempts, params.Now,
			`state = 'RETRY', retried = retried + 1, lease_owner = '', due_at = ?`, store.Millis(params.NextAt))
		if err != nil || m == nil {
			return err
		}
		applied = true

		// The ERROR event belongs to the attempt that failed, so it carries
		// the retry count before the increment.
		r := params.Result
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: params.Now,
			URL: m.URL, Retried: m.Retried - 1, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
			ResponseBody: r.ResponseBody, Error: r.Error}); err != nil {
			return err
		}
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateRetry, Time: params.Now,
			URL: m.URL, Retried: m.Retried, NextDeliveryTime: params.NextAt}); err != nil {
			return err
		}
		return insertMessages(tx, params.Callbacks, params.Now)
	})
	return applied, err
}

// MessageMarkFailed implements store.Store.
func (db *DB) MessageMarkFailed(ctx context.Context, params *store.MessageMarkFailedParams) (string, bool, error) {
	var applied bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		m, err := finishAttempt(tx, params.ID, params.Attempts, params.Now,
			`state = 'FAILED', due_at = NULL, lease_owner = ''`)
		if err != nil || m == nil {
			return err
		}
		applied = true

		r := params.Result
		if _, err := tx.Exec(`INSERT INTO dlq (id, message_id, created_at, response_status, response_header, response_body, error)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			params.DLQID, m.ID, store.Millis(params.Now), r.ResponseStatus, store.MarshalHeader(r.ResponseHeader),
			nonNil(r.ResponseBody), r.Error); err != nil {
			return fmt.Errorf("insert dlq entry: %w", err)
		}
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateError, Time: params.Now,
			URL: m.URL, Retried: m.Retried, ResponseStatus: r.ResponseStatus, ResponseHeader: r.ResponseHeader,
			ResponseBody: r.ResponseBody, Error: r.Error}); err != nil {
			return err
		}
		if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateFailed, Time: params.Now,
			URL: m.URL, Retried: m.Retried, ResponseStatus: r.ResponseStatus, Error: r.Error}); err != nil {
			return err
		}
		return insertMessages(tx, params.Callbacks, params.Now)
	})
	if err != nil || !applied {
		return "", applied, err
	}
	return params.DLQID, true, nil
}

// finishAttempt applies set to the message when it is ACTIVE with the given
// attempt count, and returns the updated message, or nil when the
// compare-and-set found another state or attempt.
func finishAttempt(tx *sql.Tx, id string, attempts int, now time.Time, set string, args ...any) (*ferry.Message, error) {
	args = append(args, store.Millis(now), id, attempts)
	row := tx.QueryRow(`UPDATE messages SET `+set+`, updated_at = ?
		WHERE id = ? AND state = 'ACTIVE' AND attempts = ?
		RETURNING `+messageColumns, args...)
	m, err := scanMessage(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("update message %s: %w", id, err)
	}
	if err := wakeGroups(tx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// MessageReleaseLeases implements store.Store.
func (db *DB) MessageReleaseLeases(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE messages SET due_at = ?, updated_at = ?
			WHERE state = 'ACTIVE' AND lease_owner = ?`, store.Millis(now), store.Millis(now), owner)
		if err != nil {
			return fmt.Errorf("release leases: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// MessageGet implements store.Store.
func (db *DB) MessageGet(ctx context.Context, id string) (*ferry.Message, error) {
	row := db.reader.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = ?`, id)
	m, err := scanMessage(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get message %s: %w", id, err)
	}
	return m, nil
}

type scanner interface {
	Scan(dest ...any) error
}

func scanMessage(s scanner) (*ferry.Message, error) {
	var m messageScan
	if err := s.Scan(m.dest()...); err != nil {
		return nil, err
	}
	return m.message()
}

// messageScan receives the messageColumns of one row.
type messageScan struct {
	m                                     ferry.Message
	header, labels                        string
	callbackHeader, failureCallbackHeader string
	timeoutMS, notBefore, createdAt       int64
	dueAt                                 sql.NullInt64
	flowControlPeriodMS                   int64
}

func (s *messageScan) dest() []any {
	m := &s.m
	return []any{&m.ID, &m.State, &m.URL, &m.Method, &s.header, &m.Body, &m.MaxRetries, &m.Retried, &m.Attempts,
		&m.RetryDelayExpr, &s.timeoutMS, &s.notBefore, &s.dueAt, &m.LeaseOwner, &s.createdAt, &s.labels,
		&m.DeduplicationID, &m.CallerIP, &m.Callback, &m.FailureCallback, &s.callbackHeader, &s.failureCallbackHeader,
		&m.TopicName, &m.EndpointName, &m.QueueName, &m.ScheduleID, &m.CallbackOf, &m.JobID, &m.JobRun,
		&m.FlowControlKey, &m.FlowControlParallelism, &m.FlowControlRate, &s.flowControlPeriodMS}
}

func (s *messageScan) message() (*ferry.Message, error) {
	m := s.m
	var err error
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
	if s.dueAt.Valid {
		m.DueAt = store.FromMillis(s.dueAt.Int64)
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

// nonNil returns b, or an empty slice for nil, because the body columns are
// NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
