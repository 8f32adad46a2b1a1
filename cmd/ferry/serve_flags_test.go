package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/node"
)

// parseServeFlags parses args as ferry serve does, environment included,
// and returns the node settings.
func parseServeFlags(t *testing.T, args ...string) (node.Config, error) {
	t.Helper()
	var flags serverFlags
	cmd := &cobra.Command{Use: "serve"}
	flags.register(cmd, "ferry.db", "database")
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	if err := bindEnv(cmd); err != nil {
		return node.Config{}, err
	}
	return flags.nodeConfig(slog.New(slog.DiscardHandler))
}

func TestServePostgresPoolFlags(t *testing.T) {
	cfg, err := parseServeFlags(t, "--pg-max-conns", "8", "--pg-min-conns", "2", "--pg-max-conn-lifetime", "30m",
		"--pg-max-conn-idle-time", "5m", "--pg-health-check-period", "10s", "--lease-margin", "2s")
	if err != nil {
		t.Fatalf("nodeConfig: %v", err)
	}
	pg := cfg.Postgres
	if pg.MaxConns != 8 {
		t.Errorf("Postgres.MaxConns = %d, want 8", pg.MaxConns)
	}
	if pg.MinConns != 2 {
		t.Errorf("Postgres.MinConns = %d, want 2", pg.MinConns)
	}
	if pg.MaxConnLifetime != 30*time.Minute {
		t.Errorf("Postgres.MaxConnLifetime = %v, want 30m", pg.MaxConnLifetime)
	}
	if pg.MaxConnIdleTime != 5*time.Minute {
		t.Errorf("Postgres.MaxConnIdleTime = %v, want 5m", pg.MaxConnIdleTime)
	}
	if pg.HealthCheckPeriod != 10*time.Second {
		t.Errorf("Postgres.HealthCheckPeriod = %v, want 10s", pg.HealthCheckPeriod)
	}
	if cfg.LeaseMargin != 2*time.Second {
		t.Errorf("LeaseMargin = %v, want 2s", cfg.LeaseMargin)
	}
}

func TestServeFlagDefaultsLeavePoolToDSN(t *testing.T) {
	cfg, err := parseServeFlags(t)
	if err != nil {
		t.Fatalf("nodeConfig: %v", err)
	}
	// Zero options let postgres.Open take the DSN's pool_* parameters or
	// its own defaults.
	if cfg.Postgres.MaxConns != 0 || cfg.Postgres.MinConns != 0 || cfg.Postgres.MaxConnLifetime != 0 ||
		cfg.Postgres.MaxConnIdleTime != 0 || cfg.Postgres.HealthCheckPeriod != 0 {
		t.Errorf("Postgres options without flags = %+v, want all zero", cfg.Postgres)
	}
	if cfg.LeaseMargin != dispatch.LeaseMarginDefault {
		t.Errorf("LeaseMargin = %v, want %v", cfg.LeaseMargin, dispatch.LeaseMarginDefault)
	}
}

func TestServePoolFlagsFromEnvironment(t *testing.T) {
	t.Setenv("FERRY_PG_MAX_CONNS", "12")
	t.Setenv("FERRY_LEASE_MARGIN", "30s")
	cfg, err := parseServeFlags(t)
	if err != nil {
		t.Fatalf("nodeConfig: %v", err)
	}
	if cfg.Postgres.MaxConns != 12 {
		t.Errorf("Postgres.MaxConns from FERRY_PG_MAX_CONNS = %d, want 12", cfg.Postgres.MaxConns)
	}
	if cfg.LeaseMargin != 30*time.Second {
		t.Errorf("LeaseMargin from FERRY_LEASE_MARGIN = %v, want 30s", cfg.LeaseMargin)
	}
}

func TestServeRejectsInvalidPoolFlags(t *testing.T) {
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"--pg-max-conns", "-1"}, "--pg-max-conns"},
		{[]string{"--pg-min-conns", "-1"}, "--pg-min-conns"},
		{[]string{"--pg-max-conn-lifetime", "-1s"}, "--pg-max-conn-lifetime"},
		{[]string{"--pg-max-conn-idle-time", "-1s"}, "--pg-max-conn-idle-time"},
		{[]string{"--pg-health-check-period", "-1s"}, "--pg-health-check-period"},
		{[]string{"--lease-margin", "0s"}, "--lease-margin"},
	}
	for _, tc := range cases {
		_, err := parseServeFlags(t, tc.args...)
		if err == nil {
			t.Errorf("%v: accepted, want an error", tc.args)
			continue
		}
		if !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: error %q does not name %s", tc.args, err, tc.flag)
		}
	}
}
