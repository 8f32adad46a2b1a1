package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencySummary is the distribution of a set of durations, in
// milliseconds. Percentiles use the nearest-rank method.
type latencySummary struct {
	Count int     `json:"count"`
	MinMs float64 `json:"minMs"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// summarize returns the distribution of samples, or nil when there are
// none. It sorts samples in place.
func summarize(samples []time.Duration) *latencySummary {
	if len(samples) == 0 {
		return nil
	}
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &latencySummary{
		Count: len(samples),
		MinMs: ms(samples[0]),
		P50Ms: ms(percentile(samples, 50)),
		P90Ms: ms(percentile(samples, 90)),
		P99Ms: ms(percentile(samples, 99)),
		MaxMs: ms(samples[len(samples)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// latencyRecorder collects durations from many goroutines.
type latencyRecorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

func (r *latencyRecorder) add(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

func (r *latencyRecorder) summary() *latencySummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.samples)
}

// benchSink is the destination of benchmark messages: an HTTP server on
// 127.0.0.1 that responds 200 to every request and reports the sequence
// number in each request body with the time it arrived.
type benchSink struct {
	url string
	srv *http.Server
}

// startSink starts a sink that calls receive for every delivery. A body
// that is not a decimal sequence number gets a 400 response, which makes a
// wrong message visible as a retry instead of a silent success.
func startSink(receive func(seq int64, at time.Time)) (*benchSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the benchmark sink on 127.0.0.1: %w", err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, err := io.ReadAll(io.LimitReader(r.Body, 64))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		seq, err := strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			http.Error(w, "body is not a sequence number", http.StatusBadRequest)
			return
		}
		receive(seq, at)
		w.WriteHeader(http.StatusOK)
	})
	s := &benchSink{
		url: "http://" + ln.Addr().String() + "/hook",
		srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
	}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *benchSink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// benchPublisher sends QStash publishes to one destination.
type benchPublisher struct {
	client   *http.Client
	endpoint string
	token    string
	header   http.Header
}

// newBenchPublisher returns a publisher for messages to dest through the
// server at baseURL, with a connection pool for conns concurrent requests.
// header is added to every publish.
func newBenchPublisher(baseURL, token, dest string, conns int, header http.Header) *benchPublisher {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = conns + 16
	transport.MaxIdleConnsPerHost = conns + 16
	transport.DisableCompression = true
	return &benchPublisher{
		client:   &http.Client{Transport: transport, Timeout: 60 * time.Second},
		endpoint: baseURL + "/v2/publish/" + dest,
		token:    token,
		header:   header,
	}
}

// publish sends one message whose body is seq and returns its message id
// once the server acknowledged it.
func (p *benchPublisher) publish(ctx context.Context, seq int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(strconv.AppendInt(nil, seq, 10)))
	if err != nil {
		return "", err
	}
	for name, values := range p.header {
		req.Header[name] = values
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "text/plain")

	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read publish response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("publish responded %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var out struct {
		MessageID string `json:"messageId"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.MessageID == "" {
		return "", fmt.Errorf("publish responded 200 without a message id: %s", bytes.TrimSpace(data))
	}
	return out.MessageID, nil
}

// get sends an authenticated GET to path on the server and decodes the
// JSON response into out.
func (p *benchPublisher) get(ctx context.Context, baseURL, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &benchHTTPError{status: resp.StatusCode, body: string(bytes.TrimSpace(data))}
	}
	return json.Unmarshal(data, out)
}

// benchHTTPError is a non-2xx response to a benchmark request.
type benchHTTPError struct {
	status int
	body   string
}

func (e *benchHTTPError) Error() string {
	return fmt.Sprintf("server responded %d: %s", e.status, e.body)
}

// isNotFound reports whether err is a 404 or 405 response, which a server
// without the route returns.
func isNotFound(err error) bool {
	var e *benchHTTPError
	return errors.As(err, &e) && (e.status == http.StatusNotFound || e.status == http.StatusMethodNotAllowed)
}

// errorSample counts errors and keeps the first one for the report.
type errorSample struct {
	count atomic.Int64
	mu    sync.Mutex
	first error
}

func (e *errorSample) add(err error) {
	if e.count.Add(1) == 1 {
		e.mu.Lock()
		e.first = err
		e.mu.Unlock()
	}
}

// text returns the first error, or "" when there was none.
func (e *errorSample) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first == nil {
		return ""
	}
	return e.first.Error()
}

// deliveryTracker matches each message's publish acknowledgement with its
// receipt at the sink, in whichever order they arrive, and records the
// time between them. A receipt that arrives before the publisher has read
// the acknowledgement counts as zero latency.
type deliveryTracker struct {
	shards [64]trackerShard

	// windowStart and windowEnd bound the receipts that count towards
	// throughput and latency. Receipts after windowEnd (during the drain)
	// only count as delivered. A zero windowEnd leaves the window open.
	windowStart time.Time
	windowEnd   time.Time

	received   atomic.Int64 // every receipt
	inWindow   atomic.Int64 // receipts inside the window
	duplicates atomic.Int64
	acked      atomic.Int64
	matched    atomic.Int64

	// onMatch is called once per message whose ack and receipt both
	// arrived. Optional.
	onMatch func()

	latency latencyRecorder
}

type trackerShard struct {
	mu       sync.Mutex
	acked    map[int64]time.Time
	received map[int64]time.Time
	done     map[int64]struct{}
}

func newDeliveryTracker(start, end time.Time, onMatch func()) *deliveryTracker {
	t := &deliveryTracker{windowStart: start, windowEnd: end, onMatch: onMatch}
	for i := range t.shards {
		t.shards[i] = trackerShard{acked: map[int64]time.Time{}, received: map[int64]time.Time{}, done: map[int64]struct{}{}}
	}
	return t
}

func (t *deliveryTracker) inside(at time.Time) bool {
	return !at.Before(t.windowStart) && (t.windowEnd.IsZero() || !at.After(t.windowEnd))
}

// ack records that seq was acknowledged at.
func (t *deliveryTracker) ack(seq int64, at time.Time) {
	t.acked.Add(1)
	s := &t.shards[seq%int64(len(t.shards))]
	s.mu.Lock()
	recv, ok := s.received[seq]
	if ok {
		delete(s.received, seq)
		s.done[seq] = struct{}{}
	} else {
		s.acked[seq] = at
	}
	s.mu.Unlock()
	if ok {
		t.match(at, recv)
	}
}

// receive records that seq arrived at the sink at at.
func (t *deliveryTracker) receive(seq int64, at time.Time) {
	t.received.Add(1)
	s := &t.shards[seq%int64(len(t.shards))]
	s.mu.Lock()
	if _, dup := s.done[seq]; dup {
		s.mu.Unlock()
		t.duplicates.Add(1)
		return
	}
	if _, dup := s.received[seq]; dup {
		s.mu.Unlock()
		t.duplicates.Add(1)
		return
	}
	ackAt, ok := s.acked[seq]
	if ok {
		delete(s.acked, seq)
		s.done[seq] = struct{}{}
	} else {
		s.received[seq] = at
	}
	s.mu.Unlock()
	if t.inside(at) {
		t.inWindow.Add(1)
	}
	if ok {
		t.match(ackAt, at)
	}
}

func (t *deliveryTracker) match(ackAt, recvAt time.Time) {
	t.matched.Add(1)
	if t.inside(recvAt) {
		t.latency.add(max(recvAt.Sub(ackAt), 0))
	}
	if t.onMatch != nil {
		t.onMatch()
	}
}

// pending returns the number of acknowledged messages not yet received.
func (t *deliveryTracker) pending() int64 { return t.acked.Load() - t.matched.Load() }

// waitDrained waits until every acknowledged message arrived or timeout
// passes, and returns the number still missing.
func (t *deliveryTracker) waitDrained(ctx context.Context, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for t.pending() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return t.pending()
}
