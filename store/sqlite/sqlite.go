// Package sqlite implements store.Store on an embedded SQLite database in
// WAL mode, through the pure-Go modernc.org/sqlite driver.
//
// All writes go through one connection, driven by a single goroutine that
// commits concurrent writes together: each write runs in its own savepoint
// inside a shared transaction, so many publishes share one fsync while a
// failing write still fails alone.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/ferryhq/ferry/store"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// maxBatch is the largest number of writes committed together.
const maxBatch = 512

// DB is a SQLite-backed store.Store.
type DB struct {
	path   string
	writer *sql.DB // one connection; used only by the write loop
	reader *sql.DB

	ops      chan *writeOp
	closing  chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
}

var _ store.Store = (*DB)(nil)

// writeOp is one write waiting for the write loop.
type writeOp struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error
}

// Open opens (creating if needed) the database file at path and applies
// pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}

	// synchronous(FULL) makes a commit durable against power loss, not only
	// against a crash of the process; batching writes keeps its fsync cost
	// shared.
	params := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(ON)"} {
		params.Add("_pragma", p)
	}
	params.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + params.Encode()

	writer, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w; check that the directory exists and is writable", path, err)
	}

	db := &DB{path: path, writer: writer, ops: make(chan *writeOp, 4096), closing: make(chan struct{}), done: make(chan struct{})}
	if err := db.migrate(ctx); err != nil {
		writer.Close()
		return nil, err
	}

	readParams := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "query_only(1)"} {
		readParams.Add("_pragma", p)
	}
	reader, err := sql.Open("sqlite", "file:"+path+"?"+readParams.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open reader %s: %w", path, err)
	}
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	db.reader = reader

	go db.writeLoop()
	return db, nil
}

// Close stops the write loop after the queued writes and closes the files.
func (db *DB) Close() error {
	db.once.Do(func() {
		close(db.closing)
		<-db.done
		err1 := db.reader.Close()
		err2 := db.writer.Close()
		db.closeErr = errors.Join(err1, err2)
	})
	return db.closeErr
}

// migrate applies the embedded migrations that the database has not seen,
// each in its own transaction.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("sqlite: create migrations table: %w", err)
	}

	names, err := fs.Glob(migrationFS, "migration/*.sql")
	if err != nil {
		return fmt.Errorf("sqlite: list migrations: %w", err)
	}
	sort.Strings(names)

	for _, name := range names {
		if err := db.migrateFile(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) migrateFile(ctx context.Context, name string) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migration %s: %w", name, err)
	}
	defer tx.Rollback()

	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return fmt.Errorf("sqlite: migration %s: %w", name, err)
	} else if n > 0 {
		return nil
	}

	text, err := migrationFS.ReadFile(name)
	if err != nil {
		return fmt.Errorf("sqlite: migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, string(text)); err != nil {
		return fmt.Errorf("sqlite: migration %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES (?)`, name); err != nil {
		return fmt.Errorf("sqlite: migration %s: %w", name, err)
	}
	return tx.Commit()
}

// write runs fn in a transaction shared with other concurrent writes and
// returns after the commit. A returned error from fn rolls back only fn's
// changes.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case db.ops <- op:
	case <-db.closing:
		return errors.New("sqlite: store is closed")
	case <-ctx.Done():
		return ctx.Err()
	}

	// Once queued, the write is waited for even when ctx ends: fn writes
	// into variables of the caller, so returning early would race with it.
	// The write loop skips writes whose context ended before they ran.
	return <-op.done
}

// writeLoop commits queued writes in batches until Close.
func (db *DB) writeLoop() {
	defer close(db.done)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case op := <-db.ops:
			batch = append(batch, op)
		case <-db.closing:
			db.drain()
			return
		}

	fill:
		for len(batch) < maxBatch {
			select {
			case op := <-db.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
	}
}

// drain fails every write still queued at Close.
func (db *DB) drain() {
	for {
		select {
		case op := <-db.ops:
			op.done <- errors.New("sqlite: store is closed")
		default:
			return
		}
	}
}

// commitBatch runs each write in its own savepoint of one transaction and
// commits once.
func (db *DB) commitBatch(batch []*writeOp) {
	results := make([]error, len(batch))
	ctx := context.Background()

	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.done <- fmt.Errorf("sqlite: begin: %w", err)
		}
		return
	}

	single := len(batch) == 1
	for i, op := range batch {
		if op.ctx.Err() != nil {
			results[i] = op.ctx.Err()
			continue
		}
		if single {
			results[i] = op.fn(tx)
			continue
		}
		results[i] = runInSavepoint(tx, op.fn)
	}

	if single && results[0] != nil {
		tx.Rollback()
		batch[0].done <- results[0]
		return
	}
	if err := tx.Commit(); err != nil {
		for _, op := range batch {
			op.done <- fmt.Errorf("sqlite: commit: %w", err)
		}
		return
	}
	for i, op := range batch {
		op.done <- results[i]
	}
}

func runInSavepoint(tx *sql.Tx, fn func(tx *sql.Tx) error) error {
	if _, err := tx.Exec(`SAVEPOINT op`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	if err := fn(tx); err != nil {
		if _, rbErr := tx.Exec(`ROLLBACK TO op`); rbErr != nil {
			return errors.Join(err, fmt.Errorf("sqlite: rollback to savepoint: %w", rbErr))
		}
		tx.Exec(`RELEASE op`)
		return err
	}
	if _, err := tx.Exec(`RELEASE op`); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
