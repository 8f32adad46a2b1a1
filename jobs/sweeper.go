package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// Defaults of SweeperConfig.
const (
	SweepIntervalDefault = time.Second
	SweepBatchDefault    = 100
)

// SweeperStore is the part of store.Store the sweeper uses.
type SweeperStore interface {
	JobListExpired(ctx context.Context, now time.Time, limit int) ([]string, error)
	JobFinish(ctx context.Context, params *store.JobFinishParams) (*ferry.Job, bool, error)
	JobIdempotencyDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error)
}

// SweeperConfig configures a Sweeper. Zero fields take the defaults.
type SweeperConfig struct {
	Store SweeperStore

	// Interval is the time between passes.
	Interval time.Duration

	// Batch is the number of expired jobs one pass reads at a time.
	Batch int

	Logger *slog.Logger
	Now    func() time.Time
}

// Sweeper moves jobs past their timeout to the timeout state and deletes
// expired idempotency keys. It runs on the leader node only.
//
// NOTE: nothing deletes finished jobs, their runs, attempts, results or
// events yet, so these tables grow with every job.
type Sweeper struct {
	cfg    SweeperConfig
	logger *slog.Logger
}

// NewSweeper returns a Sweeper with defaults applied.
func NewSweeper(cfg SweeperConfig) *Sweeper {
	if cfg.Interval <= 0 {
		cfg.Interval = SweepIntervalDefault
	}
	if cfg.Batch <= 0 {
		cfg.Batch = SweepBatchDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sweeper{cfg: cfg, logger: cfg.Logger.With("component", "job-sweeper")}
}

// Run sweeps at start and then every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	s.logger.Debug("job sweeper started", "interval", s.cfg.Interval.String())
	defer s.logger.Debug("job sweeper stopped")
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	for {
		s.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Sweep runs one pass and returns the number of jobs it timed out.
//
// Listing and finishing are separate steps, so a job can complete between
// them. JobFinish compares the state and the timeout again inside its
// transaction, so such a job keeps its completion.
func (s *Sweeper) Sweep(ctx context.Context) int {
	now := s.cfg.Now()
	timedOut := 0
	// Each round either times out jobs or finds them finished meanwhile,
	// so the list shrinks; maxRounds bounds a pass on a busy store.
	const maxRounds = 100
	for range maxRounds {
		ids, err := s.cfg.Store.JobListExpired(ctx, now, s.cfg.Batch)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Error("listing expired jobs failed; retrying at the next pass", "error", err)
			}
			return timedOut
		}
		for _, id := range ids {
			if s.expire(ctx, id, now) {
				timedOut++
			}
		}
		if len(ids) < s.cfg.Batch {
			break
		}
	}

	n, err := s.cfg.Store.JobIdempotencyDeleteExpired(ctx, &store.CleanupParams{Before: now, Limit: 1000})
	if err != nil && ctx.Err() == nil {
		s.logger.Error("deleting expired idempotency keys failed; retrying at the next pass", "error", err)
	} else if n > 0 {
		s.logger.Debug("deleted expired idempotency keys", "count", n)
	}
	return timedOut
}

// expire times out job id when it is still unfinished and past its
// timeout at now.
func (s *Sweeper) expire(ctx context.Context, id string, now time.Time) bool {
	job, applied, err := s.cfg.Store.JobFinish(ctx, &store.JobFinishParams{
		ID: id, Now: now, State: ferry.JobStateTimeout, Reason: ferry.JobReasonTimeout, RequireExpired: true,
		ErrorOf: TimeoutError,
	})
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("timing out a job failed; retrying at the next pass", "job_id", id, "error", err)
		}
		return false
	}
	if !applied {
		s.logger.Debug("job finished before the sweeper reached it", "job_id", id, "state", job.State)
		return false
	}
	s.logger.Warn("job timed out", "job_id", id, "timeout_at", job.TimeoutAt.UTC().Format(time.RFC3339),
		"runs", job.ProcessedRuns, "processed_results", job.ProcessedResults, "target_results", job.TargetResults)
	return true
}
