package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// jobFlowTests run whole jobs on the store: a dispatcher with the jobs
// Runner delivers runs to a handler on 127.0.0.1, and a sweeper times out
// jobs. They use the real clock.
var jobFlowTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"JobFlowTargetMet", testJobFlowTargetMet},
	{"JobFlowMaxRunsReached", testJobFlowMaxRunsReached},
	{"JobFlowNoMoreResults", testJobFlowNoMoreResults},
	{"JobFlowRetriesExhausted", testJobFlowRetriesExhausted},
	{"JobFlowSlowRunCountedOnce", testJobFlowSlowRunCountedOnce},
	{"JobFlowTimeoutStopsRuns", testJobFlowTimeoutStopsRuns},
	{"JobFlowRetryResumes", testJobFlowRetryResumes},
}

// flowRetryDelay is the wait between delivery attempts in the flows.
const flowRetryDelay = 10 * time.Millisecond

// flowReply is a handler's response to one delivery.
type flowReply struct {
	status int
	body   string

	// delay holds the response back, to exceed the run timeout.
	delay time.Duration
}

// flowRequest is one delivery that the handler received.
type flowRequest struct {
	body    wire.JobRunRequest
	retried int
	header  http.Header
}

// jobFlow is a running dispatcher, sweeper and job handler over one store.
type jobFlow struct {
	t  *testing.T
	s  store.Store
	mu sync.Mutex

	reply    func(req wire.JobRunRequest, retried int) flowReply
	requests []flowRequest
	server   *httptest.Server
}

// startJobFlow starts a handler that responds with with reply, and a dispatcher
// and a sweeper that stop when the test ends.
func startJobFlow(t *testing.T, s store.Store, reply func(req wire.JobRunRequest, retried int) flowReply) *jobFlow {
	t.Helper()
	f := &jobFlow{t: t, s: s, reply: reply}
	f.server = httptest.NewServer(http.HandlerFunc(f.serve))

	disp, err := dispatch.New(dispatch.Config{
		Store:        s,
		SigningKey:   func() string { return "sig_storetest" },
		Owner:        "flow-" + t.Name(),
		PollInterval: 20 * time.Millisecond,
		Retry:        dispatch.RetryPolicy{Backoff: func(int) time.Duration { return flowRetryDelay }},
		Jobs:         jobs.NewRunner(s, nil),
	})
	if err != nil {
		t.Fatalf("dispatch.New: %v", err)
	}
	sweeper := jobs.NewSweeper(jobs.SweeperConfig{Store: s, Interval: 20 * time.Millisecond})

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { disp.Run(ctx) })
	wg.Go(func() { sweeper.Run(ctx) })
	// Cleanups run last-in first-out: the dispatcher stops before the
	// handler and before the store closes.
	t.Cleanup(f.server.Close)
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return f
}

func (f *jobFlow) serve(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body failed", http.StatusBadRequest)
		return
	}
	var req wire.JobRunRequest
	if err := json.Unmarshal(data, &req); err != nil {
		http.Error(w, "invalid run request: "+err.Error(), http.StatusBadRequest)
		return
	}
	retried, _ := strconv.Atoi(r.Header.Get("Upstash-Retried"))
	f.mu.Lock()
	f.requests = append(f.requests, flowRequest{body: req, retried: retried, header: r.Header.Clone()})
	reply := f.reply
	f.mu.Unlock()

	out := reply(req, retried)
	if out.delay > 0 {
		select {
		case <-time.After(out.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(out.status)
	io.WriteString(w, out.body)
}

// setReply replaces the handler's responds.
func (f *jobFlow) setReply(reply func(req wire.JobRunRequest, retried int) flowReply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reply = reply
}

// received returns the deliveries so far.
func (f *jobFlow) received() []flowRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]flowRequest(nil), f.requests...)
}

// create stores a job from the create request fields, with url set to the
// handler, and wakes nothing: the dispatcher polls.
func (f *jobFlow) create(fields string) *ferry.Job {
	f.t.Helper()
	body := fmt.Sprintf(`{"url": %q, %s}`, f.server.URL+"/job", fields)
	spec, err := jobs.ParseSpec([]byte(body))
	if err != nil {
		f.t.Fatalf("ParseSpec(%s): %v", body, err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	job := spec.NewJob(at, "127.0.0.1")
	m := jobs.NewRunMessage(job, 1, at, at)
	job.CurrentMessageID = m.ID
	if _, err := f.s.JobInsert(f.t.Context(), &store.JobInsertParams{Job: job, FirstRun: m, Now: at}); err != nil {
		f.t.Fatalf("JobInsert: %v", err)
	}
	return job
}

// waitTerminal polls until job id is terminal and returns it.
func (f *jobFlow) waitTerminal(id string, timeout time.Duration) *ferry.Job {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job := getJob(f.t, f.s, id)
		if job.State.Terminal() {
			return job
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("job %s is %s after %v (runs %d, results %d), want a terminal state",
				id, job.State, timeout, job.ProcessedRuns, job.ProcessedResults)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pageReply responds with n items per run, a cursor naming the run, and
// hasMore true.
func pageReply(n int) func(req wire.JobRunRequest, retried int) flowReply {
	return func(req wire.JobRunRequest, retried int) flowReply {
		return flowReply{status: http.StatusOK, body: page(req.Run, n)}
	}
}

func testJobFlowTargetMet(t *testing.T, s store.Store) {
	f := startJobFlow(t, s, pageReply(20))
	job := f.create(`"targetResults": 1000, "input": {"keyword": "san"}`)
	done := f.waitTerminal(job.ID, 60*time.Second)

	if done.State != ferry.JobStateCompleted || done.CompletionReason != ferry.JobReasonTargetMet {
		t.Fatalf("job = %s (%s), want completed (target_met)", done.State, done.CompletionReason)
	}
	if done.ProcessedRuns != 50 || done.ProcessedResults != 1000 || done.StoredResults != 1000 {
		t.Errorf("runs %d, processed %d, stored %d; want 50, 1000, 1000",
			done.ProcessedRuns, done.ProcessedResults, done.StoredResults)
	}

	got := f.received()
	if len(got) != 50 {
		t.Fatalf("handler received %d deliveries, want 50", len(got))
	}
	for i, r := range got {
		run := i + 1
		wantCursor := "null"
		if run > 1 {
			wantCursor = strconv.Quote(fmt.Sprintf("c%d", run-1))
		}
		if r.body.Run != run || string(r.body.Cursor) != wantCursor || r.body.ProcessedResults != 20*(run-1) {
			t.Errorf("delivery %d: run %d, cursor %s, processed %d; want run %d, cursor %s, processed %d",
				i, r.body.Run, r.body.Cursor, r.body.ProcessedResults, run, wantCursor, 20*(run-1))
		}
		if r.header.Get(jobs.HeaderJobID) != job.ID || r.header.Get(jobs.HeaderJobRun) != strconv.Itoa(run) {
			t.Errorf("delivery %d headers: %s=%q %s=%q", i, jobs.HeaderJobID, r.header.Get(jobs.HeaderJobID),
				jobs.HeaderJobRun, r.header.Get(jobs.HeaderJobRun))
		}
		if r.header.Get("Upstash-Signature") == "" {
			t.Errorf("delivery %d has no Upstash-Signature", i)
		}
		if string(r.body.Input) != `{"keyword":"san"}` || r.body.TargetResults != 1000 {
			t.Errorf("delivery %d: input %s, target %d", i, r.body.Input, r.body.TargetResults)
		}
	}
}

func testJobFlowMaxRunsReached(t *testing.T, s store.Store) {
	f := startJobFlow(t, s, pageReply(1))
	job := f.create(`"targetResults": 100, "maxRuns": 5`)
	done := f.waitTerminal(job.ID, 30*time.Second)
	if done.State != ferry.JobStateCompleted || done.CompletionReason != ferry.JobReasonMaxRunsReached {
		t.Errorf("job = %s (%s), want completed (max_runs_reached)", done.State, done.CompletionReason)
	}
	if done.ProcessedRuns != 5 || done.ProcessedResults != 5 {
		t.Errorf("runs %d, processed %d; want 5, 5", done.ProcessedRuns, done.ProcessedResults)
	}
	if n := len(f.received()); n != 5 {
		t.Errorf("handler received %d deliveries, want 5", n)
	}
}

func testJobFlowNoMoreResults(t *testing.T, s store.Store) {
	f := startJobFlow(t, s, func(req wire.JobRunRequest, retried int) flowReply {
		if req.Run == 3 {
			return flowReply{status: http.StatusOK, body: `{"processed": 4, "results": [1, 2, 3, 4], "hasMore": false}`}
		}
		return flowReply{status: http.StatusOK, body: page(req.Run, 10)}
	})
	job := f.create(`"targetResults": 100`)
	done := f.waitTerminal(job.ID, 30*time.Second)
	if done.State != ferry.JobStateCompleted || done.CompletionReason != ferry.JobReasonNoMoreResults {
		t.Errorf("job = %s (%s), want completed (no_more_results)", done.State, done.CompletionReason)
	}
	if done.ProcessedRuns != 3 || done.ProcessedResults != 24 || done.StoredResults != 24 {
		t.Errorf("runs %d, processed %d, stored %d; want 3, 24, 24", done.ProcessedRuns, done.ProcessedResults, done.StoredResults)
	}
}

func testJobFlowRetriesExhausted(t *testing.T, s store.Store) {
	f := startJobFlow(t, s, func(req wire.JobRunRequest, retried int) flowReply {
		if req.Run == 2 {
			return flowReply{status: http.StatusInternalServerError, body: `{"error": "index unavailable"}`}
		}
		return flowReply{status: http.StatusOK, body: page(req.Run, 10)}
	})
	job := f.create(`"targetResults": 100, "retries": 2, "retryDelay": "10"`)
	done := f.waitTerminal(job.ID, 30*time.Second)

	if done.State != ferry.JobStateError || done.CompletionReason != ferry.JobReasonRunFailed {
		t.Fatalf("job = %s (%s), want error (run_failed)", done.State, done.CompletionReason)
	}
	if done.LastResponseStatus != 500 || string(done.LastResponseBody) != `{"error": "index unavailable"}` {
		t.Errorf("last response = %d %s, want 500 with the handler's body", done.LastResponseStatus, done.LastResponseBody)
	}
	if !strings.Contains(done.Error, "run 2") || !strings.Contains(done.Error, "500") {
		t.Errorf("Error = %q, want the run and the status", done.Error)
	}
	if done.ProcessedRuns != 1 || done.ProcessedResults != 10 {
		t.Errorf("runs %d, processed %d; want 1, 10", done.ProcessedRuns, done.ProcessedResults)
	}

	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	if len(runs) != 2 || len(runs[1].Attempts) != 3 {
		t.Fatalf("runs = %d, run 2 attempts = %d; want 2 runs and 3 attempts", len(runs), len(runs[1].Attempts))
	}
	for i, a := range runs[1].Attempts {
		if a.ResponseStatus != 500 || a.Retried != i {
			t.Errorf("run 2 attempt %d: status %d, retried %d; want 500, %d", i+1, a.ResponseStatus, a.Retried, i)
		}
	}
	msg := get(t, s, runs[1].MessageID)
	if msg.State != ferry.MessageStateFailed {
		t.Errorf("run 2 message state = %s, want FAILED", msg.State)
	}
	entries, err := s.DLQList(t.Context(), &store.DLQListParams{Filter: &store.MessageFilter{MessageIDs: []string{msg.ID}}})
	if err != nil || len(entries) != 1 || entries[0].ResponseStatus != 500 {
		t.Errorf("dead-letter entries of run 2 = %v, %v; want one with status 500", entries, err)
	}
}

func testJobFlowSlowRunCountedOnce(t *testing.T, s store.Store) {
	// The first attempt of run 1 responds after the 1 s run timeout, so the
	// dispatcher gives up on it and retries. The retry responds at once.
	f := startJobFlow(t, s, func(req wire.JobRunRequest, retried int) flowReply {
		reply := flowReply{status: http.StatusOK, body: page(req.Run, 10)}
		if req.Run == 1 && retried == 0 {
			reply.delay = 1500 * time.Millisecond
		}
		return reply
	})
	job := f.create(`"targetResults": 20, "runTimeout": "1s", "retryDelay": "10"`)
	done := f.waitTerminal(job.ID, 30*time.Second)

	if done.State != ferry.JobStateCompleted || done.ProcessedRuns != 2 || done.ProcessedResults != 20 {
		t.Errorf("job = %s, runs %d, processed %d; want completed, 2, 20", done.State, done.ProcessedRuns, done.ProcessedResults)
	}
	runs, err := s.JobRunList(t.Context(), &store.JobRunListParams{JobID: job.ID})
	if err != nil {
		t.Fatalf("JobRunList: %v", err)
	}
	first := runs[0]
	if first.Processed != 10 || len(first.Attempts) != 2 {
		t.Fatalf("run 1: processed %d with %d attempts, want 10 with 2", first.Processed, len(first.Attempts))
	}
	if a := first.Attempts[0]; a.Outcome != ferry.AttemptRetry || a.ResponseStatus != 0 || !strings.Contains(a.Error, "timed out") {
		t.Errorf("run 1 attempt 1 = %+v, want a timed-out retry", a)
	}
	if a := first.Attempts[1]; a.Outcome != ferry.AttemptDelivered || a.Retried != 1 {
		t.Errorf("run 1 attempt 2 = %+v, want delivered with Upstash-Retried 1", a)
	}
}

func testJobFlowTimeoutStopsRuns(t *testing.T, s store.Store) {
	f := startJobFlow(t, s, pageReply(10))
	// Run 2 is due 3 s after run 1 was counted, after the 2 s job timeout.
	job := f.create(`"targetResults": 100, "timeout": "2s", "continuationDelay": "3s"`)
	done := f.waitTerminal(job.ID, 30*time.Second)

	if done.State != ferry.JobStateTimeout || done.CompletionReason != ferry.JobReasonTimeout {
		t.Fatalf("job = %s (%s), want timeout", done.State, done.CompletionReason)
	}
	if !strings.Contains(done.Error, "timed out") || done.ProcessedRuns != 1 {
		t.Errorf("Error = %q, runs %d; want the timeout after 1 run", done.Error, done.ProcessedRuns)
	}

	// On a loaded machine run 1 can be counted after the timeout, which
	// then ends the job at once. Otherwise the sweeper cancels run 2.
	msg := get(t, s, done.CurrentMessageID)
	switch msg.JobRun {
	case 1:
		if msg.State != ferry.MessageStateDelivered {
			t.Errorf("run 1 message state = %s, want DELIVERED", msg.State)
		}
	case 2:
		if msg.State != ferry.MessageStateCanceled {
			t.Errorf("run 2 message state = %s, want CANCELED", msg.State)
		}
	default:
		t.Errorf("current run = %d, want 1 or 2", msg.JobRun)
	}

	// Wait past the time run 2 would be due: nothing more is delivered.
	time.Sleep(time.Until(done.CompletedAt.Add(3500 * time.Millisecond)))
	if n := len(f.received()); n != 1 {
		t.Errorf("handler received %d deliveries, want only run 1", n)
	}
	if after := getJob(t, s, job.ID); after.State != ferry.JobStateTimeout || after.ProcessedRuns != 1 {
		t.Errorf("after run 2's due time: %s with %d runs, want timeout with 1", after.State, after.ProcessedRuns)
	}
}

func testJobFlowRetryResumes(t *testing.T, s store.Store) {
	broken := func(req wire.JobRunRequest, retried int) flowReply {
		if req.Run == 3 {
			return flowReply{status: 489, body: "unknown keyword"}
		}
		return flowReply{status: http.StatusOK, body: page(req.Run, 10)}
	}
	f := startJobFlow(t, s, broken)
	// A 489 without Upstash-NonRetryable-Error is retried like any other
	// failure, so the run fails after its one retry.
	job := f.create(`"targetResults": 50, "retries": 1, "retryDelay": "10"`)
	failed := f.waitTerminal(job.ID, 30*time.Second)
	if failed.State != ferry.JobStateError || failed.ProcessedRuns != 2 || string(failed.Cursor) != `"c2"` {
		t.Fatalf("job = %s, runs %d, cursor %s; want error after 2 runs at \"c2\"", failed.State, failed.ProcessedRuns, failed.Cursor)
	}

	f.setReply(pageReply(10))
	at := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := s.JobRetry(t.Context(), &store.JobRetryParams{ID: job.ID, Now: at, Prepare: jobs.PrepareRetry(at)}); err != nil {
		t.Fatalf("JobRetry: %v", err)
	}
	done := f.waitTerminal(job.ID, 30*time.Second)
	if done.State != ferry.JobStateCompleted || done.CompletionReason != ferry.JobReasonTargetMet {
		t.Fatalf("resumed job = %s (%s), want completed (target_met)", done.State, done.CompletionReason)
	}
	if done.ProcessedRuns != 5 || done.ProcessedResults != 50 || done.RetriedCount != 1 {
		t.Errorf("runs %d, processed %d, retried %d; want 5, 50, 1", done.ProcessedRuns, done.ProcessedResults, done.RetriedCount)
	}

	// Run 3 was delivered three times: two failed attempts before the
	// retry, and the resumed run with run 2's cursor and counters.
	var run3 []flowRequest
	for _, r := range f.received() {
		if r.body.Run == 3 {
			run3 = append(run3, r)
		}
	}
	if len(run3) != 3 {
		t.Fatalf("run 3 was delivered %d times, want 3", len(run3))
	}
	if resumed := run3[2]; resumed.retried != 0 || string(resumed.body.Cursor) != `"c2"` || resumed.body.ProcessedResults != 20 {
		t.Errorf("resumed run 3: retried %d, cursor %s, processed %d; want 0, \"c2\", 20",
			resumed.retried, resumed.body.Cursor, resumed.body.ProcessedResults)
	}
}
