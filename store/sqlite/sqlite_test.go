package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/sqlite"
	"github.com/ferryhq/ferry/store/storetest"
)

func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
		if err != nil {
			t.Fatalf("open SQLite store: %v", err)
		}
		return db
	})
}
