package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// dueWhere is the WHERE clause of the messages_due index, repeated so that
// the planner can prove that a query matches the index.
const dueWhere = `state IN ('CREATED', 'RETRY', 'ACTIVE') AND (queue_name = '' OR attempts > 0)`

// First keys of the advisory locks that serialize claims per queue and
// per flow-control key: the ASCII bytes of "queu" and "flow". The second
// key is a hash of the name; two names with one hash only share a lock.
const (
	queueLockClass = 0x71756575
	flowLockClass  = 0x666c6f77
)

// MessageClaim implements store.Store.
//
// Queue messages that never started are claimed in queue order while
// their queue has a free slot, and the other due messages in due order.
// Both pass the limits of their flow-control key. The claim counts the
// messages in flight of a queue or key only while it holds that group's
// transaction-level advisory lock. Claims on other nodes skip a group
// whose lock is taken, so two claims never fill the same free slot. The
// chosen rows are then locked with FOR UPDATE SKIP LOCKED and leased only
// when their attempt count is still the one the plan read.
func (db *DB) MessageClaim(ctx context.Context, params *store.MessageClaimParams) ([]*ferry.Message, error) {
	if params.Limit <= 0 {
		return nil, nil
	}
	now := store.Millis(params.Now)

	var claimed []*ferry.Message
	err := db.inTx(ctx, "claim messages", func(tx pgx.Tx) error {
		claimed = claimed[:0]
		plan, err := planClaim(ctx, tx, params)
		if err != nil || len(plan.Chosen) == 0 {
			return err
		}

		ids := make([]string, len(plan.Chosen))
		attempts := make([]int32, len(plan.Chosen))
		for i, c := range plan.Chosen {
			ids[i], attempts[i] = c.ID, int32(c.Attempts)
		}
		rows, err := tx.Query(ctx, `WITH due AS (
				SELECT m.id, m.due_at FROM messages m
				JOIN unnest($5::text[], $6::int[]) AS chosen (id, attempts) ON chosen.id = m.id
				WHERE m.state IN ('CREATED', 'RETRY', 'ACTIVE') AND m.due_at <= $2 AND m.attempts = chosen.attempts
				FOR UPDATE OF m SKIP LOCKED
			), leased AS (
				UPDATE messages m
				SET state = 'ACTIVE', attempts = m.attempts + 1, lease_owner = $1, updated_at = $2,
					due_at = $2 + (CASE WHEN m.timeout_ms > 0 THEN m.timeout_ms ELSE $3 END) + $4
				FROM due
				WHERE m.id = due.id
				RETURNING due.due_at AS previous_due_at, `+prefixed("m.", messageColumns)+`
			), recorded AS (
				INSERT INTO events (message_id, state, time, url, retried)
				SELECT id, 'ACTIVE', $2, url, retried FROM leased
				ORDER BY previous_due_at, id
			)
			SELECT `+messageColumns+` FROM leased ORDER BY previous_due_at, id`,
			params.Owner, now, params.DefaultTimeout.Milliseconds(), params.LeaseMargin.Milliseconds(), ids, attempts)
		if err != nil {
			return err
		}
		defer rows.Close()

		var startKeys []string
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				return err
			}
			claimed = append(claimed, m)
			if g := plan.Flow(m.FlowControlKey); g != nil && g.Rate > 0 {
				startKeys = append(startKeys, m.FlowControlKey)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()

		if len(startKeys) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO flow_control_starts (key, started_at)
				SELECT key, $2 FROM unnest($1::text[]) AS started (key)`, startKeys, now); err != nil {
				return fmt.Errorf("record starts: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// planClaim chooses up to params.Limit messages to claim.
func planClaim(ctx context.Context, tx pgx.Tx, params *store.MessageClaimParams) (*store.ClaimPlan, error) {
	now := store.Millis(params.Now)
	plan := store.NewClaimPlan(now, params.Limit, &claimLoader{ctx: ctx, tx: tx, now: now})
	if err := addQueueHeads(ctx, tx, plan, now); err != nil {
		return nil, err
	}

	afterDue, afterID := int64(math.MinInt64), ""
	for !plan.Full() {
		page, err := dueCandidates(ctx, tx, now, afterDue, afterID)
		if err != nil {
			return nil, err
		}
		for _, c := range page {
			if err := plan.ConsiderScanned(c); err != nil {
				return nil, err
			}
		}
		if len(page) < store.ClaimPageSize {
			break
		}
		last := page[len(page)-1]
		afterDue, afterID = last.DueAt, last.ID
	}
	return plan, plan.Finish()
}

// dueCandidates returns the next page of due messages after (afterDue,
// afterID) in due order, leaving out queue messages that never started,
// messages of paused queues, and messages of flow-control keys that are
// paused or noted as full.
func dueCandidates(ctx context.Context, tx pgx.Tx, now, afterDue int64, afterID string) ([]store.ClaimCandidate, error) {
	rows, err := tx.Query(ctx, `SELECT id, queue_name, flow_control_key, attempts, due_at FROM messages m
		WHERE `+dueWhere+` AND due_at <= $1 AND (due_at, id) > ($2, $3)
			AND (m.queue_name = '' OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = m.queue_name AND q.paused))
			AND (m.flow_control_key = '' OR NOT EXISTS (SELECT 1 FROM flow_controls f
				WHERE f.key = m.flow_control_key AND (f.paused OR f.gate_until > $1)))
		ORDER BY due_at, id
		LIMIT $4`, now, afterDue, afterID, store.ClaimPageSize)
	if err != nil {
		return nil, fmt.Errorf("select due messages: %w", err)
	}
	return collectCandidates(rows)
}

func collectCandidates(rows pgx.Rows) ([]store.ClaimCandidate, error) {
	defer rows.Close()
	var out []store.ClaimCandidate
	for rows.Next() {
		var c store.ClaimCandidate
		if err := rows.Scan(&c.ID, &c.QueueName, &c.FlowControlKey, &c.Attempts, &c.DueAt); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// queueSlot is a queue as the claim reads it.
type queueSlot struct {
	name        string
	parallelism int
	generation  int64
}

// addQueueHeads adds to plan, for each queue that is not paused, not noted
// as full and not locked by another claim, the waiting messages that its
// free slots allow.
func addQueueHeads(ctx context.Context, tx pgx.Tx, plan *store.ClaimPlan, now int64) error {
	rows, err := tx.Query(ctx, `SELECT name, parallelism, generation FROM queues
		WHERE NOT paused AND gate_until <= $1 ORDER BY name`, now)
	if err != nil {
		return fmt.Errorf("select queues: %w", err)
	}
	queues, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (queueSlot, error) {
		var q queueSlot
		err := row.Scan(&q.name, &q.parallelism, &q.generation)
		return q, err
	})
	if err != nil {
		return fmt.Errorf("select queues: %w", err)
	}

	for _, q := range queues {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext($2))`, queueLockClass, q.name).
			Scan(&locked); err != nil {
			return fmt.Errorf("lock queue %s: %w", q.name, err)
		}
		if !locked {
			continue
		}

		inFlight, err := queueInFlight(ctx, tx, q.name)
		if err != nil {
			return err
		}
		free := q.parallelism - inFlight
		if free <= 0 {
			if _, err := tx.Exec(ctx, `UPDATE queues SET gate_until = $1 WHERE name = $2 AND generation = $3`,
				now+store.GateRecheck.Milliseconds(), q.name, q.generation); err != nil {
				return fmt.Errorf("note queue %s as full: %w", q.name, err)
			}
			continue
		}

		rows, err := tx.Query(ctx, `SELECT id, queue_name, flow_control_key, attempts, due_at FROM messages
			WHERE state = 'CREATED' AND attempts = 0 AND queue_name != '' AND queue_name = $1
			ORDER BY created_at, id
			LIMIT $2`, q.name, free)
		if err != nil {
			return fmt.Errorf("select waiting messages of queue %s: %w", q.name, err)
		}
		waiting, err := collectCandidates(rows)
		if err != nil {
			return fmt.Errorf("select waiting messages of queue %s: %w", q.name, err)
		}
		var heads []store.ClaimCandidate
		for _, c := range waiting {
			if c.DueAt > now {
				break
			}
			heads = append(heads, c)
		}
		plan.AddHeads(heads)
	}
	return nil
}

// queueInFlight returns the number of messages of a queue that started and
// are not finished, counting a finished message while a callback message
// reporting on it is not finished.
func queueInFlight(ctx context.Context, tx pgx.Tx, name string) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM messages
			WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND queue_name != '' AND queue_name = $1 AND attempts > 0)
		+ (SELECT COUNT(DISTINCT c.callback_of) FROM messages c JOIN messages s ON s.id = c.callback_of
			WHERE c.state IN ('CREATED', 'RETRY', 'ACTIVE') AND c.callback_of != ''
				AND s.queue_name = $1 AND s.state IN ('DELIVERED', 'FAILED', 'CANCELED'))`, name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count messages in flight of queue %s: %w", name, err)
	}
	return n, nil
}

// claimLoader reads flow-control keys for a claim in tx.
type claimLoader struct {
	ctx context.Context
	tx  pgx.Tx
	now int64
}

// LoadFlow implements store.ClaimLoader. It also deletes the key's starts
// that have left the rate window.
func (l *claimLoader) LoadFlow(key string) (*store.FlowGate, error) {
	ctx, tx := l.ctx, l.tx
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext($2))`, flowLockClass, key).
		Scan(&locked); err != nil {
		return nil, fmt.Errorf("lock flow-control key %q: %w", key, err)
	}
	if !locked {
		return nil, nil
	}

	g := &store.FlowGate{Key: key}
	err := tx.QueryRow(ctx, `SELECT parallelism, rate, period_ms, paused, generation FROM flow_controls WHERE key = $1`, key).
		Scan(&g.Parallelism, &g.Rate, &g.PeriodMS, &g.Paused, &g.Generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, nil
	} else if err != nil {
		return nil, fmt.Errorf("read flow-control key %q: %w", key, err)
	}

	var earliest *int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*), MIN(due_at) FROM messages
		WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND flow_control_key != ''
			AND flow_control_key = $1 AND state = 'ACTIVE' AND due_at > $2`, key, l.now).
		Scan(&g.InFlight, &earliest); err != nil {
		return nil, fmt.Errorf("count attempts in flight of flow-control key %q: %w", key, err)
	}
	if earliest != nil {
		g.EarliestLease = *earliest
	}

	if g.Rate > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM flow_control_starts WHERE key = $1 AND started_at <= $2`,
			key, l.now-g.PeriodMS); err != nil {
			return nil, fmt.Errorf("delete old starts of flow-control key %q: %w", key, err)
		}
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM flow_control_starts WHERE key = $1`, key).
			Scan(&g.Starts); err != nil {
			return nil, fmt.Errorf("count starts of flow-control key %q: %w", key, err)
		}
		g.NthStart = func(n int) (int64, error) {
			var at int64
			err := tx.QueryRow(ctx, `SELECT started_at FROM flow_control_starts WHERE key = $1
				ORDER BY started_at LIMIT 1 OFFSET $2`, key, n).Scan(&at)
			if err != nil {
				return 0, fmt.Errorf("read start %d of flow-control key %q: %w", n, key, err)
			}
			return at, nil
		}
	}
	return g, nil
}

// SetFlowGate implements store.ClaimLoader.
func (l *claimLoader) SetFlowGate(key string, generation, until int64) error {
	if _, err := l.tx.Exec(l.ctx, `UPDATE flow_controls SET gate_until = $1 WHERE key = $2 AND generation = $3`,
		until, key, generation); err != nil {
		return fmt.Errorf("note flow-control key %q as full: %w", key, err)
	}
	return nil
}

// MessageNextDueAt implements store.Store. A message that waits for its
// queue or flow-control key counts from the time the claim noted for that
// group. One that waits for a paused queue or key does not count. So the
// dispatcher sleeps instead of claiming again at once.
func (db *DB) MessageNextDueAt(ctx context.Context) (time.Time, bool, error) {
	var due *int64
	err := db.pool.QueryRow(ctx, `SELECT MIN(t) FROM (
		SELECT (SELECT due_at FROM messages m
			WHERE `+dueWhere+`
				AND (m.queue_name = '' OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = m.queue_name AND q.paused))
				AND (m.flow_control_key = '' OR NOT EXISTS (SELECT 1 FROM flow_controls f
					WHERE f.key = m.flow_control_key AND (f.paused OR f.gate_until > m.due_at)))
			ORDER BY due_at LIMIT 1) AS t
		UNION ALL
		SELECT MIN(f.gate_until) FROM flow_controls f
			WHERE NOT f.paused AND f.gate_until > 0 AND EXISTS (SELECT 1 FROM messages m
				WHERE m.state IN ('CREATED', 'RETRY', 'ACTIVE') AND m.flow_control_key != ''
					AND m.flow_control_key = f.key AND (m.queue_name = '' OR m.attempts > 0) AND m.due_at < f.gate_until)
		UNION ALL
		SELECT MIN(GREATEST(h.due_at, q.gate_until, COALESCE(f.gate_until, 0))) FROM queues q
			JOIN messages h ON h.id = (SELECT id FROM messages
				WHERE state = 'CREATED' AND attempts = 0 AND queue_name != '' AND queue_name = q.name
				ORDER BY created_at, id LIMIT 1)
			LEFT JOIN flow_controls f ON f.key = h.flow_control_key
			WHERE NOT q.paused AND NOT COALESCE(f.paused, FALSE)
	) AS next`).Scan(&due)
	if err != nil {
		return time.Time{}, false, wrapError("next due time", err)
	}
	if due == nil {
		return time.Time{}, false, nil
	}
	return store.FromMillis(*due), true, nil
}

// MessageInFlight implements store.Store.
func (db *DB) MessageInFlight(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT COUNT(*) FROM messages
		WHERE `+dueWhere+` AND state = 'ACTIVE' AND due_at > $1`, store.Millis(now)).Scan(&n)
	if err != nil {
		return 0, wrapError("count attempts in flight", err)
	}
	return n, nil
}

// ensureGroups creates the queue and the flow-control key of a new message
// when they do not exist, and applies the message's flow-control limits
// to its key unless they are pinned. A change of limits wakes the key.
func ensureGroups(ctx context.Context, tx pgx.Tx, m *ferry.Message, now time.Time) error {
	at := store.Millis(now)
	if m.QueueName != "" {
		if err := ensureQueue(ctx, tx, m.QueueName, at); err != nil {
			return err
		}
	}
	if m.FlowControlKey == "" {
		return nil
	}

	period := m.FlowControlPeriod
	if period <= 0 {
		period = store.FlowControlPeriodDefault
	}
	_, err := tx.Exec(ctx, `INSERT INTO flow_controls AS f (key, parallelism, rate, period_ms, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $5)
		ON CONFLICT (key) DO UPDATE SET
			parallelism = CASE WHEN f.pinned_parallelism THEN f.parallelism ELSE excluded.parallelism END,
			rate = CASE WHEN f.pinned_rate THEN f.rate ELSE excluded.rate END,
			period_ms = CASE WHEN f.pinned_rate THEN f.period_ms ELSE excluded.period_ms END,
			updated_at = excluded.updated_at, gate_until = 0, generation = f.generation + 1
		WHERE (NOT f.pinned_parallelism AND f.parallelism != excluded.parallelism)
			OR (NOT f.pinned_rate AND (f.rate != excluded.rate OR f.period_ms != excluded.period_ms))`,
		m.FlowControlKey, m.FlowControlParallelism, m.FlowControlRate, period.Milliseconds(), at)
	if err != nil {
		return fmt.Errorf("update flow-control key %q: %w", m.FlowControlKey, err)
	}
	return nil
}

// ensureQueue creates a queue when it does not exist and keeps its row
// until tx ends. The FOR KEY SHARE lock makes a concurrent QueueDelete wait
// for tx, so that its cancel includes the new message. Other enqueues and
// claims do not wait for it. When a delete removed the row in between, the
// second round creates it again.
func ensureQueue(ctx context.Context, tx pgx.Tx, name string, at int64) error {
	for range 2 {
		if _, err := tx.Exec(ctx, `INSERT INTO queues (name, parallelism, created_at, updated_at) VALUES ($1, 1, $2, $2)
			ON CONFLICT (name) DO NOTHING`, name, at); err != nil {
			return fmt.Errorf("create queue %s: %w", name, err)
		}
		var exists int
		err := tx.QueryRow(ctx, `SELECT 1 FROM queues WHERE name = $1 FOR KEY SHARE`, name).Scan(&exists)
		if err == nil {
			return nil
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("lock queue %s: %w", name, err)
		}
	}
	return fmt.Errorf("create queue %s: it was deleted twice while the message was stored", name)
}

// wakeGroups makes the next claim look again at the groups whose limits
// m's new state may have freed: its flow-control key after any attempt,
// and its queue, or the queue of the message it reports on, once it is
// finished. Like claims, it locks the queue's row before the key's, so
// that the two do not wait for each other in a cycle.
func wakeGroups(ctx context.Context, tx pgx.Tx, m *ferry.Message) error {
	if m.State.Terminal() {
		queue := m.QueueName
		if m.CallbackOf != "" {
			err := tx.QueryRow(ctx, `SELECT queue_name FROM messages WHERE id = $1`, m.CallbackOf).Scan(&queue)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("read source of callback message %s: %w", m.ID, err)
			}
		}
		if queue != "" {
			if _, err := tx.Exec(ctx, `UPDATE queues SET gate_until = 0, generation = generation + 1 WHERE name = $1`,
				queue); err != nil {
				return fmt.Errorf("wake queue %s: %w", queue, err)
			}
		}
	}
	if m.FlowControlKey != "" {
		if _, err := tx.Exec(ctx, `UPDATE flow_controls SET gate_until = 0, generation = generation + 1 WHERE key = $1`,
			m.FlowControlKey); err != nil {
			return fmt.Errorf("wake flow-control key %q: %w", m.FlowControlKey, err)
		}
	}
	return nil
}

// wakeAllGroups makes the next claim look again at every queue, and at
// every flow-control key noted as full. A cancel uses it, because it may
// free slots of many groups at once. Rows are locked in name order.
//
// NOTE: a key that a concurrent claim notes as full after this update
// read it is skipped until its note expires, at most store.GateRecheck.
func wakeAllGroups(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `UPDATE queues SET gate_until = 0, generation = generation + 1
		WHERE name IN (SELECT name FROM queues ORDER BY name FOR UPDATE)`); err != nil {
		return fmt.Errorf("wake queues: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE flow_controls SET gate_until = 0, generation = generation + 1
		WHERE key IN (SELECT key FROM flow_controls WHERE gate_until > 0 ORDER BY key FOR UPDATE)`); err != nil {
		return fmt.Errorf("wake flow-control keys: %w", err)
	}
	return nil
}

// MessageInsertAll implements store.Store.
func (db *DB) MessageInsertAll(ctx context.Context, params []*store.MessageInsertParams) ([]*store.MessageInsertResult, error) {
	results := make([]*store.MessageInsertResult, len(params))
	err := db.inTx(ctx, "insert messages", func(tx pgx.Tx) error {
		for i, p := range params {
			res, err := insertDeduplicated(ctx, tx, p, store.Millis(p.Now))
			if err != nil {
				return err
			}
			results[i] = &res
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, res := range results {
		if !res.Deduplicated {
			db.wakeIfDue(params[i].Now, params[i].Message.NotBefore)
		}
	}
	return results, nil
}
