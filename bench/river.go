package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// riverPoolConns is the connection pool size of River on PostgreSQL: the
// same as Ferry's PostgreSQL store default, so both get the same number of
// database sessions.
const riverPoolConns = 16

// noopArgs is the job of the River runs: it carries the sequence number
// and its worker does nothing but report it.
type noopArgs struct {
	Seq int64 `json:"seq"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	worked func(seq int64)
}

func (w *noopWorker) Work(ctx context.Context, job *river.Job[noopArgs]) error {
	w.worked(job.Args.Seq)
	return nil
}

// riverPostgresSystem is River with its pgx v5 driver on PostgreSQL and
// its default fetch settings. River's default FetchCooldown of 100 ms
// allows at most ten fetches per second, each for at most the free
// workers, so this configuration completes at most 10·cfg.workers jobs
// per second.
var riverPostgresSystem = &queueSystem{
	name:     "river-postgres",
	describe: "River v0.51.2, riverpgxv5, own schema, pool of 16, default fetch settings (FetchCooldown 100ms); Client.Insert one job per call",
	start: func(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
		return startRiverPostgres(ctx, cfg, 0, worked)
	},
}

// riverPostgresFastSystem is riverPostgresSystem with a FetchCooldown of
// 10 ms, which lifts the fetch ceiling tenfold.
var riverPostgresFastSystem = &queueSystem{
	name:     "river-pg-10ms",
	describe: "as river-postgres, with FetchCooldown 10ms",
	start: func(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
		return startRiverPostgres(ctx, cfg, 10*time.Millisecond, worked)
	},
}

// riverSQLiteSystem is River with its SQLite driver on modernc.org/sqlite,
// configured as Ferry's SQLite store is: WAL and synchronous=FULL.
var riverSQLiteSystem = &queueSystem{
	name:     "river-sqlite",
	describe: "River v0.51.2, riversqlite on modernc.org/sqlite (WAL, synchronous=FULL, one connection); Client.Insert one job per call",
	start:    startRiverSQLite,
}

type runningRiver[TTx any] struct {
	client *river.Client[TTx]
	close  func()
}

func (r *runningRiver[TTx]) insert(ctx context.Context, seq int64) error {
	_, err := r.client.Insert(ctx, noopArgs{Seq: seq}, nil)
	return err
}

func (r *runningRiver[TTx]) stop() {
	r.client.Stop(context.Background())
	r.close()
}

// startRiverPostgres starts River on PostgreSQL. A zero fetchCooldown
// keeps River's default.
func startRiverPostgres(ctx context.Context, cfg *runConfig, fetchCooldown time.Duration, worked func(seq int64)) (runningSystem, error) {
	schema, _, removeSchema, err := newSchema(ctx, cfg.pgURL, "river_cmp")
	if err != nil {
		return nil, err
	}
	poolConfig, err := pgxpool.ParseConfig(cfg.pgURL)
	if err != nil {
		removeSchema()
		return nil, fmt.Errorf("invalid --pg URL: %w", err)
	}
	poolConfig.MaxConns = riverPoolConns
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		removeSchema()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	closeAll := func() {
		pool.Close()
		removeSchema()
	}

	driver := riverpgxv5.New(pool)
	client, err := startRiverClient(ctx, cfg, driver, schema, fetchCooldown, worked)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &runningRiver[pgx.Tx]{client: client, close: closeAll}, nil
}

func startRiverSQLite(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
	dir, err := os.MkdirTemp("", "river-cmp-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	params := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)"} {
		params.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "river.db")+"?"+params.Encode())
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open the River SQLite file: %w", err)
	}
	// The riversqlite package documentation (v0.51.2) recommends one
	// connection, because River's parallel operations otherwise fail with
	// SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	closeAll := func() {
		db.Close()
		os.RemoveAll(dir)
	}

	driver := riversqlite.New(db)
	client, err := startRiverClient(ctx, cfg, driver, "", 0, worked)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &runningRiver[*sql.Tx]{client: client, close: closeAll}, nil
}

// startRiverClient migrates the schema and starts a client with one queue
// of cfg.workers workers. A zero fetchCooldown keeps River's default.
func startRiverClient[TTx any](ctx context.Context, cfg *runConfig, driver riverdriver.Driver[TTx], schema string,
	fetchCooldown time.Duration, worked func(seq int64)) (*river.Client[TTx], error) {
	logger := slog.New(slog.NewTextHandler(cfg.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("river migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("river migrate: %w", err)
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{worked: worked})
	client, err := river.NewClient(driver, &river.Config{
		FetchCooldown: fetchCooldown,
		Logger:        logger,
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.workers}},
		Schema:        schema,
		Workers:       workers,
	})
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start river client: %w", err)
	}
	return client, nil
}

// newSchema creates a schema named prefix_<random> in the PostgreSQL
// database at pgURL. It returns the schema, pgURL with search_path set to
// it, and a function that drops it.
func newSchema(ctx context.Context, pgURL, prefix string) (string, string, func(), error) {
	schema := prefix + "_" + randomHex(4)
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("connect to PostgreSQL at --pg: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return "", "", nil, fmt.Errorf("create schema %s: %w", schema, err)
	}

	u, err := url.Parse(pgURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("invalid --pg URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()

	remove := func() {
		conn, err := pgx.Connect(context.Background(), pgURL)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drop schema %s: %v; drop it by hand\n", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "drop schema %s: %v; drop it by hand\n", schema, err)
		}
	}
	return schema, u.String(), remove, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
