package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
	"github.com/ferryhq/ferry/store/sqlite"
)

// backlogResult is the outcome of the backlog mode at one size.
type backlogResult struct {
	Pending         int             `json:"pending"`
	LoadTime        string          `json:"loadTime"`
	Published       int64           `json:"published"`
	PublishRate     float64         `json:"publishPerSecond"`
	Delivered       int64           `json:"delivered"`
	DeliverRate     float64         `json:"deliveredPerSecond"`
	DeliveryLatency *latencySummary `json:"deliveryLatency,omitempty"`
	Errors          int64           `json:"errors"`
	FirstError      string          `json:"firstError,omitempty"`
	Undelivered     int64           `json:"undeliveredAfterDrain"`

	// RSSStart is the server's resident set size one second after it
	// listens, and RSSMax the largest sample taken every 100 ms during the
	// measurement, both in bytes. Zero means unknown (no /proc).
	RSSStart int64 `json:"rssStartBytes"`
	RSSMax   int64 `json:"rssMaxBytes"`
}

// backlogDelay is how far in the future the loaded messages are due, so
// none of them fires during a run.
const backlogDelay = 24 * time.Hour

// backlogSpread spreads the due times of the loaded messages over an hour,
// so the due-time index has many distinct keys, as a real backlog would.
const backlogSpread = time.Hour

// runBacklogMode loads each size of pending delayed messages into a new
// database, runs "ferry serve" on it as a child process so that its RSS is
// the server's alone, and measures end-to-end throughput against it.
func runBacklogMode(ctx context.Context, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	if opts.url != "" {
		return &benchResult{Mode: "backlog", Note: "not run: it needs the embedded server, so drop --url"}, nil
	}
	binary := opts.ferryBinary
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this executable to run as the server: %w; pass --ferry-binary", err)
		}
		binary = exe
	}

	res := &benchResult{Mode: "backlog", Available: true}
	for _, size := range opts.backlogSizes {
		b, err := runBacklogSize(ctx, opts, prog, binary, size)
		if err != nil {
			return nil, fmt.Errorf("%d pending: %w", size, err)
		}
		res.Backlog = append(res.Backlog, b)
	}
	return res, nil
}

func runBacklogSize(ctx context.Context, opts *benchOptions, prog *benchProgress, binary string, size int) (*backlogResult, error) {
	db, err := newBenchDB(ctx, opts.db, "backlog")
	if err != nil {
		return nil, err
	}
	defer db.remove()

	loadStart := time.Now()
	if err := loadBacklog(ctx, db.dsn, size, prog); err != nil {
		return nil, err
	}
	loadTime := time.Since(loadStart).Round(100 * time.Millisecond)

	server, err := startChildServer(ctx, binary, db.dsn)
	if err != nil {
		return nil, err
	}
	defer server.stop()

	time.Sleep(time.Second)
	rssStart := readRSS(server.pid)
	var rssMax atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			if rss := readRSS(server.pid); rss > rssMax.Load() {
				rssMax.Store(rss)
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-ticker.C:
			}
		}
	}()

	r, err := measureEndToEnd(ctx, server.target, opts, prog, fmt.Sprintf("backlog %d", size))
	stopSampling()
	<-sampled
	if err != nil {
		return nil, err
	}
	return &backlogResult{
		Pending:         size,
		LoadTime:        loadTime.String(),
		Published:       r.Published,
		PublishRate:     r.PublishRate,
		Delivered:       r.Delivered,
		DeliverRate:     r.DeliverRate,
		DeliveryLatency: r.DeliveryLatency,
		Errors:          r.Errors,
		FirstError:      r.FirstError,
		Undelivered:     r.Undelivered,
		RSSStart:        rssStart,
		RSSMax:          rssMax.Load(),
	}, nil
}

// loadBacklog stores size pending messages due in backlogDelay. It stores
// one message through the store, which also applies the migrations, and
// copies that row size-1 times with SQL, in batches.
//
// NOTE: the copies get no CREATED event, and any table that the store
// keeps in step with messages on insert is not updated for them. The
// claim path reads only the messages table and its due-time index.
func loadBacklog(ctx context.Context, dsn string, size int, prog *benchProgress) error {
	st, err := openBenchStore(ctx, dsn)
	if err != nil {
		return err
	}
	if size == 0 {
		return st.Close()
	}
	now := time.Now()
	template := &ferry.Message{
		ID:         ferry.NewMessageID(),
		URL:        "http://127.0.0.1:9/backlog",
		Method:     http.MethodPost,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       []byte(`{"backlog":true}`),
		MaxRetries: 3,
		CreatedAt:  now,
		NotBefore:  now.Add(backlogDelay),
	}
	_, err = st.MessageInsert(ctx, &store.MessageInsertParams{Message: template, Now: now})
	if closeErr := st.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("store the template message: %w", err)
	}

	var loaded atomic.Int64
	start := time.Now()
	prog.set(func() string {
		n := loaded.Load()
		rate := float64(n) / max(time.Since(start).Seconds(), 0.001)
		return fmt.Sprintf("backlog  loading %d of %d pending messages (%.0f/s)", n+1, size, rate)
	})
	defer prog.set(nil)

	if isPostgresURL(dsn) {
		return copyRowsPostgres(ctx, dsn, template.ID, size-1, &loaded)
	}
	return copyRowsSQLite(ctx, dsn, template.ID, size-1, &loaded)
}

func openBenchStore(ctx context.Context, dsn string) (store.Store, error) {
	if isPostgresURL(dsn) {
		return postgres.Open(ctx, dsn)
	}
	return sqlite.Open(ctx, dsn)
}

// copyBatch is the number of rows copied per transaction.
const copyBatch = 200_000

// copyRowsSQLite inserts n copies of the message templateID with ids
// msg_backlog000000000000001 and up and due times spread over
// backlogSpread.
func copyRowsSQLite(ctx context.Context, path, templateID string, n int, loaded *atomic.Int64) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=synchronous(OFF)")
	if err != nil {
		return fmt.Errorf("open %s for loading: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	columns, err := queryColumns(ctx, db, `SELECT name FROM pragma_table_info('messages') ORDER BY cid`)
	if err != nil {
		return err
	}
	exprs := copyExpressions(columns, `'msg_backlog' || printf('%015d', seq.n)`, "seq.n")
	query := `INSERT INTO messages (` + strings.Join(quoteAll(columns), ", ") + `)
		WITH RECURSIVE seq(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
		SELECT ` + strings.Join(exprs, ", ") + ` FROM seq, messages AS t WHERE t.id = ?`

	for first := 1; first <= n; first += copyBatch {
		last := min(first+copyBatch-1, n)
		if _, err := db.ExecContext(ctx, query, first, last, templateID); err != nil {
			return fmt.Errorf("copy messages %d to %d: %w", first, last, err)
		}
		loaded.Store(int64(last))
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("checkpoint %s after loading: %w", path, err)
	}
	return nil
}

// copyRowsPostgres is copyRowsSQLite for PostgreSQL. It analyzes the table
// afterwards, as autovacuum would on a database that grew over time.
func copyRowsPostgres(ctx context.Context, dsn, templateID string, n int, loaded *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect for loading: %w", err)
	}
	defer conn.Close(ctx)

	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'messages' ORDER BY ordinal_position`)
	if err != nil {
		return fmt.Errorf("list the columns of messages: %w", err)
	}
	columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list the columns of messages: %w", err)
	}
	exprs := copyExpressions(columns, `'msg_backlog' || lpad(g.n::text, 15, '0')`, "g.n")
	query := `INSERT INTO messages (` + strings.Join(quoteAll(columns), ", ") + `)
		SELECT ` + strings.Join(exprs, ", ") + `
		FROM generate_series($1::bigint, $2::bigint) AS g(n), messages AS t WHERE t.id = $3`

	for first := 1; first <= n; first += copyBatch {
		last := min(first+copyBatch-1, n)
		if _, err := conn.Exec(ctx, query, first, last, templateID); err != nil {
			return fmt.Errorf("copy messages %d to %d: %w", first, last, err)
		}
		loaded.Store(int64(last))
	}
	if _, err := conn.Exec(ctx, `ANALYZE messages`); err != nil {
		return fmt.Errorf("analyze messages after loading: %w", err)
	}
	return nil
}

// copyExpressions returns the SELECT list that copies the template row t:
// a new id from idExpr, and due times offset by seqExpr milliseconds
// modulo backlogSpread.
func copyExpressions(columns []string, idExpr, seqExpr string) []string {
	offset := fmt.Sprintf("(%s %% %d)", seqExpr, backlogSpread.Milliseconds())
	exprs := make([]string, len(columns))
	for i, c := range columns {
		switch c {
		case "id":
			exprs[i] = idExpr
		case "due_at", "not_before":
			exprs[i] = "t." + quoteIdent(c) + " + " + offset
		default:
			exprs[i] = "t." + quoteIdent(c)
		}
	}
	return exprs
}

func queryColumns(ctx context.Context, db *sql.DB, query string) ([]string, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list the columns of messages: %w", err)
	}
	defer rows.Close()
	var columns []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("list the columns of messages: %w", err)
		}
		columns = append(columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the columns of messages: %w", err)
	}
	if len(columns) == 0 {
		return nil, errors.New("list the columns of messages: the table has none")
	}
	return columns, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quoteIdent(n)
	}
	return out
}

// childServer is a "ferry serve" process started by the benchmark.
type childServer struct {
	target *benchTarget
	pid    int
	cmd    *exec.Cmd
	exited chan struct{}
}

var childAddrPattern = regexp.MustCompile(`msg="ferry started" addr=(\S+)`)

// startChildServer runs binary as "ferry serve" on 127.0.0.1 with a random
// port and waits until it listens. Its warnings and errors are copied to
// stderr. It is killed if this process dies first (on Linux).
func startChildServer(ctx context.Context, binary, dsn string) (*childServer, error) {
	token := randomHex(16)
	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--db", dsn, "--token", token,
		"--node-id", "bench", "--log-level", "info")
	cmd.SysProcAttr = childSysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", binary, err)
	}
	s := &childServer{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()

	addrs := make(chan string, 1)
	var lastLines atomic.Pointer[string]
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			line := scanner.Text()
			lastLines.Store(&line)
			if m := childAddrPattern.FindStringSubmatch(line); m != nil {
				select {
				case addrs <- m[1]:
				default:
				}
			}
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				fmt.Fprintln(os.Stderr, "ferry serve:", line)
			}
		}
		io.Copy(io.Discard, stderr)
	}()

	select {
	case addr := <-addrs:
		s.target = &benchTarget{url: "http://" + addr, token: token, dsn: dsn, stop: s.stop}
		return s, nil
	case <-s.exited:
		last := ""
		if l := lastLines.Load(); l != nil {
			last = *l
		}
		return nil, fmt.Errorf("%s serve exited before listening: %s", binary, last)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	case <-time.After(5 * time.Minute):
		s.stop()
		return nil, fmt.Errorf("%s serve did not listen within 5 minutes", binary)
	}
}

// stop sends SIGTERM to the server and kills it if it has not exited
// within 30 seconds.
func (s *childServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// readRSS returns the resident set size of process pid in bytes, from
// /proc/PID/status, or 0 where that file does not exist.
func readRSS(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseInt(fields[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
