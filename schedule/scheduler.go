// Package schedule fires cron schedules. It parses Upstash-Cron
// expressions, builds the message of each tick, and runs the Scheduler
// loop that fires due schedules through the store.
//
// A tick fires at most once however many schedulers share a database,
// because the store moves a schedule's next fire time with a
// compare-and-set in the transaction that stores the message. The next
// tick is always the first one after the firing time, so ticks missed
// while no scheduler ran fire once, not once per missed tick.
package schedule

import (
	"context"
	"log/slog"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// Defaults of Config.
const (
	PollIntervalDefault = time.Second
	BatchSizeDefault    = 100
)

// Config configures a Scheduler. Zero fields take the defaults.
type Config struct {
	// Store holds the schedules. Required.
	Store store.Store

	// Notify is called after schedules fired, to wake the dispatcher.
	// Optional.
	Notify func()

	// Timescale maps real time to cron time; the zero value is real time.
	Timescale Timescale

	// PollInterval bounds the sleep between looks at the store, so a new
	// schedule's first tick fires at most PollInterval late. Default
	// PollIntervalDefault, or a tenth of Timescale's cron minute when that
	// is shorter.
	PollInterval time.Duration

	// BatchSize is the number of schedules fired per transaction. Default
	// BatchSizeDefault.
	BatchSize int

	// Logger receives starts, stops and errors. Defaults to a discarding
	// logger.
	Logger *slog.Logger

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// After returns a channel that receives once d has passed. Defaults to
	// time.After. Tests replace Now and After to step time.
	After func(d time.Duration) <-chan time.Time
}

// Scheduler fires due schedules.
type Scheduler struct {
	cfg    Config
	logger *slog.Logger
}

// New returns a Scheduler. It panics when Store is missing, because that
// is a wiring mistake.
func New(cfg Config) *Scheduler {
	if cfg.Store == nil {
		panic("schedule: Config.Store is required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = PollIntervalDefault
		if m := cfg.Timescale.MinuteLength; m > 0 {
			cfg.PollInterval = min(cfg.PollInterval, m/10)
		}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = BatchSizeDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	return &Scheduler{cfg: cfg, logger: cfg.Logger.With("component", "scheduler")}
}

// Run fires schedules until ctx ends. It sleeps until the earliest next
// fire time, at most PollInterval.
func (s *Scheduler) Run(ctx context.Context) {
	s.logger.Info("scheduler started")
	defer s.logger.Info("scheduler stopped")

	for ctx.Err() == nil {
		s.pause(ctx, s.step(ctx))
	}
}

// step fires what is due and returns how long to sleep.
func (s *Scheduler) step(ctx context.Context) time.Duration {
	next, ok, err := s.cfg.Store.ScheduleNextFireAt(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("reading the next schedule fire time failed; retrying after the poll interval", "error", err)
		}
		return s.cfg.PollInterval
	}
	if !ok {
		return s.cfg.PollInterval
	}
	if wait := next.Sub(s.cfg.Now()); wait > 0 {
		return min(wait, s.cfg.PollInterval)
	}

	n, err := s.FireDue(ctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			s.logger.Error("firing schedules failed; retrying after the poll interval", "error", err)
		}
		return s.cfg.PollInterval
	case n == 0:
		// Another scheduler holds the due schedules and fires them.
		return s.cfg.PollInterval
	}
	return 0
}

// FireDue fires every schedule due now, in batches, and returns the number
// of schedules fired. Tests call it after stepping the clock.
func (s *Scheduler) FireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		now := s.cfg.Now()
		fired, err := s.cfg.Store.ScheduleFireDue(ctx, &store.ScheduleFireParams{
			Now:     now,
			Limit:   s.cfg.BatchSize,
			Trigger: s.trigger(now),
		})
		if err != nil {
			return total, err
		}
		total += len(fired)
		for _, m := range fired {
			s.logger.Debug("schedule fired", "schedule_id", m.ScheduleID, "message_id", m.ID)
		}
		if len(fired) > 0 && s.cfg.Notify != nil {
			s.cfg.Notify()
		}
		if len(fired) < s.cfg.BatchSize {
			return total, nil
		}
	}
}

// trigger returns the store callback that fires a schedule at now.
func (s *Scheduler) trigger(now time.Time) func(sc *ferry.Schedule) store.ScheduleTrigger {
	return func(sc *ferry.Schedule) store.ScheduleTrigger {
		c, err := ParseCron(sc.Cron)
		if err != nil {
			// The API validates every expression, so only a stored value
			// that a later version reads differently gets here.
			return store.ScheduleTrigger{Error: "invalid cron expression: " + err.Error()}
		}
		t := store.ScheduleTrigger{Message: Message(sc, now), Next: s.cfg.Timescale.Next(c, now)}
		if t.Next.IsZero() {
			t.Error = "the cron expression has no tick within five years; the schedule stops"
		}
		return t
	}
}

// pause waits for d or the end of ctx.
func (s *Scheduler) pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-s.cfg.After(d):
	case <-ctx.Done():
	}
}

// Message returns the message that schedule sc triggers at time at: its
// settings copied, ScheduleID set, and NotBefore at plus the schedule's
// delay.
func Message(sc *ferry.Schedule, at time.Time) *ferry.Message {
	return &ferry.Message{
		ID:                    ferry.NewMessageID(),
		URL:                   sc.Destination,
		Method:                sc.Method,
		Header:                sc.Header.Clone(),
		Body:                  sc.Body,
		MaxRetries:            sc.Retries,
		RetryDelayExpr:        sc.RetryDelayExpr,
		Timeout:               sc.Timeout,
		NotBefore:             at.Add(sc.Delay),
		CreatedAt:             at,
		Labels:                sc.Labels,
		CallerIP:              sc.CallerIP,
		Callback:              sc.Callback,
		FailureCallback:       sc.FailureCallback,
		CallbackHeader:        sc.CallbackHeader.Clone(),
		FailureCallbackHeader: sc.FailureCallbackHeader.Clone(),
		QueueName:             sc.QueueName,
		ScheduleID:            sc.ID,
	}
}
