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

const scheduleColumns = `id, cron, destination, method, header, body, retries, delay_ms, timeout_ms,
	retry_delay_expr, callback, failure_callback, callback_header, failure_callback_header, labels,
	queue_name, caller_ip, paused, created_at, next_fire, last_fire, last_message_ids, error`

// ScheduleUpsert implements store.Store.
func (db *DB) ScheduleUpsert(ctx context.Context, s *ferry.Schedule) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT OR REPLACE INTO schedules (`+scheduleColumns+`) VALUES (`+placeholders(23)+`)`,
			s.ID, s.Cron, s.Destination, s.Method, store.MarshalHeader(s.Header), nonNil(s.Body), s.Retries,
			s.Delay.Milliseconds(), s.Timeout.Milliseconds(), s.RetryDelayExpr, s.Callback, s.FailureCallback,
			store.MarshalHeader(s.CallbackHeader), store.MarshalHeader(s.FailureCallbackHeader),
			store.MarshalStrings(s.Labels), s.QueueName, s.CallerIP, s.Paused, store.Millis(s.CreatedAt),
			nullMillis(s.NextFireAt), store.Millis(s.LastFireAt), store.MarshalStrings(s.LastMessageIDs), s.Error)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: upsert schedule %s: %w", s.ID, err)
	}
	return nil
}

// ScheduleGet implements store.Store.
func (db *DB) ScheduleGet(ctx context.Context, id string) (*ferry.Schedule, error) {
	row := db.reader.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE id = ?`, id)
	s, err := scanSchedule(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get schedule %s: %w", id, err)
	}
	return s, nil
}

// ScheduleList implements store.Store.
func (db *DB) ScheduleList(ctx context.Context) ([]*ferry.Schedule, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list schedules: %w", err)
	}
	defer rows.Close()

	var list []*ferry.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list schedules: %w", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list schedules: %w", err)
	}
	return list, nil
}

// ScheduleDelete implements store.Store.
func (db *DB) ScheduleDelete(ctx context.Context, id string) (bool, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM schedules WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: delete schedule %s: %w", id, err)
	}
	return n > 0, nil
}

// ScheduleSetPaused implements store.Store.
func (db *DB) ScheduleSetPaused(ctx context.Context, params *store.ScheduleSetPausedParams) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		s, err := scanSchedule(tx.QueryRow(`SELECT `+scheduleColumns+` FROM schedules WHERE id = ?`, params.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		if s.Paused == params.Paused {
			return nil
		}

		if params.Paused {
			_, err = tx.Exec(`UPDATE schedules SET paused = 1 WHERE id = ?`, params.ID)
			return err
		}
		_, err = tx.Exec(`UPDATE schedules SET paused = 0, next_fire = ? WHERE id = ?`,
			nullMillis(params.Next(s)), params.ID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	} else if err != nil {
		return fmt.Errorf("sqlite: set paused of schedule %s: %w", params.ID, err)
	}
	return nil
}

// ScheduleFireDue implements store.Store. Write transactions begin with
// BEGIN IMMEDIATE, so no other handle on the same file, such as a second
// process, writes between the read of the due schedules and their updates.
// The compare-and-set on next_fire guards each update all the same.
func (db *DB) ScheduleFireDue(ctx context.Context, params *store.ScheduleFireParams) ([]*ferry.Message, error) {
	if params.Limit <= 0 {
		return nil, nil
	}
	now := store.Millis(params.Now)

	var fired []*ferry.Message
	err := db.write(ctx, func(tx *sql.Tx) error {
		fired = fired[:0]
		due, err := dueSchedules(tx, now, params.Limit)
		if err != nil {
			return err
		}

		for _, s := range due {
			t := params.Trigger(s)
			var ids []string
			if t.Message != nil {
				ids = []string{t.Message.ID}
			}
			res, err := tx.Exec(`UPDATE schedules SET next_fire = ?, last_fire = ?, last_message_ids = ?, error = ?
				WHERE id = ? AND next_fire = ? AND paused = 0`,
				nullMillis(t.Next), now, store.MarshalStrings(ids), t.Error, s.ID, store.Millis(s.NextFireAt))
			if err != nil {
				return fmt.Errorf("advance schedule %s: %w", s.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("advance schedule %s: %w", s.ID, err)
			} else if n == 0 {
				continue
			}

			if t.Message != nil {
				if err := insertMessage(tx, t.Message, params.Now); err != nil {
					return err
				}
				fired = append(fired, t.Message)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: fire schedules: %w", err)
	}
	return fired, nil
}

// dueSchedules returns up to limit active schedules due at now, earliest
// tick first.
func dueSchedules(tx *sql.Tx, now int64, limit int) ([]*ferry.Schedule, error) {
	rows, err := tx.Query(`SELECT `+scheduleColumns+` FROM schedules
		WHERE paused = 0 AND next_fire <= ?
		ORDER BY next_fire, id
		LIMIT ?`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("select due schedules: %w", err)
	}
	defer rows.Close()

	var due []*ferry.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("select due schedules: %w", err)
		}
		due = append(due, s)
	}
	return due, rows.Err()
}

// ScheduleNextFireAt implements store.Store.
func (db *DB) ScheduleNextFireAt(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT MIN(next_fire) FROM schedules WHERE paused = 0`).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: next schedule fire time: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return store.FromMillis(next.Int64), true, nil
}

func scanSchedule(s scanner) (*ferry.Schedule, error) {
	var (
		sc                                    ferry.Schedule
		header, labels, lastMessageIDs        string
		callbackHeader, failureCallbackHeader string
		delayMS, timeoutMS, createdAt, last   int64
		next                                  sql.NullInt64
	)
	err := s.Scan(&sc.ID, &sc.Cron, &sc.Destination, &sc.Method, &header, &sc.Body, &sc.Retries, &delayMS, &timeoutMS,
		&sc.RetryDelayExpr, &sc.Callback, &sc.FailureCallback, &callbackHeader, &failureCallbackHeader, &labels,
		&sc.QueueName, &sc.CallerIP, &sc.Paused, &createdAt, &next, &last, &lastMessageIDs, &sc.Error)
	if err != nil {
		return nil, err
	}

	if sc.Header, err = store.UnmarshalHeader(header); err != nil {
		return nil, err
	}
	if sc.CallbackHeader, err = store.UnmarshalHeader(callbackHeader); err != nil {
		return nil, err
	}
	if sc.FailureCallbackHeader, err = store.UnmarshalHeader(failureCallbackHeader); err != nil {
		return nil, err
	}
	if sc.Labels, err = store.UnmarshalStrings(labels); err != nil {
		return nil, err
	}
	if sc.LastMessageIDs, err = store.UnmarshalStrings(lastMessageIDs); err != nil {
		return nil, err
	}
	sc.Delay = time.Duration(delayMS) * time.Millisecond
	sc.Timeout = time.Duration(timeoutMS) * time.Millisecond
	sc.CreatedAt = store.FromMillis(createdAt)
	sc.LastFireAt = store.FromMillis(last)
	if next.Valid {
		sc.NextFireAt = store.FromMillis(next.Int64)
	}
	return &sc, nil
}

// nullMillis converts t to Unix milliseconds, and the zero time to NULL.
func nullMillis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}
