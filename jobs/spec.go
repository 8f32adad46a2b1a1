package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/duration"
	"github.com/ferryhq/ferry/retrydelay"
)

// Defaults and limits of the fields of a create request.
const (
	MaxRunsDefault              = 50
	MaxRunsLimit                = 10_000
	ContinuationDelayDefault    = 0
	BackoffFactorDefault        = 1.0
	BackoffFactorLimit          = 10.0
	MaxContinuationDelayDefault = time.Minute
	MaxContinuationDelayLimit   = 24 * time.Hour
	RunTimeoutDefault           = 5 * time.Minute
	RunTimeoutLimit             = 2 * time.Hour
	TimeoutDefault              = time.Hour
	TimeoutLimit                = 30 * 24 * time.Hour
	RetriesDefault              = 3
	RetriesLimit                = 100
	TargetResultsLimit          = 100_000_000
	MaxLabelBytes               = 256

	// IdempotencyWindow is how long an Idempotency-Key stays reserved.
	IdempotencyWindow = 24 * time.Hour

	// MaxIdempotencyKeyBytes is the longest Idempotency-Key accepted.
	MaxIdempotencyKeyBytes = 256
)

// createFields are the fields a create request may contain.
var createFields = []string{"url", "input", "targetResults", "maxRuns", "continuationDelay", "backoffFactor",
	"maxContinuationDelay", "runTimeout", "timeout", "retries", "retryDelay", "label"}

// Spec is a validated create request with defaults applied.
type Spec struct {
	URL                  string
	Input                []byte
	TargetResults        int
	MaxRuns              int
	ContinuationDelay    time.Duration
	BackoffFactor        float64
	MaxContinuationDelay time.Duration
	RunTimeout           time.Duration
	Timeout              time.Duration
	Retries              int
	RetryDelayExpr       string
	Label                string

	// Hash identifies the request for idempotency: the SHA-256 of its
	// fields with compacted JSON values, in sorted order.
	Hash string
}

// ParseSpec validates the JSON body of a create request. Its errors are
// EINVALID *ferry.Error values that name the field, the value and what is
// allowed.
func ParseSpec(body []byte) (*Spec, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, ferry.Errorf(ferry.EINVALID, "invalid request body: expected a JSON object with url and targetResults, such as "+
			`{"url": "https://example.com/job", "targetResults": 100}`)
	}
	for name := range fields {
		if !slices.Contains(createFields, name) {
			return nil, ferry.Errorf(ferry.EINVALID, "unknown field %q; allowed fields: %s", echo(name), strings.Join(createFields, ", "))
		}
	}

	s := &Spec{
		MaxRuns:              MaxRunsDefault,
		ContinuationDelay:    ContinuationDelayDefault,
		BackoffFactor:        BackoffFactorDefault,
		MaxContinuationDelay: MaxContinuationDelayDefault,
		RunTimeout:           RunTimeoutDefault,
		Timeout:              TimeoutDefault,
		Retries:              RetriesDefault,
		Input:                []byte("null"),
	}
	var err error
	if s.URL, err = urlField(fields, "url"); err != nil {
		return nil, err
	}
	if raw, ok := fields["input"]; ok {
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil || !utf8.Valid(compact.Bytes()) {
			return nil, invalidField("input", string(raw), "any JSON value in UTF-8")
		}
		s.Input = compact.Bytes()
	}
	if s.TargetResults, err = intField(fields, "targetResults", 1, TargetResultsLimit, true, 0); err != nil {
		return nil, err
	}
	if s.MaxRuns, err = intField(fields, "maxRuns", 1, MaxRunsLimit, false, MaxRunsDefault); err != nil {
		return nil, err
	}
	if s.ContinuationDelay, err = durationField(fields, "continuationDelay", 0, MaxContinuationDelayLimit, ContinuationDelayDefault); err != nil {
		return nil, err
	}
	if s.BackoffFactor, err = factorField(fields, "backoffFactor"); err != nil {
		return nil, err
	}

	// Without maxContinuationDelay, a continuationDelay above the default
	// cap is kept rather than silently cut to it.
	maxDefault := max(MaxContinuationDelayDefault, s.ContinuationDelay)
	if s.MaxContinuationDelay, err = durationField(fields, "maxContinuationDelay", 0, MaxContinuationDelayLimit, maxDefault); err != nil {
		return nil, err
	}
	if s.RunTimeout, err = durationField(fields, "runTimeout", time.Second, RunTimeoutLimit, RunTimeoutDefault); err != nil {
		return nil, err
	}
	if s.Timeout, err = durationField(fields, "timeout", time.Second, TimeoutLimit, TimeoutDefault); err != nil {
		return nil, err
	}
	if s.Retries, err = intField(fields, "retries", 0, RetriesLimit, false, RetriesDefault); err != nil {
		return nil, err
	}
	if s.RetryDelayExpr, err = retryDelayField(fields, "retryDelay"); err != nil {
		return nil, err
	}
	if s.Label, err = labelField(fields, "label"); err != nil {
		return nil, err
	}
	s.Hash = requestHash(fields)
	return s, nil
}

// NewJob returns the job that s describes, created at now, in state
// pending and with run 1 current.
func (s *Spec) NewJob(now time.Time, callerIP string) *ferry.Job {
	return &ferry.Job{
		ID:                   ferry.NewJobID(),
		State:                ferry.JobStatePending,
		URL:                  s.URL,
		Input:                s.Input,
		Label:                s.Label,
		TargetResults:        s.TargetResults,
		MaxRuns:              s.MaxRuns,
		ContinuationDelay:    s.ContinuationDelay,
		BackoffFactor:        s.BackoffFactor,
		MaxContinuationDelay: s.MaxContinuationDelay,
		RunTimeout:           s.RunTimeout,
		Timeout:              s.Timeout,
		Retries:              s.Retries,
		RetryDelayExpr:       s.RetryDelayExpr,
		CallerIP:             callerIP,
		CurrentRun:           1,
		NextRunAt:            now,
		CreatedAt:            now,
		TimeoutAt:            now.Add(s.Timeout),
		UpdatedAt:            now,
	}
}

// ValidateIdempotencyKey checks the value of an Idempotency-Key header.
func ValidateIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeyBytes || !printable(key) {
		return ferry.Errorf(ferry.EINVALID, "invalid Idempotency-Key header %q: expected at most %d printable characters",
			echo(key), MaxIdempotencyKeyBytes)
	}
	return nil
}

// requestHash returns the SHA-256 of the fields with compacted values,
// keys sorted, so formatting differences do not count as a different
// request.
func requestHash(fields map[string]json.RawMessage) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		var compact bytes.Buffer
		if json.Compact(&compact, fields[name]) != nil {
			compact.Reset()
			compact.Write(fields[name])
		}
		fmt.Fprintf(h, "%s=%d:", name, compact.Len())
		h.Write(compact.Bytes())
	}
	return hex.EncodeToString(h.Sum(nil))
}

func urlField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", ferry.Errorf(ferry.EINVALID, "missing field %s: expected the http:// or https:// URL of the job handler", name)
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", invalidField(name, string(raw), "a string with an http:// or https:// URL")
	}
	lower := strings.ToLower(v)
	u, err := url.Parse(v)
	if err != nil || (!strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://")) || u.Hostname() == "" {
		return "", invalidField(name, strconv.Quote(v), "an http:// or https:// URL with a host")
	}
	return v, nil
}

func intField(fields map[string]json.RawMessage, name string, lo, hi int, required bool, def int) (int, error) {
	raw, ok := fields[name]
	allowed := fmt.Sprintf("an integer from %d to %d", lo, hi)
	if !ok {
		if required {
			return 0, ferry.Errorf(ferry.EINVALID, "missing field %s: expected %s", name, allowed)
		}
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		return 0, invalidField(name, string(raw), allowed)
	}
	return int(f), nil
}

func durationField(fields map[string]json.RawMessage, name string, lo, hi, def time.Duration) (time.Duration, error) {
	raw, ok := fields[name]
	if !ok {
		return def, nil
	}
	allowed := fmt.Sprintf("a duration string from %s to %s, such as \"30s\" or \"1h30m\"", duration.Format(lo), duration.Format(hi))
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, invalidField(name, string(raw), allowed)
	}
	d, err := duration.Parse(v)
	if err != nil || d < lo || d > hi {
		return 0, invalidField(name, strconv.Quote(v), allowed)
	}
	return d, nil
}

func factorField(fields map[string]json.RawMessage, name string) (float64, error) {
	raw, ok := fields[name]
	if !ok {
		return BackoffFactorDefault, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f < 1 || f > BackoffFactorLimit || math.IsNaN(f) {
		return 0, invalidField(name, string(raw), fmt.Sprintf("a number from 1 to %g", BackoffFactorLimit))
	}
	return f, nil
}

func retryDelayField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", nil
	}
	allowed := "a retry-delay expression in milliseconds of the retry count, such as \"1000 * pow(2, retried)\""
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", invalidField(name, string(raw), allowed)
	}
	if _, err := retrydelay.Parse(v); err != nil {
		return "", ferry.Errorf(ferry.EINVALID, "invalid field %s %q: %v", name, echo(v), err)
	}
	return v, nil
}

func labelField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", nil
	}
	allowed := fmt.Sprintf("a string of at most %d printable characters without commas", MaxLabelBytes)
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", invalidField(name, string(raw), allowed)
	}
	if len(v) > MaxLabelBytes || !printable(v) || strings.Contains(v, ",") {
		return "", invalidField(name, strconv.Quote(v), allowed)
	}
	return strings.TrimSpace(v), nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// invalidField returns the error for a field value outside its allowed
// range. value is shown as JSON.
func invalidField(name, value, allowed string) error {
	return ferry.Errorf(ferry.EINVALID, "invalid field %s %s: expected %s", name, echo(value), allowed)
}

// maxEchoedBytes bounds a client value repeated in an error message.
const maxEchoedBytes = 200

func echo(s string) string {
	if len(s) <= maxEchoedBytes {
		return s
	}
	return s[:maxEchoedBytes] + "..."
}
