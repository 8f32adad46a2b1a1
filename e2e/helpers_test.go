package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/sqlite"
)

// testToken is the API token of every server these tests start.
const testToken = "e2e-token"

// delivery is one request that a destination received.
type delivery struct {
	Received  time.Time
	Method    string
	URL       string // scheme, host and request URI as received
	Header    http.Header
	Body      []byte
	MessageID string

	// Attempt counts the requests for MessageID, from 1.
	Attempt int

	// VerifyErr is the result of verifying Upstash-Signature against URL
	// and Body with the keys from GET /v2/keys.
	VerifyErr error
}

// responder writes the destination's response to attempt number attempt of
// a message.
type responder func(w http.ResponseWriter, r *http.Request, attempt int)

// destination is an HTTP server on 127.0.0.1 that records and verifies
// every delivery before responder writes the response.
type destination struct {
	server   *httptest.Server
	respond  responder
	verifier atomic.Pointer[signature.Verifier]

	mu         sync.Mutex
	deliveries []*delivery
	attempts   map[string]int // message id to requests received
	inFlight   map[string]int // message id to requests not yet responded to
	responded  int
}

// newDestination starts a destination. A nil respond sends status 200.
func newDestination(t *testing.T, respond responder) *destination {
	t.Helper()
	if respond == nil {
		respond = func(w http.ResponseWriter, r *http.Request, attempt int) {}
	}
	d := &destination{respond: respond, attempts: map[string]int{}, inFlight: map[string]int{}}
	d.server = httptest.NewServer(http.HandlerFunc(d.serveHTTP))
	t.Cleanup(d.server.Close)
	return d
}

func (d *destination) serveHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body failed", http.StatusBadRequest)
		return
	}

	url := d.server.URL + r.RequestURI
	verifyErr := errors.New("no signing keys configured before the delivery")
	if v := d.verifier.Load(); v != nil {
		verifyErr = v.Verify(r.Header.Get("Upstash-Signature"), url, body)
	}

	id := r.Header.Get("Upstash-Message-Id")
	d.mu.Lock()
	d.attempts[id]++
	d.inFlight[id]++
	attempt := d.attempts[id]
	d.deliveries = append(d.deliveries, &delivery{
		Received: received, Method: r.Method, URL: url, Header: r.Header.Clone(), Body: body,
		MessageID: id, Attempt: attempt, VerifyErr: verifyErr,
	})
	d.mu.Unlock()

	d.respond(w, r, attempt)

	d.mu.Lock()
	d.inFlight[id]--
	if d.inFlight[id] == 0 {
		delete(d.inFlight, id)
	}
	d.responded++
	d.mu.Unlock()
}

// trust makes the destination verify signatures with keys.
func (d *destination) trust(keys store.SigningKeys) {
	d.verifier.Store(&signature.Verifier{CurrentKey: keys.Current, NextKey: keys.Next})
}

// url returns the destination's URL for pathAndQuery, such as "/hook?a=1".
func (d *destination) url(pathAndQuery string) string {
	return d.server.URL + pathAndQuery
}

// all returns the deliveries received so far, oldest first.
func (d *destination) all() []*delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.deliveries)
}

// count returns the number of requests received.
func (d *destination) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.deliveries)
}

// respondedCount returns the number of requests whose response was written.
func (d *destination) respondedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.responded
}

// inFlightIDs returns the message ids whose requests have no response yet.
func (d *destination) inFlightIDs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.inFlight))
	for id := range d.inFlight {
		ids = append(ids, id)
	}
	return ids
}

// attemptCounts returns a copy of the number of requests per message id.
func (d *destination) attemptCounts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	counts := make(map[string]int, len(d.attempts))
	for id, n := range d.attempts {
		counts[id] = n
	}
	return counts
}

// checkSignatures reports every delivery whose signature did not verify.
func (d *destination) checkSignatures(t *testing.T) {
	t.Helper()
	failed := 0
	for _, del := range d.all() {
		if del.VerifyErr == nil {
			continue
		}
		failed++
		if failed <= 5 {
			t.Errorf("delivery %d of %s to %s: signature did not verify: %v", del.Attempt, del.MessageID, del.URL, del.VerifyErr)
		}
	}
	if failed > 5 {
		t.Errorf("%d deliveries in total had a signature that did not verify", failed)
	}
}

// apiClient sends API requests. The timeout bounds every request of the
// tests, including publishes to a server that is being killed.
var apiClient = &http.Client{Timeout: 10 * time.Second}

// fetchKeys returns the signing keys from GET /v2/keys.
func fetchKeys(t *testing.T, baseURL string) store.SigningKeys {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, baseURL+"/v2/keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v2/keys: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/keys: status %d, body %s", resp.StatusCode, body)
	}

	var keys struct {
		Current string `json:"current"`
		Next    string `json:"next"`
	}
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatalf("GET /v2/keys: invalid JSON %s: %v", body, err)
	}
	if keys.Current == "" || keys.Next == "" {
		t.Fatalf("GET /v2/keys returned an empty key: %s", body)
	}
	return store.SigningKeys{Current: keys.Current, Next: keys.Next}
}

// publish sends POST /v2/publish/{dest} and returns the message id. Any
// status other than 200 is an error.
func publish(ctx context.Context, baseURL, dest string, body []byte, header http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v2/publish/"+dest, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("Authorization", "Bearer "+testToken)

	resp, err := apiClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("publish to %s: status %d, body %s", dest, resp.StatusCode, respBody)
	}

	var out struct {
		MessageID string `json:"messageId"`
	}
	if err := json.Unmarshal(respBody, &out); err != nil || out.MessageID == "" {
		return "", fmt.Errorf("publish to %s: response %s has no messageId (%v)", dest, respBody, err)
	}
	return out.MessageID, nil
}

// publishedMessage is a message that the API accepted.
type publishedMessage struct {
	ID string

	// Sent is when the publish request started, Acked when its response
	// arrived.
	Sent, Acked time.Time
}

// mustPublish publishes and fails the test on any error.
func mustPublish(t *testing.T, baseURL, dest string, body []byte, header http.Header) publishedMessage {
	t.Helper()
	sent := time.Now()
	id, err := publish(t.Context(), baseURL, dest, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return publishedMessage{ID: id, Sent: sent, Acked: time.Now()}
}

// startFerry starts ferry serve on db, or on a new database for an empty
// db, with the test token and args.
func startFerry(t *testing.T, db string, args ...string) *ferrytest.Process {
	t.Helper()
	return ferrytest.Start(t, ferrytest.Options{DB: db, Token: testToken, Args: args})
}

// openStore opens the database of a server. WAL mode lets it read while the
// server runs.
func openStore(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open store %s: %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// waitState polls the store until message id is in state want, and fails
// the test after timeout or when the message reaches another terminal state.
func waitState(t *testing.T, st store.Store, id string, want ferry.MessageState, timeout time.Duration) *ferry.Message {
	t.Helper()
	var m *ferry.Message
	var lastErr error
	ferrytest.WaitFor(t.Context(), timeout, func() bool {
		m, lastErr = st.MessageGet(t.Context(), id)
		return lastErr == nil && (m.State == want || m.State.Terminal())
	})
	if lastErr != nil {
		t.Fatalf("read message %s: %v", id, lastErr)
	}
	if m.State != want {
		t.Fatalf("message %s is in state %s after waiting %v, want %s", id, m.State, timeout, want)
	}
	return m
}

// eventStates returns the states of the events of message id, in order.
func eventStates(t *testing.T, st store.Store, id string) []ferry.MessageState {
	t.Helper()
	events, err := st.EventList(t.Context(), &store.EventListParams{MessageID: id})
	if err != nil {
		t.Fatalf("list events of %s: %v", id, err)
	}
	states := make([]ferry.MessageState, len(events))
	for i, e := range events {
		states[i] = e.State
	}
	return states
}

// logEventsOnFailure logs the events of message id with their times when
// the test has failed, to tell a late claim from a slow attempt.
func logEventsOnFailure(t *testing.T, st store.Store, id string) {
	t.Helper()
	if !t.Failed() {
		return
	}
	events, err := st.EventList(context.Background(), &store.EventListParams{MessageID: id})
	if err != nil {
		t.Logf("list events of %s: %v", id, err)
		return
	}
	for _, e := range events {
		line := fmt.Sprintf("event %s at %s retried=%d", e.State, e.Time.Format("15:04:05.000"), e.Retried)
		if !e.NextDeliveryTime.IsZero() {
			line += " next delivery at " + e.NextDeliveryTime.Format("15:04:05.000")
		}
		t.Log(line)
	}
}

// dlqEntryOf returns the dead-letter entry of message id.
func dlqEntryOf(t *testing.T, st store.Store, id string) *ferry.DLQEntry {
	t.Helper()
	entries, err := st.DLQList(t.Context(), &store.DLQListParams{Limit: 100})
	if err != nil {
		t.Fatalf("list dead-letter queue: %v", err)
	}
	for _, e := range entries {
		if e.Message.ID == id {
			return e
		}
	}
	t.Fatalf("no dead-letter entry for message %s among %d entries", id, len(entries))
	return nil
}

// serveProcess is a ferry serve child process whose exit status the test
// reads, which ferrytest.Process does not expose.
type serveProcess struct {
	URL string

	cmd    *exec.Cmd
	logs   lockedBuffer
	exited chan struct{}
}

var startedPattern = regexp.MustCompile(`msg="ferry started" addr=(\S+)`)

// startServe runs ferry serve on 127.0.0.1 with db and args, waits until it
// listens, and kills it when the test ends.
func startServe(t *testing.T, db string, args ...string) *serveProcess {
	t.Helper()
	args = append([]string{"serve", "--listen", "127.0.0.1:0", "--db", db, "--token", testToken}, args...)
	p := &serveProcess{cmd: exec.Command(ferrytest.Binary(t), args...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ferry serve: %v", err)
	}

	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			p.logs.Write([]byte(line + "\n"))
			if m := startedPattern.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		// Wait must follow the end of the stderr reads, as os/exec requires.
		<-scanned
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("ferry serve logs:\n%s", p.logs.String())
		}
	})

	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.exited:
		t.Fatalf("ferry serve exited before listening:\n%s", p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry serve did not listen within 30s:\n%s", p.logs.String())
	}
	return p
}

// waitExit waits up to timeout for the process to end and returns its exit
// code, or false when it is still running.
func (p *serveProcess) waitExit(timeout time.Duration) (int, bool) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
