package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/maintenance"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/schedule"
	"github.com/ferryhq/ferry/store/postgres"
)

// serverFlags are the settings shared by serve and dev.
type serverFlags struct {
	db             string
	nodeID         string
	maxBodyBytes   int64
	defaultTimeout time.Duration
	concurrency    int
	shutdownGrace  time.Duration
	logLevel       string
	logFormat      string
	backoffScale   float64
	scheduleTick   time.Duration

	messageRetention time.Duration
	eventRetention   time.Duration
	dlqRetention     time.Duration

	leaseMargin time.Duration
	pg          postgres.Options
}

func (f *serverFlags) register(cmd *cobra.Command, dbDefault, dbHelp string) {
	fs := cmd.Flags()
	fs.StringVar(&f.db, "db", dbDefault, dbHelp)
	fs.StringVar(&f.nodeID, "node-id", "", "name of this node in delivery leases (default: the host name)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", httpapi.MaxBodyBytesDefault, "largest accepted request body, in bytes")
	fs.DurationVar(&f.defaultTimeout, "default-timeout", dispatch.DefaultTimeoutDefault, "HTTP deadline of a delivery attempt whose message sets no Upstash-Timeout")
	fs.IntVar(&f.concurrency, "concurrency", dispatch.ConcurrencyDefault, "maximum number of delivery attempts in flight")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", node.ShutdownGraceDefault, "how long a stop waits for deliveries in flight")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&f.messageRetention, "message-retention", maintenance.MessageRetentionDefault, "how long delivered, failed and cancelled messages stay readable")
	fs.DurationVar(&f.eventRetention, "event-retention", maintenance.EventRetentionDefault, "how long message events are kept")
	fs.DurationVar(&f.dlqRetention, "dlq-retention", maintenance.DLQRetentionDefault, "how long dead-letter entries are kept")
	fs.Float64Var(&f.backoffScale, "backoff-scale", 1, "multiplies the default retry backoff (for tests)")
	fs.MarkHidden("backoff-scale")
	fs.DurationVar(&f.scheduleTick, "schedule-tick", 0, `real duration of one cron minute, so "* * * * *" fires once per tick (for tests; default 1m)`)
	fs.MarkHidden("schedule-tick")
	fs.DurationVar(&f.leaseMargin, "lease-margin", dispatch.LeaseMarginDefault,
		"time added to an attempt's timeout to form its lease; after a crash, other nodes deliver the node's in-flight messages again once their leases expire")

	// Zero values of the pool flags leave the DSN's pool_* parameters, or
	// the store's defaults, in force.
	fs.Int32Var(&f.pg.MaxConns, "pg-max-conns", 0, fmt.Sprintf("PostgreSQL: maximum connections of the pool "+
		"(default: pool_max_conns of the --db URL, else %d); each node opens 2 more, for the notification listener and the leader lock",
		postgres.MaxConnsDefault))
	fs.Int32Var(&f.pg.MinConns, "pg-min-conns", 0, fmt.Sprintf("PostgreSQL: connections the pool keeps open while idle "+
		"(default: pool_min_conns of the --db URL, else %d)", postgres.MinConnsDefault))
	fs.DurationVar(&f.pg.MaxConnLifetime, "pg-max-conn-lifetime", 0, fmt.Sprintf("PostgreSQL: age after which a pool connection is replaced "+
		"(default: pool_max_conn_lifetime of the --db URL, else %v)", postgres.MaxConnLifetimeDefault))
	fs.DurationVar(&f.pg.MaxConnIdleTime, "pg-max-conn-idle-time", 0, fmt.Sprintf("PostgreSQL: how long a pool connection may stay unused before it is closed "+
		"(default: pool_max_conn_idle_time of the --db URL, else %v)", postgres.MaxConnIdleTimeDefault))
	fs.DurationVar(&f.pg.HealthCheckPeriod, "pg-health-check-period", 0, fmt.Sprintf("PostgreSQL: interval of the pool's checks of idle connections "+
		"(default: pool_health_check_period of the --db URL, else %v)", postgres.HealthCheckPeriodDefault))
}

// logger returns the logger the flags describe, writing to w.
func (f *serverFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: use text or json", f.logFormat)
}

// nodeConfig returns the node settings the flags describe.
func (f *serverFlags) nodeConfig(logger *slog.Logger) (node.Config, error) {
	if f.backoffScale <= 0 || math.IsInf(f.backoffScale, 0) || math.IsNaN(f.backoffScale) {
		return node.Config{}, fmt.Errorf("invalid --backoff-scale %v: use a positive number", f.backoffScale)
	}
	if f.leaseMargin <= 0 {
		return node.Config{}, fmt.Errorf("invalid --lease-margin %v: use a positive duration such as 1m", f.leaseMargin)
	}
	if f.pg.MaxConns < 0 {
		return node.Config{}, fmt.Errorf("invalid --pg-max-conns %d: use a positive number", f.pg.MaxConns)
	}
	if f.pg.MinConns < 0 {
		return node.Config{}, fmt.Errorf("invalid --pg-min-conns %d: use zero or a positive number", f.pg.MinConns)
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{
		{"--pg-max-conn-lifetime", f.pg.MaxConnLifetime},
		{"--pg-max-conn-idle-time", f.pg.MaxConnIdleTime},
		{"--pg-health-check-period", f.pg.HealthCheckPeriod},
	} {
		if d.value < 0 {
			return node.Config{}, fmt.Errorf("invalid %s %v: use a positive duration such as 1m", d.flag, d.value)
		}
	}
	cfg := node.Config{
		DB:             f.db,
		NodeID:         f.nodeID,
		MaxBodyBytes:   f.maxBodyBytes,
		DefaultTimeout: f.defaultTimeout,
		Concurrency:    f.concurrency,
		ShutdownGrace:  f.shutdownGrace,
		Logger:         logger,

		MessageRetention: f.messageRetention,
		EventRetention:   f.eventRetention,
		DLQRetention:     f.dlqRetention,

		LeaseMargin: f.leaseMargin,
		Postgres:    f.pg,
	}
	if f.scheduleTick != 0 {
		if err := (schedule.Timescale{MinuteLength: f.scheduleTick}).Validate(); err != nil {
			return node.Config{}, fmt.Errorf("invalid --schedule-tick %v: use a positive duration that divides 1m, such as 1s", f.scheduleTick)
		}
		cfg.ScheduleTick = f.scheduleTick
	}
	if f.backoffScale != 1 {
		scale := f.backoffScale
		cfg.Backoff = func(n int) time.Duration {
			return time.Duration(float64(dispatch.DefaultBackoff(n)) * scale)
		}
	}
	return cfg, nil
}

func newServeCommand() *cobra.Command {
	var flags serverFlags
	var listen, token string

	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Ferry server",
		Long: `Run the Ferry server. Every flag can also be set through the environment
as FERRY_<FLAG>, for example FERRY_TOKEN or FERRY_DB.

Signing keys are generated on first start and kept in the database; read
them with GET /v2/keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if token == "" {
				return fmt.Errorf("missing API token: set --token or FERRY_TOKEN to a long random secret, for example FERRY_TOKEN=$(openssl rand -hex 32)")
			}
			logger, err := flags.logger(os.Stderr)
			if err != nil {
				return err
			}
			cfg, err := flags.nodeConfig(logger)
			if err != nil {
				return err
			}
			cfg.Listen = listen
			cfg.Token = token
			return node.Run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "TCP address of the API")
	cmd.Flags().StringVar(&token, "token", "", "bearer token that API clients must send (required)")
	flags.register(cmd, "ferry.db", "SQLite database file, or a postgres:// URL for several nodes on one PostgreSQL database")
	return cmd
}
