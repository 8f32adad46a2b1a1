package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/duration"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Page sizes of the jobs API.
const (
	jobsPageDefault    = 20
	jobsPageMax        = 100
	runsPageDefault    = 20
	runsPageMax        = 100
	resultsPageDefault = 100
	resultsPageMax     = 1000
)

// Settings of the job event stream.
const (
	// jobStreamPoll is how often a stream reads the job.
	jobStreamPoll = 250 * time.Millisecond

	// jobStreamKeepAlive is the longest quiet time before a comment line
	// keeps proxies from closing the stream.
	jobStreamKeepAlive = 15 * time.Second

	// jobStreamMax ends a stream after this long; clients reconnect.
	jobStreamMax = time.Hour
)

// maxReasonBytes bounds the reason of a cancel or manual completion.
const maxReasonBytes = 1000

// routeJobs routes /v1/jobs and everything below it; rest is the path
// after "jobs/" without surrounding slashes.
func (s *Server) routeJobs(w http.ResponseWriter, r *http.Request, rest string) {
	switch rest {
	case "":
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:  s.handleJobList,
			http.MethodPost: s.handleJobCreate,
		})
		return
	case "stuck":
		s.only(w, r, http.MethodGet, s.handleJobsStuck)
		return
	}

	segment, action, _ := strings.Cut(rest, "/")
	id, err := pathID(segment)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	with := func(h func(w http.ResponseWriter, r *http.Request, id string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { h(w, r, id) }
	}
	switch action {
	case "":
		s.only(w, r, http.MethodGet, with(s.handleJobGet))
	case "runs":
		s.only(w, r, http.MethodGet, with(s.handleJobRuns))
	case "results":
		s.only(w, r, http.MethodGet, with(s.handleJobResults))
	case "events":
		s.only(w, r, http.MethodGet, with(s.handleJobEvents))
	case "diagnosis":
		s.only(w, r, http.MethodGet, with(s.handleJobDiagnosis))
	case "cancel":
		s.only(w, r, http.MethodPost, with(s.handleJobCancel))
	case "retry":
		s.only(w, r, http.MethodPost, with(s.handleJobRetry))
	case "complete":
		s.only(w, r, http.MethodPost, with(s.handleJobComplete))
	default:
		s.notFound(w, r)
	}
}

// handleJobCreate serves POST /v1/jobs: 201 with a new job, or 200 with
// the first job of a repeated Idempotency-Key.
func (s *Server) handleJobCreate(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	spec, err := jobs.ParseSpec(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if err := jobs.ValidateIdempotencyKey(key); err != nil {
		s.writeError(w, r, err)
		return
	}

	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	job := spec.NewJob(now, callerIP(r))
	first := jobs.NewRunMessage(job, 1, now, now)
	job.CurrentMessageID = first.ID
	res, err := s.cfg.Store.JobInsert(r.Context(), &store.JobInsertParams{
		Job: job, FirstRun: first, IdempotencyKey: key, IdempotencyWindow: jobs.IdempotencyWindow,
		RequestHash: spec.Hash, Now: now,
	})
	if errors.Is(err, store.ErrIdempotencyKeyReused) {
		s.writeError(w, r, ferry.Errorf(ferry.EUNPROCESSABLE, "Idempotency-Key %q was used within the last %s with a "+
			"different request body; send the same body to get the first job, or use a new key for a new job",
			truncate(key), duration.Format(jobs.IdempotencyWindow)))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}

	if res.Existing {
		writeJSON(w, http.StatusOK, wire.NewJob(res.Job))
		return
	}
	s.notify()
	s.logger.Info("job created", "job_id", job.ID, "url", job.URL, "target_results", job.TargetResults,
		"max_runs", job.MaxRuns)
	writeJSON(w, http.StatusCreated, wire.NewJob(res.Job))
}

// handleJobGet serves GET /v1/jobs/{id}, with the current run and its
// attempts.
func (s *Server) handleJobGet(w http.ResponseWriter, r *http.Request, id string) {
	job, err := s.loadJob(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := wire.NewJob(job)
	runs, err := s.cfg.Store.JobRunList(r.Context(), &store.JobRunListParams{JobID: id, Runs: []int{job.CurrentRun}})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(runs) == 1 {
		current := wire.NewJobRun(runs[0])
		if m, err := s.cfg.Store.MessageGet(r.Context(), runs[0].MessageID); err == nil {
			current.MessageState = string(m.State)
		} else if !errors.Is(err, store.ErrNotFound) {
			s.writeError(w, r, err)
			return
		}
		out.CurrentRun = &current
	}
	writeJSON(w, http.StatusOK, out)
}

// loadJob returns job id or an ENOTFOUND error naming it.
func (s *Server) loadJob(r *http.Request, id string) (*ferry.Job, error) {
	job, err := s.cfg.Store.JobGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, jobNotFound(id)
	}
	return job, err
}

func jobNotFound(id string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "job %s not found", truncate(id))
}

// handleJobList serves GET /v1/jobs, newest first. Filters: status and
// label (repeated or comma-separated), from and to (creation time as RFC
// 3339 or Unix milliseconds, inclusive).
func (s *Server) handleJobList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	params := &store.JobListParams{Labels: listValues(q, "label"), BeforeID: q.Get("cursor")}
	for _, v := range listValues(q, "status", "state") {
		state := ferry.JobState(strings.ToLower(v))
		if !isJobState(state) {
			s.writeError(w, r, ferry.Errorf(ferry.EINVALID, "invalid status parameter %q: expected one of %s",
				truncate(v), jobStateNames()))
			return
		}
		params.States = append(params.States, state)
	}
	var err error
	if params.From, err = parseTimeParam(q, "from"); err != nil {
		s.writeError(w, r, err)
		return
	}
	if params.To, err = parseTimeParam(q, "to"); err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, jobsPageDefault, jobsPageMax)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	params.Limit = count + 1

	list, err := s.cfg.Store.JobList(r.Context(), params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := wire.JobListResponse{Jobs: make([]wire.Job, 0, len(list))}
	if len(list) > count {
		list = list[:count]
		out.Cursor = list[count-1].ID
	}
	for _, j := range list {
		out.Jobs = append(out.Jobs, wire.NewJob(j))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleJobRuns serves GET /v1/jobs/{id}/runs in run order. The cursor is
// the last run number of the previous page.
func (s *Server) handleJobRuns(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := s.loadJob(r, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	after, err := parseIntCursor(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, runsPageDefault, runsPageMax)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	runs, err := s.cfg.Store.JobRunList(r.Context(), &store.JobRunListParams{JobID: id, AfterRun: after, Limit: count + 1})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := wire.JobRunsResponse{Runs: make([]wire.JobRun, 0, len(runs))}
	if len(runs) > count {
		runs = runs[:count]
		out.Cursor = strconv.Itoa(runs[count-1].Run)
	}
	for _, run := range runs {
		out.Runs = append(out.Runs, wire.NewJobRun(run))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleJobResults serves GET /v1/jobs/{id}/results in storage order. The
// cursor is the last sequence number of the previous page.
func (s *Server) handleJobResults(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := s.loadJob(r, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	after, err := parseIntCursor(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, resultsPageDefault, resultsPageMax)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	results, err := s.cfg.Store.JobResultList(r.Context(), &store.JobResultListParams{JobID: id, AfterSeq: after,
		Limit: count + 1})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := wire.JobResultsResponse{Results: make([]wire.JobResult, 0, len(results))}
	if len(results) > count {
		results = results[:count]
		out.Cursor = strconv.Itoa(results[count-1].Seq)
	}
	for _, res := range results {
		out.Results = append(out.Results, wire.JobResult{Seq: res.Seq, Run: res.Run, Item: json.RawMessage(res.Item)})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleJobCancel serves POST /v1/jobs/{id}/cancel with an optional
// {"reason": "..."} body.
func (s *Server) handleJobCancel(w http.ResponseWriter, r *http.Request, id string) {
	reason, err := s.readReason(w, r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.finishJob(w, r, &store.JobFinishParams{ID: id, Now: s.cfg.Now(), State: ferry.JobStateCancelled,
		Reason: ferry.JobReasonCancelled, Note: reason})
}

// handleJobComplete serves POST /v1/jobs/{id}/complete with a required
// {"reason": "..."} body.
func (s *Server) handleJobComplete(w http.ResponseWriter, r *http.Request, id string) {
	reason, err := s.readReason(w, r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.finishJob(w, r, &store.JobFinishParams{ID: id, Now: s.cfg.Now(), State: ferry.JobStateCompleted,
		Reason: ferry.JobReasonManual, Note: reason})
}

func (s *Server) finishJob(w http.ResponseWriter, r *http.Request, params *store.JobFinishParams) {
	job, applied, err := s.cfg.Store.JobFinish(r.Context(), params)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, jobNotFound(params.ID))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !applied {
		s.writeError(w, r, ferry.Errorf(ferry.ECONFLICT, "job %s is already %s", job.ID, job.State))
		return
	}
	s.logger.Info("job finished by request", "job_id", job.ID, "state", job.State, "note", job.CompletionNote)
	writeJSON(w, http.StatusOK, wire.NewJob(job))
}

// readReason reads the reason of a cancel or manual completion.
func (s *Server) readReason(w http.ResponseWriter, r *http.Request, required bool) (string, error) {
	var body wire.JobActionRequest
	if _, err := s.readJSONBody(w, r, &body); err != nil {
		return "", err
	}
	reason := strings.TrimSpace(body.Reason)
	switch {
	case required && reason == "":
		return "", ferry.Errorf(ferry.EINVALID, `missing field reason: send {"reason": "why the job is complete"}`)
	case len(reason) > maxReasonBytes || !utf8.ValidString(reason):
		return "", ferry.Errorf(ferry.EINVALID, "invalid field reason %q: expected at most %d bytes of UTF-8 text",
			truncate(reason), maxReasonBytes)
	}
	return reason, nil
}

// handleJobRetry serves POST /v1/jobs/{id}/retry.
func (s *Server) handleJobRetry(w http.ResponseWriter, r *http.Request, id string) {
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	job, err := s.cfg.Store.JobRetry(r.Context(), &store.JobRetryParams{ID: id, Now: now, Prepare: jobs.PrepareRetry(now)})
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, jobNotFound(id))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.notify()
	s.logger.Info("job retried by request", "job_id", job.ID, "run", job.CurrentRun, "retried", job.RetriedCount)
	writeJSON(w, http.StatusOK, wire.NewJob(job))
}

// handleJobDiagnosis serves GET /v1/jobs/{id}/diagnosis: the job's
// timeline and findings.
func (s *Server) handleJobDiagnosis(w http.ResponseWriter, r *http.Request, id string) {
	opts, err := parseDiagnoseOptions(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	inspection, err := jobs.Inspect(r.Context(), s.cfg.Store, id, s.cfg.Now(), opts)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, jobNotFound(id))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inspection)
}

// handleJobsStuck serves GET /v1/jobs/stuck.
func (s *Server) handleJobsStuck(w http.ResponseWriter, r *http.Request) {
	opts, err := parseDiagnoseOptions(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stuck, scanned, err := jobs.FindStuck(r.Context(), s.cfg.Store, s.cfg.Now(), opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if stuck == nil {
		stuck = []wire.JobStuck{}
	}
	writeJSON(w, http.StatusOK, wire.JobStuckResponse{Jobs: stuck, Scanned: scanned})
}

// parseDiagnoseOptions reads noProgressRuns and startGrace.
func parseDiagnoseOptions(q url.Values) (jobs.DiagnoseOptions, error) {
	var opts jobs.DiagnoseOptions
	if v := strings.TrimSpace(q.Get("noProgressRuns")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > jobs.MaxRunsLimit {
			return opts, ferry.Errorf(ferry.EINVALID, "invalid noProgressRuns parameter %q: expected an integer from 1 to %d",
				truncate(v), jobs.MaxRunsLimit)
		}
		opts.NoProgressRuns = n
	}
	if v := strings.TrimSpace(q.Get("startGrace")); v != "" {
		d, err := duration.Parse(v)
		if err != nil || d <= 0 {
			return opts, ferry.Errorf(ferry.EINVALID, "invalid startGrace parameter %q: expected a duration such as 30s or 5m",
				truncate(v))
		}
		opts.StartGrace = d
	}
	return opts, nil
}

// handleJobEvents serves GET /v1/jobs/{id}/events as server-sent events:
// a "job" event with the job whenever its state or progress changes, and
// an "end" event once it is terminal. The stream also ends when the
// client leaves, the server shuts down, or after jobStreamMax.
func (s *Server) handleJobEvents(w http.ResponseWriter, r *http.Request, id string) {
	job, err := s.loadJob(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.writeError(w, r, ferry.Errorf(ferry.EINTERNAL, "streaming is not supported by this connection"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(event string, v any) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}

	if !send("job", wire.NewJob(job)) {
		return
	}
	last := job
	poll := time.NewTicker(jobStreamPoll)
	defer poll.Stop()
	end := time.NewTimer(jobStreamMax)
	defer end.Stop()
	quietSince := time.Now()
	for !last.State.Terminal() {
		select {
		case <-r.Context().Done():
			return
		case <-s.streams.done():
			return
		case <-end.C:
			return
		case <-poll.C:
		}
		current, err := s.cfg.Store.JobGet(r.Context(), id)
		if err != nil {
			if r.Context().Err() == nil {
				s.logger.Error("job event stream failed", "job_id", id, "error", err)
				send("error", errorResponse{Error: "reading the job failed; reconnect to continue"})
			}
			return
		}
		if jobChanged(last, current) {
			if !send("job", wire.NewJob(current)) {
				return
			}
			last = current
			quietSince = time.Now()
		} else if time.Since(quietSince) >= jobStreamKeepAlive {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
			quietSince = time.Now()
		}
	}
	send("end", map[string]string{"status": string(last.State)})
}

// jobChanged reports a change of state or progress between two reads.
func jobChanged(a, b *ferry.Job) bool {
	return a.State != b.State || !a.UpdatedAt.Equal(b.UpdatedAt) || a.ProcessedResults != b.ProcessedResults ||
		a.ProcessedRuns != b.ProcessedRuns || a.StartedRuns != b.StartedRuns
}

// streamStop ends long-lived streams once, at shutdown.
type streamStop struct {
	init, stop sync.Once
	ch         chan struct{}
}

func (s *streamStop) done() chan struct{} {
	s.init.Do(func() { s.ch = make(chan struct{}) })
	return s.ch
}

func (s *streamStop) close() {
	ch := s.done()
	s.stop.Do(func() { close(ch) })
}

// CloseStreams ends every open job event stream. Register it with
// http.Server.RegisterOnShutdown, because Shutdown waits for handlers to
// return and a stream returns only when its job ends.
func (s *Server) CloseStreams() {
	s.streams.close()
}

func isJobState(state ferry.JobState) bool {
	for _, s := range ferry.JobStates() {
		if s == state {
			return true
		}
	}
	return false
}

func jobStateNames() string {
	names := make([]string, 0, len(ferry.JobStates()))
	for _, s := range ferry.JobStates() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// parseTimeParam reads an RFC 3339 time or Unix milliseconds; absent means
// zero.
func parseTimeParam(q url.Values, name string) (time.Time, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms >= 0 {
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, ferry.Errorf(ferry.EINVALID, "invalid %s parameter %q: expected an RFC 3339 time such as "+
			"2025-03-14T09:00:00Z or Unix milliseconds", name, truncate(v))
	}
	return t, nil
}

// parseIntCursor reads a numeric cursor; absent means 0.
func parseIntCursor(q url.Values) (int, error) {
	v := strings.TrimSpace(q.Get("cursor"))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalidCursor(v)
	}
	return n, nil
}
