package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// eventInsertColumns is the number of values insertEvents sends per event.
const eventInsertColumns = 10

// insertEvents records events in one statement. Rows of a multi-row VALUES
// list draw their ids in list order, so the events keep the given order.
func insertEvents(ctx context.Context, tx pgx.Tx, events ...*ferry.Event) error {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO events (message_id, state, time, url, retried, response_status,
		response_header, response_body, error, next_delivery_time) VALUES `)
	args := make([]any, 0, len(events)*eventInsertColumns)
	for i, e := range events {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(")
		for j := range eventInsertColumns {
			if j > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "$%d", i*eventInsertColumns+j+1)
		}
		sb.WriteString(")")
		args = append(args, e.MessageID, string(e.State), store.Millis(e.Time), e.URL, e.Retried, e.ResponseStatus,
			store.MarshalHeader(e.ResponseHeader), e.ResponseBody, validText(e.Error), store.Millis(e.NextDeliveryTime))
	}

	if _, err := tx.Exec(ctx, sb.String(), args...); err != nil {
		return fmt.Errorf("insert %s event for %s: %w", events[0].State, events[0].MessageID, err)
	}
	return nil
}

// validText returns s as PostgreSQL text accepts it: invalid UTF-8
// sequences become U+FFFD and NUL bytes are dropped. It cleans attempt
// error texts, which can quote bytes from the destination.
func validText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// EventList implements store.Store. Each event carries its message when the
// message is still stored.
//
// NOTE: event ids come from a sequence, and PostgreSQL draws them when a
// row is inserted, not when its transaction commits. A transaction that
// commits after a concurrent one can make an event with a smaller id
// visible after a reader paged past that id with AfterID.
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
		// Message ids and URLs match the event's own columns, so events of
		// messages removed by retention are still found.
		w.In(`e.message_id`, f.MessageIDs)
		w.In(`e.url`, f.URLs)
		states := make([]string, len(f.States))
		for i, state := range f.States {
			states[i] = string(state)
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

	rows, err := db.pool.Query(ctx, `SELECT e.id, e.message_id, e.state, e.time, e.url, e.retried,
			e.response_status, e.response_header, e.response_body, e.error, e.next_delivery_time
		FROM events e LEFT JOIN messages m ON m.id = e.message_id
		WHERE `+w.SQL()+` ORDER BY `+order+` LIMIT `+store.DollarN(len(w.Args)+1),
		append(w.Args, limit)...)
	if err != nil {
		return nil, wrapError("list events", err)
	}
	defer rows.Close()

	var events []*ferry.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, wrapError("list events", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError("list events", err)
	}
	rows.Close()

	if err := db.attachMessages(ctx, events); err != nil {
		return nil, err
	}
	return events, nil
}

// attachMessages sets Message on each event whose message is still stored.
func (db *DB) attachMessages(ctx context.Context, events []*ferry.Event) error {
	if len(events) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var ids []string
	for _, e := range events {
		if !seen[e.MessageID] {
			seen[e.MessageID] = true
			ids = append(ids, e.MessageID)
		}
	}

	rows, err := db.pool.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = ANY($1)`, ids)
	if err != nil {
		return wrapError("read event messages", err)
	}
	defer rows.Close()

	byID := make(map[string]*ferry.Message, len(ids))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return wrapError("read event messages", err)
		}
		byID[m.ID] = m
	}
	if err := rows.Err(); err != nil {
		return wrapError("read event messages", err)
	}
	for _, e := range events {
		e.Message = byID[e.MessageID]
	}
	return nil
}

func scanEvent(row pgx.Row) (*ferry.Event, error) {
	var e ferry.Event
	var state, header string
	var t, next int64
	if err := row.Scan(&e.ID, &e.MessageID, &state, &t, &e.URL, &e.Retried, &e.ResponseStatus, &header,
		&e.ResponseBody, &e.Error, &next); err != nil {
		return nil, err
	}
	var err error
	if e.ResponseHeader, err = store.UnmarshalHeader(header); err != nil {
		return nil, err
	}
	e.State = ferry.MessageState(state)
	e.Time = store.FromMillis(t)
	e.NextDeliveryTime = store.FromMillis(next)
	return &e, nil
}
