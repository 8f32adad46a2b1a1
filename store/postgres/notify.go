package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyChannel is the PostgreSQL channel of the notifications that wake
// dispatchers. The payload of each is the schema of the store that sent
// it, so listeners of stores in other schemas ignore it.
const notifyChannel = "ferry_due"

// wakeHorizon is the longest time from a write to its message's due time
// for which the write sends a notification. It equals the dispatcher's
// default poll interval: an idle dispatcher reads the next due time at
// least that often, so it finds a message due later without being woken.
const wakeHorizon = time.Second

// Timing of the notifier and the listener.
const (
	notifyTimeout = 5 * time.Second

	// listenCheckInterval is how long the listener waits for a
	// notification before it checks its connection with a query. A
	// terminated session is noticed at once, because the server sends an
	// error before closing it; the check finds a connection that died
	// without one.
	listenCheckInterval = 5 * time.Second
	listenCheckTimeout  = 5 * time.Second

	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// notifier sends the store's notifications from one goroutine, in
// transactions of their own. PostgreSQL holds a cluster-wide lock from the
// queuing of a transaction's notifications until after its commit
// (PreCommit_Notify in src/backend/commands/async.c), so publishes that
// each sent NOTIFY would wait for each other's commits, WAL flush
// included. A request that arrives while a notification is being sent is
// served by the next one, so a burst of writes sends few notifications,
// and every write is followed by a notification sent after it committed.
type notifier struct {
	requests chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
}

func (n *notifier) start(db *DB) {
	ctx, cancel := context.WithCancel(context.Background())
	n.requests = make(chan struct{}, 1)
	n.cancel = cancel
	n.done = make(chan struct{})
	go n.run(ctx, db)
}

// stop ends the goroutine. A request still pending is dropped.
func (n *notifier) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
}

// request schedules a notification without blocking.
func (n *notifier) request() {
	select {
	case n.requests <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context, db *DB) {
	defer close(n.done)
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.requests:
		}

		err := db.sendNotification(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Only the first failure of a series is logged. The writes
			// themselves fail during an outage and report it.
			failures++
			if failures == 1 {
				db.logger.Warn("sending a wake-up notification failed; other nodes find new messages at their next poll",
					"channel", notifyChannel, "error", err)
			}
		case failures > 0:
			db.logger.Info("wake-up notifications are sent again", "channel", notifyChannel, "failed", failures)
			failures = 0
		}
	}
}

// sendNotification sends one notification on notifyChannel. The
// transaction has nothing to make durable, so it does not wait for the WAL
// flush while it holds the notification lock.
func (db *DB) sendNotification(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, db.schema)
		return err
	})
}

// wakeIfDue requests a notification when one of the due times is within
// wakeHorizon of now.
func (db *DB) wakeIfDue(now time.Time, due ...time.Time) {
	for _, t := range due {
		if !t.After(now.Add(wakeHorizon)) {
			db.notifier.request()
			return
		}
	}
}

// Listen implements store.Waker. It listens on a connection of its own.
// After a failed connect or a lost connection it tries again, waiting
// listenRetryMin at first and doubling the wait up to listenRetryMax.
// It logs the start of an outage once and its end with its duration.
func (db *DB) Listen(ctx context.Context, wake func()) error {
	wait := listenRetryMin
	var outageStart time.Time
	failedTries := 0
	for ctx.Err() == nil {
		conn, err := db.listenConn(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failedTries++
			if outageStart.IsZero() {
				outageStart = time.Now()
				db.logger.Warn("notification listener cannot connect; retrying, and dispatchers poll meanwhile",
					"error", err, "retry_in", wait.String())
			} else {
				db.logger.Debug("notification listener cannot connect; retrying", "error", err, "retry_in", wait.String())
			}
			sleep(ctx, wait)
			wait = min(2*wait, listenRetryMax)
			continue
		}

		if !outageStart.IsZero() {
			db.logger.Info("notification listener reconnected",
				"outage", time.Since(outageStart).Round(time.Millisecond).String(), "failed_tries", failedTries)
		} else {
			db.logger.Debug("notification listener started", "channel", notifyChannel, "schema", db.schema)
		}
		outageStart, failedTries, wait = time.Time{}, 0, listenRetryMin
		wake()

		err = db.receive(ctx, conn, wake)
		closeConn(conn)
		if ctx.Err() != nil {
			break
		}
		outageStart = time.Now()
		db.logger.Warn("notification listener lost its connection; reconnecting, and dispatchers poll meanwhile",
			"error", err)
	}
	return nil
}

// listenConn opens a connection and subscribes it to notifyChannel.
func (db *DB) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := db.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		closeConn(conn)
		return nil, wrapError("listen on "+notifyChannel, err)
	}
	return conn, nil
}

// receive calls wake for each notification of this store's schema until
// ctx ends or the connection fails, and returns the failure.
func (db *DB) receive(ctx context.Context, conn *pgx.Conn, wake func()) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenCheckInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if n != nil && n.Payload == db.schema {
				wake()
			}
			continue
		case !pgconn.Timeout(err):
			return err
		}

		// No notification within listenCheckInterval. A timed-out wait
		// leaves the connection usable, so check that the server still
		// responds on it.
		if err := pingConn(ctx, conn, listenCheckTimeout); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// pingConn runs an empty query on conn within timeout.
func pingConn(ctx context.Context, conn *pgx.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
			return errors.New("the server did not respond to a check within " + timeout.String())
		}
		return err
	}
	return nil
}

// closeConn closes conn, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}
