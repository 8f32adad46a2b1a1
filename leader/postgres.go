package leader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// lockClass is the first key of the leader advisory lock: the ASCII bytes
// of "lead". The second key is a hash of the session's current schema, so
// Ferry stores in different schemas of one database elect their leaders
// independently.
const lockClass = 0x6c656164

// queryTimeout bounds the statements that open a session and take the
// lock, so a server that stops responding ends the session instead of
// blocking it.
const queryTimeout = 5 * time.Second

// checkTimeout bounds the leader's check of its lock. A leader cut off from
// the server thus stops its services at most CheckInterval + checkTimeout
// (4 s by default) after its last response, before the server's keepalive
// ends the session, which takes about 8 s of silence.
const checkTimeout = 2 * time.Second

// Server-side TCP keepalive settings of the lock's session: the server
// probes a silent client after keepaliveIdle and ends the session after
// keepaliveCount unanswered probes keepaliveInterval apart. So when the
// leader's host or network fails, the server releases the lock after about
// 5 + 3·1 = 8 s instead of the operating system's default, often more than
// two hours on Linux. They apply to TCP connections only.
const (
	keepaliveIdle     = 5
	keepaliveInterval = 1
	keepaliveCount    = 3
)

// PostgresLock is a Lock on a session-level advisory lock of PostgreSQL.
// Each session holds a connection of its own, outside any pool: a
// session-level lock lasts until it is released or its session ends, so
// the server releases it at once when the leader's process dies and its
// connection closes.
type PostgresLock struct {
	// Connect opens a connection. Required.
	Connect func(ctx context.Context) (*pgx.Conn, error)
}

// Open implements Lock.
func (l *PostgresLock) Open(ctx context.Context) (Session, error) {
	if l.Connect == nil {
		return nil, errors.New("leader: PostgresLock.Connect is required")
	}
	conn, err := l.Connect(ctx)
	if err != nil {
		return nil, err
	}

	queryCtx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	_, err = conn.Exec(queryCtx, `SELECT set_config('tcp_keepalives_idle', $1, false),
		set_config('tcp_keepalives_interval', $2, false), set_config('tcp_keepalives_count', $3, false)`,
		fmt.Sprint(keepaliveIdle), fmt.Sprint(keepaliveInterval), fmt.Sprint(keepaliveCount))
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("leader: set keepalives of the lock session: %w", err)
	}
	return &postgresSession{conn: conn}, nil
}

type postgresSession struct {
	conn *pgx.Conn
}

// TryAcquire implements Session. A session that holds the lock already
// takes it again, which PostgreSQL counts, and Close releases every count.
func (s *postgresSession) TryAcquire(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var held bool
	err := s.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, lockClass).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("leader: try the advisory lock: %w", err)
	}
	return held, nil
}

// Hold implements Session. It waits on the connection for server
// messages, so a session that the server ends, such as by
// pg_terminate_backend or a shutdown, returns at once, because the server
// sends an error before it closes the connection. After checkInterval
// without one it confirms the lock in pg_locks, which finds a connection
// that died silently within checkInterval plus checkTimeout.
func (s *postgresSession) Hold(ctx context.Context, checkInterval time.Duration) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, checkInterval)
		_, err := s.conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			// The session listens on no channel, so no notification
			// arrives, but a wake-up is harmless.
			continue
		case !pgconn.Timeout(err):
			return fmt.Errorf("leader: lock session failed: %w", err)
		}

		held, err := s.held(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if !held {
			return errors.New("leader: pg_locks no longer lists the advisory lock of this session")
		}
	}
}

// held reports whether pg_locks lists the lock as granted to this session.
func (s *postgresSession) held(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var held bool
	err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
			AND classid = $1::bigint::oid AND objid = hashtext(current_schema())::oid AND objsubid = 2)`,
		lockClass).Scan(&held)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
			return false, fmt.Errorf("leader: the server did not confirm the lock within %v", checkTimeout)
		}
		return false, fmt.Errorf("leader: confirm the advisory lock: %w", err)
	}
	return held, nil
}

// Close implements Session. Closing the connection ends the session, and
// PostgreSQL releases its advisory locks with it.
func (s *postgresSession) Close() {
	closeConn(s.conn)
}

// closeConn closes conn, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
