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

	messageRetention time.Duration
	eventRetention   time.Duration
	dlqRetention     time.Duration
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
