package leader_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/leader"
	"github.com/ferryhq/ferry/store/postgres"
)

// testURLVariable names the environment variable with the server the tests
// use, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const testURLVariable = "FERRY_TEST_POSTGRES_URL"

// lockClass is leader.lockClass, the first key of the advisory lock.
const lockClass = 0x6c656164

// Timing of the electors under test, shorter than the defaults so the
// tests run fast.
const (
	testRetryInterval = 100 * time.Millisecond
	testCheckInterval = 200 * time.Millisecond
)

// newSchema creates an empty schema, drops it when the test ends, and
// returns a DSN whose search_path selects it, with the schema's name. It
// skips the test when FERRY_TEST_POSTGRES_URL is unset.
func newSchema(t *testing.T) (dsn, schema string) {
	t.Helper()
	base := os.Getenv(testURLVariable)
	if base == "" {
		t.Skipf("PostgreSQL tests are disabled; set %s to a postgres:// URL of a database where the user may create schemas, "+
			"such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", testURLVariable)
	}
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
func exec(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// holderPID returns the backend pid of the session that holds the leader
// lock of schema, or 0 when none does.
func holderPID(t *testing.T, dsn, schema string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var pid int
	err = conn.QueryRow(t.Context(), `SELECT COALESCE(MAX(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid AND objid = hashtext($2)::oid`,
		lockClass, schema).Scan(&pid)
	if err != nil {
		t.Fatalf("find the holder of the leader lock: %v", err)
	}
	return pid
}

// cluster is a set of electors that compete for the leader lock of one
// schema, each with a service that records whether it runs.
type cluster struct {
	running []atomic.Bool
	starts  atomic.Int32
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

func startCluster(t *testing.T, dsn string, nodes int) *cluster {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("open PostgreSQL store: %v", err)
	}

	c := &cluster{running: make([]atomic.Bool, nodes), cancels: make([]context.CancelFunc, nodes)}
	for i := range nodes {
		ctx, cancel := context.WithCancel(context.Background())
		c.cancels[i] = cancel
		e := leader.New(leader.Config{
			Lock:          &leader.PostgresLock{Connect: db.Connect},
			NodeID:        "node-" + string(rune('a'+i)),
			RetryInterval: testRetryInterval,
			CheckInterval: testCheckInterval,
		})
		service := func(ctx context.Context) {
			c.starts.Add(1)
			c.running[i].Store(true)
			<-ctx.Done()
			c.running[i].Store(false)
		}
		c.wg.Go(func() { e.Run(ctx, []func(context.Context){service}) })
	}
	t.Cleanup(func() {
		for _, cancel := range c.cancels {
			cancel()
		}
		c.wg.Wait()
		db.Close()
	})
	return c
}

// leaders returns the indexes of the nodes whose service runs.
func (c *cluster) leaders() []int {
	var ids []int
	for i := range c.running {
		if c.running[i].Load() {
			ids = append(ids, i)
		}
	}
	return ids
}

// waitLeader waits up to timeout for exactly one running service and
// returns its node's index and the time it took.
func (c *cluster) waitLeader(t *testing.T, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if ids := c.leaders(); len(ids) == 1 {
			return ids[0], time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("leaders %v after %v, want exactly one", c.leaders(), timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkOneLeaderFor samples the leaders for d and fails on any sample
// with more than one.
func (c *cluster) checkOneLeaderFor(t *testing.T, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if ids := c.leaders(); len(ids) > 1 {
			t.Fatalf("nodes %v lead at once, want one", ids)
		}
	}
}

func TestPostgresLockElectsOneLeader(t *testing.T) {
	dsn, schema := newSchema(t)
	c := startCluster(t, dsn, 3)

	first, _ := c.waitLeader(t, 5*time.Second)
	c.checkOneLeaderFor(t, 4*testCheckInterval)
	if pid := holderPID(t, dsn, schema); pid == 0 {
		t.Errorf("pg_locks lists no holder of the leader lock of %s while node %d leads", schema, first)
	}
	if got := c.starts.Load(); got != 1 {
		t.Errorf("services started %d times, want 1", got)
	}
}

func TestPostgresLockTakeoverAfterStop(t *testing.T) {
	dsn, _ := newSchema(t)
	c := startCluster(t, dsn, 3)
	first, _ := c.waitLeader(t, 5*time.Second)
	c.checkOneLeaderFor(t, 4*testCheckInterval)

	// A stopping leader stops its services before it closes the session,
	// so the terms never overlap.
	stopped := time.Now()
	c.cancels[first]()
	for c.running[first].Load() {
		if time.Since(stopped) > 5*time.Second {
			t.Fatalf("node %d still runs its service 5s after its stop", first)
		}
		time.Sleep(2 * time.Millisecond)
	}
	second, _ := c.waitLeader(t, 5*time.Second)
	took := time.Since(stopped)
	if second == first {
		t.Fatalf("node %d leads again after it stopped", first)
	}
	t.Logf("node %d took over %v after node %d stopped", second, took.Round(time.Millisecond), first)
	if limit := testRetryInterval + time.Second; took > limit {
		t.Errorf("takeover took %v, want at most the retry interval plus 1s, %v", took, limit)
	}
	c.checkOneLeaderFor(t, 4*testCheckInterval)
}

func TestPostgresLockLostWithSession(t *testing.T) {
	dsn, schema := newSchema(t)
	c := startCluster(t, dsn, 3)
	first, _ := c.waitLeader(t, 5*time.Second)
	pid := holderPID(t, dsn, schema)
	if pid == 0 {
		t.Fatalf("pg_locks lists no holder of the leader lock of %s", schema)
	}

	// The server ends the leader's session. The leader learns it from the
	// error the server sends, without waiting for its next check.
	terminated := time.Now()
	exec(t, dsn, `SELECT pg_terminate_backend($1)`, pid)
	for c.running[first].Load() {
		if time.Since(terminated) > 5*time.Second {
			t.Fatalf("node %d still runs its service 5s after its session was terminated", first)
		}
		time.Sleep(2 * time.Millisecond)
	}
	stopped := time.Since(terminated)
	t.Logf("node %d stopped its service %v after its session was terminated", first, stopped.Round(time.Millisecond))
	if stopped >= testCheckInterval {
		t.Errorf("node %d stopped its service after %v, want less than the check interval %v", first, stopped, testCheckInterval)
	}

	// Some node, possibly the same one after reconnecting, leads again.
	_, took := c.waitLeader(t, 5*time.Second)
	t.Logf("a leader ran again %v after the termination", (stopped + took).Round(time.Millisecond))
	c.checkOneLeaderFor(t, 4*testCheckInterval)
	if got := c.starts.Load(); got != 2 {
		t.Errorf("services started %d times, want 2", got)
	}
}

func TestPostgresLockPerSchema(t *testing.T) {
	dsnA, _ := newSchema(t)
	dsnB, _ := newSchema(t)
	a := startCluster(t, dsnA, 2)
	b := startCluster(t, dsnB, 2)

	// Each schema has a leader of its own.
	a.waitLeader(t, 5*time.Second)
	b.waitLeader(t, 5*time.Second)
}
