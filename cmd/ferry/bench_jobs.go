package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/wire"
)

// jobsMaxRuns is the run limit of each benchmark job: the API's largest.
const jobsMaxRuns = 10_000

// runJobsMode measures job runs per second through the jobs API. It
// creates --concurrency jobs with zero continuation delay. Their handler
// processes one result per run and returns hasMore true until the
// measurement ends. It reports the runs per second and the gap between a
// handler's response and the arrival of the same job's next run.
func runJobsMode(ctx context.Context, target *benchTarget, opts *benchOptions, prog *benchProgress) (*benchResult, error) {
	api := newBenchPublisher(target.url, target.token, "", opts.concurrency, nil)
	var probe wire.JobListResponse
	if err := api.get(ctx, target.url, "/v1/jobs?count=1", &probe); err != nil {
		if isNotFound(err) {
			return &benchResult{Mode: "jobs", Note: "not available: the server has no /v1/jobs API"}, nil
		}
		return nil, fmt.Errorf("probe the jobs API: %w", err)
	}

	start := time.Now()
	deadline := start.Add(opts.duration)
	handler := &jobsHandler{deadline: deadline, windowStart: start, respondedAt: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the job handler on 127.0.0.1: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	prog.set(func() string {
		return fmt.Sprintf("jobs  %s/%s  %d runs", since(start), opts.duration, handler.runs.Load())
	})
	defer prog.set(nil)

	label := "ferry-bench-" + randomHex(6)
	spec := wire.JobCreateRequest{
		URL:               "http://" + ln.Addr().String() + "/run",
		Input:             json.RawMessage(`{}`),
		TargetResults:     100_000_000,
		MaxRuns:           jobsMaxRuns,
		ContinuationDelay: "0s",
		Label:             label,
	}
	var errs errorSample
	var createLatency latencyRecorder
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for range opts.concurrency {
		wg.Go(func() {
			sent := time.Now()
			id, err := createJob(ctx, api, target.url, &spec)
			if err != nil {
				errs.add(err)
				return
			}
			createLatency.add(time.Since(sent))
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		})
	}
	wg.Wait()

	select {
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Runs after the deadline get hasMore false, so each job completes with
	// its next run. On a server at --url, a job that does not is cancelled.
	finished := waitJobsFinished(ctx, api, target.url, ids, 30*time.Second)
	if target.dsn == "" {
		for _, id := range ids {
			if !finished[id] {
				api.post(ctx, target.url, "/v1/jobs/"+id+"/cancel", nil)
			}
		}
	}

	runs := handler.inWindow.Load()
	return &benchResult{
		Mode:           "jobs",
		Available:      true,
		Published:      int64(len(ids)),
		Delivered:      runs,
		DeliverRate:    float64(runs) / opts.duration.Seconds(),
		PublishLatency: createLatency.summary(),
		RunGap:         handler.gaps.summary(),
		Errors:         errs.count.Load() + handler.badRequests.Load(),
		FirstError:     errs.text(),
	}, nil
}

// createJob creates a job and returns its id.
func createJob(ctx context.Context, api *benchPublisher, baseURL string, spec *wire.JobCreateRequest) (string, error) {
	var job wire.Job
	if err := api.post(ctx, baseURL, "/v1/jobs", spec, &job); err != nil {
		return "", fmt.Errorf("create a job: %w", err)
	}
	if job.ID == "" {
		return "", fmt.Errorf("create a job: the response has no id")
	}
	return job.ID, nil
}

// waitJobsFinished polls the jobs until each is in a terminal state or
// timeout passes, and returns which finished.
func waitJobsFinished(ctx context.Context, api *benchPublisher, baseURL string, ids []string, timeout time.Duration) map[string]bool {
	finished := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(finished) < len(ids) && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, id := range ids {
			if finished[id] {
				continue
			}
			var job wire.Job
			if err := api.get(ctx, baseURL, "/v1/jobs/"+id, &job); err == nil && job.Status != "pending" && job.Status != "processing" {
				finished[id] = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return finished
}

// jobsHandler is the job handler of the jobs mode. Every run processes one
// result. Runs before the deadline return hasMore true, and later runs end
// the job.
type jobsHandler struct {
	deadline    time.Time
	windowStart time.Time

	runs        atomic.Int64
	inWindow    atomic.Int64
	badRequests atomic.Int64
	gaps        latencyRecorder

	mu          sync.Mutex
	respondedAt map[string]time.Time // job id to the time of the last response
}

func (h *jobsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var req wire.JobRunRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(body, &req) != nil || req.JobID == "" {
		h.badRequests.Add(1)
		http.Error(w, "body is not a job run request", http.StatusBadRequest)
		return
	}
	h.runs.Add(1)
	inWindow := !at.Before(h.windowStart) && !at.After(h.deadline)
	if inWindow {
		h.inWindow.Add(1)
	}

	h.mu.Lock()
	last, ok := h.respondedAt[req.JobID]
	h.mu.Unlock()
	if ok && inWindow {
		h.gaps.add(at.Sub(last))
	}

	more := at.Before(h.deadline)
	response, _ := json.Marshal(wire.JobRunResponse{Processed: 1, HasMore: &more})
	h.mu.Lock()
	h.respondedAt[req.JobID] = time.Now()
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(response)
}

// post sends an authenticated POST with body encoded as JSON to path and
// decodes the JSON response into out, when out is given.
func (p *benchPublisher) post(ctx context.Context, baseURL, path string, body any, out ...any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")

	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &benchHTTPError{status: resp.StatusCode, body: string(bytes.TrimSpace(data))}
	}
	if len(out) > 0 && out[0] != nil {
		return json.Unmarshal(data, out[0])
	}
	return nil
}
