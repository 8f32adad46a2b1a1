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

// EventList implements store.Store. Each event carries its message when the
// message is still stored.
func (db *DB) EventList(ctx context.Context, params *store.EventListParams) ([]*ferry.Event, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 1000
	}

	w := newWhere()
	if params.MessageID != "" {
		w.Add(`e.message_id = ?`, params.MessageID)
	}
	newestFirst := params.NewestFirst
	switch {
	case params.AfterID > 0:
		w.Add(`e.id > ?`, params.AfterID)
		newestFirst = false
	case params.BeforeID > 0:
		w.Add(`e.id < ?`, params.BeforeID)
		newestFirst = true
	}
	if f := params.Filter; f != nil {
		// Message ids match the event's own column, so events of messages
		// removed by retention are still found.
		w.In(`e.message_id`, f.MessageIDs)
		w.In(`e.url`, f.URLs)
		states := make([]string, len(f.States))
		for i, s := range f.States {
			states[i] = string(s)
		}
		w.In(`e.state`, states)
		rest := *f
		rest.MessageIDs, rest.URLs, rest.States = nil, nil, nil
		w.AddMessageFilter(&rest, "m.", "e.time")
	}
	order := `e.id`
	if newestFirst {
		order = `e.id DESC`
	}

	rows, err := db.reader.QueryContext(ctx, `SELECT e.id, e.message_id, e.state, e.time, e.url, e.retried,
			e.response_status, e.response_header, e.response_body, e.error, e.next_delivery_time
		FROM events e LEFT JOIN messages m ON m.id = e.message_id
		WHERE `+w.SQL()+` ORDER BY `+order+` LIMIT ?`, append(w.Args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()

	var events []*ferry.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	rows.Close()

	if err := db.attachMessages(ctx, events); err != nil {
		return nil, err
	}
	return events, nil
}

// attachMessages sets Message on each event whose message is still stored.
func (db *DB) attachMessages(ctx context.Context, events []*ferry.Event) error {
	ids := map[string]bool{}
	for _, e := range events {
		ids[e.MessageID] = true
	}
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids))
	for id := range ids {
		args = append(args, id)
	}

	rows, err := db.reader.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id IN (`+placeholders(len(args))+`)`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: read event messages: %w", err)
	}
	defer rows.Close()
	byID := map[string]*ferry.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return fmt.Errorf("sqlite: read event messages: %w", err)
		}
		byID[m.ID] = m
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: read event messages: %w", err)
	}
	for _, e := range events {
		e.Message = byID[e.MessageID]
	}
	return nil
}

func scanEvent(rows *sql.Rows) (*ferry.Event, error) {
	var e ferry.Event
	var header string
	var t, next int64
	if err := rows.Scan(&e.ID, &e.MessageID, &e.State, &t, &e.URL, &e.Retried, &e.ResponseStatus, &header,
		&e.ResponseBody, &e.Error, &next); err != nil {
		return nil, err
	}
	var err error
	if e.ResponseHeader, err = store.UnmarshalHeader(header); err != nil {
		return nil, err
	}
	e.Time = store.FromMillis(t)
	e.NextDeliveryTime = store.FromMillis(next)
	return &e, nil
}
