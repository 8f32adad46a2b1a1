package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/internal/ferrytest"
)

// postgresURLVariable names the environment variable with the PostgreSQL
// server of the cluster tests.
const postgresURLVariable = "FERRY_TEST_POSTGRES_URL"

// Settings of every cluster node. A lease lasts clusterTimeout plus
// clusterLeaseMargin, so the in-flight messages of a killed node are
// delivered again 5 s after their claim.
const (
	clusterTimeout     = 3 * time.Second
	clusterLeaseMargin = 2 * time.Second
	clusterConcurrency = 16

	// clusterPoolSize keeps three nodes, each with two connections of its
	// own besides the pool, far below the server's max_connections of
	// 100, which other test packages share.
	clusterPoolSize = 6
)

// failoverBound is the documented bound on the time from the death of a
// leader process to another node gaining leadership: the followers' retry
// interval of 2 s, with a margin for a loaded machine.
const failoverBound = 10 * time.Second

// Log messages the cluster tests wait for.
const (
	gainedLeadership  = `msg="gained leadership`
	lostLeadership    = `msg="lost leadership`
	listenerLost      = `msg="notification listener lost its connection`
	listenerRecovered = `msg="notification listener reconnected`
)

// clusterDB is a schema of its own on the test server, dropped when the
// test ends.
type clusterDB struct {
	// DSN selects the schema with search_path and names the connections
	// with an application_name of their own, so the test can find and
	// terminate its nodes' sessions without touching other tests'.
	DSN     string
	Schema  string
	AppName string

	base string
}

// newClusterDB creates the schema, or skips the test when no PostgreSQL
// server is configured.
func newClusterDB(t *testing.T) *clusterDB {
	t.Helper()
	base := os.Getenv(postgresURLVariable)
	if base == "" {
		t.Skipf("cluster tests need PostgreSQL; set %s to a postgres:// URL of a database where the user may create schemas, "+
			"such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable", postgresURLVariable)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s = %q is not a postgres:// URL", postgresURLVariable, base)
	}

	db := &clusterDB{Schema: fmt.Sprintf("ferry_e2e_%012x", rand.Uint64()>>16), base: base}
	db.AppName = "ferry_" + db.Schema
	db.exec(t, "CREATE SCHEMA "+db.Schema)
	t.Cleanup(func() { db.exec(t, "DROP SCHEMA "+db.Schema+" CASCADE") })

	query := u.Query()
	query.Set("search_path", db.Schema)
	query.Set("application_name", db.AppName)
	u.RawQuery = query.Encode()
	db.DSN = u.String()
	return db
}

// exec runs one statement on the test server, outside the schema, and
// returns the rows it affected.
func (db *clusterDB) exec(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.base)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

// queryInt runs a query that returns one integer.
func (db *clusterDB) queryInt(t *testing.T, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// startCluster starts one ferry serve process per node id on db, each with
// the cluster settings and extraArgs.
func startCluster(t *testing.T, db *clusterDB, extraArgs []string, nodeIDs ...string) []*ferrytest.Process {
	t.Helper()
	nodes := make([]*ferrytest.Process, len(nodeIDs))
	for i, id := range nodeIDs {
		args := []string{
			"--node-id", id,
			"--default-timeout", clusterTimeout.String(),
			"--lease-margin", clusterLeaseMargin.String(),
			"--concurrency", strconv.Itoa(clusterConcurrency),
			"--pg-max-conns", strconv.Itoa(clusterPoolSize),
		}
		nodes[i] = startFerry(t, db.DSN, append(args, extraArgs...)...)
	}
	return nodes
}

// waitOneLeader waits until exactly one running node of nodes has logged
// more gains of leadership than losses, and returns its index.
func waitOneLeader(t *testing.T, nodes []*ferrytest.Process, timeout time.Duration) (int, bool) {
	t.Helper()
	var leaders []int
	ok := ferrytest.WaitFor(t.Context(), timeout, func() bool {
		leaders = leaders[:0]
		for i, p := range nodes {
			if !p.Exited() && countLog(p, gainedLeadership) > countLog(p, lostLeadership) {
				leaders = append(leaders, i)
			}
		}
		return len(leaders) == 1
	})
	if !ok {
		t.Logf("nodes %v lead after %v, want exactly one", leaders, timeout)
		return -1, false
	}
	return leaders[0], true
}

// countLog returns how many lines of p's logs contain pattern.
func countLog(p *ferrytest.Process, pattern string) int {
	return strings.Count(p.Logs(), pattern)
}

// leaderGauge returns the ferry_leader value from p's /metrics.
func leaderGauge(t *testing.T, p *ferrytest.Process) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^ferry_leader (\d+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("GET /metrics: status %d without a ferry_leader gauge", resp.StatusCode)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// spreadLoad publishes messages round-robin across the nodes. A publish
// that fails because its node was killed goes to the next node.
type spreadLoad struct {
	nodes []*ferrytest.Process
	dest  string

	// killed marks the nodes that the test kills, from before the kill,
	// because a publish can fail before the node's exit is observed.
	killed []atomic.Bool

	mu       sync.Mutex
	accepted map[string]bool
	errs     []error
}

func newSpreadLoad(nodes []*ferrytest.Process, dest string) *spreadLoad {
	return &spreadLoad{nodes: nodes, dest: dest, killed: make([]atomic.Bool, len(nodes)), accepted: map[string]bool{}}
}

// kill kills node i with SIGKILL.
func (l *spreadLoad) kill(i int) {
	l.killed[i].Store(true)
	l.nodes[i].Kill()
}

// publish sends message n, trying each node once from node n mod len.
func (l *spreadLoad) publish(ctx context.Context, n int) {
	body := fmt.Appendf(nil, `{"n":%d}`, n)
	for try := range len(l.nodes) {
		i := (n + try) % len(l.nodes)
		if l.killed[i].Load() {
			continue
		}
		id, err := publish(ctx, l.nodes[i].URL, l.dest, body, http.Header{"Content-Type": {"application/json"}})
		if err == nil {
			l.mu.Lock()
			l.accepted[id] = true
			l.mu.Unlock()
			return
		}
		if !l.killed[i].Load() && ctx.Err() == nil {
			l.mu.Lock()
			l.errs = append(l.errs, fmt.Errorf("publish %d to a running node: %w", n, err))
			l.mu.Unlock()
			return
		}
	}
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Errorf("publish %d: no node accepted it", n))
	l.mu.Unlock()
}

func (l *spreadLoad) acceptedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make(map[string]bool, len(l.accepted))
	for id := range l.accepted {
		ids[id] = true
	}
	return ids
}

// waitReceived waits until dest has received every id and returns the ids
// still missing at timeout.
func waitReceived(t *testing.T, dest *destination, ids map[string]bool, timeout time.Duration) []string {
	t.Helper()
	var missing []string
	ferrytest.WaitFor(t.Context(), timeout, func() bool {
		counts := dest.attemptCounts()
		missing = missing[:0]
		for id := range ids {
			if counts[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	return missing
}

// TestClusterNodeKilledUnderLoad publishes 5,000 messages across three
// nodes, kills one with SIGKILL midway, and checks that every accepted
// message is delivered, with at most as many duplicates as the killed node
// could have had in flight.
func TestClusterNodeKilledUnderLoad(t *testing.T) {
	const total = 5000
	const publishers = 24
	const killAfter = 2000

	db := newClusterDB(t)
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		time.Sleep(5*time.Millisecond + rand.N(10*time.Millisecond))
	})
	nodes := startCluster(t, db, nil, "node-a", "node-b", "node-c")
	dest.trust(fetchKeys(t, nodes[0].URL))

	load := newSpreadLoad(nodes, dest.url("/cluster"))
	var next atomic.Int64
	var wg sync.WaitGroup
	started := time.Now()
	for range publishers {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= total || t.Context().Err() != nil {
					return
				}
				load.publish(t.Context(), n)
			}
		})
	}

	// Kill node-b while publishes and deliveries are under way.
	if !ferrytest.WaitFor(t.Context(), 60*time.Second, func() bool { return dest.count() >= killAfter }) {
		t.Fatalf("only %d deliveries within 60s, want %d before the kill", dest.count(), killAfter)
	}
	load.kill(1)
	killedAt := time.Now()
	t.Logf("killed node-b after %d deliveries, %v after the first publish", dest.count(), killedAt.Sub(started).Round(time.Millisecond))

	wg.Wait()
	if len(load.errs) > 0 {
		t.Fatalf("%d publishes failed, such as: %v", len(load.errs), load.errs[0])
	}
	accepted := load.acceptedIDs()
	if len(accepted) != total {
		t.Fatalf("%d publishes accepted, want %d", len(accepted), total)
	}

	// The killed node's leases expire 5 s after their claim; the rest is
	// delivery time.
	const recoveryTimeout = 60 * time.Second
	if missing := waitReceived(t, dest, accepted, recoveryTimeout); len(missing) > 0 {
		t.Fatalf("%d of %d accepted messages not received within %v of the kill, such as %v",
			len(missing), total, recoveryTimeout, missing[:min(len(missing), 5)])
	}
	receivedIn := time.Since(killedAt)

	// The store records every message as delivered; none stays leased to
	// the dead node.
	var undelivered int
	ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool {
		undelivered = db.queryInt(t, `SELECT count(*) FROM messages WHERE state <> 'DELIVERED'`)
		return undelivered == 0
	})
	if undelivered > 0 {
		t.Errorf("%d messages not recorded as DELIVERED", undelivered)
	}
	dest.checkSignatures(t)

	counts := dest.attemptCounts()
	duplicates, unaccepted := 0, 0
	for id, n := range counts {
		duplicates += n - 1
		if !accepted[id] {
			unaccepted++
		}
	}
	t.Logf("%d accepted, %d requests for %d messages, %d duplicates, %d messages whose publish response was lost; "+
		"every accepted message received %v after the kill", len(accepted), dest.count(), len(counts), duplicates,
		unaccepted, receivedIn.Round(time.Millisecond))
	if duplicates > clusterConcurrency {
		t.Errorf("%d duplicate deliveries, want at most %d, the --concurrency of the killed node", duplicates, clusterConcurrency)
	}

	// A message is delivered again only after the lease of the killed
	// node expired. The lease starts at the claim, shortly before the
	// first request, so the gap may be a little shorter than the lease.
	checkRedeliveryGaps(t, dest, clusterTimeout+clusterLeaseMargin-time.Second)
}

// TestClusterLeaderFailover kills the leader of three nodes and checks that
// another node gains leadership within failoverBound.
func TestClusterLeaderFailover(t *testing.T) {
	db := newClusterDB(t)
	nodes := startCluster(t, db, nil, "node-a", "node-b", "node-c")

	first, ok := waitOneLeader(t, nodes, failoverBound)
	if !ok {
		t.Fatalf("no single leader within %v of the start", failoverBound)
	}
	for i, p := range nodes {
		want := 0
		if i == first {
			want = 1
		}
		if got := leaderGauge(t, p); got != want {
			t.Errorf("node %d: ferry_leader = %d, want %d", i, got, want)
		}
	}

	// The followers started together, so their 2 s retry cycles are in
	// step with the test. A random wait puts the kill anywhere in them.
	time.Sleep(rand.N(2 * time.Second))
	nodes[first].Kill()
	killedAt := time.Now()
	next, ok := waitOneLeader(t, nodes, failoverBound)
	if !ok {
		t.Fatalf("no single leader within %v of killing the leader", failoverBound)
	}
	took := time.Since(killedAt)
	t.Logf("node %d gained leadership %v after node %d was killed", next, took.Round(time.Millisecond), first)
	if got := leaderGauge(t, nodes[next]); got != 1 {
		t.Errorf("new leader: ferry_leader = %d, want 1", got)
	}

	// The other survivor stays a follower.
	for i, p := range nodes {
		if i != first && i != next && countLog(p, gainedLeadership) != 0 {
			t.Errorf("node %d gained leadership too", i)
		}
	}
}

// createSchedule creates a schedule through POST /v2/schedules and returns
// its id.
func createSchedule(t *testing.T, baseURL, dest, cron string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/v2/schedules/"+dest, strings.NewReader(`{"tick":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Upstash-Cron", cron)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v2/schedules: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		ScheduleID string `json:"scheduleId"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.ScheduleID == "" {
		t.Fatalf("POST /v2/schedules: status %d, body %s; want 200 with a scheduleId", resp.StatusCode, body)
	}
	return out.ScheduleID
}

// TestClusterScheduleTicksOnceAcrossFailover runs a schedule that ticks
// every second, kills the leader that fires it, and checks that the new
// leader goes on firing it and that no tick fires twice.
func TestClusterScheduleTicksOnceAcrossFailover(t *testing.T) {
	const ticksBefore, ticksAfter = 3, 4

	db := newClusterDB(t)
	dest := newDestination(t, nil)
	// With a cron minute of 1 s, "* * * * *" ticks at every whole second.
	nodes := startCluster(t, db, []string{"--schedule-tick", "1s"}, "node-a", "node-b", "node-c")
	first, ok := waitOneLeader(t, nodes, failoverBound)
	if !ok {
		t.Fatalf("no single leader within %v of the start", failoverBound)
	}
	scheduleID := createSchedule(t, nodes[(first+1)%len(nodes)].URL, dest.url("/tick"), "* * * * *")

	fires := func() int {
		return db.queryInt(t, `SELECT count(*) FROM messages WHERE schedule_id = $1`, scheduleID)
	}
	if !ferrytest.WaitFor(t.Context(), 10*time.Second, func() bool { return fires() >= ticksBefore }) {
		t.Fatalf("the schedule fired %d times within 10s, want %d", fires(), ticksBefore)
	}
	nodes[first].Kill()
	killedAt := time.Now()
	firedBefore := fires()

	if !ferrytest.WaitFor(t.Context(), failoverBound+10*time.Second, func() bool { return fires() >= firedBefore+ticksAfter }) {
		t.Fatalf("the schedule fired %d times after the leader was killed, want %d within %v",
			fires()-firedBefore, ticksAfter, failoverBound+10*time.Second)
	}

	// Each fire stores a message created at its firing time. A tick fires
	// no earlier than its whole second and the next tick is the first
	// whole second after the firing, so no two fires share a second.
	conn, err := pgx.Connect(t.Context(), db.DSN)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	rows, err := conn.Query(t.Context(), `SELECT id, created_at FROM messages WHERE schedule_id = $1 ORDER BY created_at`, scheduleID)
	if err != nil {
		t.Fatalf("list the schedule's messages: %v", err)
	}
	type fire struct {
		ID        string
		CreatedAt int64 // Unix milliseconds
	}
	fired, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fire])
	if err != nil {
		t.Fatalf("list the schedule's messages: %v", err)
	}

	var maxGap time.Duration
	ids := map[string]bool{}
	for i, f := range fired {
		ids[f.ID] = true
		if i == 0 {
			continue
		}
		previous := fired[i-1].CreatedAt
		if f.CreatedAt/1000 == previous/1000 {
			t.Errorf("messages %s and %s fired in the same second, %d ms apart: a tick fired twice",
				fired[i-1].ID, f.ID, f.CreatedAt-previous)
		}
		maxGap = max(maxGap, time.Duration(f.CreatedAt-previous)*time.Millisecond)
	}
	t.Logf("%d fires, %d after the leader was killed, the first of them %v after the kill; the longest gap between fires was %v",
		len(fired), len(fired)-firedBefore, time.UnixMilli(fired[firedBefore].CreatedAt).Sub(killedAt).Round(time.Millisecond), maxGap)
	if limit := failoverBound + 2*time.Second; maxGap > limit {
		t.Errorf("longest gap between fires = %v, want at most the failover bound plus 2 ticks, %v", maxGap, limit)
	}

	// Delivery is at least once, so every fired message arrives.
	if missing := waitReceived(t, dest, ids, 30*time.Second); len(missing) > 0 {
		t.Errorf("%d of %d fired messages not received within 30s, such as %v", len(missing), len(ids), missing[:min(len(missing), 5)])
	}
}

// publishResult is the outcome of one publish during the outage test.
type publishResult struct {
	status int
	id     string
	body   []byte
	err    error
}

// publishRaw publishes and returns the status and body whatever they are.
func publishRaw(ctx context.Context, baseURL, dest string, body []byte) publishResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v2/publish/"+dest, bytes.NewReader(body))
	if err != nil {
		return publishResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		return publishResult{err: err}
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return publishResult{status: resp.StatusCode, err: err}
	}
	res := publishResult{status: resp.StatusCode, body: respBody}
	if resp.StatusCode == http.StatusOK {
		var out struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(respBody, &out); err != nil || out.MessageID == "" {
			res.err = fmt.Errorf("200 response %s has no messageId", respBody)
		}
		res.id = out.MessageID
	}
	return res
}

// TestClusterSurvivesConnectionTermination terminates every database
// session of two nodes while they accept publishes, and checks that they
// log the outage, recover without a restart and deliver every accepted
// message.
func TestClusterSurvivesConnectionTermination(t *testing.T) {
	const publishers = 8
	const loadDuration = 6 * time.Second
	const terminateAfter = 2 * time.Second

	db := newClusterDB(t)
	dest := newDestination(t, nil)
	nodes := startCluster(t, db, nil, "node-a", "node-b")
	dest.trust(fetchKeys(t, nodes[0].URL))
	if !ferrytest.WaitFor(t.Context(), failoverBound, func() bool {
		return countLog(nodes[0], gainedLeadership)+countLog(nodes[1], gainedLeadership) == 1
	}) {
		t.Fatalf("no node gained leadership within %v", failoverBound)
	}

	// Publish continuously, round-robin, for loadDuration.
	var (
		mu              sync.Mutex
		accepted        = map[string]bool{}
		acceptedAfter   int
		serverErrors    int
		failures        []string
		terminationDone atomic.Bool
	)
	loadCtx, stopLoad := context.WithTimeout(t.Context(), loadDuration)
	defer stopLoad()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				n := int(next.Add(1))
				node := nodes[n%len(nodes)]
				res := publishRaw(loadCtx, node.URL, dest.url("/outage"), fmt.Appendf(nil, `{"n":%d}`, n))
				if loadCtx.Err() != nil {
					return
				}
				mu.Lock()
				switch {
				case res.err == nil && res.status == http.StatusOK:
					accepted[res.id] = true
					if terminationDone.Load() {
						acceptedAfter++
					}
				case res.err == nil && res.status >= 500:
					serverErrors++
					var body struct {
						Error string `json:"error"`
					}
					if err := json.Unmarshal(res.body, &body); err != nil || body.Error == "" {
						failures = append(failures, fmt.Sprintf("status %d with a body that is no JSON error: %q", res.status, res.body))
					}
				default:
					failures = append(failures, fmt.Sprintf("status %d, error %v, body %q", res.status, res.err, res.body))
				}
				mu.Unlock()
			}
		})
	}

	time.Sleep(terminateAfter)
	sessions := db.queryInt(t, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, db.AppName)
	terminated := db.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, db.AppName)
	terminationDone.Store(true)
	t.Logf("terminated %d of the nodes' %d sessions", terminated, sessions)

	// Each node holds a listener session and a leader-lock session besides
	// its pool.
	if want := int64(2 * len(nodes)); terminated < want {
		t.Errorf("terminated %d sessions, want at least %d: the listener and lock sessions of each node", terminated, want)
	}
	wg.Wait()

	mu.Lock()
	t.Logf("%d publishes accepted, %d after the termination; %d answered with a server error", len(accepted), acceptedAfter, serverErrors)
	for _, f := range failures[:min(len(failures), 5)] {
		t.Errorf("publish failed in a way the outage does not allow: %s", f)
	}
	if acceptedAfter == 0 {
		t.Errorf("no publish accepted after the termination, want the nodes to recover")
	}
	ids := accepted
	mu.Unlock()

	const recoveryTimeout = 30 * time.Second
	if missing := waitReceived(t, dest, ids, recoveryTimeout); len(missing) > 0 {
		t.Fatalf("%d of %d accepted messages not received within %v, such as %v",
			len(missing), len(ids), recoveryTimeout, missing[:min(len(missing), 5)])
	}

	// Every node logged the loss of its listener session and its recovery.
	for i, p := range nodes {
		for _, pattern := range []string{listenerLost, listenerRecovered} {
			if !ferrytest.WaitFor(t.Context(), 10*time.Second, func() bool { return countLog(p, pattern) > 0 }) {
				t.Errorf("node %d did not log %s", i, pattern)
			}
		}
		if p.Exited() {
			t.Errorf("node %d exited", i)
		}
	}

	// The leader lost its lock session, and one node leads again.
	var leaders int
	ferrytest.WaitFor(t.Context(), failoverBound, func() bool {
		leaders = 0
		for _, p := range nodes {
			leaders += leaderGauge(t, p)
		}
		return leaders == 1
	})
	if leaders != 1 {
		t.Errorf("%d nodes report ferry_leader 1 after the outage, want 1", leaders)
	}
	if lost := countLog(nodes[0], lostLeadership) + countLog(nodes[1], lostLeadership); lost != 1 {
		t.Errorf("%d nodes logged the loss of leadership, want 1", lost)
	}
}
