package leader

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeLock is a Lock in memory. Sessions hold it in turn, and a test ends
// the holder's term with breakHolder.
type fakeLock struct {
	mu       sync.Mutex
	holder   *fakeSession
	opens    int
	openErrs int // Open fails this many more times
}

func (l *fakeLock) Open(ctx context.Context) (Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.openErrs > 0 {
		l.openErrs--
		return nil, errors.New("connection refused")
	}
	l.opens++
	return &fakeSession{lock: l, broken: make(chan struct{})}, nil
}

// breakHolder makes the holding session fail, as a lost connection does.
func (l *fakeLock) breakHolder() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != nil {
		close(l.holder.broken)
		l.holder = nil
	}
}

func (l *fakeLock) openCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opens
}

type fakeSession struct {
	lock   *fakeLock
	broken chan struct{}
}

func (s *fakeSession) TryAcquire(ctx context.Context) (bool, error) {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	if s.lock.holder == nil {
		s.lock.holder = s
	}
	return s.lock.holder == s, nil
}

func (s *fakeSession) Hold(ctx context.Context, checkInterval time.Duration) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.broken:
		return errors.New("connection reset by peer")
	}
}

func (s *fakeSession) Close() {
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	if s.lock.holder == s {
		s.lock.holder = nil
	}
}

// termCounter is a service that counts its runs and the runs in progress.
type termCounter struct {
	started, running atomic.Int32
}

func (c *termCounter) run(ctx context.Context) {
	c.started.Add(1)
	c.running.Add(1)
	defer c.running.Add(-1)
	<-ctx.Done()
}

// gaugeValue returns the value of the ferry_leader gauge.
func gaugeValue(t *testing.T, m *Metrics) float64 {
	t.Helper()
	var metric dto.Metric
	if err := m.leader.Write(&metric); err != nil {
		t.Fatalf("read ferry_leader: %v", err)
	}
	return metric.GetGauge().GetValue()
}

// waitFor polls cond every 5 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestElectorWithoutLockAlwaysLeads(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := New(Config{NodeID: "node-a", Metrics: NewMetrics(reg)})
	var services termCounter

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, []func(context.Context){services.run, services.run})
	}()

	waitFor(t, "both services run", func() bool { return services.running.Load() == 2 })
	if got := gaugeValue(t, e.cfg.Metrics); got != 1 {
		t.Errorf("ferry_leader = %v while leading, want 1", got)
	}

	cancel()
	<-done
	if got := services.running.Load(); got != 0 {
		t.Errorf("%d services still running after Run returned, want 0", got)
	}
	if got := gaugeValue(t, e.cfg.Metrics); got != 0 {
		t.Errorf("ferry_leader = %v after Run returned, want 0", got)
	}
}

func TestElectorOneLeaderAtATime(t *testing.T) {
	lock := &fakeLock{}
	var services termCounter
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, id := range []string{"node-a", "node-b", "node-c"} {
		e := New(Config{Lock: lock, NodeID: id, RetryInterval: 10 * time.Millisecond})
		wg.Go(func() { e.Run(ctx, []func(context.Context){services.run}) })
	}

	// Each broken term is followed by exactly one new one.
	for term := 1; term <= 3; term++ {
		waitFor(t, "a leader runs its service", func() bool { return services.started.Load() == int32(term) })
		time.Sleep(50 * time.Millisecond)
		if got := services.running.Load(); got != 1 {
			t.Fatalf("term %d: %d services running, want 1", term, got)
		}
		lock.breakHolder()
	}

	cancel()
	wg.Wait()
	if got := services.running.Load(); got != 0 {
		t.Errorf("%d services still running after every Run returned, want 0", got)
	}
}

func TestElectorLossStopsServicesAndReconnects(t *testing.T) {
	lock := &fakeLock{openErrs: 2}
	reg := prometheus.NewRegistry()
	e := New(Config{Lock: lock, NodeID: "node-a", RetryInterval: 10 * time.Millisecond, Metrics: NewMetrics(reg)})
	var services termCounter

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, []func(context.Context){services.run})
	}()

	// Two failed connects come first, and the third succeeds.
	waitFor(t, "the first term starts", func() bool { return services.running.Load() == 1 })
	if got := gaugeValue(t, e.cfg.Metrics); got != 1 {
		t.Errorf("ferry_leader = %v while leading, want 1", got)
	}

	lock.breakHolder()
	waitFor(t, "the second term starts", func() bool { return services.started.Load() == 2 })
	if got := lock.openCount(); got != 2 {
		t.Errorf("Open succeeded %d times, want 2: the broken session must be replaced", got)
	}

	cancel()
	<-done
	if got := services.running.Load(); got != 0 {
		t.Errorf("%d services still running after Run returned, want 0", got)
	}
	if got := gaugeValue(t, e.cfg.Metrics); got != 0 {
		t.Errorf("ferry_leader = %v after Run returned, want 0", got)
	}
}
