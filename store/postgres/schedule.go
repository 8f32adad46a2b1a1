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

const scheduleColumns = `id, cron, destination, method, header, body, retries, delay_ms, timeout_ms,
	retry_delay_expr, callback, failure_callback, callback_header, failure_callback_header, labels,
	queue_name, caller_ip, paused, created_at, next_fire, last_fire, last_message_ids, error`

// scheduleUpdates is the SET list of an upsert: every column but the id
// takes the new row's value.
var scheduleUpdates = func() string {
	var sets []string
	for _, c := range strings.Split(scheduleColumns, ",")[1:] {
		c = strings.TrimSpace(c)
		sets = append(sets, c+" = excluded."+c)
	}
	return strings.Join(sets, ", ")
}()

// ScheduleUpsert implements store.Store.
func (db *DB) ScheduleUpsert(ctx context.Context, s *ferry.Schedule) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO schedules (`+scheduleColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23)
		ON CONFLICT (id) DO UPDATE SET `+scheduleUpdates,
		s.ID, s.Cron, s.Destination, s.Method, store.MarshalHeader(s.Header), nonNil(s.Body), s.Retries,
		s.Delay.Milliseconds(), s.Timeout.Milliseconds(), s.RetryDelayExpr, s.Callback, s.FailureCallback,
		store.MarshalHeader(s.CallbackHeader), store.MarshalHeader(s.FailureCallbackHeader),
		store.MarshalStrings(s.Labels), s.QueueName, s.CallerIP, s.Paused, store.Millis(s.CreatedAt),
		nullMillis(s.NextFireAt), store.Millis(s.LastFireAt), store.MarshalStrings(s.LastMessageIDs), s.Error)
	if err != nil {
		return wrapError("upsert schedule "+s.ID, err)
	}
	return nil
}

// ScheduleGet implements store.Store.
func (db *DB) ScheduleGet(ctx context.Context, id string) (*ferry.Schedule, error) {
	s, err := scanSchedule(db.pool.QueryRow(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, wrapError("get schedule "+id, err)
	}
	return s, nil
}

// ScheduleList implements store.Store.
func (db *DB) ScheduleList(ctx context.Context) ([]*ferry.Schedule, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM schedules ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapError("list schedules", err)
	}
	defer rows.Close()

	var list []*ferry.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, wrapError("list schedules", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError("list schedules", err)
	}
	return list, nil
}

// ScheduleDelete implements store.Store.
func (db *DB) ScheduleDelete(ctx context.Context, id string) (bool, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM schedules WHERE id = $1`, id)
	if err != nil {
		return false, wrapError("delete schedule "+id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ScheduleSetPaused implements store.Store. The row is locked while the
// next fire time of a resumed schedule is computed, so a concurrent upsert
// cannot slip in between.
func (db *DB) ScheduleSetPaused(ctx context.Context, params *store.ScheduleSetPausedParams) error {
	return db.inTx(ctx, "set paused of schedule "+params.ID, func(tx pgx.Tx) error {
		s, err := scanSchedule(tx.QueryRow(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE id = $1 FOR UPDATE`,
			params.ID))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		if s.Paused == params.Paused {
			return nil
		}

		if params.Paused {
			_, err = tx.Exec(ctx, `UPDATE schedules SET paused = TRUE WHERE id = $1`, params.ID)
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE schedules SET paused = FALSE, next_fire = $1 WHERE id = $2`,
			nullMillis(params.Next(s)), params.ID)
		return err
	})
}

// ScheduleFireDue implements store.Store.
//
// FOR UPDATE SKIP LOCKED passes over schedules that another scheduler is
// firing, and the compare-and-set on next_fire drops a schedule whose tick
// moved after the read, so concurrent schedulers never fire a tick twice.
func (db *DB) ScheduleFireDue(ctx context.Context, params *store.ScheduleFireParams) ([]*ferry.Message, error) {
	if params.Limit <= 0 {
		return nil, nil
	}
	now := store.Millis(params.Now)

	var fired []*ferry.Message
	err := db.inTx(ctx, "fire schedules", func(tx pgx.Tx) error {
		fired = fired[:0]
		due, err := dueSchedules(ctx, tx, now, params.Limit)
		if err != nil {
			return err
		}

		for _, s := range due {
			t := params.Trigger(s)
			var ids []string
			if t.Message != nil {
				ids = []string{t.Message.ID}
			}
			tag, err := tx.Exec(ctx, `UPDATE schedules
				SET next_fire = $1, last_fire = $2, last_message_ids = $3, error = $4
				WHERE id = $5 AND next_fire = $6 AND NOT paused`,
				nullMillis(t.Next), now, store.MarshalStrings(ids), validText(t.Error), s.ID, store.Millis(s.NextFireAt))
			if err != nil {
				return fmt.Errorf("advance schedule %s: %w", s.ID, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}

			if t.Message != nil {
				if err := insertMessages(ctx, tx, params.Now, t.Message); err != nil {
					return err
				}
				fired = append(fired, t.Message)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	db.wakeIfDue(params.Now, notBefores(fired)...)
	return fired, nil
}

// dueSchedules locks and returns up to limit active schedules due at now,
// earliest tick first.
func dueSchedules(ctx context.Context, tx pgx.Tx, now int64, limit int) ([]*ferry.Schedule, error) {
	rows, err := tx.Query(ctx, `SELECT `+scheduleColumns+` FROM schedules
		WHERE NOT paused AND next_fire <= $1
		ORDER BY next_fire, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, now, limit)
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
	var next *int64
	err := db.pool.QueryRow(ctx, `SELECT MIN(next_fire) FROM schedules WHERE NOT paused`).Scan(&next)
	if err != nil {
		return time.Time{}, false, wrapError("next schedule fire time", err)
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return store.FromMillis(*next), true, nil
}

func scanSchedule(row pgx.Row) (*ferry.Schedule, error) {
	var (
		sc                                    ferry.Schedule
		header, labels, lastMessageIDs        string
		callbackHeader, failureCallbackHeader string
		delayMS, timeoutMS, createdAt, last   int64
		next                                  *int64
	)
	err := row.Scan(&sc.ID, &sc.Cron, &sc.Destination, &sc.Method, &header, &sc.Body, &sc.Retries, &delayMS, &timeoutMS,
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
	if next != nil {
		sc.NextFireAt = store.FromMillis(*next)
	}
	return &sc, nil
}

// nullMillis converts t to Unix milliseconds, and the zero time to NULL.
func nullMillis(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}
