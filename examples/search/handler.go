package main

import (
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

	"github.com/ferryhq/ferry/jobhandler"
)

// pagesPerRun bounds the provider calls of one run, so a run stays short
// and the job shows progress run by run.
const pagesPerRun = 5

// searchInput is the input of a search job.
type searchInput struct {
	Keyword string `json:"keyword"`
}

// errRateLimited is returned by fetch when the provider responds with status 429.
type errRateLimited struct {
	retryAfter time.Duration
}

func (e *errRateLimited) Error() string {
	return fmt.Sprintf("the provider rate limit was hit; retry after %s", e.retryAfter)
}

// Searcher collects the matches of a keyword from the provider, run by
// run. The job's cursor is the provider offset of the next match.
type Searcher struct {
	// ProviderURL is the provider's base URL, such as http://127.0.0.1:3001.
	ProviderURL string
	Client      *http.Client
}

// Run does one run of a search job: it fetches up to pagesPerRun pages
// from the cursor, keeps at most the results the job still needs, and
// stops early at a 429. A run that got nothing before the 429 responds
// 429 itself, so Ferry retries it after the provider's Retry-After.
func (s *Searcher) Run(ctx context.Context, run *jobhandler.Run) (*jobhandler.Result, error) {
	var in searchInput
	if err := run.DecodeInput(&in); err != nil || strings.TrimSpace(in.Keyword) == "" {
		return nil, jobhandler.Permanent(fmt.Errorf(`invalid input %s: expected {"keyword": "..."}`, run.Input))
	}
	offset := 0
	if _, err := run.DecodeCursor(&offset); err != nil {
		return nil, jobhandler.Permanent(err)
	}

	var found []any
	more := true
	for page := 0; page < pagesPerRun && more && len(found) < run.Remaining(); page++ {
		cities, next, err := s.fetch(ctx, in.Keyword, offset)
		var limited *errRateLimited
		if errors.As(err, &limited) {
			if len(found) == 0 {
				return nil, jobhandler.RetryAfter(err, limited.retryAfter)
			}
			break
		} else if err != nil {
			return nil, err
		}

		// Take only what the job still needs, so the cursor points at the
		// first match not yet returned.
		take := min(len(cities), run.Remaining()-len(found))
		for _, c := range cities[:take] {
			found = append(found, c)
		}
		offset += take
		more = next != nil || take < len(cities)
	}
	return &jobhandler.Result{Processed: len(found), Results: found, Cursor: offset, Done: !more}, nil
}

// fetch returns one page of matches at offset and the next cursor, nil on
// the last page.
func (s *Searcher) fetch(ctx context.Context, keyword string, offset int) ([]City, *int, error) {
	u := s.ProviderURL + "/search?q=" + url.QueryEscape(keyword) + "&cursor=" + strconv.Itoa(offset)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("call the provider: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read the provider response: %w", err)
	}

	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		wait := time.Second
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			wait = time.Duration(secs) * time.Second
		}
		return nil, nil, &errRateLimited{retryAfter: wait}
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("the provider responded %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var page searchPage
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, nil, fmt.Errorf("decode the provider response: %w", err)
	}
	return page.Results, page.NextCursor, nil
}
