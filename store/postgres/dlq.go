package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

const dlqColumns = `d.id, d.created_at, d.response_status, d.response_header, d.response_body, d.error`

// DLQGet implements store.Store.
func (db *DB) DLQGet(ctx context.Context, id string) (*ferry.DLQEntry, error) {
	row := db.pool.QueryRow(ctx, `SELECT `+dlqColumns+`, `+prefixed("m.", messageColumns)+`
		FROM dlq d JOIN messages m ON m.id = d.message_id WHERE d.id = $1`, id)
	e, err := scanDLQEntry(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, wrapError("get dlq entry "+id, err)
	}
	return e, nil
}

// DLQList implements store.Store. Entries are ordered by id, which sorts
// by creation time for the ids the dispatcher generates.
func (db *DB) DLQList(ctx context.Context, params *store.DLQListParams) ([]*ferry.DLQEntry, error) {
	limit := params.Limit
	if limit <= 0 {
		limit = 100
	}
	w := dlqWhere(params.IDs, params.Filter)
	order := `d.id`
	if params.AfterID != "" {
		if params.NewestFirst {
			w.Add(`d.id < ?`, params.AfterID)
		} else {
			w.Add(`d.id > ?`, params.AfterID)
		}
	}
	if params.NewestFirst {
		order = `d.id DESC`
	}

	rows, err := db.pool.Query(ctx, `SELECT `+dlqColumns+`, `+prefixed("m.", messageColumns)+`
		FROM dlq d JOIN messages m ON m.id = d.message_id
		WHERE `+w.SQL()+` ORDER BY `+order+` LIMIT `+store.DollarN(len(w.Args)+1),
		append(w.Args, limit)...)
	if err != nil {
		return nil, wrapError("list dlq", err)
	}
	defer rows.Close()

	var entries []*ferry.DLQEntry
	for rows.Next() {
		e, err := scanDLQEntry(rows)
		if err != nil {
			return nil, wrapError("list dlq", err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError("list dlq", err)
	}
	return entries, nil
}

func scanDLQEntry(row pgx.Row) (*ferry.DLQEntry, error) {
	var e ferry.DLQEntry
	var header string
	var createdAt int64
	m := &messageScan{}
	dest := append([]any{&e.ID, &createdAt, &e.ResponseStatus, &header, &e.ResponseBody, &e.Error}, m.dest()...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	var err error
	if e.ResponseHeader, err = store.UnmarshalHeader(header); err != nil {
		return nil, err
	}
	if e.Message, err = m.message(); err != nil {
		return nil, err
	}
	e.CreatedAt = store.FromMillis(createdAt)
	return &e, nil
}
