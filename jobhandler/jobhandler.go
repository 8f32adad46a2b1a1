// Package jobhandler serves the runs of Ferry jobs from a Go function.
//
// Ferry POSTs each run of a job to the job's URL as signed JSON. A
// Handler verifies the Upstash-Signature, decodes the run, calls the
// function, and responds in the run protocol:
//
//	h, err := jobhandler.New(func(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
//		var in struct{ Keyword string }
//		if err := run.DecodeInput(&in); err != nil {
//			return nil, jobhandler.Permanent(err)
//		}
//		items, next, err := fetchPage(ctx, in.Keyword, run.Cursor)
//		if err != nil {
//			return nil, err // status 500: Ferry retries the run
//		}
//		return &jobhandler.Result{Processed: len(items), Results: items, Cursor: next, Done: next == nil}, nil
//	}, jobhandler.OptionsFromEnv())
//
// A returned error gets status 500, so Ferry retries the run with its
// backoff. An error wrapped with Permanent gets status 489 with
// Upstash-NonRetryable-Error: true, which fails the run at once and moves
// the job to error. An error wrapped with RetryAfter gets status 429 with
// a Retry-After header, which Ferry uses as the delay before the retry.
package jobhandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/wire"
)

// MaxResults is the largest number of result items one run may return,
// the limit Ferry applies.
const MaxResults = 1000

// MaxBodyBytesDefault bounds a run request body, the default limit of a
// Ferry request body.
const MaxBodyBytesDefault = 10 << 20

// StatusNonRetryable is the status of a permanent failure. Ferry fails a
// run that responds with it with Upstash-NonRetryable-Error: true without
// further retries.
const StatusNonRetryable = 489

// InsecureSkipVerifyVariable names the environment variable that
// OptionsFromEnv reads for Options.InsecureSkipVerify.
const InsecureSkipVerifyVariable = "FERRY_JOBHANDLER_INSECURE_SKIP_VERIFY"

// Run is one run of a job as Ferry delivers it.
type Run struct {
	JobID string

	// MessageID is the Ferry message that delivers the run; retries of the
	// run carry the same id.
	MessageID string

	// Run is the 1-based run number.
	Run int

	// Input is the job's input JSON.
	Input json.RawMessage

	// Cursor is the previous run's cursor JSON, nil on the first run and
	// when the previous run returned none.
	Cursor json.RawMessage

	// ProcessedResults is the sum of processed counts of earlier runs, and
	// TargetResults the count at which the job completes.
	ProcessedResults int
	TargetResults    int

	// Deadline is when the whole job times out.
	Deadline time.Time

	// RunTimeout is the time Ferry waits for this response; the function's
	// context ends then.
	RunTimeout time.Duration

	// Retried is the number of earlier failed attempts of this run.
	Retried int
}

// DecodeInput decodes the job's input into v.
func (r *Run) DecodeInput(v any) error {
	if err := json.Unmarshal(r.Input, v); err != nil {
		return fmt.Errorf("decode job input %s: %w", truncate(string(r.Input)), err)
	}
	return nil
}

// DecodeCursor decodes the cursor into v and reports whether there was
// one.
func (r *Run) DecodeCursor(v any) (bool, error) {
	if len(r.Cursor) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(r.Cursor, v); err != nil {
		return true, fmt.Errorf("decode cursor %s: %w", truncate(string(r.Cursor)), err)
	}
	return true, nil
}

// Remaining returns the results still missing to the target, at least 0.
func (r *Run) Remaining() int {
	return max(r.TargetResults-r.ProcessedResults, 0)
}

// Result is the response of one run.
type Result struct {
	// Processed is the number of results the run processed.
	Processed int

	// Cursor is handed to the next run as JSON; nil sends none.
	Cursor any

	// Results are items for Ferry to store, at most MaxResults.
	Results []any

	// Done ends the job: the handler has no more results.
	Done bool
}

// Func does one run.
type Func func(ctx context.Context, run *Run) (*Result, error)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the response has status 489 with
// Upstash-NonRetryable-Error: true and fails without further retries.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError is a handler error that makes Ferry retry the run after a delay.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as temporary with a known wait, such as a rate
// limit: the response has status 429 with Retry-After in whole seconds,
// rounded up, and Ferry retries it after that delay.
func RetryAfter(err error, delay time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, delay: delay}
}

// Options configures a Handler.
type Options struct {
	// CurrentSigningKey and NextSigningKey verify Upstash-Signature. At
	// least one is required unless InsecureSkipVerify is set.
	CurrentSigningKey string
	NextSigningKey    string

	// URL is the job's URL as Ferry calls it, compared with the token's
	// "sub" claim. When empty, the handler rebuilds it from the request:
	// https when the connection is TLS or X-Forwarded-Proto reports https,
	// http otherwise, then the Host header and the request URI.
	URL string

	// InsecureSkipVerify accepts runs without checking their signature,
	// so anyone who reaches the handler can feed it runs. For development
	// only; New logs a warning when it is set.
	InsecureSkipVerify bool

	// MaxBodyBytes bounds a run request; zero means MaxBodyBytesDefault.
	MaxBodyBytes int64

	// Logger receives errors and the verification warning. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// OptionsFromEnv returns Options with the signing keys from
// QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY, and
// InsecureSkipVerify set when FERRY_JOBHANDLER_INSECURE_SKIP_VERIFY is
// "true".
func OptionsFromEnv() Options {
	return Options{
		CurrentSigningKey:  os.Getenv("QSTASH_CURRENT_SIGNING_KEY"),
		NextSigningKey:     os.Getenv("QSTASH_NEXT_SIGNING_KEY"),
		InsecureSkipVerify: strings.EqualFold(strings.TrimSpace(os.Getenv(InsecureSkipVerifyVariable)), "true"),
	}
}

// Handler serves the runs of jobs. It is an http.Handler.
type Handler struct {
	fn       Func
	opts     Options
	verifier *signature.Verifier
	logger   *slog.Logger
}

// New returns a Handler that runs fn. It returns an error when no signing
// key is set and verification is not skipped.
func New(fn Func, opts Options) (*Handler, error) {
	if fn == nil {
		return nil, errors.New("jobhandler: the run function is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = MaxBodyBytesDefault
	}
	h := &Handler{fn: fn, opts: opts, logger: opts.Logger.With("component", "jobhandler")}
	switch {
	case opts.InsecureSkipVerify:
		h.logger.Warn("SIGNATURE VERIFICATION IS OFF: this job handler accepts runs from anyone who can reach it; " +
			"use it for development only and set the signing keys in production")
	case opts.CurrentSigningKey == "" && opts.NextSigningKey == "":
		return nil, errors.New("jobhandler: no signing key: set Options.CurrentSigningKey and NextSigningKey " +
			"(QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY with OptionsFromEnv), or InsecureSkipVerify for development")
	default:
		h.verifier = &signature.Verifier{CurrentKey: opts.CurrentSigningKey, NextKey: opts.NextSigningKey}
	}
	return h, nil
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "job runs are delivered with POST"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("reading the run request failed: %v", err)})
		return
	}

	if h.verifier != nil {
		if err := h.verifier.Verify(r.Header.Get("Upstash-Signature"), h.requestURL(r), body); err != nil {
			h.logger.Warn("rejected a job run with an invalid signature", "url", h.requestURL(r), "error", err)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid Upstash-Signature: " + err.Error()})
			return
		}
	}

	run, err := decodeRun(r, body)
	if err != nil {
		h.writeFailure(w, nil, Permanent(err))
		return
	}

	ctx := r.Context()
	if run.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, run.RunTimeout)
		defer cancel()
	}
	res, err := h.call(ctx, run)
	if err != nil {
		h.writeFailure(w, run, err)
		return
	}
	answer, err := encodeResult(res)
	if err != nil {
		h.writeFailure(w, run, Permanent(err))
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

// call runs fn and turns a panic into an error, so one bad run does not
// end the server.
func (h *Handler) call(ctx context.Context, run *Run) (res *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("run function panicked: %v", p)
		}
	}()
	res, err = h.fn(ctx, run)
	if err == nil && res == nil {
		err = errors.New("run function returned neither a result nor an error")
	}
	return res, err
}

// writeFailure writes the response of a failed run: 489 for a permanent
// error, 429 with Retry-After for RetryAfter, 500 otherwise.
func (h *Handler) writeFailure(w http.ResponseWriter, run *Run, err error) {
	attrs := []any{"error", err}
	if run != nil {
		attrs = append(attrs, "job_id", run.JobID, "run", run.Run, "retried", run.Retried)
	}
	var retry *retryAfterError
	switch {
	case IsPermanent(err):
		h.logger.Error("job run failed permanently; responding 489 so Ferry does not retry it", attrs...)
		w.Header().Set("Upstash-NonRetryable-Error", "true")
		writeJSON(w, StatusNonRetryable, errorBody{Error: err.Error()})
	case errors.As(err, &retry):
		seconds := int(math.Ceil(retry.delay.Seconds()))
		h.logger.Info("job run deferred; responding 429 so Ferry retries it after Retry-After", append(attrs, "retry_after_s", seconds)...)
		w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 0)))
		writeJSON(w, http.StatusTooManyRequests, errorBody{Error: err.Error()})
	default:
		h.logger.Error("job run failed; responding 500 so Ferry retries it", attrs...)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
	}
}

// requestURL returns the URL the signature's "sub" claim must name.
func (h *Handler) requestURL(r *http.Request) string {
	if h.opts.URL != "" {
		return h.opts.URL
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.RequestURI
}

// decodeRun reads the run request.
func decodeRun(r *http.Request, body []byte) (*Run, error) {
	var req wire.JobRunRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("invalid run request body: %w", err)
	}
	if req.JobID == "" || req.Run < 1 {
		return nil, fmt.Errorf("invalid run request: jobId %q and run %d; expected a Ferry job run", req.JobID, req.Run)
	}
	run := &Run{
		JobID:            req.JobID,
		MessageID:        r.Header.Get("Upstash-Message-Id"),
		Run:              req.Run,
		Input:            req.Input,
		ProcessedResults: req.ProcessedResults,
		TargetResults:    req.TargetResults,
		Deadline:         req.Deadline,
		RunTimeout:       time.Duration(req.RunTimeoutMs) * time.Millisecond,
	}
	if len(req.Cursor) > 0 && string(req.Cursor) != "null" {
		run.Cursor = req.Cursor
	}
	run.Retried, _ = strconv.Atoi(r.Header.Get("Upstash-Retried"))
	return run, nil
}

// encodeResult checks res and returns the response body.
func encodeResult(res *Result) (*wire.JobRunResponse, error) {
	if res.Processed < 0 {
		return nil, fmt.Errorf("run function returned processed %d; expected 0 or more", res.Processed)
	}
	if len(res.Results) > MaxResults {
		return nil, fmt.Errorf("run function returned %d results; a run may return at most %d", len(res.Results), MaxResults)
	}
	hasMore := !res.Done
	out := &wire.JobRunResponse{Processed: res.Processed, HasMore: &hasMore}
	if res.Cursor != nil {
		b, err := json.Marshal(res.Cursor)
		if err != nil {
			return nil, fmt.Errorf("encode cursor: %w", err)
		}
		out.Cursor = b
	}
	for i, item := range res.Results {
		b, err := json.Marshal(item)
		if err != nil {
			return nil, fmt.Errorf("encode result %d: %w", i, err)
		}
		out.Results = append(out.Results, b)
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// truncate shortens a value repeated in an error message.
func truncate(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
