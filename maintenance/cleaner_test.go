package maintenance

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/sqlite"
)

// TestCleanerRetention delivers five messages a day ago and one now, fails
// one a week ago, and checks that one pass with a batch of two removes
// exactly what lies past each retention.
func TestCleanerRetention(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	dayAgo := now.Add(-24 * time.Hour)
	weekAgo := now.Add(-8 * 24 * time.Hour)

	var oldIDs []string
	for range 5 {
		oldIDs = append(oldIDs, deliver(t, db, dayAgo))
	}
	recent := deliver(t, db, now)
	failed := fail(t, db, weekAgo)

	cleaner := NewCleaner(CleanerConfig{
		Store:            db,
		MessageRetention: time.Hour,
		EventRetention:   48 * time.Hour,
		DLQRetention:     7 * 24 * time.Hour,
		Batch:            2,
		Now:              func() time.Time { return now },
	})
	deleted := cleaner.Clean(ctx)

	for _, id := range append(oldIDs, failed) {
		if _, err := db.MessageGet(ctx, id); err != store.ErrNotFound {
			t.Errorf("MessageGet(%s) error = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := db.MessageGet(ctx, recent); err != nil {
		t.Errorf("MessageGet(recent) error = %v, want the message", err)
	}
	entries, err := db.DLQList(ctx, &store.DLQListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("DLQList returned %d entries, want 0", len(entries))
	}

	// The events of the week-old failure are past the 48 h retention; the
	// day-old deliveries keep theirs.
	events, err := db.EventList(ctx, &store.EventListParams{MessageID: failed})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Errorf("failed message has %d events, want 0", len(events))
	}
	events, err = db.EventList(ctx, &store.EventListParams{MessageID: oldIDs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Errorf("day-old message has %d events, want 3 (CREATED, ACTIVE, DELIVERED)", len(events))
	}

	// 5 old messages, 1 failed message, its dead-letter entry and its 4
	// events (CREATED, ACTIVE, ERROR, FAILED).
	if want := 5 + 1 + 1 + 4; deleted != want {
		t.Errorf("Clean deleted %d rows, want %d", deleted, want)
	}
}

// deliver stores a message at, claims it and records its delivery.
func deliver(t *testing.T, db *sqlite.DB, at time.Time) string {
	t.Helper()
	m := claim(t, db, at)
	if ok, err := db.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, ResponseStatus: 200,
	}); err != nil || !ok {
		t.Fatalf("MessageMarkDelivered = %v, %v", ok, err)
	}
	return m.ID
}

// fail stores a message at, claims it and moves it to the dead-letter queue.
func fail(t *testing.T, db *sqlite.DB, at time.Time) string {
	t.Helper()
	m := claim(t, db, at)
	if _, ok, err := db.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, DLQID: ferry.NewDLQID(),
		Result: store.AttemptResult{ResponseStatus: 500, ResponseHeader: http.Header{}},
	}); err != nil || !ok {
		t.Fatalf("MessageMarkFailed = %v, %v", ok, err)
	}
	return m.ID
}

func claim(t *testing.T, db *sqlite.DB, at time.Time) *ferry.Message {
	t.Helper()
	m := &ferry.Message{ID: ferry.NewMessageID(), URL: "http://127.0.0.1:1/hook", Method: http.MethodPost,
		NotBefore: at, CreatedAt: at}
	if _, err := db.MessageInsert(t.Context(), &store.MessageInsertParams{Message: m, Now: at}); err != nil {
		t.Fatal(err)
	}
	claimed, err := db.MessageClaim(t.Context(), &store.MessageClaimParams{
		Owner: "test", Limit: 1, Now: at, DefaultTimeout: time.Minute, LeaseMargin: time.Minute,
	})
	if err != nil || len(claimed) != 1 || claimed[0].ID != m.ID {
		t.Fatalf("MessageClaim = %v, %v; want %s", claimed, err, m.ID)
	}
	return claimed[0]
}
