package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// tickInterval is the cron interval of the suite's schedules: a trigger
// moves the next fire time to the first whole minute after the firing
// time.
const tickInterval = time.Minute

// newSchedule returns a schedule with every field set, first due at next.
func newSchedule(id string, next time.Time) *ferry.Schedule {
	return &ferry.Schedule{
		ID:                    id,
		Cron:                  "CRON_TZ=Europe/Berlin */1 * * * *",
		Destination:           "https://receiver.example/" + id + "?a=1",
		Method:                http.MethodPut,
		Header:                http.Header{"Content-Type": {"application/json"}, "X-Trace": {"a", "b"}},
		Body:                  []byte(`{"schedule":"` + id + `"}`),
		Retries:               7,
		Delay:                 90 * time.Second,
		Timeout:               20 * time.Second,
		RetryDelayExpr:        "1000 * retried",
		Callback:              "https://callback.example/ok",
		FailureCallback:       "https://callback.example/failed",
		CallbackHeader:        http.Header{"Upstash-Callback-Retries": {"2"}},
		FailureCallbackHeader: http.Header{"Upstash-Failure-Callback-Method": {"PUT"}},
		Labels:                []string{"nightly", "billing"},
		QueueName:             "reports",
		CallerIP:              "192.0.2.7",
		CreatedAt:             now,
		NextFireAt:            next,
	}
}

func upsertSchedule(t *testing.T, s store.Store, sc *ferry.Schedule) {
	t.Helper()
	if err := s.ScheduleUpsert(t.Context(), sc); err != nil {
		t.Fatalf("ScheduleUpsert(%s): %v", sc.ID, err)
	}
}

func getSchedule(t *testing.T, s store.Store, id string) *ferry.Schedule {
	t.Helper()
	sc, err := s.ScheduleGet(t.Context(), id)
	if err != nil {
		t.Fatalf("ScheduleGet(%s): %v", id, err)
	}
	return sc
}

// nextTick returns the first whole minute after at.
func nextTick(at time.Time) time.Time {
	return at.Truncate(tickInterval).Add(tickInterval)
}

// tickTrigger fires a schedule as the scheduler does: one message, and the
// first tick after the firing time as the next fire time.
func tickTrigger(at time.Time) func(sc *ferry.Schedule) store.ScheduleTrigger {
	return func(sc *ferry.Schedule) store.ScheduleTrigger {
		m := &ferry.Message{
			ID:         ferry.NewMessageID(),
			URL:        sc.Destination,
			Method:     sc.Method,
			Header:     sc.Header,
			Body:       sc.Body,
			MaxRetries: sc.Retries,
			NotBefore:  at.Add(sc.Delay),
			QueueName:  sc.QueueName,
			ScheduleID: sc.ID,
		}
		return store.ScheduleTrigger{Message: m, Next: nextTick(at)}
	}
}

// fireDue fires the schedules due at at with tickTrigger.
func fireDue(t *testing.T, s store.Store, at time.Time, limit int) []*ferry.Message {
	t.Helper()
	fired, err := s.ScheduleFireDue(t.Context(), &store.ScheduleFireParams{Now: at, Limit: limit, Trigger: tickTrigger(at)})
	if err != nil {
		t.Fatalf("ScheduleFireDue(at %v): %v", at, err)
	}
	return fired
}

// scheduleIDsOf returns the ScheduleID of each message.
func scheduleIDsOf(msgs []*ferry.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ScheduleID
	}
	return ids
}

// checkSchedule compares every field of a stored schedule.
func checkSchedule(t *testing.T, got, want *ferry.Schedule) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("ID = %q, want %q", got.ID, want.ID)
	}
	if got.Cron != want.Cron {
		t.Errorf("Cron = %q, want %q", got.Cron, want.Cron)
	}
	if got.Destination != want.Destination {
		t.Errorf("Destination = %q, want %q", got.Destination, want.Destination)
	}

	if got.Method != want.Method {
		t.Errorf("Method = %q, want %q", got.Method, want.Method)
	}
	if !sameHeader(got.Header, want.Header) {
		t.Errorf("Header = %v, want %v", got.Header, want.Header)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("Body = %q, want %q", got.Body, want.Body)
	}
	if got.Retries != want.Retries {
		t.Errorf("Retries = %d, want %d", got.Retries, want.Retries)
	}
	if got.Delay != want.Delay {
		t.Errorf("Delay = %v, want %v", got.Delay, want.Delay)
	}
	if got.Timeout != want.Timeout {
		t.Errorf("Timeout = %v, want %v", got.Timeout, want.Timeout)
	}
	if got.RetryDelayExpr != want.RetryDelayExpr {
		t.Errorf("RetryDelayExpr = %q, want %q", got.RetryDelayExpr, want.RetryDelayExpr)
	}

	if got.Callback != want.Callback {
		t.Errorf("Callback = %q, want %q", got.Callback, want.Callback)
	}
	if got.FailureCallback != want.FailureCallback {
		t.Errorf("FailureCallback = %q, want %q", got.FailureCallback, want.FailureCallback)
	}
	if !sameHeader(got.CallbackHeader, want.CallbackHeader) {
		t.Errorf("CallbackHeader = %v, want %v", got.CallbackHeader, want.CallbackHeader)
	}
	if !sameHeader(got.FailureCallbackHeader, want.FailureCallbackHeader) {
		t.Errorf("FailureCallbackHeader = %v, want %v", got.FailureCallbackHeader, want.FailureCallbackHeader)
	}
	if !sameStrings(got.Labels, want.Labels) {
		t.Errorf("Labels = %q, want %q", got.Labels, want.Labels)
	}
	if got.QueueName != want.QueueName {
		t.Errorf("QueueName = %q, want %q", got.QueueName, want.QueueName)
	}
	if got.CallerIP != want.CallerIP {
		t.Errorf("CallerIP = %q, want %q", got.CallerIP, want.CallerIP)
	}

	if got.Paused != want.Paused {
		t.Errorf("Paused = %v, want %v", got.Paused, want.Paused)
	}
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "NextFireAt", got.NextFireAt, want.NextFireAt)
	checkTime(t, "LastFireAt", got.LastFireAt, want.LastFireAt)
	if !sameStrings(got.LastMessageIDs, want.LastMessageIDs) {
		t.Errorf("LastMessageIDs = %q, want %q", got.LastMessageIDs, want.LastMessageIDs)
	}
	if got.Error != want.Error {
		t.Errorf("Error = %q, want %q", got.Error, want.Error)
	}
}

// checkNextFireAt checks ScheduleNextFireAt; a zero want means none.
func checkNextFireAt(t *testing.T, s store.Store, want time.Time) {
	t.Helper()
	got, ok, err := s.ScheduleNextFireAt(t.Context())
	if err != nil {
		t.Fatalf("ScheduleNextFireAt: %v", err)
	}
	if want.IsZero() {
		if ok {
			t.Errorf("ScheduleNextFireAt = %v, want none", got)
		}
		return
	}
	if !ok || !got.Equal(want) {
		t.Errorf("ScheduleNextFireAt = %v, %v; want %v, true", got, ok, want)
	}
}

func testScheduleRoundTrip(t *testing.T, s store.Store) {
	want := newSchedule("scd_round", now.Add(time.Minute))
	want.Body = []byte{0xff, 0x00, 'x'}
	upsertSchedule(t, s, want)

	checkSchedule(t, getSchedule(t, s, want.ID), want)
}

func testScheduleEmptyFields(t *testing.T, s store.Store) {
	want := &ferry.Schedule{ID: "scd_empty", Cron: "* * * * *", Destination: "https://receiver.example/",
		Method: http.MethodPost, CreatedAt: now}
	upsertSchedule(t, s, want)

	got := getSchedule(t, s, want.ID)
	checkSchedule(t, got, want)
	if len(got.Body) != 0 {
		t.Errorf("Body = %q, want empty", got.Body)
	}
	if !got.NextFireAt.IsZero() {
		t.Errorf("NextFireAt = %v, want the zero time", got.NextFireAt)
	}
	checkNextFireAt(t, s, time.Time{})
}

func testScheduleGetNotFound(t *testing.T, s store.Store) {
	_, err := s.ScheduleGet(t.Context(), "scd_missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ScheduleGet(missing) error = %v, want ErrNotFound", err)
	}
}

func testScheduleUpsertReplaces(t *testing.T, s store.Store) {
	first := newSchedule("daily-report", now.Add(time.Minute))
	upsertSchedule(t, s, first)
	fireDue(t, s, now.Add(time.Minute), 10)
	if err := s.ScheduleSetPaused(t.Context(), &store.ScheduleSetPausedParams{ID: first.ID, Paused: true}); err != nil {
		t.Fatalf("ScheduleSetPaused(pause): %v", err)
	}

	// The replacement sets only a few fields, so every other field must
	// come back empty: no body, no callbacks, not paused, no history.
	second := &ferry.Schedule{ID: first.ID, Cron: "0 * * * *", Destination: "https://other.example/",
		Method: http.MethodPost, Retries: 1, CreatedAt: now.Add(time.Hour), NextFireAt: now.Add(2 * time.Hour)}
	upsertSchedule(t, s, second)

	checkSchedule(t, getSchedule(t, s, first.ID), second)
	list, err := s.ScheduleList(t.Context())
	if err != nil {
		t.Fatalf("ScheduleList: %v", err)
	}
	if len(list) != 1 {
		t.Errorf("ScheduleList returned %d schedules after a replace, want 1", len(list))
	}
}

func testScheduleListOrder(t *testing.T, s store.Store) {
	for i, id := range []string{"scd_c", "scd_a", "scd_b"} {
		sc := newSchedule(id, now.Add(time.Minute))
		sc.CreatedAt = now.Add(time.Duration(i) * time.Second)
		upsertSchedule(t, s, sc)
	}

	list, err := s.ScheduleList(t.Context())
	if err != nil {
		t.Fatalf("ScheduleList: %v", err)
	}
	got := make([]string, len(list))
	for i, sc := range list {
		got[i] = sc.ID
	}
	if want := []string{"scd_c", "scd_a", "scd_b"}; !slices.Equal(got, want) {
		t.Errorf("ScheduleList order = %v, want %v (oldest first)", got, want)
	}
}

func testScheduleDelete(t *testing.T, s store.Store) {
	upsertSchedule(t, s, newSchedule("scd_delete", now.Add(time.Minute)))

	existed, err := s.ScheduleDelete(t.Context(), "scd_delete")
	if err != nil || !existed {
		t.Fatalf("ScheduleDelete(existing) = %v, %v; want true, nil", existed, err)
	}
	existed, err = s.ScheduleDelete(t.Context(), "scd_delete")
	if err != nil || existed {
		t.Fatalf("ScheduleDelete(deleted) = %v, %v; want false, nil", existed, err)
	}
	if _, err := s.ScheduleGet(t.Context(), "scd_delete"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ScheduleGet after delete error = %v, want ErrNotFound", err)
	}
	if fired := fireDue(t, s, now.Add(time.Hour), 10); len(fired) != 0 {
		t.Errorf("a deleted schedule fired %d messages", len(fired))
	}
}

func testSchedulePauseResume(t *testing.T, s store.Store) {
	sc := newSchedule("scd_pause", now.Add(time.Minute))
	upsertSchedule(t, s, sc)
	setPaused := func(paused bool, next func(*ferry.Schedule) time.Time) error {
		return s.ScheduleSetPaused(t.Context(), &store.ScheduleSetPausedParams{ID: sc.ID, Paused: paused, Next: next})
	}
	failNext := func(*ferry.Schedule) time.Time {
		t.Error("Next was called for a schedule that was not resumed")
		return time.Time{}
	}

	if err := setPaused(true, failNext); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if err := setPaused(true, failNext); err != nil {
		t.Fatalf("pause again: %v", err)
	}
	got := getSchedule(t, s, sc.ID)
	if !got.Paused {
		t.Errorf("Paused = false after pause")
	}
	checkTime(t, "NextFireAt while paused", got.NextFireAt, sc.NextFireAt)
	checkNextFireAt(t, s, time.Time{})
	if fired := fireDue(t, s, now.Add(time.Hour), 10); len(fired) != 0 {
		t.Errorf("a paused schedule fired %d messages", len(fired))
	}

	// Resuming takes the next fire time from Next, so ticks missed while
	// paused do not fire.
	resumed := now.Add(2 * time.Hour)
	var nextCalls int
	next := func(got *ferry.Schedule) time.Time {
		nextCalls++
		if got.ID != sc.ID || got.Cron != sc.Cron {
			t.Errorf("Next got schedule %s with cron %q, want %s with %q", got.ID, got.Cron, sc.ID, sc.Cron)
		}
		return resumed
	}
	if err := setPaused(false, next); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := setPaused(false, failNext); err != nil {
		t.Fatalf("resume again: %v", err)
	}
	if nextCalls != 1 {
		t.Errorf("Next was called %d times, want 1", nextCalls)
	}
	got = getSchedule(t, s, sc.ID)
	if got.Paused {
		t.Errorf("Paused = true after resume")
	}
	checkTime(t, "NextFireAt after resume", got.NextFireAt, resumed)
	checkNextFireAt(t, s, resumed)

	err := s.ScheduleSetPaused(t.Context(), &store.ScheduleSetPausedParams{ID: "scd_missing", Paused: true})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ScheduleSetPaused(missing) error = %v, want ErrNotFound", err)
	}
}

func testScheduleFireDue(t *testing.T, s store.Store) {
	due := newSchedule("scd_due", now.Add(time.Minute))
	later := newSchedule("scd_later", now.Add(time.Hour))
	upsertSchedule(t, s, due)
	upsertSchedule(t, s, later)
	checkNextFireAt(t, s, due.NextFireAt)

	if fired := fireDue(t, s, due.NextFireAt.Add(-time.Millisecond), 10); len(fired) != 0 {
		t.Fatalf("ScheduleFireDue before the tick fired %v", scheduleIDsOf(fired))
	}

	at := due.NextFireAt.Add(1500 * time.Millisecond)
	fired := fireDue(t, s, at, 10)
	if got := scheduleIDsOf(fired); !slices.Equal(got, []string{due.ID}) {
		t.Fatalf("ScheduleFireDue fired schedules %v, want [%s]", got, due.ID)
	}

	// The message is stored in state CREATED, with its CREATED event.
	m := get(t, s, fired[0].ID)
	checkStoredFields(t, m, fired[0])
	if m.State != ferry.MessageStateCreated {
		t.Errorf("State = %s, want CREATED", m.State)
	}
	if m.ScheduleID != due.ID || m.QueueName != due.QueueName {
		t.Errorf("ScheduleID, QueueName = %q, %q; want %q, %q", m.ScheduleID, m.QueueName, due.ID, due.QueueName)
	}
	checkTime(t, "CreatedAt", m.CreatedAt, at)
	checkTime(t, "NotBefore", m.NotBefore, at.Add(due.Delay))
	requireStates(t, messageEvents(t, s, m.ID), ferry.MessageStateCreated)
	checkNextDueAt(t, s, at.Add(due.Delay))

	// The schedule records the trigger and moves to the next tick.
	want := *due
	want.NextFireAt = nextTick(at)
	want.LastFireAt = at
	want.LastMessageIDs = []string{m.ID}
	checkSchedule(t, getSchedule(t, s, due.ID), &want)
	checkSchedule(t, getSchedule(t, s, later.ID), later)
	checkNextFireAt(t, s, want.NextFireAt)

	// Firing again at the same time finds nothing due.
	if fired := fireDue(t, s, at, 10); len(fired) != 0 {
		t.Errorf("a second ScheduleFireDue at the same time fired %v", scheduleIDsOf(fired))
	}
}

func testScheduleFireMissedTicksOnce(t *testing.T, s store.Store) {
	sc := newSchedule("scd_missed", now.Add(time.Minute))
	upsertSchedule(t, s, sc)

	// Ten ticks passed without a scheduler; one firing covers them all.
	at := now.Add(10*time.Minute + 30*time.Second)
	if fired := fireDue(t, s, at, 10); len(fired) != 1 {
		t.Fatalf("ScheduleFireDue after ten missed ticks fired %d messages, want 1", len(fired))
	}
	if fired := fireDue(t, s, at, 10); len(fired) != 0 {
		t.Fatalf("a second ScheduleFireDue fired %d more messages, want 0", len(fired))
	}
	checkTime(t, "NextFireAt", getSchedule(t, s, sc.ID).NextFireAt, nextTick(at))
}

func testScheduleFireLimit(t *testing.T, s store.Store) {
	for i := range 5 {
		upsertSchedule(t, s, newSchedule(fmt.Sprintf("scd_%d", i), now.Add(time.Duration(i+1)*time.Second)))
	}

	at := now.Add(time.Minute)
	first := fireDue(t, s, at, 3)
	if got, want := scheduleIDsOf(first), []string{"scd_0", "scd_1", "scd_2"}; !slices.Equal(got, want) {
		t.Errorf("first batch fired %v, want %v (earliest tick first)", got, want)
	}
	second := fireDue(t, s, at, 3)
	if got, want := scheduleIDsOf(second), []string{"scd_3", "scd_4"}; !slices.Equal(got, want) {
		t.Errorf("second batch fired %v, want %v", got, want)
	}
}

func testScheduleFireWithoutMessage(t *testing.T, s store.Store) {
	sc := newSchedule("scd_stop", now.Add(time.Minute))
	upsertSchedule(t, s, sc)

	at := now.Add(time.Minute)
	fired, err := s.ScheduleFireDue(t.Context(), &store.ScheduleFireParams{Now: at, Limit: 10,
		Trigger: func(*ferry.Schedule) store.ScheduleTrigger {
			return store.ScheduleTrigger{Error: "no tick left"}
		}})
	if err != nil {
		t.Fatalf("ScheduleFireDue: %v", err)
	}
	if len(fired) != 0 {
		t.Errorf("ScheduleFireDue returned %d messages for a trigger without one", len(fired))
	}

	got := getSchedule(t, s, sc.ID)
	if !got.NextFireAt.IsZero() {
		t.Errorf("NextFireAt = %v, want the zero time", got.NextFireAt)
	}
	if got.Error != "no tick left" {
		t.Errorf("Error = %q, want %q", got.Error, "no tick left")
	}
	if len(got.LastMessageIDs) != 0 {
		t.Errorf("LastMessageIDs = %q, want none", got.LastMessageIDs)
	}
	checkNextFireAt(t, s, time.Time{})
}

// concurrentFirers is the number of schedulers racing for the same ticks.
const concurrentFirers = 8

// maxFireCalls bounds the ScheduleFireDue calls of one firer.
const maxFireCalls = 20

// fireConcurrently starts concurrentFirers goroutines spread over stores
// at the same time. Each calls ScheduleFireDue at at, in batches of 3,
// until a call fires nothing. It returns every message fired.
func fireConcurrently(t *testing.T, stores []store.Store, at time.Time) []*ferry.Message {
	t.Helper()
	var (
		mu    sync.Mutex
		all   []*ferry.Message
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range concurrentFirers {
		st := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			for range maxFireCalls {
				fired, err := st.ScheduleFireDue(t.Context(), &store.ScheduleFireParams{Now: at, Limit: 3, Trigger: tickTrigger(at)})
				if err != nil {
					t.Errorf("ScheduleFireDue in firer %d: %v", i, err)
					return
				}
				if len(fired) == 0 {
					return
				}
				mu.Lock()
				all = append(all, fired...)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return all
}

// checkOnePerSchedule fails unless msgs has exactly one message of each
// schedule in ids.
func checkOnePerSchedule(t *testing.T, msgs []*ferry.Message, ids []string) {
	t.Helper()
	counts := map[string]int{}
	for _, m := range msgs {
		counts[m.ScheduleID]++
	}
	for _, id := range ids {
		if counts[id] != 1 {
			t.Errorf("schedule %s fired %d messages, want 1", id, counts[id])
		}
	}
	if len(msgs) != len(ids) {
		t.Errorf("%d messages fired in all, want %d", len(msgs), len(ids))
	}
}

// fireTwoTicksConcurrently creates ten schedules through stores[0] and
// fires two ticks of them from concurrent schedulers spread over stores.
// Every tick must produce exactly one message per schedule.
func fireTwoTicksConcurrently(t *testing.T, stores []store.Store) {
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("scd_race_%d", i)
		ids = append(ids, id)
		upsertSchedule(t, stores[0], newSchedule(id, now.Add(time.Minute)))
	}

	first := now.Add(time.Minute)
	checkOnePerSchedule(t, fireConcurrently(t, stores, first), ids)

	second := nextTick(first)
	checkOnePerSchedule(t, fireConcurrently(t, stores, second), ids)

	for _, id := range ids {
		sc := getSchedule(t, stores[0], id)
		checkTime(t, id+" NextFireAt", sc.NextFireAt, nextTick(second))
	}
}

func testScheduleFireConcurrent(t *testing.T, s store.Store) {
	fireTwoTicksConcurrently(t, []store.Store{s})
}

// ScheduleFireShared checks that schedulers on two handles of one
// database, as two nodes or an old and a new process have, fire every tick
// exactly once. Backends call it with two stores opened on the same
// database; it closes neither.
func ScheduleFireShared(t *testing.T, a, b store.Store) {
	fireTwoTicksConcurrently(t, []store.Store{a, b})
}

func testScheduleNextFireAt(t *testing.T, s store.Store) {
	checkNextFireAt(t, s, time.Time{})

	upsertSchedule(t, s, newSchedule("scd_late", now.Add(time.Hour)))
	early := newSchedule("scd_early", now.Add(time.Minute))
	upsertSchedule(t, s, early)
	checkNextFireAt(t, s, early.NextFireAt)

	if err := s.ScheduleSetPaused(t.Context(), &store.ScheduleSetPausedParams{ID: early.ID, Paused: true}); err != nil {
		t.Fatalf("ScheduleSetPaused: %v", err)
	}
	checkNextFireAt(t, s, now.Add(time.Hour))
}
