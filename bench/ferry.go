package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/node"
)

// ferrySystem runs a Ferry node in this process with node.Run: an insert
// is an HTTP publish acknowledged after its commit, and the work is the
// node's signed HTTP delivery to the sink.
func ferrySystem(db string) *queueSystem {
	describe := "node.Run in-process, SQLite file (WAL, synchronous=FULL); HTTP publish, HTTP delivery"
	if db == "postgres" {
		describe = "node.Run in-process, PostgreSQL (own schema); HTTP publish, HTTP delivery"
	}
	return &queueSystem{
		name:     "ferry-" + db,
		describe: describe,
		start: func(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
			return startFerry(ctx, cfg, db, worked)
		},
	}
}

type runningFerry struct {
	client   *http.Client
	endpoint string
	token    string
	sink     *sink
	cancel   context.CancelFunc
	done     chan error
	removeDB func()
}

func startFerry(ctx context.Context, cfg *runConfig, db string, worked func(seq int64)) (runningSystem, error) {
	dsn, removeDB, err := newFerryDB(ctx, cfg, db)
	if err != nil {
		return nil, err
	}
	sk, err := startSink(worked)
	if err != nil {
		removeDB()
		return nil, err
	}

	token := randomHex(16)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	addrs := make(chan net.Addr, 1)
	r := &runningFerry{
		client:   newHTTPClient(cfg.producers),
		token:    token,
		sink:     sk,
		cancel:   cancel,
		done:     make(chan error, 1),
		removeDB: removeDB,
	}
	go func() {
		r.done <- node.Run(runCtx, node.Config{
			Listen:        "127.0.0.1:0",
			DB:            dsn,
			Token:         token,
			NodeID:        "bench",
			Concurrency:   cfg.workers,
			ShutdownGrace: 10 * time.Second,
			Logger:        slog.New(slog.NewTextHandler(cfg.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Started:       func(addr net.Addr) { addrs <- addr },
		})
	}()

	select {
	case addr := <-addrs:
		r.endpoint = "http://" + addr.String() + "/v2/publish/" + sk.url
		return r, nil
	case err := <-r.done:
		cancel()
		sk.close()
		removeDB()
		return nil, fmt.Errorf("ferry node: %w", err)
	case <-time.After(60 * time.Second):
		r.stop()
		return nil, errors.New("ferry node did not listen within 60s")
	}
}

func (r *runningFerry) insert(ctx context.Context, seq int64) error {
	return postSeq(ctx, r.client, r.endpoint, r.token, seq)
}

func (r *runningFerry) stop() {
	r.cancel()
	<-r.done
	r.sink.close()
	r.removeDB()
}

// newFerryDB returns the DSN of a new, empty Ferry database and a function
// that removes it: a SQLite file in a new temporary directory, or a new
// schema in the PostgreSQL database at cfg.pgURL.
func newFerryDB(ctx context.Context, cfg *runConfig, db string) (string, func(), error) {
	if db == "postgres" {
		_, dsn, remove, err := newSchema(ctx, cfg.pgURL, "ferry_cmp")
		return dsn, remove, err
	}
	dir, err := os.MkdirTemp("", "ferry-cmp-")
	if err != nil {
		return "", nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	return filepath.Join(dir, "ferry.db"), func() { os.RemoveAll(dir) }, nil
}
