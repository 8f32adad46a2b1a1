// Package postgres implements store.Store on PostgreSQL through pgx v5 and
// its connection pool, so several Ferry nodes can share one database.
//
// Open applies the embedded migrations. Each migration runs in its own
// transaction that first takes a transaction-level advisory lock, so nodes
// that start together apply every migration exactly once.
//
// The tables live in the first existing schema of the connection's
// search_path. A DSN selects another schema with the search_path
// parameter, as in postgres://host/db?search_path=ferry.
//
// Times are BIGINT Unix milliseconds (UTC) and bodies are BYTEA. Headers and
// label lists are JSON in TEXT columns, encoded like the SQLite store does.
// Text columns hold PostgreSQL text, so a message field with a NUL byte,
// or one that is not valid UTF-8 in a UTF-8 database, is rejected with an
// error. Attempt error texts are cleaned instead (see validText), so that
// recording a failed attempt cannot fail on its text.
//
// Concurrent claims lock due rows with FOR UPDATE SKIP LOCKED, so claimers
// on different nodes never lease the same message twice.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferryhq/ferry/store"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// Defaults of Options.
const (
	// MaxConnsDefault keeps five nodes within PostgreSQL's default
	// max_connections of 100, with room for administrative sessions.
	MaxConnsDefault          = 16
	MinConnsDefault          = 0
	MaxConnLifetimeDefault   = time.Hour
	MaxConnIdleTimeDefault   = 30 * time.Minute
	HealthCheckPeriodDefault = time.Minute
)

// Options configures the connection pool. A zero field takes the matching
// pgxpool parameter of the DSN (pool_max_conns, pool_min_conns,
// pool_max_conn_lifetime, pool_max_conn_idle_time,
// pool_health_check_period) when the DSN sets it, and the default constant
// otherwise.
type Options struct {
	// MaxConns is the maximum number of open connections. Default
	// MaxConnsDefault.
	MaxConns int32

	// MinConns is the number of connections the pool keeps open while
	// idle. Default MinConnsDefault.
	MinConns int32

	// MaxConnLifetime is the age after which a connection is closed and
	// replaced. Default MaxConnLifetimeDefault.
	MaxConnLifetime time.Duration

	// MaxConnIdleTime is how long a connection may stay unused before the
	// pool closes it. Default MaxConnIdleTimeDefault.
	MaxConnIdleTime time.Duration

	// HealthCheckPeriod is the interval of the pool's checks of idle
	// connections. Default HealthCheckPeriodDefault.
	HealthCheckPeriod time.Duration

	// Logger receives the outages and recoveries of the notification
	// listener and failed notifications. Defaults to a discarding logger.
	Logger *slog.Logger
}

// DB is a PostgreSQL-backed store.Store.
type DB struct {
	pool       *pgxpool.Pool
	connConfig *pgx.ConnConfig
	logger     *slog.Logger

	// schema is the schema that holds the tables. It is the payload of
	// the store's notifications, so stores in other schemas of the same
	// database ignore them.
	schema string

	notifier notifier
}

var (
	_ store.Store = (*DB)(nil)
	_ store.Waker = (*DB)(nil)
)

// Open connects to the database that dsn names, a postgres:// URL or a
// keyword/value string as libpq accepts, and applies pending migrations.
// At most one Options may be given.
func Open(ctx context.Context, dsn string, opts ...Options) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("postgres: empty DSN; pass a URL such as postgres://user@host:5432/ferry")
	}
	if len(opts) > 1 {
		return nil, fmt.Errorf("postgres: Open takes at most one Options, got %d", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}

	config, err := poolConfig(dsn, o)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, wrapError("open pool", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrapError(fmt.Sprintf("connect to %s:%d", config.ConnConfig.Host, config.ConnConfig.Port), err)
	}

	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db := &DB{pool: pool, connConfig: config.ConnConfig, logger: logger.With("component", "postgres")}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	db.notifier.start(db)
	return db, nil
}

// Connect opens a connection outside the pool, with the settings of the
// pool's connections, for a session that must outlive a transaction, such
// as a session-level advisory lock. The caller closes it.
func (db *DB) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, db.connConfig.Copy())
	if err != nil {
		return nil, wrapError(fmt.Sprintf("connect to %s:%d", db.connConfig.Host, db.connConfig.Port), err)
	}
	return conn, nil
}

// poolConfig parses dsn and applies o over the pool defaults.
func poolConfig(dsn string, o Options) (*pgxpool.Config, error) {
	// pgxpool.ParseConfig removes the pool_* parameters it reads, so the
	// parameters the DSN sets are taken from a plain parse first.
	connConfig, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid DSN: %w", err)
	}
	inDSN := func(name string) bool {
		_, ok := connConfig.RuntimeParams[name]
		return ok
	}

	config, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid DSN: %w", err)
	}
	if _, ok := config.ConnConfig.RuntimeParams["application_name"]; !ok {
		config.ConnConfig.RuntimeParams["application_name"] = "ferry"
	}

	config.MaxConns = pick(o.MaxConns, config.MaxConns, inDSN("pool_max_conns"), MaxConnsDefault)
	config.MinConns = pick(o.MinConns, config.MinConns, inDSN("pool_min_conns"), MinConnsDefault)
	config.MaxConnLifetime = pick(o.MaxConnLifetime, config.MaxConnLifetime, inDSN("pool_max_conn_lifetime"), MaxConnLifetimeDefault)
	config.MaxConnIdleTime = pick(o.MaxConnIdleTime, config.MaxConnIdleTime, inDSN("pool_max_conn_idle_time"), MaxConnIdleTimeDefault)
	config.HealthCheckPeriod = pick(o.HealthCheckPeriod, config.HealthCheckPeriod, inDSN("pool_health_check_period"), HealthCheckPeriodDefault)
	if o.MaxConns < 0 || o.MinConns < 0 || config.MinConns > config.MaxConns {
		return nil, fmt.Errorf("postgres: invalid pool size: MinConns %d, MaxConns %d; want 0 <= MinConns <= MaxConns",
			config.MinConns, config.MaxConns)
	}
	return config, nil
}

// pick returns the option when set, else the DSN's value when the DSN sets
// one, else the default.
func pick[T int32 | time.Duration](option, fromDSN T, dsnSets bool, def T) T {
	switch {
	case option != 0:
		return option
	case dsnSets:
		return fromDSN
	default:
		return def
	}
}

// Close stops the notifier and closes every connection of the pool. It
// waits for connections in use to be returned.
func (db *DB) Close() error {
	db.notifier.stop()
	db.pool.Close()
	return nil
}

// migrationLockClass is the first key of the migration advisory lock: the
// ASCII bytes of "ferr". The second key is a hash of the schema name, so
// stores in different schemas migrate independently.
const migrationLockClass = 0x66657272

// migrate applies the embedded migrations that the schema has not seen,
// each in its own transaction.
func (db *DB) migrate(ctx context.Context) error {
	var schema *string
	if err := db.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return wrapError("read current schema", err)
	}
	if schema == nil {
		return errors.New("postgres: no schema of the search_path exists; create the schema " +
			"(CREATE SCHEMA name) or set search_path in the DSN to an existing one")
	}
	db.schema = *schema

	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return fmt.Errorf("postgres: list migrations: %w", err)
	}
	sort.Strings(names)

	for _, name := range names {
		if err := db.migrateFile(ctx, *schema, name); err != nil {
			return err
		}
	}
	return nil
}

// migrateFile applies one migration unless schema_migrations records it.
// The advisory lock serializes nodes that migrate the same schema together:
// the second node waits for the first to commit and then finds the
// migration recorded.
func (db *DB) migrateFile(ctx context.Context, schema, name string) error {
	text, err := migrationFS.ReadFile(name)
	if err != nil {
		return fmt.Errorf("postgres: migration %s: %w", name, err)
	}

	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, migrationLockClass, schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			name       TEXT PRIMARY KEY,
			applied_at BIGINT NOT NULL)`); err != nil {
			return err
		}

		var applied bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)`, name).
			Scan(&applied); err != nil {
			return err
		}
		if applied {
			return nil
		}

		if _, err := tx.Exec(ctx, string(text)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`,
			name, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return wrapError(fmt.Sprintf("migration %s in schema %s", name, schema), err)
	}
	return nil
}

// maxTxAttempts bounds how often inTx runs a transaction that PostgreSQL
// aborted with a serialization failure or a deadlock.
const maxTxAttempts = 3

// inTx runs fn in a READ COMMITTED transaction and commits it. fn may run
// more than once, so it must reset any result it collects. op names the
// operation in the returned error.
func (db *DB) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	var err error
	for range maxTxAttempts {
		err = pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return wrapError(op, err)
}
