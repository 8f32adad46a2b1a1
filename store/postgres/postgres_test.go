package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
	"github.com/ferryhq/ferry/store/storetest"
)

// testURLVariable names the environment variable with the server the tests
// use, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const testURLVariable = "FERRY_TEST_POSTGRES_URL"

// baseURL returns the test server's URL, or skips the test when none is
// configured.
func baseURL(t *testing.T) string {
	t.Helper()
	raw := os.Getenv(testURLVariable)
	if raw == "" {
		t.Skipf("PostgreSQL tests are disabled; set %s to a postgres:// URL of a database where the user may create schemas, "+
			"such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", testURLVariable)
	}
	return raw
}

// newSchema creates an empty schema, drops it when the test ends, and
// returns a DSN whose search_path selects it.
func newSchema(t *testing.T) string {
	t.Helper()
	dsn, _ := newSchemaNamed(t)
	return dsn
}

// newSchemaNamed is newSchema that also returns the schema name.
func newSchemaNamed(t *testing.T) (dsn, schema string) {
	t.Helper()
	base := baseURL(t)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s = %q is not a postgres:// URL", testURLVariable, base)
	}

	suffix := make([]byte, 8)
	rand.Read(suffix)
	schema = "ferry_test_" + hex.EncodeToString(suffix)
	exec(t, base, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, base, "DROP SCHEMA "+schema+" CASCADE") })

	query := u.Query()
	query.Set("search_path", schema)
	u.RawQuery = query.Encode()
	return u.String(), schema
}

// exec runs one statement on a connection of its own.
func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// open opens a store on dsn with a small pool, because the suite runs many
// stores in parallel against one server.
func open(t *testing.T, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: 6})
	if err != nil {
		t.Fatalf("open PostgreSQL store: %v", err)
	}
	return db
}

func TestStoreConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, newSchema(t))
	})
}

func TestOpenMigratesOnceConcurrently(t *testing.T) {
	dsn := newSchema(t)

	const nodes = 4
	dbs := make([]*postgres.DB, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			dbs[i], errs[i] = postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: 2})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open on node %d: %v", i, err)
		}
		defer dbs[i].Close()
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))

	rows, err := conn.Query(t.Context(), `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	if len(names) == 0 || names[0] != "migration/001_init.sql" {
		t.Errorf("schema_migrations = %v, want migration/001_init.sql first", names)
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			t.Errorf("schema_migrations records %s twice", name)
		}
		seen[name] = true
	}

	// Every node reads and writes the same tables.
	for i, db := range dbs {
		if _, err := db.SigningKeysInit(t.Context(), store.SigningKeys{Current: "c", Next: "n"}); err != nil {
			t.Errorf("SigningKeysInit on node %d: %v", i, err)
		}
	}
}

func TestOpenUsesSearchPathSchema(t *testing.T) {
	dsn, schema := newSchemaNamed(t)
	db := open(t, dsn)
	defer db.Close()

	conn, err := pgx.Connect(t.Context(), baseURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))

	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = $1 AND table_name IN ('messages', 'events', 'dlq', 'dedup', 'signing_keys')`,
		schema).Scan(&tables); err != nil {
		t.Fatalf("count tables: %v", err)
	}
	if tables != 5 {
		t.Errorf("schema %s has %d of the 5 store tables", schema, tables)
	}
}

func TestOpenMissingSchema(t *testing.T) {
	u, err := url.Parse(baseURL(t))
	if err != nil {
		t.Fatalf("parse %s: %v", testURLVariable, err)
	}
	query := u.Query()
	query.Set("search_path", "ferry_test_does_not_exist")
	u.RawQuery = query.Encode()

	db, err := postgres.Open(t.Context(), u.String())
	if err == nil {
		db.Close()
		t.Fatalf("Open with a missing schema succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "CREATE SCHEMA") {
		t.Errorf("Open error = %q, want advice to create the schema", err)
	}
}

func TestOpenRejectsInvalidOptions(t *testing.T) {
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	if _, err := postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: -1}); err == nil {
		t.Errorf("Open with MaxConns -1 succeeded, want an error")
	}
	if _, err := postgres.Open(t.Context(), dsn, postgres.Options{MinConns: 5, MaxConns: 2}); err == nil {
		t.Errorf("Open with MinConns above MaxConns succeeded, want an error")
	}
	if _, err := postgres.Open(t.Context(), dsn, postgres.Options{}, postgres.Options{}); err == nil {
		t.Errorf("Open with two Options succeeded, want an error")
	}
	if _, err := postgres.Open(t.Context(), ""); err == nil {
		t.Errorf("Open with an empty DSN succeeded, want an error")
	}
}

func TestMarkFailedCleansErrorText(t *testing.T) {
	db := open(t, newSchema(t))
	defer db.Close()
	ctx := t.Context()
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

	m := &ferry.Message{ID: "msg_text", URL: "https://receiver.example/", Method: "POST", NotBefore: now}
	if _, err := db.MessageInsert(ctx, &store.MessageInsertParams{Message: m, Now: now}); err != nil {
		t.Fatalf("MessageInsert: %v", err)
	}
	claimed, err := db.MessageClaim(ctx, &store.MessageClaimParams{Owner: "node-a", Limit: 1, Now: now,
		DefaultTimeout: time.Second})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("MessageClaim = %d messages, %v; want 1, nil", len(claimed), err)
	}

	_, applied, err := db.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: 1, Now: now, DLQID: "dlq_text",
		Result: store.AttemptResult{ResponseStatus: 489, Error: "rejected: \xffbad\x00 input"},
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkFailed = %v, %v; want true, nil", applied, err)
	}

	const want = "rejected: \uFFFDbad input"
	entry, err := db.DLQGet(ctx, "dlq_text")
	if err != nil {
		t.Fatalf("DLQGet: %v", err)
	}
	if entry.Error != want {
		t.Errorf("DLQ entry Error = %q, want %q", entry.Error, want)
	}
	events, err := db.EventList(ctx, &store.EventListParams{MessageID: m.ID})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	if last := events[len(events)-1]; last.State != ferry.MessageStateFailed || last.Error != want {
		t.Errorf("last event = %s with Error %q, want FAILED with %q", last.State, last.Error, want)
	}
}
