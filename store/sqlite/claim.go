package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// dueWhere is the WHERE clause of the messages_due index. SQLite uses a
// partial index only for queries that repeat its terms.
const dueWhere = `state IN ('CREATED', 'RETRY', 'ACTIVE') AND (queue_name = '' OR attempts > 0)`

// MessageClaim implements store.Store. Queue messages that never started
// are claimed in queue order while their queue has a free slot, and the
// other due messages in due order. Both pass the limits of their flow-control
// key. The write loop runs one write at a time, so the counts that the
// limits read cannot change during the claim.
func (db *DB) MessageClaim(ctx context.Context, params *store.MessageClaimParams) ([]*ferry.Message, error) {
	if params.Limit <= 0 {
		return nil, nil
	}
	var claimed []*ferry.Message
	now := store.Millis(params.Now)

	err := db.write(ctx, func(tx *sql.Tx) error {
		claimed = claimed[:0]
		plan, err := planClaim(tx, params)
		if err != nil || len(plan.Chosen) == 0 {
			return err
		}

		args := []any{params.Owner, now, params.DefaultTimeout.Milliseconds(), params.LeaseMargin.Milliseconds()}
		for _, c := range plan.Chosen {
			args = append(args, c.ID)
		}
		rows, err := tx.Query(`UPDATE messages
			SET state = 'ACTIVE', attempts = attempts + 1, lease_owner = ?1, updated_at = ?2,
				due_at = ?2 + (CASE WHEN timeout_ms > 0 THEN timeout_ms ELSE ?3 END) + ?4
			WHERE id IN (`+placeholders(len(plan.Chosen))+`)
			RETURNING `+messageColumns, args...)
		if err != nil {
			return fmt.Errorf("claim messages: %w", err)
		}
		byID := make(map[string]*ferry.Message, len(plan.Chosen))
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return err
			}
			byID[m.ID] = m
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("claim messages: %w", err)
		}

		// RETURNING yields rows in no defined order, so the claim returns
		// them in the order the plan chose them.
		for _, c := range plan.Chosen {
			m := byID[c.ID]
			if m == nil {
				return fmt.Errorf("claim messages: message %s was not updated", c.ID)
			}
			claimed = append(claimed, m)
			if err := insertEvent(tx, &ferry.Event{MessageID: m.ID, State: ferry.MessageStateActive, Time: params.Now,
				URL: m.URL, Retried: m.Retried}); err != nil {
				return err
			}
			if g := plan.Flow(m.FlowControlKey); g != nil && g.Rate > 0 {
				if _, err := tx.Exec(`INSERT INTO flow_control_starts (key, started_at) VALUES (?, ?)`,
					m.FlowControlKey, now); err != nil {
					return fmt.Errorf("record start of %s: %w", m.ID, err)
				}
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
func planClaim(tx *sql.Tx, params *store.MessageClaimParams) (*store.ClaimPlan, error) {
	now := store.Millis(params.Now)
	plan := store.NewClaimPlan(now, params.Limit, &claimLoader{tx: tx, now: now})
	if err := addQueueHeads(tx, plan, now); err != nil {
		return nil, err
	}

	afterDue, afterID := int64(math.MinInt64), ""
	for !plan.Full() {
		page, err := dueCandidates(tx, now, afterDue, afterID)
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
func dueCandidates(tx *sql.Tx, now, afterDue int64, afterID string) ([]store.ClaimCandidate, error) {
	rows, err := tx.Query(`SELECT id, queue_name, flow_control_key, attempts, due_at FROM messages m
		WHERE `+dueWhere+` AND due_at <= ?1 AND (due_at > ?2 OR (due_at = ?2 AND id > ?3))
			AND (m.queue_name = '' OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = m.queue_name AND q.paused = 1))
			AND (m.flow_control_key = '' OR NOT EXISTS (SELECT 1 FROM flow_controls f
				WHERE f.key = m.flow_control_key AND (f.paused = 1 OR f.gate_until > ?1)))
		ORDER BY due_at, id
		LIMIT ?4`, now, afterDue, afterID, store.ClaimPageSize)
	if err != nil {
		return nil, fmt.Errorf("select due messages: %w", err)
	}
	defer rows.Close()

	var page []store.ClaimCandidate
	for rows.Next() {
		var c store.ClaimCandidate
		if err := rows.Scan(&c.ID, &c.QueueName, &c.FlowControlKey, &c.Attempts, &c.DueAt); err != nil {
			return nil, fmt.Errorf("select due messages: %w", err)
		}
		page = append(page, c)
	}
	return page, rows.Err()
}

// queueSlot is a queue as the claim reads it.
type queueSlot struct {
	name        string
	parallelism int
	generation  int64
}

// addQueueHeads adds to plan, for each queue that is not paused and not
// noted as full, the waiting messages that its free slots allow.
func addQueueHeads(tx *sql.Tx, plan *store.ClaimPlan, now int64) error {
	rows, err := tx.Query(`SELECT name, parallelism, generation FROM queues
		WHERE paused = 0 AND gate_until <= ? ORDER BY name`, now)
	if err != nil {
		return fmt.Errorf("select queues: %w", err)
	}
	var queues []queueSlot
	for rows.Next() {
		var q queueSlot
		if err := rows.Scan(&q.name, &q.parallelism, &q.generation); err != nil {
			rows.Close()
			return fmt.Errorf("select queues: %w", err)
		}
		queues = append(queues, q)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("select queues: %w", err)
	}

	for _, q := range queues {
		inFlight, err := queueInFlight(tx, q.name)
		if err != nil {
			return err
		}
		free := q.parallelism - inFlight
		if free <= 0 {
			if _, err := tx.Exec(`UPDATE queues SET gate_until = ? WHERE name = ? AND generation = ?`,
				now+store.GateRecheck.Milliseconds(), q.name, q.generation); err != nil {
				return fmt.Errorf("note queue %s as full: %w", q.name, err)
			}
			continue
		}
		heads, err := queueHeads(tx, q.name, free, now)
		if err != nil {
			return err
		}
		plan.AddHeads(heads)
	}
	return nil
}

// queueInFlight returns the number of messages of a queue that started and
// are not finished, counting a finished message while a callback message
// reporting on it is not finished.
func queueInFlight(tx *sql.Tx, name string) (int, error) {
	var n int
	err := tx.QueryRow(`SELECT
		(SELECT COUNT(*) FROM messages
			WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND queue_name != '' AND queue_name = ?1 AND attempts > 0)
		+ (SELECT COUNT(DISTINCT c.callback_of) FROM messages c JOIN messages s ON s.id = c.callback_of
			WHERE c.state IN ('CREATED', 'RETRY', 'ACTIVE') AND c.callback_of != ''
				AND s.queue_name = ?1 AND s.state IN ('DELIVERED', 'FAILED', 'CANCELED'))`, name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count messages in flight of queue %s: %w", name, err)
	}
	return n, nil
}

// queueHeads returns the first free waiting messages of a queue in queue
// order, up to the first that is not due at now.
func queueHeads(tx *sql.Tx, name string, free int, now int64) ([]store.ClaimCandidate, error) {
	rows, err := tx.Query(`SELECT id, queue_name, flow_control_key, attempts, due_at FROM messages
		WHERE state = 'CREATED' AND attempts = 0 AND queue_name != '' AND queue_name = ?
		ORDER BY created_at, id
		LIMIT ?`, name, free)
	if err != nil {
		return nil, fmt.Errorf("select waiting messages of queue %s: %w", name, err)
	}
	defer rows.Close()

	var heads []store.ClaimCandidate
	for rows.Next() {
		var c store.ClaimCandidate
		if err := rows.Scan(&c.ID, &c.QueueName, &c.FlowControlKey, &c.Attempts, &c.DueAt); err != nil {
			return nil, fmt.Errorf("select waiting messages of queue %s: %w", name, err)
		}
		if c.DueAt > now {
			break
		}
		heads = append(heads, c)
	}
	return heads, rows.Err()
}

// claimLoader reads flow-control keys for a claim in tx.
type claimLoader struct {
	tx  *sql.Tx
	now int64
}

// LoadFlow implements store.ClaimLoader. It also deletes the key's starts
// that have left the rate window.
func (l *claimLoader) LoadFlow(key string) (*store.FlowGate, error) {
	g := &store.FlowGate{Key: key}
	var paused int
	err := l.tx.QueryRow(`SELECT parallelism, rate, period_ms, paused, generation FROM flow_controls WHERE key = ?`, key).
		Scan(&g.Parallelism, &g.Rate, &g.PeriodMS, &paused, &g.Generation)
	if errors.Is(err, sql.ErrNoRows) {
		return g, nil
	} else if err != nil {
		return nil, fmt.Errorf("read flow-control key %q: %w", key, err)
	}
	g.Paused = paused != 0

	var earliest sql.NullInt64
	if err := l.tx.QueryRow(`SELECT COUNT(*), MIN(due_at) FROM messages
		WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND flow_control_key != ''
			AND flow_control_key = ? AND state = 'ACTIVE' AND due_at > ?`, key, l.now).
		Scan(&g.InFlight, &earliest); err != nil {
		return nil, fmt.Errorf("count attempts in flight of flow-control key %q: %w", key, err)
	}
	g.EarliestLease = earliest.Int64

	if g.Rate > 0 {
		if _, err := l.tx.Exec(`DELETE FROM flow_control_starts WHERE key = ? AND started_at <= ?`,
			key, l.now-g.PeriodMS); err != nil {
			return nil, fmt.Errorf("delete old starts of flow-control key %q: %w", key, err)
		}
		if err := l.tx.QueryRow(`SELECT COUNT(*) FROM flow_control_starts WHERE key = ?`, key).Scan(&g.Starts); err != nil {
			return nil, fmt.Errorf("count starts of flow-control key %q: %w", key, err)
		}
		g.NthStart = func(n int) (int64, error) {
			var at int64
			err := l.tx.QueryRow(`SELECT started_at FROM flow_control_starts WHERE key = ?
				ORDER BY started_at LIMIT 1 OFFSET ?`, key, n).Scan(&at)
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
	if _, err := l.tx.Exec(`UPDATE flow_controls SET gate_until = ? WHERE key = ? AND generation = ?`,
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
	var due sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT MIN(t) FROM (
		SELECT (SELECT due_at FROM messages m
			WHERE `+dueWhere+`
				AND (m.queue_name = '' OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = m.queue_name AND q.paused = 1))
				AND (m.flow_control_key = '' OR NOT EXISTS (SELECT 1 FROM flow_controls f
					WHERE f.key = m.flow_control_key AND (f.paused = 1 OR f.gate_until > m.due_at)))
			ORDER BY due_at LIMIT 1) AS t
		UNION ALL
		SELECT MIN(f.gate_until) FROM flow_controls f
			WHERE f.paused = 0 AND f.gate_until > 0 AND EXISTS (SELECT 1 FROM messages m
				WHERE m.state IN ('CREATED', 'RETRY', 'ACTIVE') AND m.flow_control_key != ''
					AND m.flow_control_key = f.key AND (m.queue_name = '' OR m.attempts > 0) AND m.due_at < f.gate_until)
		UNION ALL
		SELECT MIN(max(h.due_at, q.gate_until, COALESCE(f.gate_until, 0))) FROM queues q
			JOIN messages h ON h.id = (SELECT id FROM messages
				WHERE state = 'CREATED' AND attempts = 0 AND queue_name != '' AND queue_name = q.name
				ORDER BY created_at, id LIMIT 1)
			LEFT JOIN flow_controls f ON f.key = h.flow_control_key
			WHERE q.paused = 0 AND COALESCE(f.paused, 0) = 0
	)`).Scan(&due)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: next due time: %w", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return store.FromMillis(due.Int64), true, nil
}

// MessageInFlight implements store.Store.
func (db *DB) MessageInFlight(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages
		WHERE `+dueWhere+` AND state = 'ACTIVE' AND due_at > ?`, store.Millis(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count attempts in flight: %w", err)
	}
	return n, nil
}

// ensureGroups creates the queue and the flow-control key of a new message
// when they do not exist, and applies the message's flow-control limits
// to its key unless they are pinned. A change of limits wakes the key.
func ensureGroups(tx *sql.Tx, m *ferry.Message, now time.Time) error {
	at := store.Millis(now)
	if m.QueueName != "" {
		if _, err := tx.Exec(`INSERT INTO queues (name, parallelism, created_at, updated_at) VALUES (?, 1, ?, ?)
			ON CONFLICT (name) DO NOTHING`, m.QueueName, at, at); err != nil {
			return fmt.Errorf("create queue %s: %w", m.QueueName, err)
		}
	}
	if m.FlowControlKey == "" {
		return nil
	}

	period := m.FlowControlPeriod
	if period <= 0 {
		period = store.FlowControlPeriodDefault
	}
	_, err := tx.Exec(`INSERT INTO flow_controls (key, parallelism, rate, period_ms, created_at, updated_at)
		VALUES (?1, ?2, ?3, ?4, ?5, ?5)
		ON CONFLICT (key) DO UPDATE SET
			parallelism = CASE WHEN pinned_parallelism = 1 THEN parallelism ELSE excluded.parallelism END,
			rate = CASE WHEN pinned_rate = 1 THEN rate ELSE excluded.rate END,
			period_ms = CASE WHEN pinned_rate = 1 THEN period_ms ELSE excluded.period_ms END,
			updated_at = excluded.updated_at, gate_until = 0, generation = generation + 1
		WHERE (pinned_parallelism = 0 AND parallelism != excluded.parallelism)
			OR (pinned_rate = 0 AND (rate != excluded.rate OR period_ms != excluded.period_ms))`,
		m.FlowControlKey, m.FlowControlParallelism, m.FlowControlRate, period.Milliseconds(), at)
	if err != nil {
		return fmt.Errorf("update flow-control key %q: %w", m.FlowControlKey, err)
	}
	return nil
}

// wakeGroups makes the next claim look again at the groups whose limits
// m's new state may have freed: its flow-control key after any attempt,
// and its queue, or the queue of the message it reports on, once it is
// finished.
func wakeGroups(tx *sql.Tx, m *ferry.Message) error {
	if m.State.Terminal() {
		queue := m.QueueName
		if m.CallbackOf != "" {
			err := tx.QueryRow(`SELECT queue_name FROM messages WHERE id = ?`, m.CallbackOf).Scan(&queue)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read source of callback message %s: %w", m.ID, err)
			}
		}
		if queue != "" {
			if _, err := tx.Exec(`UPDATE queues SET gate_until = 0, generation = generation + 1 WHERE name = ?`,
				queue); err != nil {
				return fmt.Errorf("wake queue %s: %w", queue, err)
			}
		}
	}
	if m.FlowControlKey != "" {
		if _, err := tx.Exec(`UPDATE flow_controls SET gate_until = 0, generation = generation + 1 WHERE key = ?`,
			m.FlowControlKey); err != nil {
			return fmt.Errorf("wake flow-control key %q: %w", m.FlowControlKey, err)
		}
	}
	return nil
}

// wakeAllGroups makes the next claim look again at every queue and key
// noted as full. A cancel uses it, because it may free slots of many
// groups at once.
func wakeAllGroups(tx *sql.Tx) error {
	if _, err := tx.Exec(`UPDATE queues SET gate_until = 0, generation = generation + 1 WHERE gate_until > 0`); err != nil {
		return fmt.Errorf("wake queues: %w", err)
	}
	if _, err := tx.Exec(`UPDATE flow_controls SET gate_until = 0, generation = generation + 1 WHERE gate_until > 0`); err != nil {
		return fmt.Errorf("wake flow-control keys: %w", err)
	}
	return nil
}

// MessageInsertAll implements store.Store.
func (db *DB) MessageInsertAll(ctx context.Context, params []*store.MessageInsertParams) ([]*store.MessageInsertResult, error) {
	results := make([]*store.MessageInsertResult, len(params))
	err := db.write(ctx, func(tx *sql.Tx) error {
		for i, p := range params {
			res, err := insertDeduplicated(tx, p)
			if err != nil {
				return err
			}
			results[i] = res
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}
