package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// queueSystem is one system under comparison: something that accepts a
// piece of work one insert at a time and later hands it to a worker.
type queueSystem struct {
	// name identifies the system in tables, plots and ratios.
	name string

	// describe is a short description of what is measured and how the
	// system is set up.
	describe string

	// start sets the system up and returns it running. Its workers must
	// call worked with the sequence number of each piece of work as soon
	// as they begin it.
	start func(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error)
}

// runningSystem is a started queueSystem.
type runningSystem interface {
	// insert submits one piece of work and returns once the system has
	// acknowledged it (for Ferry and River: committed to the database).
	insert(ctx context.Context, seq int64) error

	// stop shuts the system down and removes what start created.
	stop()
}

// runConfig holds the settings shared by every system.
type runConfig struct {
	duration   time.Duration
	warmup     time.Duration
	producers  int
	workers    int
	maxPending int
	pgURL      string
	redisAddr  string
	redisDB    int
	log        io.Writer
}

// systemResult is the outcome of one system.
type systemResult struct {
	System   string `json:"system"`
	Describe string `json:"describe"`
	Round    int    `json:"round"`

	// Inserted counts the acknowledged inserts in the measurement window,
	// and Completed the pieces of work that workers began in it.
	Inserted     int64   `json:"inserted"`
	InsertRate   float64 `json:"insertedPerSecond"`
	Completed    int64   `json:"completed"`
	CompleteRate float64 `json:"completedPerSecond"`

	// Latency runs from the insert acknowledgement to the start of work.
	Latency *latencySummary `json:"latency,omitempty"`

	Errors      int64  `json:"errors"`
	FirstError  string `json:"firstError,omitempty"`
	Undelivered int64  `json:"unfinishedAfterDrain"`
	Duplicates  int64  `json:"duplicates"`
}

// measure runs sys under cfg: cfg.producers goroutines insert one piece of
// work at a time, with at most cfg.maxPending inserted but not yet begun,
// for cfg.warmup and then cfg.duration. Only the second period counts.
// Afterwards it waits up to drainTimeout for the outstanding work.
func measure(ctx context.Context, sys *queueSystem, cfg *runConfig, status func(string)) (*systemResult, error) {
	slots := make(chan struct{}, cfg.maxPending)
	tracker := newTracker(func() { <-slots })

	running, err := sys.start(ctx, cfg, tracker.worked)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", sys.name, err)
	}
	defer running.stop()

	start := time.Now()
	windowStart := start.Add(cfg.warmup)
	windowEnd := windowStart.Add(cfg.duration)
	tracker.setWindow(windowStart, windowEnd)

	var seq, inserted atomic.Int64
	var errs errorSample
	var wg sync.WaitGroup
	for range cfg.producers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(windowEnd) {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				n := seq.Add(1)
				if err := running.insert(ctx, n); err != nil {
					<-slots
					errs.add(err)
					continue
				}
				at := time.Now()
				if !at.Before(windowStart) && !at.After(windowEnd) {
					inserted.Add(1)
				}
				tracker.acked(n, at)
			}
		})
	}

	stopStatus := make(chan struct{})
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-stopStatus:
				return
			case <-ticker.C:
				status(fmt.Sprintf("%-15s %3.0fs  %d inserted, %d begun, %d pending",
					sys.name, time.Since(start).Seconds(), tracker.ackCount.Load(), tracker.workCount.Load(), tracker.pending()))
			}
		}
	}()

	wg.Wait()
	undelivered := tracker.waitDrained(ctx, drainTimeout)
	close(stopStatus)
	<-statusDone
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	seconds := cfg.duration.Seconds()
	return &systemResult{
		System:       sys.name,
		Describe:     sys.describe,
		Inserted:     inserted.Load(),
		InsertRate:   float64(inserted.Load()) / seconds,
		Completed:    tracker.inWindow.Load(),
		CompleteRate: float64(tracker.inWindow.Load()) / seconds,
		Latency:      tracker.latency.summary(),
		Errors:       errs.count.Load(),
		FirstError:   errs.text(),
		Undelivered:  undelivered,
		Duplicates:   tracker.duplicates.Load(),
	}, nil
}

// drainTimeout bounds the wait for outstanding work after the producers
// stop.
const drainTimeout = 60 * time.Second

// tracker matches each insert acknowledgement with the start of its work,
// in whichever order they arrive. Work that starts before its producer has
// read the acknowledgement counts as zero latency.
type tracker struct {
	shards [64]trackerShard

	mu          sync.RWMutex
	windowStart time.Time
	windowEnd   time.Time

	ackCount   atomic.Int64
	workCount  atomic.Int64
	matched    atomic.Int64
	inWindow   atomic.Int64
	duplicates atomic.Int64

	onMatch func()
	latency latencyRecorder
}

type trackerShard struct {
	mu     sync.Mutex
	ack    map[int64]time.Time
	work   map[int64]time.Time
	closed map[int64]struct{}
}

func newTracker(onMatch func()) *tracker {
	t := &tracker{onMatch: onMatch}
	for i := range t.shards {
		t.shards[i] = trackerShard{ack: map[int64]time.Time{}, work: map[int64]time.Time{}, closed: map[int64]struct{}{}}
	}
	return t
}

func (t *tracker) setWindow(start, end time.Time) {
	t.mu.Lock()
	t.windowStart, t.windowEnd = start, end
	t.mu.Unlock()
}

// inside reports whether at falls in the measurement window. Before
// setWindow the window is empty.
func (t *tracker) inside(at time.Time) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return !t.windowStart.IsZero() && !at.Before(t.windowStart) && !at.After(t.windowEnd)
}

func (t *tracker) acked(seq int64, at time.Time) {
	t.ackCount.Add(1)
	s := &t.shards[seq%int64(len(t.shards))]
	s.mu.Lock()
	workAt, ok := s.work[seq]
	if ok {
		delete(s.work, seq)
		s.closed[seq] = struct{}{}
	} else {
		s.ack[seq] = at
	}
	s.mu.Unlock()
	if ok {
		t.match(at, workAt)
	}
}

// worked records that the work of seq began now.
func (t *tracker) worked(seq int64) {
	at := time.Now()
	t.workCount.Add(1)
	s := &t.shards[seq%int64(len(t.shards))]
	s.mu.Lock()
	_, closed := s.closed[seq]
	_, seen := s.work[seq]
	if closed || seen {
		s.mu.Unlock()
		t.duplicates.Add(1)
		return
	}
	ackAt, ok := s.ack[seq]
	if ok {
		delete(s.ack, seq)
		s.closed[seq] = struct{}{}
	} else {
		s.work[seq] = at
	}
	s.mu.Unlock()
	if t.inside(at) {
		t.inWindow.Add(1)
	}
	if ok {
		t.match(ackAt, at)
	}
}

func (t *tracker) match(ackAt, workAt time.Time) {
	t.matched.Add(1)
	if t.inside(workAt) {
		t.latency.add(max(workAt.Sub(ackAt), 0))
	}
	t.onMatch()
}

func (t *tracker) pending() int64 { return t.ackCount.Load() - t.matched.Load() }

// waitDrained waits until all acknowledged work began or timeout passes,
// and returns the number still outstanding.
func (t *tracker) waitDrained(ctx context.Context, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for t.pending() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return t.pending()
}

// latencySummary is a distribution of durations in milliseconds, with
// nearest-rank percentiles.
type latencySummary struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

type latencyRecorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

func (r *latencyRecorder) add(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

func (r *latencyRecorder) summary() *latencySummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return nil
	}
	slices.Sort(r.samples)
	at := func(p float64) float64 {
		rank := int(float64(len(r.samples))*p/100+0.999999) - 1
		d := r.samples[min(max(rank, 0), len(r.samples)-1)]
		return float64(d) / float64(time.Millisecond)
	}
	return &latencySummary{Count: len(r.samples), P50Ms: at(50), P90Ms: at(90), P99Ms: at(99), MaxMs: at(100)}
}

// errorSample counts errors and keeps the first.
type errorSample struct {
	count atomic.Int64
	mu    sync.Mutex
	first error
}

func (e *errorSample) add(err error) {
	if e.count.Add(1) == 1 {
		e.mu.Lock()
		e.first = err
		e.mu.Unlock()
	}
}

func (e *errorSample) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first == nil {
		return ""
	}
	return e.first.Error()
}
