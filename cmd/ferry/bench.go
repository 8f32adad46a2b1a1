package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferryhq/ferry/node"
)

// benchModes lists the benchmark modes in the order they run.
var benchModes = []string{"publish", "e2e", "latency", "delay", "backlog", "jobs"}

// benchOptions are the settings of `ferry bench`.
type benchOptions struct {
	modes        []string
	db           string
	url          string
	token        string
	duration     time.Duration
	concurrency  int
	maxPending   int
	rate         int
	delay        time.Duration
	delayRate    int
	backlogSizes []int
	json         bool
	cpuProfile   string
	ferryBinary  string
}

func newBenchCommand() *cobra.Command {
	var opts benchOptions
	var modes, backlogSizes string

	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure publish throughput, delivery throughput and latency",
		Long: `Measure a Ferry server. Without --url, each mode starts its own server in
this process on 127.0.0.1 with a new database: a SQLite file in a
temporary directory, or a new schema in the PostgreSQL database that --db
names (dropped at the end). Messages go to a sink on 127.0.0.1 that
responds 200.

Modes:
  publish  publishes/s acknowledged at --concurrency (messages delayed 1 day)
  e2e      messages/s published and delivered, and the latency from publish
           acknowledgement to receipt at the sink
  latency  publish latency and publish-to-delivery latency at --rate msg/s
  delay    delivery time minus scheduled time of messages delayed by --delay
  backlog  e2e throughput and server RSS with --backlog-sizes delayed
           messages pending; runs "ferry serve" as a child process and
           loads the pending messages directly into its database
  jobs     job runs/s through /v1/jobs, when the server has that API`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			var err error
			if opts.modes, err = parseBenchModes(modes); err != nil {
				return err
			}
			if opts.backlogSizes, err = parseBacklogSizes(backlogSizes); err != nil {
				return err
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &opts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&modes, "mode", "all", "comma-separated modes to run: "+strings.Join(benchModes, ", ")+", or all")
	fs.StringVar(&opts.db, "db", "sqlite", `database of the embedded server: "sqlite" for a new file in $TMPDIR, or a postgres:// URL in which a new schema is created per mode`)
	fs.StringVar(&opts.url, "url", "", "base URL of a running server to measure instead of an embedded one (env FERRY_URL); modes backlog and the CPU profile need the embedded server")
	fs.StringVar(&opts.token, "token", devToken, "API token of the server at --url (env FERRY_TOKEN)")
	fs.DurationVar(&opts.duration, "duration", 10*time.Second, "measurement time of each mode, and of each size of the backlog mode")
	fs.IntVar(&opts.concurrency, "concurrency", 64, "number of concurrent publishers in the publish, e2e and backlog modes")
	fs.IntVar(&opts.maxPending, "max-pending", 2048, "most messages published but not yet delivered in the e2e and backlog modes; publishers wait above it")
	fs.IntVar(&opts.rate, "rate", 1000, "offered rate of the latency mode, in messages per second")
	fs.DurationVar(&opts.delay, "delay", 2*time.Second, "Upstash-Delay of the delay mode's messages, in whole seconds")
	fs.IntVar(&opts.delayRate, "delay-rate", 200, "offered rate of the delay mode, in messages per second")
	fs.StringVar(&backlogSizes, "backlog-sizes", "0,100000", "comma-separated numbers of pending delayed messages for the backlog mode, such as 0,1000000,10000000")
	fs.BoolVar(&opts.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the e2e mode (server and load generator in one process) to this file")
	fs.StringVar(&opts.ferryBinary, "ferry-binary", "", "ferry executable that the backlog mode runs as its server (default: this executable)")
	fs.MarkHidden("ferry-binary")
	return cmd
}

func (o *benchOptions) validate() error {
	switch {
	case o.duration <= 0:
		return fmt.Errorf("invalid --duration %s: use a positive duration such as 10s", o.duration)
	case o.concurrency <= 0:
		return fmt.Errorf("invalid --concurrency %d: use a positive number", o.concurrency)
	case o.maxPending < o.concurrency:
		return fmt.Errorf("invalid --max-pending %d: use at least --concurrency (%d)", o.maxPending, o.concurrency)
	case o.rate <= 0:
		return fmt.Errorf("invalid --rate %d: use a positive number of messages per second", o.rate)
	case o.delayRate <= 0:
		return fmt.Errorf("invalid --delay-rate %d: use a positive number of messages per second", o.delayRate)
	case o.delay < time.Second || o.delay%time.Second != 0:
		return fmt.Errorf("invalid --delay %s: use whole seconds, at least 1s, because Upstash-Delay has a resolution of one second", o.delay)
	case o.db != "sqlite" && !isPostgresURL(o.db):
		return fmt.Errorf("invalid --db %q: use sqlite or a postgres:// URL", o.db)
	case o.url != "" && o.token == "":
		return errors.New("missing --token: the server at --url needs its API token (or set FERRY_TOKEN)")
	case o.cpuProfile != "" && o.url != "":
		return errors.New("--cpuprofile profiles the embedded server; drop --url to use it")
	}
	return nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// parseBenchModes splits the --mode list and checks each name.
func parseBenchModes(s string) ([]string, error) {
	var modes []string
	for _, m := range splitComma([]string{s}) {
		m = strings.ToLower(m)
		switch {
		case m == "all":
			modes = append(modes, benchModes...)
		case slices.Contains(benchModes, m):
			modes = append(modes, m)
		default:
			return nil, fmt.Errorf("invalid --mode %q: use %s or all", m, strings.Join(benchModes, ", "))
		}
	}
	if len(modes) == 0 {
		return nil, fmt.Errorf("missing --mode: use %s or all", strings.Join(benchModes, ", "))
	}
	// Run in the documented order, each mode once.
	var ordered []string
	for _, m := range benchModes {
		if slices.Contains(modes, m) {
			ordered = append(ordered, m)
		}
	}
	return ordered, nil
}

// parseBacklogSizes parses the --backlog-sizes list. Underscores may group
// digits, as in 1_000_000.
func parseBacklogSizes(s string) ([]int, error) {
	var sizes []int
	for _, part := range splitComma([]string{s}) {
		n, err := strconv.Atoi(strings.ReplaceAll(part, "_", ""))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid --backlog-sizes value %q: use non-negative whole numbers such as 0,1000000", part)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return nil, errors.New("missing --backlog-sizes: give at least one size, such as 0")
	}
	return sizes, nil
}

// benchReport is the output of `ferry bench --json`.
type benchReport struct {
	Server      string         `json:"server"`
	DB          string         `json:"db"`
	Duration    string         `json:"duration"`
	Concurrency int            `json:"concurrency"`
	Machine     benchMachine   `json:"machine"`
	Results     []*benchResult `json:"results"`
}

// benchMachine describes where the benchmark ran. The load averages come
// from /proc/loadavg (1, 5 and 15 minutes) and show whether other work
// shared the machine. They are empty where that file does not exist.
type benchMachine struct {
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"goVersion"`
	LoadBefore string `json:"loadAverageBefore,omitempty"`
	LoadAfter  string `json:"loadAverageAfter,omitempty"`
}

// loadAverage returns the first three fields of /proc/loadavg, or "".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return ""
	}
	return strings.Join(fields[:3], " ")
}

// benchResult is the outcome of one mode. Rates are per second over the
// mode's measurement window.
type benchResult struct {
	Mode      string `json:"mode"`
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`

	Published   int64   `json:"published,omitempty"`
	PublishRate float64 `json:"publishPerSecond,omitempty"`
	Delivered   int64   `json:"delivered,omitempty"`
	DeliverRate float64 `json:"deliveredPerSecond,omitempty"`
	OfferedRate int     `json:"offeredPerSecond,omitempty"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
	Undelivered int64   `json:"undeliveredAfterDrain"`
	Duplicates  int64   `json:"duplicates"`

	// PublishLatency runs from sending a publish request (the scheduled
	// send time in the latency mode) to reading its acknowledgement.
	PublishLatency *latencySummary `json:"publishLatency,omitempty"`

	// DeliveryLatency runs from the publish acknowledgement to the receipt
	// at the sink.
	DeliveryLatency *latencySummary `json:"deliveryLatency,omitempty"`

	// DelayError is the receipt time minus the scheduled delivery time
	// (the message's notBefore) of delayed messages.
	DelayError *latencySummary `json:"delayError,omitempty"`

	// RunGap is the time from a job handler's response to the arrival of
	// the same job's next run, in the jobs mode.
	RunGap *latencySummary `json:"runGap,omitempty"`

	Backlog []*backlogResult `json:"backlog,omitempty"`
}

// benchTarget is the server a mode measures.
type benchTarget struct {
	url   string
	token string
	dsn   string // the embedded server's database; "" for --url
	stop  func()
}

// runBench runs the selected modes and prints the report.
func runBench(ctx context.Context, stdout, stderr io.Writer, opts *benchOptions) error {
	report := &benchReport{
		Server:      "embedded",
		DB:          benchDBKind(opts.db),
		Duration:    opts.duration.String(),
		Concurrency: opts.concurrency,
		Machine: benchMachine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			GoVersion: runtime.Version(), LoadBefore: loadAverage()},
	}
	if opts.url != "" {
		report.Server = opts.url
		report.DB = "unknown"
	}

	prog := newBenchProgress(stderr)
	defer prog.stop()

	for _, mode := range opts.modes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res, err := runBenchMode(ctx, mode, opts, prog)
		if err != nil {
			return fmt.Errorf("bench mode %s: %w", mode, err)
		}
		report.Results = append(report.Results, res)
	}
	prog.stop()
	report.Machine.LoadAfter = loadAverage()

	if opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	printBenchReport(stdout, report)
	return nil
}

func benchDBKind(db string) string {
	if isPostgresURL(db) {
		return "postgres"
	}
	return "sqlite"
}

// runBenchMode runs one mode against its own target.
func runBenchMode(ctx context.Context, mode string, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	if mode == "backlog" {
		return runBacklogMode(ctx, opts, prog)
	}
	target, err := openBenchTarget(ctx, opts, mode)
	if err != nil {
		return nil, err
	}
	defer target.stop()

	switch mode {
	case "publish":
		return runPublishMode(ctx, target, opts, prog)
	case "e2e":
		return runEndToEndMode(ctx, target, opts, prog)
	case "latency":
		return runLatencyMode(ctx, target, opts, prog)
	case "delay":
		return runDelayMode(ctx, target, opts, prog)
	case "jobs":
		return runJobsMode(ctx, target, opts, prog)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// openBenchTarget returns the server at --url, or starts an embedded
// server with a new database.
func openBenchTarget(ctx context.Context, opts *benchOptions, mode string) (*benchTarget, error) {
	if opts.url != "" {
		return &benchTarget{url: strings.TrimSuffix(opts.url, "/"), token: opts.token, stop: func() {}}, nil
	}
	db, err := newBenchDB(ctx, opts.db, mode)
	if err != nil {
		return nil, err
	}
	target, err := startEmbeddedServer(ctx, db.dsn)
	if err != nil {
		db.remove()
		return nil, err
	}
	stopServer := target.stop
	target.stop = func() {
		stopServer()
		db.remove()
	}
	return target, nil
}

// startEmbeddedServer runs node.Run in this process on 127.0.0.1 with a
// random port and token. Warnings and errors go to stderr.
func startEmbeddedServer(ctx context.Context, dsn string) (*benchTarget, error) {
	token := randomHex(16)
	runCtx, cancel := context.WithCancel(ctx)
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg := node.Config{
		Listen:        "127.0.0.1:0",
		DB:            dsn,
		Token:         token,
		NodeID:        "bench",
		ShutdownGrace: 10 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Started:       func(addr net.Addr) { addrs <- addr },
	}
	go func() { done <- node.Run(runCtx, cfg) }()

	select {
	case addr := <-addrs:
		stop := func() {
			cancel()
			<-done
		}
		return &benchTarget{url: "http://" + addr.String(), token: token, dsn: dsn, stop: stop}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("start the embedded server: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		return nil, errors.New("the embedded server did not listen within 60s")
	}
}

// benchDB is a new, empty database for one mode.
type benchDB struct {
	dsn    string
	remove func()
}

// newBenchDB creates a SQLite file in a new temporary directory, or a new
// schema in the PostgreSQL database that pgURL names.
func newBenchDB(ctx context.Context, db, mode string) (*benchDB, error) {
	if !isPostgresURL(db) {
		dir, err := os.MkdirTemp("", "ferry-bench-")
		if err != nil {
			return nil, fmt.Errorf("create a temporary directory for the SQLite file: %w; set TMPDIR to a writable directory", err)
		}
		return &benchDB{dsn: filepath.Join(dir, "ferry.db"), remove: func() { os.RemoveAll(dir) }}, nil
	}

	schema := fmt.Sprintf("ferry_bench_%s_%s", mode, randomHex(4))
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("connect to --db: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	dsn, err := withSearchPath(db, schema)
	if err != nil {
		return nil, err
	}
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferry bench: drop schema %s: %v; drop it by hand\n", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "ferry bench: drop schema %s: %v; drop it by hand\n", schema, err)
		}
	}
	return &benchDB{dsn: dsn, remove: remove}, nil
}

// withSearchPath sets the search_path parameter of a postgres:// URL.
func withSearchPath(pgURL, schema string) (string, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", fmt.Errorf("invalid --db URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// benchProgress shows one status line on stderr while a mode runs, when
// stderr is a terminal.
type benchProgress struct {
	w      io.Writer
	status atomic.Pointer[func() string]
	done   chan struct{}
	closed atomic.Bool
	exited chan struct{}
}

func newBenchProgress(w io.Writer) *benchProgress {
	p := &benchProgress{w: w, done: make(chan struct{}), exited: make(chan struct{})}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		close(p.exited)
		p.closed.Store(true)
		return p
	}
	go p.loop()
	return p
}

// set makes status the source of the line; nil clears it.
func (p *benchProgress) set(status func() string) {
	if status == nil {
		p.status.Store(nil)
		return
	}
	p.status.Store(&status)
}

func (p *benchProgress) loop() {
	defer close(p.exited)
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-p.done:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-ticker.C:
		}
		if s := p.status.Load(); s != nil {
			fmt.Fprintf(p.w, "\r\033[K%s", (*s)())
		}
	}
}

func (p *benchProgress) stop() {
	if p.closed.CompareAndSwap(false, true) {
		close(p.done)
	}
	<-p.exited
}

// printBenchReport writes the results as a table.
func printBenchReport(w io.Writer, r *benchReport) {
	fmt.Fprintf(w, "ferry bench: server %s, db %s, %s per mode, concurrency %d, %d CPUs, %s\n",
		r.Server, r.DB, r.Duration, r.Concurrency, r.Machine.CPUs, r.Machine.GoVersion)
	if r.Machine.LoadBefore != "" {
		fmt.Fprintf(w, "load average before %s, after %s\n", r.Machine.LoadBefore, r.Machine.LoadAfter)
	}
	fmt.Fprintln(w)
	t := table(w)
	fmt.Fprintln(t, "MODE\tMEASURE\tCOUNT\tPER SEC\tP50\tP90\tP99\tMAX\tNOTE")
	for _, res := range r.Results {
		for _, row := range benchRows(res) {
			fmt.Fprintln(t, strings.Join(row, "\t"))
		}
	}
	t.Flush()
}

// benchRows returns the table rows of one result.
func benchRows(res *benchResult) [][]string {
	if !res.Available {
		return [][]string{{res.Mode, "-", "-", "-", "-", "-", "-", "-", res.Mode + ": " + res.Note}}
	}
	errNote := func(extra string) string {
		var parts []string
		if extra != "" {
			parts = append(parts, extra)
		}
		if res.Errors > 0 {
			parts = append(parts, fmt.Sprintf("%d errors, first: %s", res.Errors, res.FirstError))
		}
		if res.Undelivered > 0 {
			parts = append(parts, fmt.Sprintf("%d undelivered after drain", res.Undelivered))
		}
		if res.Duplicates > 0 {
			parts = append(parts, fmt.Sprintf("%d duplicates", res.Duplicates))
		}
		return strings.Join(parts, "; ")
	}

	var rows [][]string
	switch res.Mode {
	case "publish":
		rows = append(rows, latencyRow(res.Mode, "publish ack", res.Published, res.PublishRate, res.PublishLatency, errNote("")))
	case "e2e":
		rows = append(rows,
			latencyRow(res.Mode, "publish ack to sink", res.Delivered, res.DeliverRate, res.DeliveryLatency, errNote(res.Note)),
			latencyRow(res.Mode, "publish ack", res.Published, res.PublishRate, res.PublishLatency, ""))
	case "jobs":
		rows = append(rows,
			latencyRow(res.Mode, "job run; response to next run", res.Delivered, res.DeliverRate, res.RunGap, errNote("")),
			latencyRow(res.Mode, "job create", res.Published, 0, res.PublishLatency, ""))
	case "latency":
		note := fmt.Sprintf("offered %d/s", res.OfferedRate)
		rows = append(rows,
			latencyRow(res.Mode, "publish ack", res.Published, res.PublishRate, res.PublishLatency, errNote(note)),
			latencyRow(res.Mode, "publish ack to sink", res.Delivered, res.DeliverRate, res.DeliveryLatency, ""))
	case "delay":
		note := fmt.Sprintf("offered %d/s; %s", res.OfferedRate, res.Note)
		rows = append(rows, latencyRow(res.Mode, "sink minus notBefore", res.Delivered, 0, res.DelayError, errNote(note)))
	case "backlog":
		for _, b := range res.Backlog {
			note := fmt.Sprintf("RSS %s at start, max %s; loaded in %s", formatMiB(b.RSSStart), formatMiB(b.RSSMax), b.LoadTime)
			if b.Errors > 0 {
				note += fmt.Sprintf("; %d errors, first: %s", b.Errors, b.FirstError)
			}
			if b.Undelivered > 0 {
				note += fmt.Sprintf("; %d undelivered after drain", b.Undelivered)
			}
			rows = append(rows, latencyRow(res.Mode, fmt.Sprintf("e2e, %d pending", b.Pending), b.Delivered, b.DeliverRate, b.DeliveryLatency, note))
		}
	}
	return rows
}

func latencyRow(mode, measure string, count int64, rate float64, l *latencySummary, note string) []string {
	row := []string{mode, measure, strconv.FormatInt(count, 10), "-", "-", "-", "-", "-", note}
	if rate > 0 {
		row[3] = strconv.FormatFloat(rate, 'f', 0, 64)
	}
	if l != nil {
		row[4], row[5], row[6], row[7] = formatMs(l.P50Ms), formatMs(l.P90Ms), formatMs(l.P99Ms), formatMs(l.MaxMs)
	}
	return row
}

func formatMs(ms float64) string {
	if ms >= 100 || ms <= -100 {
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
}

func formatMiB(bytes int64) string {
	if bytes <= 0 {
		return "unknown"
	}
	return strconv.FormatFloat(float64(bytes)/(1<<20), 'f', 1, 64) + " MiB"
}
