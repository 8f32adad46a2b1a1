package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

func insertEvent(tx *sql.Tx, e *ferry.Event) error {
	_, err := tx.Exec(`INSERT INTO events (message_id, state, time, url, retried, response_status,
			response_header, response_body, error, next_delivery_time)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.MessageID, e.State, store.Millis(e.Time), e.URL, e.Retried, e.ResponseStatus,
		store.MarshalHeader(e.ResponseHeader), e.ResponseBody, e.Error, store.Millis(e.NextDeliveryTime))
	if err != nil {
		return fmt.Errorf("insert %s event for %s: %w", e.State, e.MessageID, err)
	}
	return nil
}

// EventList implements store.Store.
func (db *DB) EventList(ctx context.Context, params *store.EventListParams) ([]*ferry.Event, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 1000
	}
	query := `SELECT id, message_id, state, time, url, retried, response_status, response_header,
		response_body, error, next_delivery_time FROM events WHERE id > ?`
	args := []any{params.AfterID}
	if params.MessageID != "" {
		query += ` AND message_id = ?`
		args = append(args, params.MessageID)
	}
	query += ` ORDER BY id LIMIT ?`
	args = append(args, limit)

	rows, err := db.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()

	var events []*ferry.Event
	for rows.Next() {
		var e ferry.Event
		var header string
		var t, next int64
		if err := rows.Scan(&e.ID, &e.MessageID, &e.State, &t, &e.URL, &e.Retried, &e.ResponseStatus, &header,
			&e.ResponseBody, &e.Error, &next); err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		if e.ResponseHeader, err = store.UnmarshalHeader(header); err != nil {
			return nil, err
		}
		e.Time = store.FromMillis(t)
		e.NextDeliveryTime = store.FromMillis(next)
		events = append(events, &e)
	}
	return events, rows.Err()
}
