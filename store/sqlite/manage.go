package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// newWhere returns a condition builder with SQLite's syntax.
func newWhere() *store.Where {
	return &store.Where{
		Placeholder: store.QuestionMark,
		LabelsMatch: func(column string, markers []string) string {
			return `EXISTS (SELECT 1 FROM json_each(` + column + `) WHERE value IN (` + strings.Join(markers, ", ") + `))`
		},
	}
}

// MessageCancel implements store.Store.
func (db *DB) MessageCancel(ctx context.Context, params *store.MessageCancelParams) (int, error) {
	w := newWhere()
	w.Add(`state IN ('CREATED', 'RETRY', 'ACTIVE')`)
	if len(params.IDs) > 0 {
		w.In("id", params.IDs)
	} else {
		w.AddMessageFilter(params.Filter, "", "created_at")
	}
	query := `SELECT id, state, url, retried FROM messages WHERE ` + w.SQL() + ` ORDER BY created_at, id`
	args := w.Args
	if params.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, params.Limit)
	}

	var n int
	err := db.write(ctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.Query(query, args...)
		if err != nil {
			return fmt.Errorf("select messages to cancel: %w", err)
		}
		var victims []*ferry.Message
		for rows.Next() {
			m := &ferry.Message{}
			if err := rows.Scan(&m.ID, &m.State, &m.URL, &m.Retried); err != nil {
				rows.Close()
				return fmt.Errorf("select messages to cancel: %w", err)
			}
			victims = append(victims, m)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("select messages to cancel: %w", err)
		}

		now := store.Millis(params.Now)
		for _, m := range victims {
			if _, err := tx.Exec(`UPDATE messages SET state = 'CANCELED', due_at = NULL, lease_owner = '', updated_at = ?
				WHERE id = ?`, now, m.ID); err != nil {
				return fmt.Errorf("cancel message %s: %w", m.ID, err)
			}
			// An attempt in flight cannot be recalled; its result is
			// dropped because the message is no longer ACTIVE.
			if m.State == ferry.MessageStateActive {
				if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateCancelRequested,
					Time: params.Now, URL: m.URL, Retried: m.Retried}); err != nil {
					return err
				}
			}
			if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateCanceled,
				Time: params.Now, URL: m.URL, Retried: m.Retried}); err != nil {
				return err
			}
			n++
		}
		if n > 0 {
			return wakeAllGroups(tx)
		}
		return nil
	})
	return n, err
}

// DLQDelete implements store.Store.
func (db *DB) DLQDelete(ctx context.Context, params *store.DLQDeleteParams) (int, error) {
	w := dlqWhere(params.IDs, params.Filter)
	query := `SELECT d.id FROM dlq d JOIN messages m ON m.id = d.message_id WHERE ` + w.SQL() + ` ORDER BY d.id`
	args := w.Args
	if params.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, params.Limit)
	}

	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM dlq WHERE id IN (`+query+`)`, args...)
		if err != nil {
			return fmt.Errorf("delete dlq entries: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// DLQRetry implements store.Store.
func (db *DB) DLQRetry(ctx context.Context, params *store.DLQRetryParams) (*ferry.Message, error) {
	var created *ferry.Message
	err := db.write(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRow(`SELECT `+prefixed("m.", messageColumns)+` FROM dlq d JOIN messages m ON m.id = d.message_id
			WHERE d.id = ?`, params.DLQID)
		failed, err := scanMessage(row)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("read dlq entry %s: %w", params.DLQID, err)
		}

		m, err := params.Build(failed)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM dlq WHERE id = ?`, params.DLQID); err != nil {
			return fmt.Errorf("delete dlq entry %s: %w", params.DLQID, err)
		}
		if err := insertMessage(tx, m, params.Now); err != nil {
			return err
		}
		created = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
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
		args := make([]any, len(f.ResponseStatuses))
		for i, s := range f.ResponseStatuses {
			args[i] = s
		}
		w.Add(`d.response_status IN (`+placeholders(len(args))+`)`, args...)
	}
	return w
}

// SigningKeysRotate implements store.Store.
func (db *DB) SigningKeysRotate(ctx context.Context, newNext string) (store.SigningKeys, error) {
	var keys store.SigningKeys
	err := db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`UPDATE signing_keys SET current = next, next = ? WHERE singleton = 1
			RETURNING current, next`, newNext).Scan(&keys.Current, &keys.Next)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("rotate signing keys: %w", err)
		}
		return nil
	})
	return keys, err
}

// deleteBatch runs a bounded DELETE statement and returns the number of
// rows deleted.
func (db *DB) deleteBatch(ctx context.Context, stmt string, args ...any) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(stmt, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// MessageDeleteFinished implements store.Store.
func (db *DB) MessageDeleteFinished(ctx context.Context, params *store.CleanupParams) (int, error) {
	n, err := db.deleteBatch(ctx, `DELETE FROM messages WHERE id IN (
		SELECT id FROM messages
		WHERE state IN ('DELIVERED', 'FAILED', 'CANCELED') AND updated_at < ?
			AND NOT EXISTS (SELECT 1 FROM dlq WHERE dlq.message_id = messages.id)
		LIMIT ?)`, store.Millis(params.Before), params.Limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete finished messages: %w", err)
	}
	return n, nil
}

// EventDeleteBefore implements store.Store.
func (db *DB) EventDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error) {
	n, err := db.deleteBatch(ctx, `DELETE FROM events WHERE id IN (
		SELECT id FROM events WHERE time < ? ORDER BY time LIMIT ?)`, store.Millis(params.Before), params.Limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete old events: %w", err)
	}
	return n, nil
}

// DLQDeleteBefore implements store.Store.
func (db *DB) DLQDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error) {
	n, err := db.deleteBatch(ctx, `DELETE FROM dlq WHERE id IN (
		SELECT id FROM dlq WHERE created_at < ? ORDER BY created_at LIMIT ?)`, store.Millis(params.Before), params.Limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete old dlq entries: %w", err)
	}
	return n, nil
}

// DedupDeleteExpired implements store.Store.
func (db *DB) DedupDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error) {
	n, err := db.deleteBatch(ctx, `DELETE FROM dedup WHERE id IN (
		SELECT id FROM dedup WHERE expires_at < ? LIMIT ?)`, store.Millis(params.Before), params.Limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete expired deduplication ids: %w", err)
	}
	return n, nil
}
