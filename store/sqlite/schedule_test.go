package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/store/sqlite"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestScheduleFireTwoHandles runs schedulers on two handles of one file, as
// an old process that is still stopping and its replacement do.
func TestScheduleFireTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.db")
	open := func() *sqlite.DB {
		db, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("open SQLite store: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	storetest.ScheduleFireShared(t, open(), open())
}
