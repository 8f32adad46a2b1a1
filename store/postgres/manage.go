package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// newWhere returns a condition builder with PostgreSQL's syntax. Label
// lists are JSON text, so a label filter casts them to jsonb.
func newWhere() *store.Where {
	return &store.Where{
		Placeholder: store.DollarN,
		LabelsMatch: func(column string, markers []string) string {
			return `EXISTS (SELECT 1 FROM jsonb_array_elements_text(` + column + `::jsonb) AS label (value)
				WHERE label.value IN (` + strings.Join(markers, ", ") + `))`
		},
	}
}

// limitArg returns the LIMIT argument for n: a negative n means no limit,
// as in SQLite, and PostgreSQL reads LIMIT NULL as no limit.
func limitArg(n int) any {
	if n < 0 {
		return nil
	}
	return n
}

// MessageCancel implements store.Store.
//
// One statement locks the selected messages, cancels them and records their
// events. FOR UPDATE waits for a concurrent transition of a selected
// message and then reads its new state, so a message that was delivered
// meanwhile is skipped, and one claimed meanwhile gets a CANCEL_REQUESTED
// event before its CANCELED event.
func (db *DB) MessageCancel(ctx context.Context, params *store.MessageCancelParams) (int, error) {
	w := newWhere()
	w.Add(`state IN ('CREATED', 'RETRY', 'ACTIVE')`)
	if len(params.IDs) > 0 {
		w.In("id", params.IDs)
	} else {
		w.AddMessageFilter(params.Filter, "", "created_at")
	}
	args := w.Args
	limit := ""
	if params.Limit > 0 {
		args = append(args, params.Limit)
		limit = ` LIMIT ` + store.DollarN(len(args))
	}
	args = append(args, store.Millis(params.Now))
	now := store.DollarN(len(args))

	query := `WITH selected AS (
			SELECT id, state, url, retried, created_at FROM messages
			WHERE ` + w.SQL() + `
			ORDER BY created_at, id` + limit + `
			FOR UPDATE
		), canceled AS (
			UPDATE messages m
			SET state = 'CANCELED', due_at = NULL, lease_owner = '', updated_at = ` + now + `
			FROM selected s
			WHERE m.id = s.id
			RETURNING s.id, s.state AS previous_state, s.url, s.retried, s.created_at
		), recorded AS (
			INSERT INTO events (message_id, state, time, url, retried)
			SELECT c.id, step.state, ` + now + `, c.url, c.retried
			FROM canceled c
			CROSS JOIN (VALUES (1, 'CANCEL_REQUESTED'), (2, 'CANCELED')) AS step (position, state)
			WHERE step.position = 2 OR c.previous_state = 'ACTIVE'
			ORDER BY c.created_at, c.id, step.position
		)
		SELECT count(*) FROM canceled`

	var n int
	err := db.inTx(ctx, "cancel messages", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, query, args...).Scan(&n); err != nil || n == 0 {
			return err
		}
		return wakeAllGroups(ctx, tx)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// dlqWhere selects dead-letter entries (table d joined with messages m).
func dlqWhere(ids []string, f *store.MessageFilter) *store.Where {
	w := newWhere()
	if len(ids) > 0 {
		w.In("d.id", ids)
		return w
	}
	w.AddMessageFilter(f, "m.", "d.created_at")
	if f != nil && len(f.ResponseStatuses) > 0 {
		w.Add(`d.response_status = ANY(?)`, f.ResponseStatuses)
	}
	return w
}

// DLQDelete implements store.Store.
func (db *DB) DLQDelete(ctx context.Context, params *store.DLQDeleteParams) (int, error) {
	w := dlqWhere(params.IDs, params.Filter)
	args := w.Args
	limit := ""
	if params.Limit > 0 {
		args = append(args, params.Limit)
		limit = ` LIMIT ` + store.DollarN(len(args))
	}

	tag, err := db.pool.Exec(ctx, `DELETE FROM dlq WHERE id IN (
		SELECT d.id FROM dlq d JOIN messages m ON m.id = d.message_id
		WHERE `+w.SQL()+` ORDER BY d.id`+limit+`)`, args...)
	if err != nil {
		return 0, wrapError("delete dlq entries", err)
	}
	return int(tag.RowsAffected()), nil
}

// DLQRetry implements store.Store. The entry's row stays locked until the
// new message commits, so of two concurrent retries of one entry the
// second returns store.ErrNotFound. Build runs again when PostgreSQL aborts
// the transaction with a deadlock or serialization failure.
func (db *DB) DLQRetry(ctx context.Context, params *store.DLQRetryParams) (*ferry.Message, error) {
	var created *ferry.Message
	var buildErr error
	err := db.inTx(ctx, "retry dlq entry "+params.DLQID, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, `SELECT `+prefixed("m.", messageColumns)+`
			FROM dlq d JOIN messages m ON m.id = d.message_id
			WHERE d.id = $1
			FOR UPDATE OF d`, params.DLQID)
		failed, err := scanMessage(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("read dlq entry %s: %w", params.DLQID, err)
		}

		m, err := params.Build(failed)
		if err != nil {
			buildErr = err
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM dlq WHERE id = $1`, params.DLQID); err != nil {
			return fmt.Errorf("delete dlq entry %s: %w", params.DLQID, err)
		}
		if err := insertMessages(ctx, tx, params.Now, m); err != nil {
			return err
		}
		created = m
		return nil
	})

	// Errors of Build and a missing entry reach the caller unwrapped, as
	// from the SQLite store.
	switch {
	case buildErr != nil:
		return nil, buildErr
	case errors.Is(err, store.ErrNotFound):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, err
	}
	db.wakeIfDue(params.Now, created.NotBefore)
	return created, nil
}

// SigningKeysRotate implements store.Store.
func (db *DB) SigningKeysRotate(ctx context.Context, newNext string) (store.SigningKeys, error) {
	var keys store.SigningKeys
	err := db.pool.QueryRow(ctx, `UPDATE signing_keys SET current = next, next = $1 WHERE singleton = 1
		RETURNING current, next`, newNext).Scan(&keys.Current, &keys.Next)
	if errors.Is(err, pgx.ErrNoRows) {
		return keys, store.ErrNotFound
	} else if err != nil {
		return keys, wrapError("rotate signing keys", err)
	}
	return keys, nil
}

// deleteBatch runs a bounded DELETE statement and returns the number of
// rows deleted.
func (db *DB) deleteBatch(ctx context.Context, op, stmt string, args ...any) (int, error) {
	tag, err := db.pool.Exec(ctx, stmt, args...)
	if err != nil {
		return 0, wrapError(op, err)
	}
	return int(tag.RowsAffected()), nil
}

// MessageDeleteFinished implements store.Store. Messages with a dead-letter
// entry stay until the entry is deleted.
func (db *DB) MessageDeleteFinished(ctx context.Context, params *store.CleanupParams) (int, error) {
	return db.deleteBatch(ctx, "delete finished messages", `DELETE FROM messages WHERE id IN (
		SELECT id FROM messages
		WHERE state IN ('DELIVERED', 'FAILED', 'CANCELED') AND updated_at < $1
			AND NOT EXISTS (SELECT 1 FROM dlq WHERE dlq.message_id = messages.id)
		LIMIT $2)`, store.Millis(params.Before), limitArg(params.Limit))
}

// EventDeleteBefore implements store.Store.
func (db *DB) EventDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error) {
	return db.deleteBatch(ctx, "delete old events", `DELETE FROM events WHERE id IN (
		SELECT id FROM events WHERE time < $1 ORDER BY time LIMIT $2)`,
		store.Millis(params.Before), limitArg(params.Limit))
}

// DLQDeleteBefore implements store.Store.
func (db *DB) DLQDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error) {
	return db.deleteBatch(ctx, "delete old dlq entries", `DELETE FROM dlq WHERE id IN (
		SELECT id FROM dlq WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
		store.Millis(params.Before), limitArg(params.Limit))
}

// DedupDeleteExpired implements store.Store.
func (db *DB) DedupDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error) {
	return db.deleteBatch(ctx, "delete expired deduplication ids", `DELETE FROM dedup WHERE id IN (
		SELECT id FROM dedup WHERE expires_at < $1 LIMIT $2)`,
		store.Millis(params.Before), limitArg(params.Limit))
}
