// Package leader elects one node of a cluster to run the services that
// must not run on two nodes at once, such as the retention cleaner.
//
// An Elector competes for a Lock. The node whose session holds the lock is
// the leader: its services run under a context that ends when the lock is
// lost or the Elector stops. Without a Lock, as on SQLite, whose database
// belongs to one process, the node is always the leader.
//
// Leadership follows the lock, which only the database can see. A leader
// that is cut off from the database learns that it lost the lock at its
// next check, so services must tolerate a short overlap with a new leader.
package leader

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// RetryIntervalDefault is how often a follower tries to take the lock.
	// It bounds the takeover time after a leader process dies.
	RetryIntervalDefault = 2 * time.Second

	// CheckIntervalDefault is how often the leader confirms that it still
	// holds the lock when its connection reports nothing.
	CheckIntervalDefault = 2 * time.Second

	// ReconnectMaxDefault caps the wait between connection attempts, which
	// starts at 100 ms and doubles after each failure.
	ReconnectMaxDefault = 5 * time.Second
)

const reconnectMin = 100 * time.Millisecond

// Lock is a lock that at most one Session holds at a time.
type Lock interface {
	// Open opens a session, such as a database connection of its own.
	Open(ctx context.Context) (Session, error)
}

// Session competes for a Lock. Its methods are called from one goroutine.
type Session interface {
	// TryAcquire tries once to take the lock and reports whether the
	// session holds it. An error means that the session is broken.
	TryAcquire(ctx context.Context) (bool, error)

	// Hold blocks while the session holds the lock, confirming it every
	// checkInterval. It returns nil when ctx ends and an error once the
	// lock is lost or can no longer be confirmed.
	Hold(ctx context.Context, checkInterval time.Duration) error

	// Close ends the session and releases the lock if it is held.
	Close()
}

// Config configures an Elector. Zero durations take the defaults.
type Config struct {
	// Lock is the lock to compete for. Nil makes the node always the
	// leader.
	Lock Lock

	// NodeID names this node in logs.
	NodeID string

	RetryInterval time.Duration
	CheckInterval time.Duration
	ReconnectMax  time.Duration

	// Metrics receives the leadership state. Optional.
	Metrics *Metrics

	// Logger receives gains and losses of leadership and connection
	// failures. Defaults to a discarding logger.
	Logger *slog.Logger
}

// Elector runs services while its node holds the lock.
type Elector struct {
	cfg    Config
	logger *slog.Logger
}

// New returns an Elector with the defaults applied.
func New(cfg Config) *Elector {
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = RetryIntervalDefault
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = CheckIntervalDefault
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = ReconnectMaxDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, logger: cfg.Logger.With("component", "leader", "node_id", cfg.NodeID)}
}

// Run competes for leadership until ctx ends. Each time this node becomes
// the leader it starts every service in a goroutine of its own, and when
// it stops being the leader it cancels their context and waits for all of
// them to return before it competes again. Run returns after the services
// of the last term have returned.
func (e *Elector) Run(ctx context.Context, services []func(ctx context.Context)) {
	if e.cfg.Lock == nil {
		e.logger.Info("gained leadership; the store is used by this node alone")
		e.cfg.Metrics.set(true)
		runServices(ctx, services)
		e.cfg.Metrics.set(false)
		return
	}

	wait := reconnectMin
	var outageStart time.Time
	failedTries := 0
	for ctx.Err() == nil {
		session, err := e.cfg.Lock.Open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failedTries++
			if outageStart.IsZero() {
				outageStart = time.Now()
				e.logger.Warn("leader election cannot connect; retrying", "error", err, "retry_in", wait.String())
			} else {
				e.logger.Debug("leader election cannot connect; retrying", "error", err, "retry_in", wait.String())
			}
			sleep(ctx, wait)
			wait = min(2*wait, e.cfg.ReconnectMax)
			continue
		}
		if !outageStart.IsZero() {
			e.logger.Info("leader election reconnected",
				"outage", time.Since(outageStart).Round(time.Millisecond).String(), "failed_tries", failedTries)
		}
		outageStart, failedTries, wait = time.Time{}, 0, reconnectMin

		err = e.compete(ctx, session, services)
		session.Close()
		if ctx.Err() != nil {
			break
		}
		outageStart = time.Now()
		e.logger.Warn("leader election lost its connection; reconnecting", "error", err)
	}
}

// compete tries to take the lock every RetryInterval and runs the services
// while the session holds it. It returns nil when ctx ends, and the error
// that broke the session otherwise.
func (e *Elector) compete(ctx context.Context, session Session, services []func(ctx context.Context)) error {
	for {
		held, err := session.TryAcquire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if !held {
			sleep(ctx, e.cfg.RetryInterval)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}

		err = e.lead(ctx, session, services)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// lead runs the services while the session holds the lock, and returns
// the error that ended the term, or nil when ctx ended.
func (e *Elector) lead(ctx context.Context, session Session, services []func(ctx context.Context)) error {
	start := time.Now()
	e.logger.Info("gained leadership; starting leader-only services", "services", len(services))
	e.cfg.Metrics.set(true)

	termCtx, endTerm := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { runServices(termCtx, services) })
	err := session.Hold(termCtx, e.cfg.CheckInterval)
	endTerm()

	// The services stop before this node competes again, so two terms of
	// this node never overlap.
	wg.Wait()
	e.cfg.Metrics.set(false)
	term := time.Since(start).Round(time.Millisecond).String()
	switch {
	case ctx.Err() != nil:
		e.logger.Info("leadership released at stop", "term", term)
		return nil
	case err == nil:
		err = errors.New("the lock session ended without an error")
	}
	e.logger.Warn("lost leadership; leader-only services stopped", "error", err, "term", term)
	return err
}

// runServices runs each service in its own goroutine and waits for all.
func runServices(ctx context.Context, services []func(ctx context.Context)) {
	var wg sync.WaitGroup
	for _, run := range services {
		wg.Go(func() { run(ctx) })
	}
	wg.Wait()
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// Metrics exports the leadership state. A nil *Metrics records nothing.
type Metrics struct {
	leader prometheus.Gauge
}

// NewMetrics registers the ferry_leader gauge with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{leader: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ferry_leader",
		Help: "1 while this node is the leader and runs the leader-only services, else 0.",
	})}
	reg.MustRegister(m.leader)
	return m
}

func (m *Metrics) set(leader bool) {
	if m == nil {
		return
	}
	if leader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
