// Command bench compares Ferry's end-to-end throughput and latency with
// River and Asynq, and with the machine limit of Ferry's two HTTP
// exchanges, all measured by one harness in one run:
//
//	cd bench && go run . --duration 20s
//
// Every system gets the same number of concurrent producers, each
// inserting one piece of work per call and waiting for its
// acknowledgement, and the same number of no-op workers. Throughput is the
// number of pieces of work begun per second; latency runs from the insert
// acknowledgement to the start of the work. See docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// allSystems lists the systems in the order they run.
var allSystems = []*queueSystem{
	limitSystem,
	ferrySystem("sqlite"),
	ferrySystem("postgres"),
	riverPostgresSystem,
	riverPostgresFastSystem,
	riverSQLiteSystem,
	asynqSystem,
}

// report is the JSON output of the comparison.
type report struct {
	Machine   machine `json:"machine"`
	Duration  string  `json:"duration"`
	Warmup    string  `json:"warmup"`
	Producers int     `json:"producers"`
	Workers   int     `json:"workers"`
	Pending   int     `json:"maxPending"`
	RoundsRun int     `json:"roundsRun"`

	// Results has the best round of each system, Rounds every round.
	Results []*systemResult `json:"results"`
	Rounds  []*systemResult `json:"rounds"`

	Ratios []ratio `json:"ratios"`
}

// machine describes where the comparison ran. The load averages come from
// /proc/loadavg (1, 5 and 15 minutes) and show whether other work shared
// the machine.
type machine struct {
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

// ratio compares a Ferry result with another system's.
type ratio struct {
	Ferry      string  `json:"ferry"`
	Other      string  `json:"other"`
	Throughput float64 `json:"throughput"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &runConfig{log: stderr}
	var systems, plotDir, resultsFile string
	var rounds int
	var replot string
	var asJSON bool
	names := make([]string, len(allSystems))
	for i, s := range allSystems {
		names[i] = s.name
	}
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "measured time per system")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured load before each system's measurement")
	fs.IntVar(&cfg.producers, "producers", 64, "concurrent producers per system, each inserting one piece of work per call")
	fs.IntVar(&cfg.workers, "workers", 256, "no-op workers per system (Ferry: deliveries in flight; River: MaxWorkers; Asynq: Concurrency)")
	fs.IntVar(&cfg.maxPending, "max-pending", 2048, "most pieces of work inserted but not yet begun; producers wait above it")
	fs.StringVar(&cfg.pgURL, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL database in which each run creates and drops its own schema")
	fs.StringVar(&cfg.redisAddr, "redis", "127.0.0.1:6379", "Redis address for Asynq")
	fs.IntVar(&cfg.redisDB, "redis-db", 11, "Redis logical database for Asynq; it must hold no keys but Asynq's")
	fs.IntVar(&rounds, "rounds", 1, "times to measure each system; the round with the most completed/s is reported, and rounds alternate the order of the systems")
	fs.StringVar(&systems, "systems", strings.Join(names, ","), "comma-separated systems to run")
	fs.StringVar(&plotDir, "plots", "../docs", "directory for bench-throughput.png and bench-latency.png; empty for none")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON instead of tables")
	fs.StringVar(&resultsFile, "results", "", "also write the results as JSON to this file")
	fs.StringVar(&replot, "replot", "", "read the results from this JSON file (written by --results) instead of running, then print and plot them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.producers <= 0 || cfg.workers <= 0 || cfg.maxPending < cfg.producers || rounds <= 0 {
		return errors.New("invalid flags: --duration, --producers, --workers and --rounds must be positive, --warmup not negative, and --max-pending at least --producers")
	}
	if replot != "" {
		return replotResults(replot, plotDir, stdout)
	}
	selected, err := selectSystems(systems)
	if err != nil {
		return err
	}

	rep := &report{
		Machine: machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
			GoVersion: runtime.Version(), LoadBefore: loadAverage()},
		Duration:  cfg.duration.String(),
		Warmup:    cfg.warmup.String(),
		Producers: cfg.producers,
		Workers:   cfg.workers,
		Pending:   cfg.maxPending,
		RoundsRun: rounds,
	}
	status := newStatusLine(stderr)
	best := map[string]*systemResult{}
	for round := range rounds {
		// Odd rounds run the systems in reverse order, so a change in the
		// machine's load during the run affects each system alike.
		order := slices.Clone(selected)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, sys := range order {
			status(sys.name + " starting")
			res, err := measure(ctx, sys, cfg, status)
			status("")
			if err != nil {
				return fmt.Errorf("%s: %w", sys.name, err)
			}
			res.Round = round + 1
			rep.Rounds = append(rep.Rounds, res)
			if b := best[sys.name]; b == nil || res.CompleteRate > b.CompleteRate {
				best[sys.name] = res
			}
			fmt.Fprintf(stderr, "round %d  %-15s %.0f completed/s\n", round+1, sys.name, res.CompleteRate)
		}
	}
	for _, sys := range selected {
		rep.Results = append(rep.Results, best[sys.name])
	}
	rep.Ratios = ratios(rep.Results)
	rep.Machine.LoadAfter = loadAverage()

	if plotDir != "" {
		if err := writePlots(plotDir, rep); err != nil {
			return err
		}
	}
	if resultsFile != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(resultsFile, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write --results file: %w", err)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, rep)
	return nil
}

// replotResults prints and plots the report stored in file.
func replotResults(file, plotDir string, stdout io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read --replot file: %w", err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("invalid --replot file %s: %w", file, err)
	}
	if plotDir != "" {
		if err := writePlots(plotDir, &rep); err != nil {
			return err
		}
	}
	printReport(stdout, &rep)
	return nil
}

func selectSystems(list string) ([]*queueSystem, error) {
	var out []*queueSystem
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		i := slices.IndexFunc(allSystems, func(s *queueSystem) bool { return s.name == name })
		if i < 0 {
			var names []string
			for _, s := range allSystems {
				names = append(names, s.name)
			}
			return nil, fmt.Errorf("unknown system %q in --systems: use %s", name, strings.Join(names, ", "))
		}
		out = append(out, allSystems[i])
	}
	if len(out) == 0 {
		return nil, errors.New("--systems selects nothing")
	}
	return out, nil
}

// ratios divides each Ferry system's completed/s by each other system's.
func ratios(results []*systemResult) []ratio {
	var out []ratio
	for _, f := range results {
		if !strings.HasPrefix(f.System, "ferry-") {
			continue
		}
		for _, o := range results {
			if strings.HasPrefix(o.System, "ferry-") || o.CompleteRate == 0 {
				continue
			}
			out = append(out, ratio{Ferry: f.System, Other: o.System, Throughput: f.CompleteRate / o.CompleteRate})
		}
	}
	return out
}

func printReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "%d CPUs, %s; per system: %s warm-up, %s measured, %d producers, %d workers, at most %d pending; best of %d rounds\n",
		rep.Machine.CPUs, rep.Machine.GoVersion, rep.Warmup, rep.Duration, rep.Producers, rep.Workers, rep.Pending, rep.RoundsRun)
	if rep.Machine.LoadBefore != "" {
		fmt.Fprintf(w, "load average before %s, after %s\n", rep.Machine.LoadBefore, rep.Machine.LoadAfter)
	}
	fmt.Fprintln(w)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "SYSTEM\tINSERTED/S\tCOMPLETED/S\tP50\tP90\tP99\tMAX\tNOTE")
	for _, r := range rep.Results {
		p50, p90, p99, pmax := "-", "-", "-", "-"
		if l := r.Latency; l != nil {
			p50, p90, p99, pmax = ms(l.P50Ms), ms(l.P90Ms), ms(l.P99Ms), ms(l.MaxMs)
		}
		var notes []string
		if r.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%d errors, first: %s", r.Errors, r.FirstError))
		}
		if r.Undelivered > 0 {
			notes = append(notes, fmt.Sprintf("%d unfinished after drain", r.Undelivered))
		}
		if r.Duplicates > 0 {
			notes = append(notes, fmt.Sprintf("%d duplicates", r.Duplicates))
		}
		fmt.Fprintf(t, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\n", r.System, r.InsertRate, r.CompleteRate, p50, p90, p99, pmax, strings.Join(notes, "; "))
	}
	t.Flush()

	fmt.Fprintln(w, "\nFerry's completed/s relative to each other system:")
	t = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rep.Ratios {
		fmt.Fprintf(t, "%s / %s\t%.2f\n", r.Ferry, r.Other, r.Throughput)
	}
	t.Flush()

	if rep.RoundsRun > 1 {
		fmt.Fprintln(w, "\nCompleted/s of every round:")
		t = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range rep.Results {
			fmt.Fprintf(t, "%s", r.System)
			for _, round := range rep.Rounds {
				if round.System == r.System {
					fmt.Fprintf(t, "\t%.0f", round.CompleteRate)
				}
			}
			fmt.Fprintln(t)
		}
		t.Flush()
	}

	fmt.Fprintln(w, "\nSystems:")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "  %s: %s\n", r.System, r.Describe)
	}
}

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

// newStatusLine returns a function that replaces one status line on w when
// w is a terminal, and does nothing otherwise.
func newStatusLine(w io.Writer) func(string) {
	f, ok := w.(*os.File)
	if !ok {
		return func(string) {}
	}
	info, err := f.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return func(string) {}
	}
	return func(s string) { fmt.Fprintf(w, "\r\033[K%s", s) }
}
