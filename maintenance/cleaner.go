// Package maintenance runs Ferry's background upkeep: the retention
// cleaner that removes finished messages, old events, expired dead-letter
// entries and stale deduplication ids.
package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/ferryhq/ferry/store"
)

// Defaults of CleanerConfig.
const (
	MessageRetentionDefault = time.Hour
	EventRetentionDefault   = 3 * 24 * time.Hour
	DLQRetentionDefault     = 7 * 24 * time.Hour
	CleanIntervalDefault    = time.Minute
	CleanBatchDefault       = 1000
)

// CleanerStore is the part of store.Store the cleaner uses.
type CleanerStore interface {
	MessageDeleteFinished(ctx context.Context, params *store.CleanupParams) (int, error)
	EventDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error)
	DLQDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error)
	DedupDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error)
}

// CleanerConfig configures a Cleaner. Zero durations take the defaults.
type CleanerConfig struct {
	Store CleanerStore

	// MessageRetention keeps delivered, failed and cancelled messages
	// readable this long after they finished. Failed messages stay while
	// their dead-letter entry exists.
	MessageRetention time.Duration

	// EventRetention keeps events this long.
	EventRetention time.Duration

	// DLQRetention keeps dead-letter entries this long.
	DLQRetention time.Duration

	// Interval is the time between passes.
	Interval time.Duration

	// Batch is the number of rows one delete statement removes, so that a
	// pass never holds the database for long.
	Batch int

	Logger *slog.Logger
	Now    func() time.Time
}

// Cleaner deletes data past its retention.
type Cleaner struct {
	cfg    CleanerConfig
	logger *slog.Logger
}

// NewCleaner returns a Cleaner with defaults applied.
func NewCleaner(cfg CleanerConfig) *Cleaner {
	if cfg.MessageRetention <= 0 {
		cfg.MessageRetention = MessageRetentionDefault
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = EventRetentionDefault
	}
	if cfg.DLQRetention <= 0 {
		cfg.DLQRetention = DLQRetentionDefault
	}
	if cfg.Interval <= 0 {
		cfg.Interval = CleanIntervalDefault
	}
	if cfg.Batch <= 0 {
		cfg.Batch = CleanBatchDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cleaner{cfg: cfg, logger: cfg.Logger.With("component", "cleaner")}
}

// Run cleans once at start and then every Interval until ctx ends.
func (c *Cleaner) Run(ctx context.Context) {
	c.logger.Debug("cleaner started", "interval", c.cfg.Interval.String())
	defer c.logger.Debug("cleaner stopped")
	ticker := time.NewTicker(c.cfg.Interval)
	defer ticker.Stop()
	for {
		c.Clean(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Clean runs one pass over every kind of data and returns the number of
// rows deleted.
func (c *Cleaner) Clean(ctx context.Context) int {
	now := c.cfg.Now()
	total := 0
	// Dead-letter entries go first, so their messages can go in the same
	// pass.
	total += c.drain(ctx, "dlq entries", c.cfg.Store.DLQDeleteBefore, now.Add(-c.cfg.DLQRetention))
	total += c.drain(ctx, "messages", c.cfg.Store.MessageDeleteFinished, now.Add(-c.cfg.MessageRetention))
	total += c.drain(ctx, "events", c.cfg.Store.EventDeleteBefore, now.Add(-c.cfg.EventRetention))
	total += c.drain(ctx, "deduplication ids", c.cfg.Store.DedupDeleteExpired, now)
	return total
}

// drain calls del in batches until a batch deletes fewer rows than asked.
func (c *Cleaner) drain(ctx context.Context, what string, del func(context.Context, *store.CleanupParams) (int, error), before time.Time) int {
	total := 0
	for ctx.Err() == nil {
		n, err := del(ctx, &store.CleanupParams{Before: before, Limit: c.cfg.Batch})
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("retention cleanup failed; retrying at the next pass", "table", what, "error", err)
			}
			break
		}
		total += n
		if n < c.cfg.Batch {
			break
		}
	}
	if total > 0 {
		c.logger.Info("retention cleanup", "table", what, "deleted", total, "before", before.UTC().Format(time.RFC3339))
	}
	return total
}
