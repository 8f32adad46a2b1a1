package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/wire"
)

// JobCreate creates a job. A non-empty idempotencyKey is sent as the
// Idempotency-Key header. created is false when the server returned the
// job of an earlier create with the same key and body.
func (c *Client) JobCreate(ctx context.Context, req *wire.JobCreateRequest, idempotencyKey string) (job *wire.Job, created bool, err error) {
	header := http.Header{}
	if idempotencyKey != "" {
		header.Set("Idempotency-Key", idempotencyKey)
	}
	var out wire.Job
	status, err := c.doStatus(ctx, http.MethodPost, "/v1/jobs", nil, req, header, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusCreated, nil
}

// JobGet returns a job with its current run.
func (c *Client) JobGet(ctx context.Context, id string) (*wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodGet, jobPath(id, ""), nil, nil, nil, &out)
	return &out, err
}

// JobListOptions selects jobs for JobList. Empty fields do not filter.
type JobListOptions struct {
	Statuses []string
	Labels   []string

	// From and To bound the creation time, both inclusive.
	From, To time.Time

	// Cursor continues after the previous page.
	Cursor string

	// Count is the page size; zero means the server default.
	Count int
}

// JobList returns one page of jobs, newest first.
func (c *Client) JobList(ctx context.Context, opts *JobListOptions) (*wire.JobListResponse, error) {
	q := url.Values{}
	if opts != nil {
		for _, s := range opts.Statuses {
			q.Add("status", s)
		}
		for _, l := range opts.Labels {
			q.Add("label", l)
		}
		if !opts.From.IsZero() {
			q.Set("from", opts.From.UTC().Format(time.RFC3339Nano))
		}
		if !opts.To.IsZero() {
			q.Set("to", opts.To.UTC().Format(time.RFC3339Nano))
		}
		setPage(q, opts.Cursor, opts.Count)
	}
	var out wire.JobListResponse
	err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, nil, &out)
	return &out, err
}

// JobRuns returns one page of a job's runs with their attempts.
func (c *Client) JobRuns(ctx context.Context, id, cursor string, count int) (*wire.JobRunsResponse, error) {
	q := url.Values{}
	setPage(q, cursor, count)
	var out wire.JobRunsResponse
	err := c.do(ctx, http.MethodGet, jobPath(id, "runs"), q, nil, nil, &out)
	return &out, err
}

// JobResults returns one page of a job's stored results.
func (c *Client) JobResults(ctx context.Context, id, cursor string, count int) (*wire.JobResultsResponse, error) {
	q := url.Values{}
	setPage(q, cursor, count)
	var out wire.JobResultsResponse
	err := c.do(ctx, http.MethodGet, jobPath(id, "results"), q, nil, nil, &out)
	return &out, err
}

// JobCancel cancels a job; reason is optional.
func (c *Client) JobCancel(ctx context.Context, id, reason string) (*wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodPost, jobPath(id, "cancel"), nil, wire.JobActionRequest{Reason: reason}, nil, &out)
	return &out, err
}

// JobComplete completes a job by hand; reason is required.
func (c *Client) JobComplete(ctx context.Context, id, reason string) (*wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodPost, jobPath(id, "complete"), nil, wire.JobActionRequest{Reason: reason}, nil, &out)
	return &out, err
}

// JobRetry resumes a job in error or timeout, or replaces a stuck run.
func (c *Client) JobRetry(ctx context.Context, id string) (*wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodPost, jobPath(id, "retry"), nil, nil, nil, &out)
	return &out, err
}

// DiagnoseOptions tunes the stuck diagnosis; zero fields take the server
// defaults.
type DiagnoseOptions struct {
	// NoProgressRuns is the number of latest runs without results that
	// count as no progress.
	NoProgressRuns int

	// StartGrace is how long a due run may wait for its first delivery.
	StartGrace time.Duration
}

func (o *DiagnoseOptions) query() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	if o.NoProgressRuns > 0 {
		q.Set("noProgressRuns", strconv.Itoa(o.NoProgressRuns))
	}
	if o.StartGrace > 0 {
		q.Set("startGrace", strconv.Itoa(int(o.StartGrace.Seconds()))+"s")
	}
	return q
}

// JobsStuck returns the unfinished jobs that look stuck, with the reasons.
func (c *Client) JobsStuck(ctx context.Context, opts *DiagnoseOptions) (*wire.JobStuckResponse, error) {
	var out wire.JobStuckResponse
	err := c.do(ctx, http.MethodGet, "/v1/jobs/stuck", opts.query(), nil, nil, &out)
	return &out, err
}

// JobInspect returns a job's timeline and diagnosis.
func (c *Client) JobInspect(ctx context.Context, id string, opts *DiagnoseOptions) (*wire.JobInspection, error) {
	var out wire.JobInspection
	err := c.do(ctx, http.MethodGet, jobPath(id, "diagnosis"), opts.query(), nil, nil, &out)
	return &out, err
}

// maxEventBytes bounds one server-sent event line.
const maxEventBytes = 4 << 20

// JobWatch streams a job's state from GET /v1/jobs/{id}/events and calls
// fn with each update until the job ends, fn returns an error, or ctx
// ends. It reconnects when the server closes the stream early, up to
// maxReconnects times in a row without an update in between.
func (c *Client) JobWatch(ctx context.Context, id string, fn func(*wire.Job) error) error {
	const maxReconnects = 5
	failures := 0
	for {
		ended, updated, err := c.watchOnce(ctx, id, fn)
		if ended || ctx.Err() != nil {
			return err
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status < 500 {
			return err
		}
		if updated {
			failures = 0
		}
		failures++
		if failures > maxReconnects {
			if err == nil {
				err = errors.New("the server closed the stream")
			}
			return fmt.Errorf("watch job %s: gave up after %d reconnects: %w", id, maxReconnects, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(failures) * 500 * time.Millisecond):
		}
	}
}

// watchOnce reads one event stream. ended reports the end event or an
// error from fn; updated reports that at least one job event arrived.
func (c *Client) watchOnce(ctx context.Context, id string, fn func(*wire.Job) error) (ended, updated bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+jobPath(id, "events"), nil)
	if err != nil {
		return true, false, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "text/event-stream")

	// The stream outlives the client's request timeout, so it uses a
	// client without one on the same transport.
	streamClient := &http.Client{Transport: c.HTTPClient.Transport}
	resp, err := streamClient.Do(req)
	if err != nil {
		return false, false, fmt.Errorf("GET %s: %w; check --url (or FERRY_URL) and that the server is running", jobPath(id, "events"), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e wire.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return false, false, &Error{Status: resp.StatusCode, Message: e.Error}
	}

	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), maxEventBytes)
	event := ""
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data := strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			switch event {
			case "job":
				var job wire.Job
				if err := json.Unmarshal([]byte(data), &job); err != nil {
					return true, updated, fmt.Errorf("decode job event: %w", err)
				}
				updated = true
				if err := fn(&job); err != nil {
					return true, updated, err
				}
			case "end":
				return true, updated, nil
			case "error":
				var e wire.Error
				json.Unmarshal([]byte(data), &e)
				return false, updated, fmt.Errorf("server reported: %s", e.Error)
			}
		case line == "":
			event = ""
		}
	}
	return false, updated, scanner.Err()
}

// doStatus sends a JSON request like do and also returns the response
// status, which distinguishes a new job (201) from a repeated create (200).
func (c *Client) doStatus(ctx context.Context, method, path string, query url.Values, body any, header http.Header, out any) (int, error) {
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	data, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)

	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w; check --url (or FERRY_URL) and that the server is running", method, path, err)
	}
	defer resp.Body.Close()
	respData, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e wire.Error
		if json.Unmarshal(respData, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(respData))
		}
		return resp.StatusCode, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(respData, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

func jobPath(id, action string) string {
	p := "/v1/jobs/" + url.PathEscape(id)
	if action != "" {
		p += "/" + action
	}
	return p
}

func setPage(q url.Values, cursor string, count int) {
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if count > 0 {
		q.Set("count", strconv.Itoa(count))
	}
}
