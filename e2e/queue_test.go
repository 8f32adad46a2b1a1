package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/store"
)

// arrivalJitter bounds how much the time from a claim to the arrival of its
// request at a destination varies between two attempts: the goroutine
// start, the signing and the loopback HTTP round trip, on a loaded test
// machine. The destination-side rate check allows it.
const arrivalJitter = 100 * time.Millisecond

// sendJSON sends a request with the test token and a JSON body to the
// server at baseURL and returns the status and body.
func sendJSON(t *testing.T, baseURL, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, baseURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the response: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// mustSendJSON is sendJSON that fails the test unless the status is 200.
func mustSendJSON(t *testing.T, baseURL, method, path, body string) []byte {
	t.Helper()
	status, data := sendJSON(t, baseURL, method, path, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s: status %d, body %s", method, path, status, data)
	}
	return data
}

// enqueue sends POST /v2/enqueue/{queue}/{dest} and returns the message id.
func enqueue(t *testing.T, baseURL, queue, dest, body string) string {
	t.Helper()
	data := mustSendJSON(t, baseURL, http.MethodPost, "/v2/enqueue/"+queue+"/"+dest, body)
	var out struct {
		MessageID string `json:"messageId"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.MessageID == "" {
		t.Fatalf("enqueue to %s: response %s has no messageId", queue, data)
	}
	return out.MessageID
}

// inFlightCounter tracks how many requests a destination serves at once.
type inFlightCounter struct {
	mu      sync.Mutex
	current int
	max     int
}

func (c *inFlightCounter) enter() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current++
	c.max = max(c.max, c.current)
}

func (c *inFlightCounter) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current--
}

func (c *inFlightCounter) maximum() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

// startQueueServer starts ferry serve with a retry backoff scaled by
// 0.001, and returns it with its database path.
func startQueueServer(t *testing.T) (*ferrytest.Process, string) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "ferry.db")
	return startFerry(t, db, "--backoff-scale", "0.001"), db
}

func TestQueueOrderWithFailingDestination(t *testing.T) {
	t.Parallel()
	const total = 12
	const failing = "msg-4"

	// The destination fails the first attempt of one message and notes
	// when it responded to each message with 2xx.
	var inFlight inFlightCounter
	var mu sync.Mutex
	succeeded := map[string]time.Time{}
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		inFlight.enter()
		defer inFlight.leave()
		time.Sleep(5 * time.Millisecond)
		if r.URL.Query().Get("n") == failing && attempt == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		succeeded[r.Header.Get("Upstash-Message-Id")] = time.Now()
		mu.Unlock()
	})
	server, db := startQueueServer(t)
	dest.trust(fetchKeys(t, server.URL))

	ids := make([]string, total)
	for i := range total {
		ids[i] = enqueue(t, server.URL, "ordered", dest.url(fmt.Sprintf("/q?n=msg-%d", i)), "")
	}
	waitForCount(t, dest, total+1, 30*time.Second)

	// Every message starts after the response 2xx to the one before it,
	// including the retry of the failing one.
	var order []string
	firstArrival := map[string]time.Time{}
	for _, d := range dest.all() {
		order = append(order, d.MessageID)
		if _, ok := firstArrival[d.MessageID]; !ok {
			firstArrival[d.MessageID] = d.Received
		}
	}
	want := slices.Clone(ids[:5])
	want = append(want, ids[4:]...)
	if !slices.Equal(order, want) {
		t.Errorf("delivery order = %v, want %v (message 4 twice)", order, want)
	}
	mu.Lock()
	for i := 1; i < total; i++ {
		prevDone, ok := succeeded[ids[i-1]]
		if !ok {
			t.Errorf("message %d never got a 2xx response", i-1)
			continue
		}
		if start := firstArrival[ids[i]]; start.Before(prevDone) {
			t.Errorf("message %d arrived %v before the response to message %d", i, prevDone.Sub(start), i-1)
		}
	}
	mu.Unlock()
	if got := inFlight.maximum(); got != 1 {
		t.Errorf("the destination served %d requests of the queue at once, want 1", got)
	}
	dest.checkSignatures(t)

	st := openStore(t, db)
	waitState(t, st, ids[total-1], ferry.MessageStateDelivered, 10*time.Second)
	q, err := st.QueueGet(t.Context(), "ordered")
	if err != nil {
		t.Fatalf("QueueGet: %v", err)
	}
	if q.Lag != 0 || q.Parallelism != 1 {
		t.Errorf("queue after the deliveries = %+v, want parallelism 1 and lag 0", *q)
	}
}

// startTimes returns the sorted times of the ACTIVE events of ids, which
// are the times their attempts started.
func startTimes(t *testing.T, st store.Store, ids []string) []time.Time {
	t.Helper()
	var times []time.Time
	for _, id := range ids {
		events, err := st.EventList(t.Context(), &store.EventListParams{MessageID: id})
		if err != nil {
			t.Fatalf("EventList(%s): %v", id, err)
		}
		for _, e := range events {
			if e.State == ferry.MessageStateActive {
				times = append(times, e.Time)
			}
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	return times
}

// checkWindow reports every run of rate+1 times that fits in a window
// shorter than period minus slack.
func checkWindow(t *testing.T, what string, times []time.Time, rate int, period, slack time.Duration) {
	t.Helper()
	for i := 0; i+rate < len(times); i++ {
		if span := times[i+rate].Sub(times[i]); span < period-slack {
			t.Errorf("%s: %d calls within %v (calls %d to %d), want at most %d per %v",
				what, rate+1, span, i, i+rate, rate, period)
		}
	}
}

func TestFlowControlRate(t *testing.T) {
	t.Parallel()
	const total = 20
	const rate = 5
	dest := newDestination(t, nil)
	server, db := startQueueServer(t)
	dest.trust(fetchKeys(t, server.URL))

	header := http.Header{"Upstash-Flow-Control-Key": {"rate-key"}, "Upstash-Flow-Control-Value": {"rate=5, period=1s"}}
	ids := make([]string, total)
	for i := range total {
		ids[i] = mustPublish(t, server.URL, dest.url(fmt.Sprintf("/rate/%d", i)), nil, header).ID
	}
	waitForCount(t, dest, total, 30*time.Second)

	// Exactly at the store: the attempts started in any one-second window.
	st := openStore(t, db)
	starts := startTimes(t, st, ids)
	if len(starts) != total {
		t.Fatalf("found %d starts, want %d", len(starts), total)
	}
	checkWindow(t, "starts recorded by the store", starts, rate, time.Second, 0)

	// At the destination, with the arrival jitter allowed.
	var arrivals []time.Time
	for _, d := range dest.all() {
		arrivals = append(arrivals, d.Received)
	}
	checkWindow(t, "arrivals at the destination", arrivals, rate, time.Second, arrivalJitter)
	if span := arrivals[total-1].Sub(arrivals[0]); span < 3*time.Second-arrivalJitter {
		t.Errorf("%d calls arrived within %v, want at least 3 s at %d per second", total, span, rate)
	}
	dest.checkSignatures(t)
}

func TestFlowControlParallelism(t *testing.T) {
	t.Parallel()
	const total = 12
	var inFlight inFlightCounter
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		inFlight.enter()
		defer inFlight.leave()
		time.Sleep(100 * time.Millisecond)
	})
	other := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		inFlight.enter()
		defer inFlight.leave()
		time.Sleep(100 * time.Millisecond)
	})
	server, _ := startQueueServer(t)
	keys := fetchKeys(t, server.URL)
	dest.trust(keys)
	other.trust(keys)

	// The limit holds across destinations that share the key.
	header := http.Header{"Upstash-Flow-Control-Key": {"narrow"}, "Upstash-Flow-Control-Value": {"parallelism=2"}}
	for i := range total {
		target := dest
		if i%2 == 1 {
			target = other
		}
		mustPublish(t, server.URL, target.url(fmt.Sprintf("/p/%d", i)), nil, header)
	}
	waitForCount(t, dest, total/2, 30*time.Second)
	waitForCount(t, other, total/2, 30*time.Second)

	if got := inFlight.maximum(); got != 2 {
		t.Errorf("the destinations served %d requests of the key at once, want 2", got)
	}
}

func TestURLGroupFanOut(t *testing.T) {
	t.Parallel()
	first := newDestination(t, nil)
	second := newDestination(t, nil)
	server, _ := startQueueServer(t)
	keys := fetchKeys(t, server.URL)
	first.trust(keys)
	second.trust(keys)

	mustSendJSON(t, server.URL, http.MethodPost, "/v2/topics/fanout/endpoints", fmt.Sprintf(
		`{"endpoints": [{"name": "first", "url": %q}, {"url": %q}]}`, first.url("/in"), second.url("/in")))

	status, data := sendJSON(t, server.URL, http.MethodPost, "/v2/publish/fanout", `{"event": "signup"}`)
	if status != http.StatusOK {
		t.Fatalf("publish to the group: status %d, body %s", status, data)
	}
	var results []struct {
		MessageID string `json:"messageId"`
		URL       string `json:"url"`
	}
	if err := json.Unmarshal(data, &results); err != nil || len(results) != 2 {
		t.Fatalf("publish to the group returned %s, want an array of two results", data)
	}

	waitForCount(t, first, 1, 10*time.Second)
	waitForCount(t, second, 1, 10*time.Second)
	for i, d := range []*destination{first, second} {
		got := d.all()[0]
		if got.MessageID != results[i].MessageID || got.URL != results[i].URL {
			t.Errorf("endpoint %d received %s at %s, want %s at %s", i, got.MessageID, got.URL, results[i].MessageID, results[i].URL)
		}
		if name := got.Header.Get("Upstash-Topic-Name"); name != "fanout" {
			t.Errorf("endpoint %d got Upstash-Topic-Name %q, want fanout", i, name)
		}
		if string(got.Body) != `{"event": "signup"}` {
			t.Errorf("endpoint %d got body %q", i, got.Body)
		}
		d.checkSignatures(t)
	}
}

func TestBatchMixedItems(t *testing.T) {
	t.Parallel()
	dest := newDestination(t, nil)
	server, _ := startQueueServer(t)
	dest.trust(fetchKeys(t, server.URL))
	mustSendJSON(t, server.URL, http.MethodPost, "/v2/topics/solo/endpoints", fmt.Sprintf(`{"endpoints": [{"url": %q}]}`, dest.url("/group")))

	body := fmt.Sprintf(`[
		{"destination": %q, "headers": {"content-type": "text/plain", "upstash-forward-x-item": "url"}, "body": "to url"},
		{"destination": %q, "headers": {"upstash-retries": "many"}, "body": "rejected"},
		{"destination": %q, "queue": "batchq", "body": "to queue"},
		{"destination": "solo", "body": "to group"},
		{"destination": "", "body": "no destination"}
	]`, dest.url("/url"), dest.url("/bad"), dest.url("/queue"))
	data := mustSendJSON(t, server.URL, http.MethodPost, "/v2/batch", body)
	var results []json.RawMessage
	if err := json.Unmarshal(data, &results); err != nil || len(results) != 5 {
		t.Fatalf("batch returned %s, want an array of 5 results", data)
	}
	for _, i := range []int{1, 4} {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(results[i], &e) != nil || e.Error == "" {
			t.Errorf("result %d = %s, want an error", i, results[i])
		}
	}
	var group []map[string]any
	if err := json.Unmarshal(results[3], &group); err != nil || len(group) != 1 {
		t.Errorf("result 3 = %s, want an array with one endpoint result", results[3])
	}

	waitForCount(t, dest, 3, 10*time.Second)
	received := map[string]*delivery{}
	for _, d := range dest.all() {
		path, _, _ := strings.Cut(strings.TrimPrefix(d.URL, dest.url("")), "?")
		received[path] = d
	}
	for path, wantBody := range map[string]string{"/url": "to url", "/queue": "to queue", "/group": "to group"} {
		d := received[path]
		if d == nil || string(d.Body) != wantBody {
			t.Errorf("delivery to %s = %v, want body %q", path, d, wantBody)
		}
	}
	if d := received["/url"]; d != nil && (d.Header.Get("X-Item") != "url" || d.Header.Get("Content-Type") != "text/plain") {
		t.Errorf("item 0 arrived with headers %v, want X-Item url and Content-Type text/plain", d.Header)
	}
	if _, ok := received["/bad"]; ok {
		t.Errorf("the rejected item was delivered")
	}
	dest.checkSignatures(t)
}
