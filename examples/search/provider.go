package main

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PageSize is the number of matches the provider returns per call.
const PageSize = 20

// Provider is a paginated search API over the city list, rate limited like
// a third-party API. A token bucket allows burst calls at once and refills
// at rate calls per second. A call without a token gets status 429 with
// Retry-After.
//
//	GET /search?q=KEYWORD&cursor=OFFSET
//	200 {"results": [...], "nextCursor": 40, "total": 6973}
//	429 {"error": "..."} with Retry-After: 1
type Provider struct {
	cities []City
	burst  float64
	rate   float64
	now    func() time.Time

	mu       sync.Mutex
	tokens   float64
	last     time.Time
	matches  map[string][]City
	calls    int
	rejected int
}

// NewProvider returns a provider over cities with the given rate limit.
func NewProvider(cities []City, burst int, perSecond float64) *Provider {
	return &Provider{cities: cities, burst: float64(burst), rate: perSecond, tokens: float64(burst),
		now: time.Now, matches: map[string][]City{}}
}

// searchPage is the provider's response.
type searchPage struct {
	Results    []City `json:"results"`
	NextCursor *int   `json:"nextCursor"`
	Total      int    `json:"total"`
}

// ServeHTTP implements http.Handler.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/search" || r.Method != http.MethodGet {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "use GET /search?q=KEYWORD&cursor=OFFSET"})
		return
	}
	if wait, ok := p.take(); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate limit exceeded; retry after " + wait.Round(time.Millisecond).String()})
		return
	}

	keyword := strings.TrimSpace(r.URL.Query().Get("q"))
	if keyword == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing query parameter q"})
		return
	}
	offset := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid cursor " + strconv.Quote(c)})
			return
		}
		offset = n
	}

	all := p.search(keyword)
	page := searchPage{Results: []City{}, Total: len(all)}
	if offset < len(all) {
		end := min(offset+PageSize, len(all))
		page.Results = all[offset:end]
		if end < len(all) {
			page.NextCursor = &end
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// take spends a token, or returns the wait until the next one.
func (p *Provider) take() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.last.IsZero() {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	p.calls++
	if p.tokens >= 1 {
		p.tokens--
		return 0, true
	}
	p.rejected++
	return time.Duration((1 - p.tokens) / p.rate * float64(time.Second)), false
}

// search returns the matches of keyword, cached per keyword.
func (p *Provider) search(keyword string) []City {
	key := strings.ToLower(keyword)
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.matches[key]; ok {
		return m
	}
	m := search(p.cities, key)
	p.matches[key] = m
	return m
}

// Stats returns the number of calls and of calls rejected with status 429.
func (p *Provider) Stats() (calls, rejected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.rejected
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
