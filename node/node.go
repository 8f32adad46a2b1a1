// Package node assembles one Ferry node: the store, the HTTP API and the
// dispatcher, with the signing keys they share, and runs them until its
// context ends.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/leader"
	"github.com/ferryhq/ferry/maintenance"
	"github.com/ferryhq/ferry/schedule"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
	"github.com/ferryhq/ferry/store/sqlite"
)

// Defaults of Config.
const (
	ShutdownGraceDefault = 30 * time.Second
)

// Config configures a node.
type Config struct {
	// Listen is the TCP address of the API, such as ":8080" or
	// "127.0.0.1:0".
	Listen string

	// DB locates the database: a SQLite file path, or a postgres:// URL.
	DB string

	// Token is the API bearer token. Required.
	Token string

	// Keys, when set, replaces the stored signing keys at start. The
	// development server uses it to install the public development keys.
	// Otherwise keys are generated on first start and kept.
	Keys *store.SigningKeys

	// NodeID names this node in leases. Defaults to the host name.
	NodeID string

	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64

	// DefaultTimeout is the HTTP deadline of an attempt without
	// Upstash-Timeout.
	DefaultTimeout time.Duration

	// Concurrency is the maximum number of deliveries in flight.
	Concurrency int

	// MessageRetention, EventRetention and DLQRetention set how long
	// finished messages, events and dead-letter entries are kept. Zero
	// means the maintenance package defaults (1 hour, 3 days, 7 days).
	MessageRetention time.Duration
	EventRetention   time.Duration
	DLQRetention     time.Duration

	// Backoff replaces the default retry backoff; tests use it to scale time.
	Backoff func(n int) time.Duration

	// ScheduleTick is the real duration of one cron minute, so "* * * * *"
	// fires every ScheduleTick. Zero means one minute. Only tests set it, and
	// it must divide one minute evenly.
	ScheduleTick time.Duration

	// LeaseMargin is added to an attempt's timeout to form its lease. Zero
	// means dispatch.LeaseMarginDefault.
	LeaseMargin time.Duration

	// Postgres sets the connection pool of a PostgreSQL database. Its
	// Logger defaults to Logger.
	Postgres postgres.Options

	// ShutdownGrace bounds how long a stop waits for deliveries in flight.
	ShutdownGrace time.Duration

	// Logger receives the node's logs. Defaults to a discarding logger.
	Logger *slog.Logger

	// Started, when set, is called with the API's address once it listens.
	Started func(addr net.Addr)
}

// Run starts the node and blocks until ctx ends, then stops it: the API
// stops accepting requests, the dispatcher stops claiming, and deliveries
// in flight get ShutdownGrace to finish.
func Run(ctx context.Context, cfg Config) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Token == "" {
		return errors.New("missing API token: set --token or FERRY_TOKEN to a long random secret, e.g. $(openssl rand -hex 32)")
	}
	if cfg.NodeID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "ferry"
		}
		cfg.NodeID = host
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = ShutdownGraceDefault
	}
	timescale := schedule.Timescale{Origin: time.Now().Truncate(time.Minute), MinuteLength: cfg.ScheduleTick}
	if err := timescale.Validate(); err != nil {
		return err
	}

	// Open the store and load the signing keys.
	if cfg.Postgres.Logger == nil {
		cfg.Postgres.Logger = logger
	}
	st, err := openStore(ctx, cfg.DB, cfg.Postgres)
	if err != nil {
		return err
	}
	defer st.Close()

	keys, err := loadKeys(ctx, st, cfg.Keys)
	if err != nil {
		return err
	}
	var currentKey atomic.Pointer[string]
	currentKey.Store(&keys.Current)

	// Wire metrics, the dispatcher and the API.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	disp, err := dispatch.New(dispatch.Config{
		Store:          st,
		SigningKey:     func() string { return *currentKey.Load() },
		Owner:          cfg.NodeID,
		Concurrency:    cfg.Concurrency,
		DefaultTimeout: cfg.DefaultTimeout,
		LeaseMargin:    cfg.LeaseMargin,
		Retry:          dispatch.RetryPolicy{Backoff: cfg.Backoff},
		Metrics:        dispatch.NewMetrics(reg),
		Jobs:           jobs.NewRunner(st, logger),
		Logger:         logger,
	})
	if err != nil {
		return err
	}

	api := httpapi.NewServer(httpapi.Config{
		Store:        st,
		Token:        cfg.Token,
		Notify:       disp.Notify,
		MaxBodyBytes: cfg.MaxBodyBytes,
		KeysChanged:  func(k store.SigningKeys) { currentKey.Store(&k.Current) },
		Gatherer:     reg,
		Metrics:      httpapi.NewMetrics(reg),
		Logger:       logger,
		MaxInFlight:  disp.Concurrency(),

		ScheduleTimescale: timescale,
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen or stop the process using it", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(api.CloseStreams)

	// Run the API and the dispatcher until ctx ends.
	dispCtx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDispatch()
	dispDone := make(chan error, 1)
	go func() { dispDone <- disp.Run(dispCtx) }()

	cleaner := maintenance.NewCleaner(maintenance.CleanerConfig{
		Store:            st,
		MessageRetention: cfg.MessageRetention,
		EventRetention:   cfg.EventRetention,
		DLQRetention:     cfg.DLQRetention,
		Logger:           logger,
	})

	// Services that must run on one node at a time. Each is started when
	// this node gains leadership and its context ends when it loses it.
	scheduler := schedule.New(schedule.Config{
		Store:     st,
		Notify:    disp.Notify,
		Timescale: timescale,
		Logger:    logger,
	})
	jobSweeper := jobs.NewSweeper(jobs.SweeperConfig{Store: st, Logger: logger})
	leaderServices := []func(ctx context.Context){
		cleaner.Run,
		scheduler.Run,
		jobSweeper.Run,
	}
	elector := leader.New(leader.Config{
		Lock:    leaderLock(st),
		NodeID:  cfg.NodeID,
		Metrics: leader.NewMetrics(reg),
		Logger:  logger,
	})
	electorDone := make(chan struct{})
	go func() {
		defer close(electorDone)
		elector.Run(dispCtx, leaderServices)
	}()

	// Other nodes' writes wake this node's dispatcher.
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		if waker, ok := st.(store.Waker); ok {
			waker.Listen(dispCtx, disp.Notify)
		}
	}()
	go refreshKeys(dispCtx, st, &currentKey, logger)

	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()

	logger.Info("ferry started", "addr", ln.Addr().String(), "db", redactDSN(cfg.DB), "node_id", cfg.NodeID)
	if cfg.Started != nil {
		cfg.Started(ln.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-dispDone:
		runErr = fmt.Errorf("dispatcher: %w", err)
	}

	// Stop: the API first, so no message is accepted that cannot be
	// handed on; then the dispatcher, which waits for its deliveries.
	logger.Info("ferry stopping", "grace", cfg.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("http shutdown incomplete", "error", err)
	}
	stopDispatch()
	select {
	case <-dispDone:
	case <-shutdownCtx.Done():
		logger.Warn("deliveries still in flight at the end of the shutdown grace; they are delivered again after restart")
	}
	select {
	case <-electorDone:
	case <-shutdownCtx.Done():
		logger.Warn("leader-only services still running at the end of the shutdown grace")
	}
	<-listenDone
	logger.Info("ferry stopped")
	return runErr
}

// leaderLock returns the leader lock of st: an advisory lock on
// PostgreSQL, and nil on SQLite, whose database belongs to one process, so
// that node is always the leader.
func leaderLock(st store.Store) leader.Lock {
	if pg, ok := st.(*postgres.DB); ok {
		return &leader.PostgresLock{Connect: pg.Connect}
	}
	return nil
}

// redactDSN hides the password of a database URL, so logs never carry it.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" || u.User == nil {
		return dsn
	}
	return u.Redacted()
}

// keyRefreshInterval is how often a node reloads the signing keys, so a
// rotation through another node reaches its deliveries.
const keyRefreshInterval = 10 * time.Second

// refreshKeys reloads the current signing key until ctx ends.
func refreshKeys(ctx context.Context, st store.Store, current *atomic.Pointer[string], logger *slog.Logger) {
	ticker := time.NewTicker(keyRefreshInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		keys, err := st.SigningKeysGet(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.Error("reloading signing keys failed; deliveries keep the last known key", "error", err)
			}
			continue
		}
		if keys.Current != *current.Load() {
			current.Store(&keys.Current)
		}
	}
}

// openStore opens the store that dsn names: PostgreSQL for a postgres:// or
// postgresql:// URL, and otherwise the SQLite file at dsn, with an optional
// sqlite:// prefix.
func openStore(ctx context.Context, dsn string, pgOptions postgres.Options) (store.Store, error) {
	if dsn == "" {
		return nil, errors.New("missing database: set --db to a SQLite file path such as ferry.db " +
			"or a PostgreSQL URL such as postgres://user@host:5432/ferry")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgres.Open(ctx, dsn, pgOptions)
	}
	return sqlite.Open(ctx, strings.TrimPrefix(dsn, "sqlite://"))
}

// loadKeys returns the signing keys: the given ones, stored; or the stored
// ones; or new ones generated and stored on first start.
func loadKeys(ctx context.Context, st store.Store, given *store.SigningKeys) (store.SigningKeys, error) {
	if given != nil {
		if err := st.SigningKeysSet(ctx, *given); err != nil {
			return store.SigningKeys{}, fmt.Errorf("store signing keys: %w", err)
		}
		return *given, nil
	}

	current, err := signature.NewKey()
	if err != nil {
		return store.SigningKeys{}, err
	}
	next, err := signature.NewKey()
	if err != nil {
		return store.SigningKeys{}, err
	}
	keys, err := st.SigningKeysInit(ctx, store.SigningKeys{Current: current, Next: next})
	if err != nil {
		return store.SigningKeys{}, fmt.Errorf("load signing keys: %w", err)
	}
	return keys, nil
}
