package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// markAll records every outcome for the attempt of m that claimed it, each
// as if it were the only result, and returns which ones applied. The DLQ
// id of the failure is dlqID.
func markAll(t *testing.T, s store.Store, m *ferry.Message, at time.Time, dlqID string) (delivered, retry, failed bool) {
	t.Helper()
	ctx := t.Context()
	result := store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"}

	delivered, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, ResponseStatus: 200,
		Callbacks: []*ferry.Message{newMessage(m.ID+"_late_callback", at)},
	})
	if err != nil {
		t.Errorf("MessageMarkDelivered(%s, attempts %d): %v", m.ID, m.Attempts, err)
	}
	retry, err = s.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, Result: result, NextAt: at.Add(time.Minute),
	})
	if err != nil {
		t.Errorf("MessageMarkRetry(%s, attempts %d): %v", m.ID, m.Attempts, err)
	}
	_, failed, err = s.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, Result: result, DLQID: dlqID,
	})
	if err != nil {
		t.Errorf("MessageMarkFailed(%s, attempts %d): %v", m.ID, m.Attempts, err)
	}
	return delivered, retry, failed
}

// testLateResultAfterTakeover covers a node whose lease expired while its
// attempt ran: another node claimed the message and recorded an outcome,
// and then the first node's result arrives. The late result must change
// nothing, whichever outcome either node recorded.
func testLateResultAfterTakeover(t *testing.T, s store.Store) {
	lease := defaultTimeout + leaseMargin
	expiredAt := now.Add(lease)
	recordedAt := expiredAt.Add(time.Second)
	lateAt := expiredAt.Add(2 * time.Second)
	result := store.AttemptResult{ResponseStatus: 503, Error: "HTTP 503"}

	outcomes := []struct {
		name   string
		record func(t *testing.T, m *ferry.Message) bool
		state  ferry.MessageState
	}{
		{"Delivered", func(t *testing.T, m *ferry.Message) bool {
			applied, err := s.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
				ID: m.ID, Attempts: m.Attempts, Now: recordedAt, ResponseStatus: 200,
			})
			return err == nil && applied
		}, ferry.MessageStateDelivered},
		{"Retry", func(t *testing.T, m *ferry.Message) bool {
			applied, err := s.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
				ID: m.ID, Attempts: m.Attempts, Now: recordedAt, Result: result, NextAt: recordedAt.Add(time.Hour),
			})
			return err == nil && applied
		}, ferry.MessageStateRetry},
		{"Failed", func(t *testing.T, m *ferry.Message) bool {
			_, applied, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
				ID: m.ID, Attempts: m.Attempts, Now: recordedAt, Result: result, DLQID: "dlq_" + m.ID,
			})
			return err == nil && applied
		}, ferry.MessageStateFailed},
	}

	for _, outcome := range outcomes {
		t.Run(outcome.name, func(t *testing.T) {
			id := "msg_late_" + strings.ToLower(outcome.name)
			insert(t, s, newMessage(id, now), now)
			first := claimOne(t, s, "node-a", now, id)
			second := claimOne(t, s, "node-b", expiredAt, id)
			if !outcome.record(t, second) {
				t.Fatalf("node-b could not record %s for its own attempt", outcome.name)
			}
			want := get(t, s, id)
			wantEvents := eventStates(messageEvents(t, s, id))

			delivered, retry, failed := markAll(t, s, first, lateAt, "dlq_late_"+id)
			if delivered || retry || failed {
				t.Errorf("late results of node-a applied: delivered %v, retry %v, failed %v; want none", delivered, retry, failed)
			}

			got := get(t, s, id)
			checkProgress(t, got, outcome.state, want.Attempts, want.Retried)
			checkLease(t, got, want.LeaseOwner, want.DueAt)
			if gotEvents := eventStates(messageEvents(t, s, id)); !slices.Equal(gotEvents, wantEvents) {
				t.Errorf("events after the late results = %v, want %v", gotEvents, wantEvents)
			}
			if _, err := s.DLQGet(t.Context(), "dlq_late_"+id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DLQGet(dlq_late_%s) error = %v, want store.ErrNotFound", id, err)
			}
			if _, err := s.MessageGet(t.Context(), id+"_late_callback"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("callback of the late delivery: MessageGet error = %v, want store.ErrNotFound", err)
			}
		})
	}
}

// testLateResultRacesCurrent records the current and the expired attempt's
// results of many messages at the same moment. Only the current ones may
// apply, whatever order the store runs them in.
func testLateResultRacesCurrent(t *testing.T, s store.Store) {
	const messages = 16
	lease := defaultTimeout + leaseMargin
	expiredAt := now.Add(lease)

	for i := range messages {
		insert(t, s, newMessage(fmt.Sprintf("msg_race_%02d", i), now), now)
	}
	firsts := claim(t, s, "node-a", now, messages)
	seconds := claim(t, s, "node-b", expiredAt, messages)
	if len(firsts) != messages || len(seconds) != messages {
		t.Fatalf("claimed %d and %d messages, want %d twice", len(firsts), len(seconds), messages)
	}

	ctx := t.Context()
	result := store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"}
	current := make([]bool, messages)
	late := make([]bool, messages)
	var wg sync.WaitGroup
	for i := range messages {
		wg.Go(func() {
			applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
				ID: seconds[i].ID, Attempts: seconds[i].Attempts, Now: expiredAt.Add(time.Second), ResponseStatus: 200,
			})
			if err != nil {
				t.Errorf("MessageMarkDelivered(%s) of node-b: %v", seconds[i].ID, err)
			}
			current[i] = applied
		})
		wg.Go(func() {
			_, applied, err := s.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
				ID: firsts[i].ID, Attempts: firsts[i].Attempts, Now: expiredAt.Add(time.Second), Result: result,
				DLQID: "dlq_" + firsts[i].ID,
			})
			if err != nil {
				t.Errorf("MessageMarkFailed(%s) of node-a: %v", firsts[i].ID, err)
			}
			late[i] = applied
		})
	}
	wg.Wait()

	for i := range messages {
		id := seconds[i].ID
		if !current[i] {
			t.Errorf("%s: the current attempt's delivery did not apply", id)
		}
		if late[i] {
			t.Errorf("%s: the expired attempt's failure applied", id)
		}
		checkProgress(t, get(t, s, id), ferry.MessageStateDelivered, 2, 0)
	}
	entries, err := s.DLQList(ctx, &store.DLQListParams{})
	if err != nil {
		t.Fatalf("DLQList: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("DLQList returned %d entries, want 0", len(entries))
	}
}
