package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/jobhandler"
	"github.com/ferryhq/ferry/wire"
)

// runCLI runs the ferry binary against the server at baseURL and returns
// its stdout, stderr and exit error. FERRY_* variables of the environment
// are dropped, because they set flags.
func runCLI(t *testing.T, baseURL string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferrytest.Binary(t), append(args, "--url", baseURL, "--token", testToken)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustCLI runs the CLI and fails the test when it exits non-zero.
func mustCLI(t *testing.T, baseURL string, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, baseURL, args...)
	if err != nil {
		t.Fatalf("ferry %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// createJobCLI creates a job with ferry jobs create --json and returns it.
func createJobCLI(t *testing.T, baseURL string, args ...string) wire.Job {
	t.Helper()
	out := mustCLI(t, baseURL, append([]string{"jobs", "create", "--json"}, args...)...)
	var job wire.Job
	if err := json.Unmarshal([]byte(out), &job); err != nil {
		t.Fatalf("ferry jobs create output %q: %v", out, err)
	}
	return job
}

// startJobHandler serves fn as a job handler on 127.0.0.1 that verifies
// signatures with the server's keys.
func startJobHandler(t *testing.T, baseURL string, fn jobhandler.Func) string {
	t.Helper()
	keys := fetchKeys(t, baseURL)
	h, err := jobhandler.New(fn, jobhandler.Options{CurrentSigningKey: keys.Current, NextSigningKey: keys.Next})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/job"
}

func TestJobsCLIRunToCompletion(t *testing.T) {
	p := startFerry(t, filepath.Join(t.TempDir(), "ferry.db"))
	url := startJobHandler(t, p.URL, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		items := make([]any, 10)
		for i := range items {
			items[i] = map[string]int{"run": run.Run, "item": i}
		}
		return &jobhandler.Result{Processed: 10, Results: items, Cursor: run.Run}, nil
	})

	job := createJobCLI(t, p.URL, url, "--target", "50", "--input", `{"keyword": "san"}`, "--label", "cli")
	if job.Status != "pending" || job.TargetResults != 50 || job.Label != "cli" {
		t.Fatalf("created job = %+v", job)
	}

	// Not a terminal: one plain line per change, then the summary.
	out := mustCLI(t, p.URL, "jobs", "watch", job.ID)
	if !strings.Contains(out, "job "+job.ID+" completed (target_met): 50 of 50 results after 5 runs") {
		t.Errorf("watch output lacks the summary:\n%s", out)
	}
	if strings.ContainsRune(out, '\r') || strings.Contains(out, "\x1b[") {
		t.Errorf("watch output has terminal control characters:\n%q", out)
	}

	var runs []wire.JobRun
	if err := json.Unmarshal([]byte(mustCLI(t, p.URL, "jobs", "runs", job.ID, "--json")), &runs); err != nil {
		t.Fatalf("decode runs: %v", err)
	}
	if len(runs) != 5 || runs[4].Status != "succeeded" || len(runs[0].Attempts) != 1 || runs[0].Attempts[0].Status != 200 {
		t.Errorf("runs = %+v", runs)
	}

	lines := strings.Split(strings.TrimSpace(mustCLI(t, p.URL, "jobs", "results", job.ID)), "\n")
	if len(lines) != 50 || lines[0] != `{"item":0,"run":1}` {
		t.Errorf("results: %d lines, first %q; want 50 starting with run 1 item 0", len(lines), lines[0])
	}

	text := mustCLI(t, p.URL, "jobs", "get", job.ID)
	for _, want := range []string{"status", "completed", "50 of 50 results (100.0%)", "5 counted"} {
		if !strings.Contains(text, want) {
			t.Errorf("jobs get output lacks %q:\n%s", want, text)
		}
	}
	list := mustCLI(t, p.URL, "jobs", "list", "--status", "completed")
	if !strings.Contains(list, job.ID) || !strings.Contains(list, "target_met") {
		t.Errorf("jobs list output:\n%s", list)
	}
}

func TestJobsCLIStuckAndInspect(t *testing.T) {
	p := startFerry(t, filepath.Join(t.TempDir(), "ferry.db"))

	// The backoff job's handler always fails; its retry waits a minute.
	var backoffCalls atomic.Int32
	backoffURL := startJobHandler(t, p.URL, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		backoffCalls.Add(1)
		return nil, errors.New("index offline")
	})
	// The idle job's handler finds nothing three times, then fails the
	// same way.
	idleURL := startJobHandler(t, p.URL, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		if run.Run <= 3 {
			return &jobhandler.Result{Processed: 0}, nil
		}
		return nil, errors.New("index offline")
	})
	// The failing job's handler rejects the input for good.
	failURL := startJobHandler(t, p.URL, func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
		return nil, jobhandler.Permanent(errors.New("unknown keyword"))
	})

	slow := []string{"--target", "10", "--retries", "3", "--retry-delay", "60000"}
	backoff := createJobCLI(t, p.URL, append([]string{backoffURL}, slow...)...)
	idle := createJobCLI(t, p.URL, append([]string{idleURL}, slow...)...)
	failed := createJobCLI(t, p.URL, failURL, "--target", "10")

	// The failed job ends in error, and watch reports so with a non-zero exit.
	out, errOut, err := runCLI(t, p.URL, "jobs", "watch", failed.ID)
	if err == nil || !strings.Contains(errOut, "ended error") || !strings.Contains(errOut, "unknown keyword") {
		t.Errorf("watch of a failing job: err %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}

	// Wait until both other jobs are in retry backoff.
	var stuck wire.JobStuckResponse
	ok := ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool {
		out, _, err := runCLI(t, p.URL, "jobs", "stuck", "--no-progress-runs", "3", "--json")
		if err != nil {
			return false
		}
		stuck = wire.JobStuckResponse{}
		return json.Unmarshal([]byte(out), &stuck) == nil && len(stuck.Jobs) == 2 &&
			hasReason(stuck, idle.ID, "retry_backoff") && hasReason(stuck, backoff.ID, "retry_backoff")
	})
	if !ok {
		t.Fatalf("ferry jobs stuck did not list both jobs in retry backoff: %+v", stuck)
	}
	if !hasReason(stuck, idle.ID, "no_progress") || hasReason(stuck, backoff.ID, "no_progress") {
		t.Errorf("no_progress findings: %+v, want only the idle job", stuck)
	}
	for _, s := range stuck.Jobs {
		if s.Job.ID == failed.ID {
			t.Errorf("the failed job is listed as stuck: %+v", s)
		}
		for _, f := range s.Findings {
			if f.Reason == "retry_backoff" && f.Command != "ferry jobs retry "+s.Job.ID {
				t.Errorf("retry_backoff command = %q", f.Command)
			}
			if f.Reason == "no_progress" && !strings.HasPrefix(f.Command, "ferry jobs complete "+s.Job.ID) {
				t.Errorf("no_progress command = %q", f.Command)
			}
		}
	}

	text := mustCLI(t, p.URL, "jobs", "stuck", "--no-progress-runs", "3")
	for _, want := range []string{
		"retry_backoff: run 1 is in retry backoff: attempt 1 of 4 failed with status 500",
		"no_progress: no progress in the last 3 runs",
		"run: ferry jobs retry " + backoff.ID,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ferry jobs stuck output lacks %q:\n%s", want, text)
		}
	}

	inspect := mustCLI(t, p.URL, "jobs", "inspect", backoff.ID)
	for _, want := range []string{"timeline:", "job processing: run 1 started", "run 1 attempt 1", "status 500",
		"diagnosis:", "retry_backoff", "next attempt at"} {
		if !strings.Contains(inspect, want) {
			t.Errorf("ferry jobs inspect output lacks %q:\n%s", want, inspect)
		}
	}
	var in wire.JobInspection
	if err := json.Unmarshal([]byte(mustCLI(t, p.URL, "jobs", "inspect", failed.ID, "--json")), &in); err != nil {
		t.Fatalf("decode inspection: %v", err)
	}
	if len(in.Findings) != 1 || in.Findings[0].Reason != "failed" || in.Job.LastResponseStatus != 489 {
		t.Errorf("inspection of the failed job = %+v", in)
	}

	// The suggested command delivers the run now instead of in a minute.
	calls := backoffCalls.Load()
	mustCLI(t, p.URL, "jobs", "retry", backoff.ID)
	if !ferrytest.WaitFor(t.Context(), 10*time.Second, func() bool { return backoffCalls.Load() > calls }) {
		t.Errorf("ferry jobs retry did not deliver the run again")
	}
	mustCLI(t, p.URL, "jobs", "cancel", backoff.ID, "--reason", "index retired")
	mustCLI(t, p.URL, "jobs", "complete", idle.ID, "--reason", "no progress")
	if out := mustCLI(t, p.URL, "jobs", "stuck"); !strings.Contains(out, "no stuck jobs") {
		t.Errorf("stuck after cancel and complete:\n%s", out)
	}
}

// hasReason reports whether the stuck list has a finding with reason for
// job id.
func hasReason(res wire.JobStuckResponse, id, reason string) bool {
	for _, s := range res.Jobs {
		if s.Job.ID != id {
			continue
		}
		for _, f := range s.Findings {
			if f.Reason == reason {
				return true
			}
		}
	}
	return false
}

func TestJobsCLIIdempotencyKey(t *testing.T) {
	p := startFerry(t, filepath.Join(t.TempDir(), "ferry.db"))
	args := []string{"http://127.0.0.1:9/job", "--target", "5", "--idempotency-key", "import-42", "--timeout", "1m"}
	first := createJobCLI(t, p.URL, args...)
	for range 2 {
		out := mustCLI(t, p.URL, append([]string{"jobs", "create"}, args...)...)
		if !strings.Contains(out, "job "+first.ID+" already exists") {
			t.Errorf("repeated create output: %s", out)
		}
	}
	_, errOut, err := runCLI(t, p.URL, "jobs", "create", "http://127.0.0.1:9/job", "--target", "6", "--idempotency-key", "import-42")
	if err == nil || !strings.Contains(errOut, "422") || !strings.Contains(errOut, "import-42") {
		t.Errorf("create with another body: err %v, stderr %s", err, errOut)
	}
	mustCLI(t, p.URL, "jobs", "cancel", first.ID)
}
