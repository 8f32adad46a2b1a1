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

// queueColumns are read by scanQueue; the last is the queue's lag.
const queueColumns = `q.name, q.parallelism, q.paused, q.created_at, q.updated_at,
	(SELECT COUNT(*) FROM messages m
		WHERE m.state IN ('CREATED', 'RETRY', 'ACTIVE') AND m.queue_name != '' AND m.queue_name = q.name)`

func scanQueue(s scanner) (*ferry.Queue, error) {
	var q ferry.Queue
	var paused int
	var created, updated int64
	if err := s.Scan(&q.Name, &q.Parallelism, &paused, &created, &updated, &q.Lag); err != nil {
		return nil, err
	}
	q.Paused = paused != 0
	q.CreatedAt, q.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return &q, nil
}

// QueueUpsert implements store.Store.
func (db *DB) QueueUpsert(ctx context.Context, params *store.QueueUpsertParams) (*ferry.Queue, error) {
	var q *ferry.Queue
	err := db.write(ctx, func(tx *sql.Tx) error {
		now := store.Millis(params.Now)
		parallelism, paused := 1, false
		if params.Parallelism != nil {
			parallelism = *params.Parallelism
		}
		if params.Paused != nil {
			paused = *params.Paused
		}
		// The generation changes with every upsert, because a larger
		// parallelism or a resume may let waiting messages start.
		if _, err := tx.Exec(`INSERT INTO queues (name, parallelism, paused, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
			ON CONFLICT (name) DO UPDATE SET
				parallelism = CASE WHEN ?5 THEN excluded.parallelism ELSE parallelism END,
				paused = CASE WHEN ?6 THEN excluded.paused ELSE paused END,
				updated_at = excluded.updated_at, gate_until = 0, generation = generation + 1`,
			params.Name, parallelism, paused, now, params.Parallelism != nil, params.Paused != nil); err != nil {
			return fmt.Errorf("upsert queue %s: %w", params.Name, err)
		}
		var err error
		q, err = scanQueue(tx.QueryRow(`SELECT `+queueColumns+` FROM queues q WHERE q.name = ?`, params.Name))
		if err != nil {
			return fmt.Errorf("read queue %s: %w", params.Name, err)
		}
		return nil
	})
	return q, err
}

// QueueGet implements store.Store.
func (db *DB) QueueGet(ctx context.Context, name string) (*ferry.Queue, error) {
	q, err := scanQueue(db.reader.QueryRowContext(ctx, `SELECT `+queueColumns+` FROM queues q WHERE q.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get queue %s: %w", name, err)
	}
	return q, nil
}

// QueueList implements store.Store.
func (db *DB) QueueList(ctx context.Context) ([]*ferry.Queue, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+queueColumns+` FROM queues q ORDER BY q.name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list queues: %w", err)
	}
	defer rows.Close()
	var queues []*ferry.Queue
	for rows.Next() {
		q, err := scanQueue(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list queues: %w", err)
		}
		queues = append(queues, q)
	}
	return queues, rows.Err()
}

// QueueDelete implements store.Store. The queue's row goes first, so a
// message enqueued meanwhile either is cancelled or creates the queue
// again.
func (db *DB) QueueDelete(ctx context.Context, name string, now time.Time) (bool, error) {
	var existed bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM queues WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete queue %s: %w", name, err)
		}
		n, err := res.RowsAffected()
		existed = n > 0
		return err
	})
	if err != nil {
		return false, err
	}
	if _, err := db.MessageCancel(ctx, &store.MessageCancelParams{
		Filter: &store.MessageFilter{QueueNames: []string{name}}, Now: now,
	}); err != nil {
		return existed, fmt.Errorf("sqlite: cancel messages of queue %s: %w", name, err)
	}
	return existed, nil
}

// QueueSetPaused implements store.Store.
func (db *DB) QueueSetPaused(ctx context.Context, name string, paused bool, now time.Time) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE queues SET paused = ?, updated_at = ?, gate_until = 0, generation = generation + 1
			WHERE name = ?`, paused, store.Millis(now), name)
		if err != nil {
			return fmt.Errorf("pause queue %s: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// URLGroupAddEndpoints implements store.Store.
func (db *DB) URLGroupAddEndpoints(ctx context.Context, params *store.URLGroupEndpointsParams) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		now := store.Millis(params.Now)
		if _, err := tx.Exec(`INSERT INTO url_groups (name, created_at, updated_at) VALUES (?1, ?2, ?2)
			ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`, params.Name, now); err != nil {
			return fmt.Errorf("upsert URL group %s: %w", params.Name, err)
		}
		endpoints, err := readEndpoints(tx, params.Name)
		if err != nil {
			return err
		}
		return writeEndpoints(tx, params.Name, store.AddEndpoints(endpoints, params.Endpoints))
	})
}

// URLGroupRemoveEndpoints implements store.Store.
func (db *DB) URLGroupRemoveEndpoints(ctx context.Context, params *store.URLGroupEndpointsParams) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE url_groups SET updated_at = ? WHERE name = ?`, store.Millis(params.Now), params.Name)
		if err != nil {
			return fmt.Errorf("update URL group %s: %w", params.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}

		endpoints, err := readEndpoints(tx, params.Name)
		if err != nil {
			return err
		}
		left, err := store.RemoveEndpoints(params.Name, endpoints, params.Endpoints)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			if _, err := tx.Exec(`DELETE FROM url_groups WHERE name = ?`, params.Name); err != nil {
				return fmt.Errorf("delete URL group %s: %w", params.Name, err)
			}
		}
		return writeEndpoints(tx, params.Name, left)
	})
}

// readEndpoints returns the endpoints of a group in order.
func readEndpoints(q interface {
	Query(query string, args ...any) (*sql.Rows, error)
}, name string) ([]ferry.Endpoint, error) {
	rows, err := q.Query(`SELECT name, url FROM url_group_endpoints WHERE group_name = ? ORDER BY position`, name)
	if err != nil {
		return nil, fmt.Errorf("read endpoints of URL group %s: %w", name, err)
	}
	defer rows.Close()
	var endpoints []ferry.Endpoint
	for rows.Next() {
		var e ferry.Endpoint
		if err := rows.Scan(&e.Name, &e.URL); err != nil {
			return nil, fmt.Errorf("read endpoints of URL group %s: %w", name, err)
		}
		endpoints = append(endpoints, e)
	}
	return endpoints, rows.Err()
}

// writeEndpoints replaces the endpoints of a group.
func writeEndpoints(tx *sql.Tx, name string, endpoints []ferry.Endpoint) error {
	if _, err := tx.Exec(`DELETE FROM url_group_endpoints WHERE group_name = ?`, name); err != nil {
		return fmt.Errorf("replace endpoints of URL group %s: %w", name, err)
	}
	for i, e := range endpoints {
		if _, err := tx.Exec(`INSERT INTO url_group_endpoints (group_name, position, name, url) VALUES (?, ?, ?, ?)`,
			name, i, e.Name, e.URL); err != nil {
			return fmt.Errorf("store endpoint %s of URL group %s: %w", e.URL, name, err)
		}
	}
	return nil
}

// URLGroupGet implements store.Store.
func (db *DB) URLGroupGet(ctx context.Context, name string) (*ferry.URLGroup, error) {
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get URL group %s: %w", name, err)
	}
	defer tx.Rollback()

	g := &ferry.URLGroup{Name: name}
	var created, updated int64
	err = tx.QueryRow(`SELECT created_at, updated_at FROM url_groups WHERE name = ?`, name).Scan(&created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get URL group %s: %w", name, err)
	}
	g.CreatedAt, g.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	if g.Endpoints, err = readEndpoints(tx, name); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return g, nil
}

// URLGroupList implements store.Store.
func (db *DB) URLGroupList(ctx context.Context) ([]*ferry.URLGroup, error) {
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list URL groups: %w", err)
	}
	defer tx.Rollback()

	rows, err := tx.Query(`SELECT name, created_at, updated_at FROM url_groups ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list URL groups: %w", err)
	}
	var groups []*ferry.URLGroup
	for rows.Next() {
		g := &ferry.URLGroup{}
		var created, updated int64
		if err := rows.Scan(&g.Name, &created, &updated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: list URL groups: %w", err)
		}
		g.CreatedAt, g.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
		groups = append(groups, g)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: list URL groups: %w", err)
	}
	for _, g := range groups {
		if g.Endpoints, err = readEndpoints(tx, g.Name); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	return groups, nil
}

// URLGroupDelete implements store.Store.
func (db *DB) URLGroupDelete(ctx context.Context, name string) (bool, error) {
	var existed bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM url_groups WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete URL group %s: %w", name, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		existed = n > 0
		_, err = tx.Exec(`DELETE FROM url_group_endpoints WHERE group_name = ?`, name)
		return err
	})
	return existed, err
}

// flowColumns are read by scanFlowControl.
const flowColumns = `key, parallelism, rate, period_ms, paused, pinned_parallelism, pinned_rate, created_at, updated_at`

func scanFlowControl(s scanner) (*ferry.FlowControl, error) {
	var f ferry.FlowControl
	var periodMS, created, updated int64
	var paused, pinnedParallelism, pinnedRate int
	if err := s.Scan(&f.Key, &f.Parallelism, &f.Rate, &periodMS, &paused, &pinnedParallelism, &pinnedRate,
		&created, &updated); err != nil {
		return nil, err
	}
	f.Period = time.Duration(periodMS) * time.Millisecond
	f.Paused, f.PinnedParallelism, f.PinnedRate = paused != 0, pinnedParallelism != 0, pinnedRate != 0
	f.CreatedAt, f.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return &f, nil
}

// readFlowCounts fills in the counts of f at now.
func readFlowCounts(ctx context.Context, tx *sql.Tx, f *ferry.FlowControl, now time.Time) error {
	at := store.Millis(now)
	err := tx.QueryRowContext(ctx, `SELECT
			COALESCE(SUM(state != 'ACTIVE' OR due_at <= ?2), 0), COALESCE(SUM(state = 'ACTIVE' AND due_at > ?2), 0)
		FROM messages
		WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND flow_control_key != '' AND flow_control_key = ?1`,
		f.Key, at).Scan(&f.WaitListSize, &f.InFlight)
	if err != nil {
		return fmt.Errorf("count messages of flow-control key %q: %w", f.Key, err)
	}

	var oldest sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(started_at) FROM flow_control_starts
		WHERE key = ? AND started_at > ?`, f.Key, at-f.Period.Milliseconds()).Scan(&f.RateCount, &oldest)
	if err != nil {
		return fmt.Errorf("count starts of flow-control key %q: %w", f.Key, err)
	}
	f.RateWindowStart = now
	if oldest.Valid {
		f.RateWindowStart = store.FromMillis(oldest.Int64)
	}
	return nil
}

// FlowControlGet implements store.Store.
func (db *DB) FlowControlGet(ctx context.Context, key string, now time.Time) (*ferry.FlowControl, error) {
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get flow-control key %q: %w", key, err)
	}
	defer tx.Rollback()

	f, err := scanFlowControl(tx.QueryRowContext(ctx, `SELECT `+flowColumns+` FROM flow_controls WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get flow-control key %q: %w", key, err)
	}
	if err := readFlowCounts(ctx, tx, f, now); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return f, nil
}

// FlowControlList implements store.Store.
func (db *DB) FlowControlList(ctx context.Context, search string, now time.Time) ([]*ferry.FlowControl, error) {
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list flow-control keys: %w", err)
	}
	defer tx.Rollback()

	rows, err := tx.QueryContext(ctx, `SELECT `+flowColumns+` FROM flow_controls WHERE instr(key, ?) > 0 ORDER BY key`, search)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list flow-control keys: %w", err)
	}
	var list []*ferry.FlowControl
	for rows.Next() {
		f, err := scanFlowControl(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: list flow-control keys: %w", err)
		}
		list = append(list, f)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: list flow-control keys: %w", err)
	}
	for _, f := range list {
		if err := readFlowCounts(ctx, tx, f, now); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	return list, nil
}

// FlowControlUpdate implements store.Store.
func (db *DB) FlowControlUpdate(ctx context.Context, params *store.FlowControlUpdateParams) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		f, err := scanFlowControl(tx.QueryRow(`SELECT `+flowColumns+` FROM flow_controls WHERE key = ?`, params.Key))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("read flow-control key %q: %w", params.Key, err)
		}
		resetRate := store.ApplyFlowControlUpdate(f, params)
		if _, err := tx.Exec(`UPDATE flow_controls
			SET parallelism = ?, rate = ?, period_ms = ?, paused = ?, pinned_parallelism = ?, pinned_rate = ?,
				updated_at = ?, gate_until = 0, generation = generation + 1
			WHERE key = ?`, f.Parallelism, f.Rate, f.Period.Milliseconds(), f.Paused, f.PinnedParallelism, f.PinnedRate,
			store.Millis(params.Now), params.Key); err != nil {
			return fmt.Errorf("update flow-control key %q: %w", params.Key, err)
		}
		if resetRate {
			if _, err := tx.Exec(`DELETE FROM flow_control_starts WHERE key = ?`, params.Key); err != nil {
				return fmt.Errorf("reset rate of flow-control key %q: %w", params.Key, err)
			}
		}
		return nil
	})
}
