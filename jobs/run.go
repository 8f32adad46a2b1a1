package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/wire"
)

// Headers that a run delivery carries besides the usual delivery headers.
const (
	HeaderJobID  = "Ferry-Job-Id"
	HeaderJobRun = "Ferry-Job-Run"
)

// MaxRunResults is the largest number of result items one run may
// return. The whole response is also bounded by the dispatcher's response
// body limit, 256 KiB by default.
const MaxRunResults = 1000

// ContinuationDelay returns the wait before run n: none for run 1, and
// min(MaxContinuationDelay, ContinuationDelay·BackoffFactor^(n-1)) after.
func ContinuationDelay(job *ferry.Job, run int) time.Duration {
	if run <= 1 || job.ContinuationDelay <= 0 {
		return 0
	}
	d := float64(job.ContinuationDelay) * math.Pow(job.BackoffFactor, float64(run-1))
	if math.IsInf(d, 0) || math.IsNaN(d) || d >= float64(job.MaxContinuationDelay) {
		return job.MaxContinuationDelay
	}
	return time.Duration(d)
}

// NewRunMessage returns the message that delivers run of job, due at
// notBefore. Its body carries the job's current input, cursor and
// counters, so it must be built after the previous run was counted.
func NewRunMessage(job *ferry.Job, run int, notBefore, now time.Time) *ferry.Message {
	cursor := json.RawMessage(job.Cursor)
	if len(cursor) == 0 {
		cursor = json.RawMessage("null")
	}
	body, err := json.Marshal(wire.JobRunRequest{
		JobID:            job.ID,
		Run:              run,
		Input:            json.RawMessage(job.Input),
		Cursor:           cursor,
		ProcessedResults: job.ProcessedResults,
		TargetResults:    job.TargetResults,
		Deadline:         job.TimeoutAt.UTC(),
		RunTimeoutMs:     job.RunTimeout.Milliseconds(),
	})
	if err != nil {
		// Input and cursor were validated as JSON before they were stored.
		panic("marshal run request: " + err.Error())
	}

	m := &ferry.Message{
		ID:     ferry.NewMessageID(),
		URL:    job.URL,
		Method: http.MethodPost,
		Header: http.Header{
			"Content-Type": {"application/json"},
			HeaderJobID:    {job.ID},
			HeaderJobRun:   {strconv.Itoa(run)},
		},
		Body:           body,
		MaxRetries:     job.Retries,
		RetryDelayExpr: job.RetryDelayExpr,
		Timeout:        job.RunTimeout,
		NotBefore:      notBefore,
		CreatedAt:      now,
		CallerIP:       job.CallerIP,
		JobID:          job.ID,
		JobRun:         run,
	}
	if job.Label != "" {
		m.Labels = []string{job.Label}
	}
	return m
}

// RunResponse is a validated response of a job handler.
type RunResponse struct {
	Processed int
	Cursor    []byte
	Results   [][]byte
	HasMore   bool
}

// maxProcessed bounds the processed count of one run, so sums cannot
// overflow.
const maxProcessed = 1_000_000_000

// ParseRunResponse validates the 2xx response of a run. truncated reports
// a body longer than limit bytes, of which body holds the start. The
// error names the field that breaks the protocol.
func ParseRunResponse(body []byte, truncated bool, limit int) (*RunResponse, error) {
	if truncated {
		return nil, fmt.Errorf("response body exceeds the limit of %d bytes; return fewer or smaller results per run", limit)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("response body is not a JSON object (%s): respond with {\"processed\": n, \"hasMore\": true}",
			describeJSONError(body, err))
	}

	resp := &RunResponse{HasMore: true}
	raw, ok := fields["processed"]
	if !ok {
		return nil, fmt.Errorf("response field processed is missing: expected a non-negative integer")
	}
	var processed float64
	if err := json.Unmarshal(raw, &processed); err != nil || processed != math.Trunc(processed) ||
		processed < 0 || processed > maxProcessed {
		return nil, fmt.Errorf("response field processed is %s: expected an integer from 0 to %d", echo(string(raw)), maxProcessed)
	}
	resp.Processed = int(processed)

	if raw, ok := fields["cursor"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return nil, fmt.Errorf("response field cursor is not valid JSON: %v", err)
		}
		resp.Cursor = compact.Bytes()
	}

	if raw, ok := fields["results"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("response field results is %s: expected an array", describeType(raw))
		}
		if len(items) > MaxRunResults {
			return nil, fmt.Errorf("response field results has %d items: expected at most %d per run", len(items), MaxRunResults)
		}
		for _, item := range items {
			var compact bytes.Buffer
			if err := json.Compact(&compact, item); err != nil {
				return nil, fmt.Errorf("response field results has an invalid item: %v", err)
			}
			resp.Results = append(resp.Results, compact.Bytes())
		}
	}

	if raw, ok := fields["hasMore"]; ok {
		if err := json.Unmarshal(raw, &resp.HasMore); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return nil, fmt.Errorf("response field hasMore is %s: expected true or false", echo(string(raw)))
		}
	}
	return resp, nil
}

// describeJSONError names why body is not a JSON object.
func describeJSONError(body []byte, err error) string {
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "the body is empty"
	case err != nil:
		return err.Error()
	}
	return "got " + describeType(body)
}

// describeType names the JSON type of raw for an error message.
func describeType(raw json.RawMessage) string {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return "empty"
	}
	switch trimmed[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
