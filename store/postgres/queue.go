package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// queueColumns are read by scanQueue; the last is the queue's lag.
const queueColumns = `q.name, q.parallelism, q.paused, q.created_at, q.updated_at,
	(SELECT COUNT(*) FROM messages m
		WHERE m.state IN ('CREATED', 'RETRY', 'ACTIVE') AND m.queue_name != '' AND m.queue_name = q.name)`

func scanQueue(row pgx.Row) (*ferry.Queue, error) {
	var q ferry.Queue
	var created, updated int64
	if err := row.Scan(&q.Name, &q.Parallelism, &q.Paused, &created, &updated, &q.Lag); err != nil {
		return nil, err
	}
	q.CreatedAt, q.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return &q, nil
}

// QueueUpsert implements store.Store.
func (db *DB) QueueUpsert(ctx context.Context, params *store.QueueUpsertParams) (*ferry.Queue, error) {
	parallelism, paused := 1, false
	if params.Parallelism != nil {
		parallelism = *params.Parallelism
	}
	if params.Paused != nil {
		paused = *params.Paused
	}

	var q *ferry.Queue
	err := db.inTx(ctx, "upsert queue "+params.Name, func(tx pgx.Tx) error {
		// The generation changes with every upsert, because a larger
		// parallelism or a resume may let waiting messages start.
		if _, err := tx.Exec(ctx, `INSERT INTO queues AS q (name, parallelism, paused, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $4)
			ON CONFLICT (name) DO UPDATE SET
				parallelism = CASE WHEN $5 THEN excluded.parallelism ELSE q.parallelism END,
				paused = CASE WHEN $6 THEN excluded.paused ELSE q.paused END,
				updated_at = excluded.updated_at, gate_until = 0, generation = q.generation + 1`,
			params.Name, parallelism, paused, store.Millis(params.Now), params.Parallelism != nil,
			params.Paused != nil); err != nil {
			return err
		}
		var err error
		q, err = scanQueue(tx.QueryRow(ctx, `SELECT `+queueColumns+` FROM queues q WHERE q.name = $1`, params.Name))
		return err
	})
	return q, err
}

// QueueGet implements store.Store.
func (db *DB) QueueGet(ctx context.Context, name string) (*ferry.Queue, error) {
	q, err := scanQueue(db.pool.QueryRow(ctx, `SELECT `+queueColumns+` FROM queues q WHERE q.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, wrapError("get queue "+name, err)
	}
	return q, nil
}

// QueueList implements store.Store.
func (db *DB) QueueList(ctx context.Context) ([]*ferry.Queue, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+queueColumns+` FROM queues q ORDER BY q.name`)
	if err != nil {
		return nil, wrapError("list queues", err)
	}
	queues, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*ferry.Queue, error) { return scanQueue(row) })
	if err != nil {
		return nil, wrapError("list queues", err)
	}
	return queues, nil
}

// QueueDelete implements store.Store. The queue's row goes first, so a
// message enqueued meanwhile either is cancelled or creates the queue
// again.
func (db *DB) QueueDelete(ctx context.Context, name string, now time.Time) (bool, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM queues WHERE name = $1`, name)
	if err != nil {
		return false, wrapError("delete queue "+name, err)
	}
	if _, err := db.MessageCancel(ctx, &store.MessageCancelParams{
		Filter: &store.MessageFilter{QueueNames: []string{name}}, Now: now,
	}); err != nil {
		return true, fmt.Errorf("postgres: cancel messages of queue %s: %w", name, err)
	}
	return tag.RowsAffected() > 0, nil
}

// QueueSetPaused implements store.Store.
func (db *DB) QueueSetPaused(ctx context.Context, name string, paused bool, now time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE queues SET paused = $1, updated_at = $2, gate_until = 0, generation = generation + 1
		WHERE name = $3`, paused, store.Millis(now), name)
	if err != nil {
		return wrapError("pause queue "+name, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// URLGroupAddEndpoints implements store.Store. The group's row stays locked
// until the endpoints are written, so concurrent changes of one group
// apply one after the other.
func (db *DB) URLGroupAddEndpoints(ctx context.Context, params *store.URLGroupEndpointsParams) error {
	return db.inTx(ctx, "add endpoints to URL group "+params.Name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO url_groups (name, created_at, updated_at) VALUES ($1, $2, $2)
			ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`, params.Name, store.Millis(params.Now)); err != nil {
			return err
		}
		endpoints, err := readEndpoints(ctx, tx, params.Name)
		if err != nil {
			return err
		}
		return writeEndpoints(ctx, tx, params.Name, store.AddEndpoints(endpoints, params.Endpoints))
	})
}

// URLGroupRemoveEndpoints implements store.Store.
func (db *DB) URLGroupRemoveEndpoints(ctx context.Context, params *store.URLGroupEndpointsParams) error {
	var result error
	err := db.inTx(ctx, "remove endpoints from URL group "+params.Name, func(tx pgx.Tx) error {
		result = nil
		tag, err := tx.Exec(ctx, `UPDATE url_groups SET updated_at = $1 WHERE name = $2`, store.Millis(params.Now), params.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			result = store.ErrNotFound
			return nil
		}

		endpoints, err := readEndpoints(ctx, tx, params.Name)
		if err != nil {
			return err
		}
		left, err := store.RemoveEndpoints(params.Name, endpoints, params.Endpoints)
		if err != nil {
			result = err
			return nil
		}
		if len(left) == 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM url_groups WHERE name = $1`, params.Name); err != nil {
				return err
			}
		}
		return writeEndpoints(ctx, tx, params.Name, left)
	})
	if err != nil {
		return err
	}
	return result
}

// readEndpoints returns the endpoints of a group in order.
func readEndpoints(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, name string) ([]ferry.Endpoint, error) {
	rows, err := q.Query(ctx, `SELECT name, url FROM url_group_endpoints WHERE group_name = $1 ORDER BY position`, name)
	if err != nil {
		return nil, fmt.Errorf("read endpoints of URL group %s: %w", name, err)
	}
	endpoints, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ferry.Endpoint, error) {
		var e ferry.Endpoint
		err := row.Scan(&e.Name, &e.URL)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read endpoints of URL group %s: %w", name, err)
	}
	return endpoints, nil
}

// writeEndpoints replaces the endpoints of a group.
func writeEndpoints(ctx context.Context, tx pgx.Tx, name string, endpoints []ferry.Endpoint) error {
	if _, err := tx.Exec(ctx, `DELETE FROM url_group_endpoints WHERE group_name = $1`, name); err != nil {
		return fmt.Errorf("replace endpoints of URL group %s: %w", name, err)
	}
	for i, e := range endpoints {
		if _, err := tx.Exec(ctx, `INSERT INTO url_group_endpoints (group_name, position, name, url) VALUES ($1, $2, $3, $4)`,
			name, i, e.Name, e.URL); err != nil {
			return fmt.Errorf("store endpoint %s of URL group %s: %w", e.URL, name, err)
		}
	}
	return nil
}

// URLGroupGet implements store.Store.
func (db *DB) URLGroupGet(ctx context.Context, name string) (*ferry.URLGroup, error) {
	var g *ferry.URLGroup
	err := db.inTx(ctx, "get URL group "+name, func(tx pgx.Tx) error {
		g = &ferry.URLGroup{Name: name}
		var created, updated int64
		err := tx.QueryRow(ctx, `SELECT created_at, updated_at FROM url_groups WHERE name = $1`, name).Scan(&created, &updated)
		if err != nil {
			return err
		}
		g.CreatedAt, g.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
		g.Endpoints, err = readEndpoints(ctx, tx, name)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return g, nil
}

// URLGroupList implements store.Store.
func (db *DB) URLGroupList(ctx context.Context) ([]*ferry.URLGroup, error) {
	var groups []*ferry.URLGroup
	err := db.inTx(ctx, "list URL groups", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT name, created_at, updated_at FROM url_groups ORDER BY name`)
		if err != nil {
			return err
		}
		groups, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*ferry.URLGroup, error) {
			g := &ferry.URLGroup{}
			var created, updated int64
			err := row.Scan(&g.Name, &created, &updated)
			g.CreatedAt, g.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
			return g, err
		})
		if err != nil {
			return err
		}
		for _, g := range groups {
			if g.Endpoints, err = readEndpoints(ctx, tx, g.Name); err != nil {
				return err
			}
		}
		return nil
	})
	return groups, err
}

// URLGroupDelete implements store.Store.
func (db *DB) URLGroupDelete(ctx context.Context, name string) (bool, error) {
	var existed bool
	err := db.inTx(ctx, "delete URL group "+name, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM url_groups WHERE name = $1`, name)
		if err != nil {
			return err
		}
		existed = tag.RowsAffected() > 0
		_, err = tx.Exec(ctx, `DELETE FROM url_group_endpoints WHERE group_name = $1`, name)
		return err
	})
	return existed, err
}

// flowColumns are read by scanFlowControl.
const flowColumns = `key, parallelism, rate, period_ms, paused, pinned_parallelism, pinned_rate, created_at, updated_at`

func scanFlowControl(row pgx.Row) (*ferry.FlowControl, error) {
	var f ferry.FlowControl
	var periodMS, created, updated int64
	if err := row.Scan(&f.Key, &f.Parallelism, &f.Rate, &periodMS, &f.Paused, &f.PinnedParallelism, &f.PinnedRate,
		&created, &updated); err != nil {
		return nil, err
	}
	f.Period = time.Duration(periodMS) * time.Millisecond
	f.CreatedAt, f.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return &f, nil
}

// readFlowCounts fills in the counts of f at now.
func readFlowCounts(ctx context.Context, tx pgx.Tx, f *ferry.FlowControl, now time.Time) error {
	at := store.Millis(now)
	err := tx.QueryRow(ctx, `SELECT
			COUNT(*) FILTER (WHERE state != 'ACTIVE' OR due_at <= $2),
			COUNT(*) FILTER (WHERE state = 'ACTIVE' AND due_at > $2)
		FROM messages
		WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND flow_control_key != '' AND flow_control_key = $1`,
		f.Key, at).Scan(&f.WaitListSize, &f.InFlight)
	if err != nil {
		return fmt.Errorf("count messages of flow-control key %q: %w", f.Key, err)
	}

	var oldest *int64
	err = tx.QueryRow(ctx, `SELECT COUNT(*), MIN(started_at) FROM flow_control_starts
		WHERE key = $1 AND started_at > $2`, f.Key, at-f.Period.Milliseconds()).Scan(&f.RateCount, &oldest)
	if err != nil {
		return fmt.Errorf("count starts of flow-control key %q: %w", f.Key, err)
	}
	f.RateWindowStart = now
	if oldest != nil {
		f.RateWindowStart = store.FromMillis(*oldest)
	}
	return nil
}

// FlowControlGet implements store.Store.
func (db *DB) FlowControlGet(ctx context.Context, key string, now time.Time) (*ferry.FlowControl, error) {
	var f *ferry.FlowControl
	err := db.inTx(ctx, "get flow-control key "+key, func(tx pgx.Tx) error {
		var err error
		f, err = scanFlowControl(tx.QueryRow(ctx, `SELECT `+flowColumns+` FROM flow_controls WHERE key = $1`, key))
		if err != nil {
			return err
		}
		return readFlowCounts(ctx, tx, f, now)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return f, nil
}

// FlowControlList implements store.Store.
func (db *DB) FlowControlList(ctx context.Context, search string, now time.Time) ([]*ferry.FlowControl, error) {
	var list []*ferry.FlowControl
	err := db.inTx(ctx, "list flow-control keys", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+flowColumns+` FROM flow_controls WHERE strpos(key, $1) > 0 ORDER BY key`, search)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*ferry.FlowControl, error) { return scanFlowControl(row) })
		if err != nil {
			return err
		}
		for _, f := range list {
			if err := readFlowCounts(ctx, tx, f, now); err != nil {
				return err
			}
		}
		return nil
	})
	return list, err
}

// FlowControlUpdate implements store.Store.
func (db *DB) FlowControlUpdate(ctx context.Context, params *store.FlowControlUpdateParams) error {
	err := db.inTx(ctx, "update flow-control key "+params.Key, func(tx pgx.Tx) error {
		f, err := scanFlowControl(tx.QueryRow(ctx, `SELECT `+flowColumns+` FROM flow_controls WHERE key = $1 FOR UPDATE`,
			params.Key))
		if err != nil {
			return err
		}
		resetRate := store.ApplyFlowControlUpdate(f, params)
		if _, err := tx.Exec(ctx, `UPDATE flow_controls
			SET parallelism = $1, rate = $2, period_ms = $3, paused = $4, pinned_parallelism = $5, pinned_rate = $6,
				updated_at = $7, gate_until = 0, generation = generation + 1
			WHERE key = $8`, f.Parallelism, f.Rate, f.Period.Milliseconds(), f.Paused, f.PinnedParallelism, f.PinnedRate,
			store.Millis(params.Now), params.Key); err != nil {
			return err
		}
		if resetRate {
			if _, err := tx.Exec(ctx, `DELETE FROM flow_control_starts WHERE key = $1`, params.Key); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
