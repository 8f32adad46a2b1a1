package schedule

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/sqlite"
)

// manualClock is a clock that moves only when the test sets it.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newManualClock(now time.Time) *manualClock {
	return &manualClock{now: now}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives when the clock reaches now + d.
func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if !at.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: at, ch: ch})
	return ch
}

// Set moves the clock to now and wakes the waiters whose time came.
func (c *manualClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	pending := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(now) {
			pending = append(pending, w)
			continue
		}
		w.ch <- now
	}
	c.waiters = pending
}

// openStore opens a SQLite store at path, closed when the test ends.
func openStore(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// start is the clock reading at which the tests create their schedules:
// half a minute before a whole minute.
var start = time.Date(2026, 5, 17, 12, 0, 30, 0, time.UTC)

// createSchedule stores a schedule with the given cron and delay, created
// at start, as the API does.
func createSchedule(t *testing.T, st store.Store, id, expr string, delay time.Duration) *ferry.Schedule {
	t.Helper()
	sc := &ferry.Schedule{
		ID:          id,
		Cron:        expr,
		Destination: "https://receiver.example/" + id,
		Method:      http.MethodPost,
		Header:      http.Header{"Content-Type": {"application/json"}},
		Body:        []byte(`{"tick":true}`),
		Retries:     2,
		Delay:       delay,
		QueueName:   "nightly",
		CreatedAt:   start,
		NextFireAt:  mustParse(t, expr).Next(start),
	}
	if err := st.ScheduleUpsert(t.Context(), sc); err != nil {
		t.Fatalf("ScheduleUpsert: %v", err)
	}
	return sc
}

// triggered returns the messages of schedule id, in creation order.
func triggered(t *testing.T, st store.Store, id string) []*ferry.Message {
	t.Helper()
	events, err := st.EventList(t.Context(), &store.EventListParams{
		Filter: &store.MessageFilter{ScheduleIDs: []string{id}, States: []ferry.MessageState{ferry.MessageStateCreated}},
	})
	if err != nil {
		t.Fatalf("EventList(schedule %s): %v", id, err)
	}
	msgs := make([]*ferry.Message, 0, len(events))
	for _, e := range events {
		msgs = append(msgs, e.Message)
	}
	return msgs
}

// waitTriggered waits up to ten seconds of real time for schedule id to
// have n messages and returns them.
func waitTriggered(t *testing.T, st store.Store, id string, n int) []*ferry.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := triggered(t, st, id)
		if len(msgs) >= n || time.Now().After(deadline) {
			if len(msgs) != n {
				t.Fatalf("schedule %s has %d messages, want %d", id, len(msgs), n)
			}
			return msgs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSchedulerRunFiresEachTick(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ferry.db"))
	sc := createSchedule(t, st, "every-minute", "* * * * *", 0)
	clock := newManualClock(start)
	var notified atomic.Int32
	s := New(Config{Store: st, Now: clock.Now, After: clock.After, Notify: func() { notified.Add(1) }})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// Nothing fires before the first whole minute.
	clock.Set(start.Add(29 * time.Second))
	time.Sleep(50 * time.Millisecond)
	if msgs := triggered(t, st, sc.ID); len(msgs) != 0 {
		t.Fatalf("%d messages before the first tick, want 0", len(msgs))
	}

	for i := 1; i <= 3; i++ {
		tick := time.Date(2026, 5, 17, 12, i, 0, 0, time.UTC)
		clock.Set(tick)
		msgs := waitTriggered(t, st, sc.ID, i)
		m := msgs[i-1]
		if !m.CreatedAt.Equal(tick) || !m.NotBefore.Equal(tick) {
			t.Errorf("tick %d: message created at %s, not before %s; want both %s", i, m.CreatedAt, m.NotBefore, tick)
		}
	}
	if n := notified.Load(); n != 3 {
		t.Errorf("Notify was called %d times, want 3", n)
	}
}

func TestSchedulerMessageSettings(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ferry.db"))
	sc := createSchedule(t, st, "delayed", "*/5 * * * *", 90*time.Second)
	clock := newManualClock(start.Add(4*time.Minute + 30*time.Second))
	s := New(Config{Store: st, Now: clock.Now, After: clock.After})

	n, err := s.FireDue(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("FireDue = %d, %v; want 1, nil", n, err)
	}
	m := triggered(t, st, sc.ID)[0]
	at := clock.Now()
	if m.ScheduleID != sc.ID {
		t.Errorf("ScheduleID = %q, want %q", m.ScheduleID, sc.ID)
	}
	if m.QueueName != sc.QueueName {
		t.Errorf("QueueName = %q, want %q", m.QueueName, sc.QueueName)
	}
	if m.URL != sc.Destination || m.Method != sc.Method || string(m.Body) != string(sc.Body) || m.MaxRetries != sc.Retries {
		t.Errorf("message %s %s %q retries %d, want %s %s %q retries %d",
			m.Method, m.URL, m.Body, m.MaxRetries, sc.Method, sc.Destination, sc.Body, sc.Retries)
	}
	if want := at.Add(90 * time.Second); !m.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want the trigger time plus the delay, %s", m.NotBefore, want)
	}

	got, err := st.ScheduleGet(t.Context(), sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 5, 17, 12, 10, 0, 0, time.UTC); !got.NextFireAt.Equal(want) {
		t.Errorf("NextFireAt = %s, want %s", got.NextFireAt, want)
	}
	if !got.LastFireAt.Equal(at) {
		t.Errorf("LastFireAt = %s, want %s", got.LastFireAt, at)
	}
	if len(got.LastMessageIDs) != 1 || got.LastMessageIDs[0] != m.ID {
		t.Errorf("LastMessageIDs = %q, want [%s]", got.LastMessageIDs, m.ID)
	}
}

// TestSchedulerRestartFiresMissedTicksOnce stops a scheduler, lets ten
// ticks pass, and starts a new scheduler on a new handle of the database,
// as a restarted process does.
func TestSchedulerRestartFiresMissedTicksOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.db")
	first := openStore(t, path)
	sc := createSchedule(t, first, "missed", "* * * * *", 0)

	clock := newManualClock(time.Date(2026, 5, 17, 12, 1, 0, 0, time.UTC))
	if n, err := New(Config{Store: first, Now: clock.Now}).FireDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("FireDue before the stop = %d, %v; want 1, nil", n, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := openStore(t, path)
	clock.Set(time.Date(2026, 5, 17, 12, 11, 20, 0, time.UTC))
	restarted := New(Config{Store: second, Now: clock.Now})
	if n, err := restarted.FireDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("FireDue after ten missed ticks = %d, %v; want 1, nil", n, err)
	}
	if n, err := restarted.FireDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("second FireDue = %d, %v; want 0, nil", n, err)
	}

	if msgs := triggered(t, second, sc.ID); len(msgs) != 2 {
		t.Errorf("schedule has %d messages, want 2: one before the stop and one for the missed ticks", len(msgs))
	}
	got, err := second.ScheduleGet(t.Context(), sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 5, 17, 12, 12, 0, 0, time.UTC); !got.NextFireAt.Equal(want) {
		t.Errorf("NextFireAt = %s, want the first tick after the restart, %s", got.NextFireAt, want)
	}
}

// TestSchedulersShareDatabase runs two schedulers, each on its own handle
// of one database, through five ticks at the same clock readings.
func TestSchedulersShareDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.db")
	a, b := openStore(t, path), openStore(t, path)
	ids := []string{"shared-1", "shared-2", "shared-3"}
	for _, id := range ids {
		createSchedule(t, a, id, "* * * * *", 0)
	}

	clock := newManualClock(start)
	schedulers := []*Scheduler{
		New(Config{Store: a, Now: clock.Now, BatchSize: 2}),
		New(Config{Store: b, Now: clock.Now, BatchSize: 2}),
	}
	for i := 1; i <= 5; i++ {
		clock.Set(time.Date(2026, 5, 17, 12, i, 0, 0, time.UTC))
		var wg sync.WaitGroup
		var fired atomic.Int32
		for _, s := range schedulers {
			wg.Go(func() {
				n, err := s.FireDue(t.Context())
				if err != nil {
					t.Errorf("FireDue: %v", err)
				}
				fired.Add(int32(n))
			})
		}
		wg.Wait()
		if n := fired.Load(); n != int32(len(ids)) {
			t.Errorf("tick %d: the schedulers fired %d schedules together, want %d", i, n, len(ids))
		}
	}

	for _, id := range ids {
		if msgs := triggered(t, a, id); len(msgs) != 5 {
			t.Errorf("schedule %s has %d messages after 5 ticks, want 5", id, len(msgs))
		}
	}
}

// TestSchedulerDaylightSaving steps a scheduler through the New York
// spring-forward day in half-hour steps: the 02:30 schedule skips that day.
func TestSchedulerDaylightSaving(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ferry.db"))
	expr := "CRON_TZ=America/New_York 30 2 * * *"
	begin := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	sc := &ferry.Schedule{ID: "dst", Cron: expr, Destination: "https://receiver.example/dst", Method: http.MethodPost,
		CreatedAt: begin, NextFireAt: mustParse(t, expr).Next(begin)}
	if err := st.ScheduleUpsert(t.Context(), sc); err != nil {
		t.Fatal(err)
	}

	clock := newManualClock(begin)
	s := New(Config{Store: st, Now: clock.Now})
	for at := begin; at.Before(begin.Add(72 * time.Hour)); at = at.Add(30 * time.Minute) {
		clock.Set(at)
		if _, err := s.FireDue(t.Context()); err != nil {
			t.Fatalf("FireDue at %s: %v", at, err)
		}
	}

	var got []string
	for _, m := range triggered(t, st, sc.ID) {
		got = append(got, m.CreatedAt.Format(time.RFC3339))
	}
	want := []string{"2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("fired at %v, want %v (02:30 EDT on 9 and 10 March; none on 8 March)", got, want)
	}
}

func TestSchedulerTimescale(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ferry.db"))
	ts := Timescale{Origin: start.Truncate(time.Minute), MinuteLength: time.Second}
	sc := &ferry.Schedule{ID: "fast", Cron: "* * * * *", Destination: "https://receiver.example/fast",
		Method: http.MethodPost, CreatedAt: start, NextFireAt: ts.Next(mustParse(t, "* * * * *"), start)}
	if err := st.ScheduleUpsert(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	if want := start.Add(time.Second); !sc.NextFireAt.Equal(want) {
		t.Fatalf("first tick = %s, want %s", sc.NextFireAt, want)
	}

	clock := newManualClock(start)
	s := New(Config{Store: st, Now: clock.Now, Timescale: ts})
	for i := 1; i <= 3; i++ {
		clock.Set(start.Add(time.Duration(i) * time.Second))
		if n, err := s.FireDue(t.Context()); err != nil || n != 1 {
			t.Fatalf("FireDue at second %d = %d, %v; want 1, nil", i, n, err)
		}
	}
	got, err := st.ScheduleGet(t.Context(), sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(4 * time.Second); !got.NextFireAt.Equal(want) {
		t.Errorf("NextFireAt = %s, want %s", got.NextFireAt, want)
	}
}
