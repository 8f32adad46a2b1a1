package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/internal/ferrytest"
)

// runBenchCommand runs `ferry bench` with args and returns its standard
// output.
func runBenchCommand(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"bench"}, args...))
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("ferry bench %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// runBenchJSON runs `ferry bench --json` with args and returns the result
// of its one mode.
func runBenchJSON(t *testing.T, args ...string) *benchResult {
	t.Helper()
	out := runBenchCommand(t, append(args, "--json")...)
	var report benchReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out)
	}
	if len(report.Results) != 1 {
		t.Fatalf("report has %d results, want 1:\n%s", len(report.Results), out)
	}
	r := report.Results[0]
	if r.Errors > 0 {
		t.Errorf("%d errors, first: %s", r.Errors, r.FirstError)
	}
	if r.Undelivered > 0 {
		t.Errorf("%d messages undelivered after the drain", r.Undelivered)
	}
	return r
}

// TestBenchModes runs each mode for about two seconds against SQLite, in
// parallel, and checks that its JSON result is complete and error-free.
// It asserts no speed, and no count inside the measurement window either:
// under the race detector on a busy machine, a window can pass before the
// first delivery.
func TestBenchModes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs each benchmark mode for about two seconds")
	}
	short := []string{"--duration", "2s"}

	t.Run("publish", func(t *testing.T) {
		t.Parallel()
		r := runBenchJSON(t, append(short, "--mode", "publish")...)
		if !r.Available {
			t.Errorf("publish not available: %s", r.Note)
		}
	})
	t.Run("e2e", func(t *testing.T) {
		t.Parallel()
		profile := filepath.Join(t.TempDir(), "cpu.pprof")
		r := runBenchJSON(t, append(short, "--mode", "e2e", "--cpuprofile", profile)...)
		if !r.Available {
			t.Errorf("e2e not available: %s", r.Note)
		}
		if info, err := os.Stat(profile); err != nil || info.Size() == 0 {
			t.Errorf("CPU profile %s missing or empty: %v", profile, err)
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		r := runBenchJSON(t, append(short, "--mode", "latency", "--rate", "200")...)
		if r.OfferedRate != 200 {
			t.Errorf("offered rate %d, want 200", r.OfferedRate)
		}
		if r.PublishLatency == nil {
			t.Error("no publish latency")
		}
		if r.DeliveryLatency == nil {
			t.Error("no delivery latency")
		}
	})
	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		r := runBenchJSON(t, append(short, "--mode", "delay", "--delay", "1s", "--delay-rate", "50")...)
		if r.DelayError == nil {
			t.Fatal("no delay error distribution")
		}
		if r.DelayError.MinMs < 0 {
			t.Errorf("a message arrived %.1f ms before its notBefore", -r.DelayError.MinMs)
		}
	})
	t.Run("backlog", func(t *testing.T) {
		t.Parallel()
		r := runBenchJSON(t, append(short, "--mode", "backlog", "--backlog-sizes", "0,1000",
			"--ferry-binary", ferrytest.Binary(t))...)
		if len(r.Backlog) != 2 {
			t.Fatalf("%d sizes, want 2 (0 and 1000)", len(r.Backlog))
		}
		for _, b := range r.Backlog {
			if b.RSSMax == 0 {
				t.Errorf("%d pending: no RSS sample of the server", b.Pending)
			}
			if b.Errors > 0 {
				t.Errorf("%d pending: %d errors, first: %s", b.Pending, b.Errors, b.FirstError)
			}
			if b.Undelivered > 0 {
				t.Errorf("%d pending: %d messages undelivered after the drain", b.Pending, b.Undelivered)
			}
		}
	})
	t.Run("jobs", func(t *testing.T) {
		t.Parallel()
		// The jobs mode reports "not available" on a server without the
		// jobs API; either outcome is valid here.
		r := runBenchJSON(t, append(short, "--mode", "jobs")...)
		if !r.Available && r.Note == "" {
			t.Error("jobs not available and no note says why")
		}
	})
}

// TestBenchTableOutput checks the table header and a row of a short run.
func TestBenchTableOutput(t *testing.T) {
	t.Parallel()
	out := runBenchCommand(t, "--mode", "publish,jobs", "--duration", "1s")
	for _, want := range []string{"MODE", "MEASURE", "P99", "publish ack", "jobs"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchInvalidFlags checks that bad flag values are rejected before
// anything runs.
func TestBenchInvalidFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "nope"},
		{"--duration", "0s"},
		{"--delay", "1500ms"},
		{"--db", "mysql://x"},
		{"--backlog-sizes", "-1"},
		{"--max-pending", "1"},
	} {
		root := newRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"bench"}, args...))
		if err := root.ExecuteContext(t.Context()); err == nil {
			t.Errorf("ferry bench %s: no error, want one", strings.Join(args, " "))
		}
	}
}
