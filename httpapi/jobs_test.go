package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/wire"
)

const createBody = `{"url": "http://127.0.0.1:3000/job", "targetResults": 200, "input": {"keyword": "san"}, "label": "nightly"}`

// createJob posts body to /v1/jobs with an optional Idempotency-Key and
// returns the response.
func (s *testServer) createJob(t *testing.T, body, key string) response {
	t.Helper()
	h := headers("Authorization", "Bearer "+testToken)
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return s.do(t, http.MethodPost, "/v1/jobs", h, body)
}

func decodeJob(t *testing.T, resp response) wire.Job {
	t.Helper()
	var job wire.Job
	decodeInto(t, resp, &job)
	return job
}

func TestJobCreateAndGet(t *testing.T) {
	s, _ := newManagementServer(t)
	resp := s.createJob(t, createBody, "")
	if resp.status != http.StatusCreated {
		t.Fatalf("POST /v1/jobs status = %d, want 201 (body %s)", resp.status, resp.body)
	}
	job := decodeJob(t, resp)
	if !strings.HasPrefix(job.ID, "job_") || job.Status != "pending" || job.TargetResults != 200 || job.Label != "nightly" {
		t.Errorf("created job = %+v", job)
	}
	if job.MaxRuns != 50 || job.ContinuationDelay != "0s" || job.BackoffFactor != 1 || job.MaxContinuationDelay != "1m" ||
		job.RunTimeout != "5m" || job.Timeout != "1h" || job.Retries != 3 {
		t.Errorf("defaults = maxRuns %d, continuationDelay %s, backoffFactor %v, maxContinuationDelay %s, runTimeout %s, timeout %s, retries %d",
			job.MaxRuns, job.ContinuationDelay, job.BackoffFactor, job.MaxContinuationDelay, job.RunTimeout, job.Timeout, job.Retries)
	}
	if !job.CreatedAt.Equal(testNow) || !job.TimeoutAt.Equal(testNow.Add(time.Hour)) || job.StartedAt != nil ||
		job.NextRunAt == nil || !job.NextRunAt.Equal(testNow) {
		t.Errorf("times = created %v, timeout %v, started %v, next %v", job.CreatedAt, job.TimeoutAt, job.StartedAt, job.NextRunAt)
	}
	fields := rawFields(t, resp.body)
	for _, key := range []string{"startedAt", "completedAt", "cursor", "progress", "processedRuns", "processedResults"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("job JSON lacks %q: %s", key, resp.body)
		}
	}

	got := decodeJob(t, s.sendOK(t, http.MethodGet, "/v1/jobs/"+job.ID, "", http.StatusOK))
	if got.CurrentRun == nil || got.CurrentRun.Run != 1 || got.CurrentRun.Status != "scheduled" ||
		got.CurrentRun.MessageState != "CREATED" || len(got.CurrentRun.Attempts) != 0 {
		t.Fatalf("current run = %+v, want run 1 scheduled with a CREATED message", got.CurrentRun)
	}

	// The run is an ordinary message of the message API.
	var m wire.Message
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/messages/"+got.CurrentRun.MessageID, "", http.StatusOK), &m)
	if m.URL != "http://127.0.0.1:3000/job" || m.Header.Get("Ferry-Job-Id") != job.ID || m.Header.Get("Ferry-Job-Run") != "1" ||
		m.MaxRetries != 3 || len(m.Labels) != 1 || m.Labels[0] != "nightly" {
		t.Errorf("run message = %+v", m)
	}
	var body wire.JobRunRequest
	if err := json.Unmarshal([]byte(m.Body), &body); err != nil {
		t.Fatalf("run body %q: %v", m.Body, err)
	}
	if body.JobID != job.ID || body.Run != 1 || string(body.Input) != `{"keyword":"san"}` || string(body.Cursor) != "null" ||
		body.TargetResults != 200 || !body.Deadline.Equal(job.TimeoutAt) || body.RunTimeoutMs != 300_000 {
		t.Errorf("run body = %+v", body)
	}
}

func TestJobCreateInvalid(t *testing.T) {
	s, _ := newManagementServer(t)
	cases := []struct {
		body string
		key  string
		want string
	}{
		{`not json`, "", "invalid request body"},
		{`{"url": "http://127.0.0.1/", "targetResults": -3}`, "", "invalid field targetResults -3: expected an integer from 1 to 100000000"},
		{`{"url": "http://127.0.0.1/", "targetResults": 3, "runTimeout": "3h"}`, "", `invalid field runTimeout "3h": expected a duration string from 1s to 2h`},
		{`{"url": "http://127.0.0.1/", "targetResults": 3, "backoffFactor": "x"}`, "", `invalid field backoffFactor "x": expected a number from 1 to 10`},
		{createBody, strings.Repeat("k", 300), "invalid Idempotency-Key header"},
	}
	for _, c := range cases {
		resp := s.createJob(t, c.body, c.key)
		if resp.status != http.StatusBadRequest {
			t.Errorf("POST %s: status %d, want 400", c.body, resp.status)
			continue
		}
		var e wire.Error
		decodeInto(t, resp, &e)
		if !strings.Contains(e.Error, c.want) {
			t.Errorf("POST %s: error %q, want %q", c.body, e.Error, c.want)
		}
	}
}

func TestJobIdempotencyKey(t *testing.T) {
	s, clock := newManagementServer(t)
	var ids []string
	for i, want := range []int{http.StatusCreated, http.StatusOK, http.StatusOK} {
		clock.advance(time.Minute)
		resp := s.createJob(t, createBody, "nightly-2025-03-14")
		if resp.status != want {
			t.Fatalf("create %d: status %d, want %d (body %s)", i, resp.status, want, resp.body)
		}
		ids = append(ids, decodeJob(t, resp).ID)
	}
	if ids[1] != ids[0] || ids[2] != ids[0] {
		t.Errorf("job ids = %v, want one job", ids)
	}
	var list wire.JobListResponse
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs", "", http.StatusOK), &list)
	if len(list.Jobs) != 1 {
		t.Errorf("GET /v1/jobs lists %d jobs, want 1", len(list.Jobs))
	}

	resp := s.createJob(t, strings.Replace(createBody, "200", "300", 1), "nightly-2025-03-14")
	if resp.status != http.StatusUnprocessableEntity {
		t.Fatalf("create with another body: status %d, want 422", resp.status)
	}
	var e wire.Error
	decodeInto(t, resp, &e)
	if !strings.Contains(e.Error, `Idempotency-Key "nightly-2025-03-14"`) {
		t.Errorf("422 error %q does not name the key", e.Error)
	}

	clock.advance(25 * time.Hour)
	if resp := s.createJob(t, createBody, "nightly-2025-03-14"); resp.status != http.StatusCreated {
		t.Errorf("create after 25 h: status %d, want 201", resp.status)
	}
}

func TestJobActions(t *testing.T) {
	s, clock := newManagementServer(t)
	id := decodeJob(t, s.createJob(t, createBody, "")).ID

	resp := s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/complete", `{}`, http.StatusBadRequest)
	if !strings.Contains(string(resp.body), "missing field reason") {
		t.Errorf("complete without reason: %s", resp.body)
	}
	resp = s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/retry", "", http.StatusConflict)
	if !strings.Contains(string(resp.body), "retry applies to jobs in error or timeout") {
		t.Errorf("retry of a healthy job: %s", resp.body)
	}

	clock.advance(time.Second)
	job := decodeJob(t, s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/cancel", `{"reason": "wrong keyword"}`, http.StatusOK))
	if job.Status != "cancelled" || job.CompletionReason != "cancelled" || job.CompletionNote != "wrong keyword" ||
		job.CompletedAt == nil || job.NextRunAt != nil {
		t.Errorf("cancelled job = %+v", job)
	}
	got := decodeJob(t, s.sendOK(t, http.MethodGet, "/v1/jobs/"+id, "", http.StatusOK))
	if got.CurrentRun == nil || got.CurrentRun.Status != "cancelled" || got.CurrentRun.MessageState != "CANCELED" {
		t.Errorf("current run after cancel = %+v", got.CurrentRun)
	}

	for _, action := range []string{"cancel", "complete"} {
		resp := s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/"+action, `{"reason": "x"}`, http.StatusConflict)
		if !strings.Contains(string(resp.body), "is already cancelled") {
			t.Errorf("%s of a cancelled job: %s", action, resp.body)
		}
	}
	resp = s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/retry", "", http.StatusConflict)
	if !strings.Contains(string(resp.body), "cancelled, which is final") {
		t.Errorf("retry of a cancelled job: %s", resp.body)
	}

	other := decodeJob(t, s.createJob(t, createBody, "")).ID
	done := decodeJob(t, s.sendOK(t, http.MethodPost, "/v1/jobs/"+other+"/complete", `{"reason": "enough for today"}`, http.StatusOK))
	if done.Status != "completed" || done.CompletionReason != "manual" || done.CompletionNote != "enough for today" {
		t.Errorf("completed job = %+v", done)
	}
}

func TestJobListAndPages(t *testing.T) {
	s, clock := newManagementServer(t)
	var ids []string
	for range 3 {
		clock.advance(time.Second)
		ids = append(ids, decodeJob(t, s.createJob(t, createBody, "")).ID)
	}
	s.sendOK(t, http.MethodPost, "/v1/jobs/"+ids[0]+"/cancel", "", http.StatusOK)

	var page wire.JobListResponse
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs?count=2", "", http.StatusOK), &page)
	if len(page.Jobs) != 2 || page.Jobs[0].ID != ids[2] || page.Cursor != ids[1] {
		t.Fatalf("first page = %d jobs, cursor %q", len(page.Jobs), page.Cursor)
	}
	cursor := page.Cursor
	page = wire.JobListResponse{}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs?count=2&cursor="+cursor, "", http.StatusOK), &page)
	if len(page.Jobs) != 1 || page.Jobs[0].ID != ids[0] || page.Cursor != "" {
		t.Errorf("second page = %+v", page)
	}
	page = wire.JobListResponse{}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs?status=cancelled", "", http.StatusOK), &page)
	if len(page.Jobs) != 1 || page.Jobs[0].ID != ids[0] {
		t.Errorf("status=cancelled = %+v", page.Jobs)
	}
	from := testNow.Add(2 * time.Second).Format(time.RFC3339)
	page = wire.JobListResponse{}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs?label=nightly&from="+from, "", http.StatusOK), &page)
	if len(page.Jobs) != 2 {
		t.Errorf("label and from = %d jobs, want 2", len(page.Jobs))
	}
	resp := s.sendOK(t, http.MethodGet, "/v1/jobs?status=done", "", http.StatusBadRequest)
	if !strings.Contains(string(resp.body), "pending, processing, completed, error, timeout, cancelled") {
		t.Errorf("invalid status: %s", resp.body)
	}

	var runs wire.JobRunsResponse
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs/"+ids[1]+"/runs", "", http.StatusOK), &runs)
	if len(runs.Runs) != 1 || runs.Runs[0].Run != 1 || runs.Runs[0].Status != "scheduled" || runs.Cursor != "" {
		t.Errorf("runs = %+v", runs)
	}
	var results wire.JobResultsResponse
	resp = s.sendOK(t, http.MethodGet, "/v1/jobs/"+ids[1]+"/results", "", http.StatusOK)
	decodeInto(t, resp, &results)
	if results.Results == nil || len(results.Results) != 0 {
		t.Errorf("results of a new job = %s, want an empty list", resp.body)
	}
	s.sendOK(t, http.MethodGet, "/v1/jobs/"+ids[1]+"/results?cursor=x", "", http.StatusBadRequest)
}

func TestJobRoutesNotFoundAndMethods(t *testing.T) {
	s, _ := newManagementServer(t)
	for _, target := range []string{"/v1/jobs/job_missing", "/v1/jobs/job_missing/runs", "/v1/jobs/job_missing/results",
		"/v1/jobs/job_missing/events", "/v1/jobs/job_missing/diagnosis"} {
		resp := s.sendOK(t, http.MethodGet, target, "", http.StatusNotFound)
		if !strings.Contains(string(resp.body), "job job_missing not found") {
			t.Errorf("GET %s: %s", target, resp.body)
		}
	}
	for _, action := range []string{"cancel", "retry", "complete"} {
		s.sendOK(t, http.MethodPost, "/v1/jobs/job_missing/"+action, `{"reason": "x"}`, http.StatusNotFound)
	}
	s.sendOK(t, http.MethodDelete, "/v1/jobs", "", http.StatusMethodNotAllowed)
	s.sendOK(t, http.MethodGet, "/v1/jobs/job_x/cancel", "", http.StatusMethodNotAllowed)
	s.sendOK(t, http.MethodGet, "/v1/jobs/job_x/unknown", "", http.StatusNotFound)
	if resp := s.do(t, http.MethodGet, "/v1/jobs", nil, ""); resp.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/jobs without a token: status %d, want 401", resp.status)
	}
}

func TestJobStuckAndDiagnosis(t *testing.T) {
	s, clock := newManagementServer(t)
	id := decodeJob(t, s.createJob(t, createBody, "")).ID

	var stuck wire.JobStuckResponse
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs/stuck", "", http.StatusOK), &stuck)
	if len(stuck.Jobs) != 0 || stuck.Scanned != 1 {
		t.Errorf("stuck right after create = %+v, want none of 1", stuck)
	}

	clock.advance(2 * time.Minute)
	stuck = wire.JobStuckResponse{}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs/stuck", "", http.StatusOK), &stuck)
	if len(stuck.Jobs) != 1 || stuck.Jobs[0].Findings[0].Reason != "never_started" ||
		stuck.Jobs[0].Findings[0].Command != "ferry jobs cancel "+id {
		t.Errorf("stuck after 2 minutes = %+v, want never_started", stuck)
	}
	stuck = wire.JobStuckResponse{}
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs/stuck?startGrace=5m", "", http.StatusOK), &stuck)
	if len(stuck.Jobs) != 0 {
		t.Errorf("stuck with a 5m start grace = %+v, want none", stuck)
	}
	s.sendOK(t, http.MethodGet, "/v1/jobs/stuck?noProgressRuns=0", "", http.StatusBadRequest)

	var in wire.JobInspection
	decodeInto(t, s.sendOK(t, http.MethodGet, "/v1/jobs/"+id+"/diagnosis", "", http.StatusOK), &in)
	if in.Job.ID != id || len(in.Timeline) == 0 || len(in.Findings) != 1 || in.Findings[0].Reason != "never_started" {
		t.Errorf("diagnosis = %+v", in)
	}
}

func TestJobEventsStream(t *testing.T) {
	s, _ := newManagementServer(t)
	id := decodeJob(t, s.createJob(t, createBody, "")).ID

	req, err := http.NewRequest(http.MethodGet, s.url+"/v1/jobs/"+id+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}

	type event struct{ name, data string }
	events := make(chan event, 16)
	go func() {
		defer close(events)
		scanner := bufio.NewScanner(resp.Body)
		name := ""
		for scanner.Scan() {
			line := scanner.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				events <- event{name, v}
			}
		}
	}()
	next := func() event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended early")
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no event within 10s")
		}
		return event{}
	}

	first := next()
	if first.name != "job" || !strings.Contains(first.data, `"status":"pending"`) {
		t.Errorf("first event = %+v, want the pending job", first)
	}
	s.sendOK(t, http.MethodPost, "/v1/jobs/"+id+"/complete", `{"reason": "done by hand"}`, http.StatusOK)
	update := next()
	if update.name != "job" || !strings.Contains(update.data, `"status":"completed"`) {
		t.Errorf("update = %+v, want the completed job", update)
	}
	if end := next(); end.name != "end" || end.data != `{"status":"completed"}` {
		t.Errorf("last event = %+v, want end", end)
	}
}
