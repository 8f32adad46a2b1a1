package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
)

// storeResolution is the precision of stored times. The store truncates
// times to whole Unix milliseconds, so an attempt can start up to 1 ms
// before its exact delay has passed.
const storeResolution = time.Millisecond

// timingTolerance bounds how late an attempt may start after its delay.
// It covers the claim, the HTTP round trip and a loaded test machine.
const timingTolerance = 700 * time.Millisecond

// scaledBackoff is the wait before retry n under --backoff-scale 0.001:
// e^(2.5·n) milliseconds, truncated to whole nanoseconds.
var scaledBackoff = map[int]time.Duration{
	1: 12_182_493 * time.Nanosecond,
	2: 148_413_159 * time.Nanosecond,
	3: 1_808_042_414 * time.Nanosecond,
}

// crashConcurrency is the --concurrency of the crash tests. Every attempt
// holds a slot until its result is committed, so at most this many
// messages can be delivered again after a crash.
const crashConcurrency = 32

// TestCrashRestartOtherNodeAfterLeaseExpiry waits for the dead node's leases
// to expire after the restart. It calls t.Parallel then, so the sequential
// tests that follow it in the package run during that wait. Keep it before
// the other tests of this file.
func TestCrashRestartOtherNodeAfterLeaseExpiry(t *testing.T) {
	// The dead node's leases last --default-timeout plus --lease-margin,
	// 12 s in all.
	args := []string{"--concurrency", strconv.Itoa(crashConcurrency), "--default-timeout", "2s", "--lease-margin", "10s"}
	runCrashRestart(t, crashScenario{
		firstArgs:        append([]string{"--node-id", "node-a"}, args...),
		secondArgs:       append([]string{"--node-id", "node-b"}, args...),
		afterRestart:     t.Parallel,
		recoveryTimeout:  60 * time.Second,
		minRedeliveryGap: 10 * time.Second,
	})
}

func TestCrashRestartSameNode(t *testing.T) {
	args := []string{"--concurrency", strconv.Itoa(crashConcurrency), "--node-id", "node-a"}
	runCrashRestart(t, crashScenario{
		firstArgs:       args,
		secondArgs:      args,
		recoveryTimeout: 60 * time.Second,
	})
}

// crashScenario configures runCrashRestart.
type crashScenario struct {
	firstArgs, secondArgs []string

	// afterRestart, when set, runs once every message is accepted, before
	// the wait for their deliveries.
	afterRestart func()

	// recoveryTimeout bounds the time from the kill until every accepted
	// message has been delivered.
	recoveryTimeout time.Duration

	// minRedeliveryGap, when set, is the least time allowed between two
	// deliveries of one message.
	minRedeliveryGap time.Duration
}

// runCrashRestart publishes 1,000 messages from 16 goroutines, kills the
// server with SIGKILL after about 200 deliveries, restarts it on the same
// database and checks that every accepted message is delivered.
func runCrashRestart(t *testing.T, sc crashScenario) {
	const total = 1000
	const publishers = 16
	const killAfter = 200

	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		time.Sleep(20*time.Millisecond + rand.N(30*time.Millisecond))
	})
	db := filepath.Join(t.TempDir(), "ferry.db")
	first := startFerry(t, db, sc.firstArgs...)
	keys := fetchKeys(t, first.URL)
	dest.trust(keys)

	// Kill the server while publishes and deliveries are under way.
	load := startPublishLoad(t.Context(), first.URL, dest.url("/crash"), total, publishers)
	if !ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool { return dest.count() >= killAfter }) {
		t.Fatalf("only %d deliveries within 30s, want %d before the kill", dest.count(), killAfter)
	}
	first.Kill()
	killedAt := time.Now()
	t.Logf("killed the server after %d deliveries and %d accepted publishes", dest.count(), load.acceptedCount())

	second := startFerry(t, db, sc.secondArgs...)
	if got := fetchKeys(t, second.URL); got != keys {
		t.Errorf("signing keys changed across the restart")
	}
	load.restarted(second.URL)
	if err := load.wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	accepted := load.acceptedIDs()
	if len(accepted) != total {
		t.Fatalf("%d publishes accepted, want %d", len(accepted), total)
	}

	if sc.afterRestart != nil {
		sc.afterRestart()
	}

	// Wait until the destination has seen every accepted message, and the
	// store has recorded each as delivered. A message that the dead node
	// sent without recording the result stays ACTIVE until it is sent again.
	deadline := killedAt.Add(sc.recoveryTimeout)
	var missing []string
	received := ferrytest.WaitFor(t.Context(), time.Until(deadline), func() bool {
		counts := dest.attemptCounts()
		missing = missing[:0]
		for id := range accepted {
			if counts[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	if !received {
		t.Fatalf("%d of %d accepted messages not received by the destination within %v of the kill, such as %v",
			len(missing), total, sc.recoveryTimeout, missing[:min(len(missing), 5)])
	}

	st := openStore(t, db)
	undelivered := slices.Collect(maps.Keys(accepted))
	var readErr error
	recorded := ferrytest.WaitFor(t.Context(), time.Until(deadline), func() bool {
		undelivered = slices.DeleteFunc(undelivered, func(id string) bool {
			m, err := st.MessageGet(t.Context(), id)
			if err != nil {
				readErr = err
				return false
			}
			return m.State == ferry.MessageStateDelivered
		})
		return len(undelivered) == 0
	})
	if !recorded {
		t.Fatalf("%d of %d accepted messages not recorded as DELIVERED within %v of the kill, such as %v (last read error: %v)",
			len(undelivered), total, sc.recoveryTimeout, undelivered[:min(len(undelivered), 5)], readErr)
	}
	second.Stop(15 * time.Second)
	dest.checkSignatures(t)

	// Count redeliveries, which at-least-once delivery allows after a crash.
	counts := dest.attemptCounts()
	duplicates, unaccepted := 0, 0
	for id, n := range counts {
		duplicates += n - 1
		if _, ok := accepted[id]; !ok {
			unaccepted++
		}
	}
	t.Logf("%d accepted, %d requests for %d messages, %d duplicates, %d messages whose publish response was lost",
		len(accepted), dest.count(), len(counts), duplicates, unaccepted)
	logRecoveryTimes(t, dest, accepted, killedAt)
	if duplicates > crashConcurrency {
		t.Errorf("%d duplicate deliveries, want at most %d (the attempts in flight at the kill)", duplicates, crashConcurrency)
	}

	if sc.minRedeliveryGap > 0 {
		checkRedeliveryGaps(t, dest, sc.minRedeliveryGap)
	}
}

// logRecoveryTimes logs when, after the kill, the last accepted message
// first reached the destination and when the last request arrived. It
// reads the destination's timestamps, because the test may have been paused
// by t.Parallel while the server worked.
func logRecoveryTimes(t *testing.T, dest *destination, accepted map[string]int, killedAt time.Time) {
	t.Helper()
	firstArrival := map[string]time.Time{}
	var lastRequest time.Time
	for _, del := range dest.all() {
		if _, ok := firstArrival[del.MessageID]; !ok {
			firstArrival[del.MessageID] = del.Received
		}
		if del.Received.After(lastRequest) {
			lastRequest = del.Received
		}
	}
	var lastFirstArrival time.Time
	for id := range accepted {
		if at := firstArrival[id]; at.After(lastFirstArrival) {
			lastFirstArrival = at
		}
	}
	t.Logf("the last accepted message first arrived %v after the kill, the last request %v after it",
		lastFirstArrival.Sub(killedAt).Round(time.Millisecond), lastRequest.Sub(killedAt).Round(time.Millisecond))
}

// checkRedeliveryGaps checks that no message was delivered twice within
// minGap, which would mean a lease was taken over before it expired.
func checkRedeliveryGaps(t *testing.T, dest *destination, minGap time.Duration) {
	t.Helper()
	last := map[string]time.Time{}
	for _, del := range dest.all() {
		if previous, ok := last[del.MessageID]; ok {
			if gap := del.Received.Sub(previous); gap < minGap {
				t.Errorf("message %s delivered again after %v, before its lease of the dead node expired (want at least %v)",
					del.MessageID, gap, minGap)
			}
		}
		last[del.MessageID] = del.Received
	}
}

func TestRetryScheduleWithScaledBackoff(t *testing.T) {
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if attempt <= 3 {
			http.Error(w, "not yet", http.StatusInternalServerError)
		}
	})
	p := startFerry(t, "", "--backoff-scale", "0.001")
	keys := fetchKeys(t, p.URL)
	dest.trust(keys)

	target := dest.url("/hook?a=1&b=two")
	body := []byte(`{"hello":"world"}`)
	msg := mustPublish(t, p.URL, target, body, http.Header{
		"Content-Type":               {"application/json"},
		"Upstash-Forward-X-Trace-Id": {"trace-1"},
		"Upstash-Retries":            {"3"},
	})

	st := openStore(t, p.DB)
	m := waitState(t, st, msg.ID, ferry.MessageStateDelivered, 20*time.Second)
	p.Stop(10 * time.Second)

	deliveries := dest.all()
	if len(deliveries) != 4 {
		t.Fatalf("destination received %d requests, want 4 (3 failures and 1 success)", len(deliveries))
	}
	verifier := signature.Verifier{CurrentKey: keys.Current, NextKey: keys.Next}
	for i, del := range deliveries {
		if del.VerifyErr != nil {
			t.Errorf("attempt %d: signature did not verify: %v", i+1, del.VerifyErr)
		}
		token := del.Header.Get("Upstash-Signature")
		if err := verifier.Verify(token, target, body); err != nil {
			t.Errorf("attempt %d: signature did not verify for the published URL %s: %v", i+1, target, err)
		}
		if err := verifier.Verify(token, dest.url("/hook"), body); err == nil {
			t.Errorf("attempt %d: signature verified for the URL without its query, want the query in sub", i+1)
		}
		if got := del.Header.Get("Upstash-Retried"); got != strconv.Itoa(i) {
			t.Errorf("attempt %d: Upstash-Retried = %q, want %d", i+1, got, i)
		}
		if del.MessageID != msg.ID {
			t.Errorf("attempt %d: Upstash-Message-Id = %q, want %q", i+1, del.MessageID, msg.ID)
		}
		if got := del.Header.Get("User-Agent"); got != "Upstash-QStash" {
			t.Errorf("attempt %d: User-Agent = %q, want Upstash-QStash", i+1, got)
		}
		if del.Method != http.MethodPost {
			t.Errorf("attempt %d: method %s, want POST", i+1, del.Method)
		}
		if del.URL != target {
			t.Errorf("attempt %d: URL %s, want %s", i+1, del.URL, target)
		}
		if !bytes.Equal(del.Body, body) {
			t.Errorf("attempt %d: body %q, want %q", i+1, del.Body, body)
		}
		if got := del.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("attempt %d: Content-Type = %q, want application/json", i+1, got)
		}
		if got := del.Header.Get("X-Trace-Id"); got != "trace-1" {
			t.Errorf("attempt %d: forwarded X-Trace-Id = %q, want trace-1", i+1, got)
		}
		if got := del.Header.Get("Upstash-Forward-X-Trace-Id"); got != "" {
			t.Errorf("attempt %d: Upstash-Forward-X-Trace-Id = %q reached the destination, want it stripped", i+1, got)
		}
		if got := del.Header.Get("Authorization"); got != "" {
			t.Errorf("attempt %d: the API's Authorization header reached the destination: %q", i+1, got)
		}
	}

	// Each retry waits the scaled default backoff for its retry number.
	defer logEventsOnFailure(t, st, msg.ID)
	for n := 1; n <= 3; n++ {
		gap := deliveries[n].Received.Sub(deliveries[n-1].Received)
		want := scaledBackoff[n]
		if gap < want-storeResolution {
			t.Errorf("retry %d started %v after the previous attempt, before the scaled backoff of %v", n, gap, want)
		}
		if gap >= want+timingTolerance {
			t.Errorf("retry %d started %v after the previous attempt, want less than %v (backoff %v)", n, gap, want+timingTolerance, want)
		}
		t.Logf("retry %d: gap %v, scaled backoff %v", n, gap.Round(time.Microsecond), want.Round(time.Microsecond))
	}

	if m.Retried != 3 {
		t.Errorf("message Retried = %d, want 3", m.Retried)
	}
	if m.Attempts != 4 {
		t.Errorf("message Attempts = %d, want 4", m.Attempts)
	}
	wantStates := []ferry.MessageState{ferry.MessageStateCreated}
	for range 3 {
		wantStates = append(wantStates, ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateRetry)
	}
	wantStates = append(wantStates, ferry.MessageStateActive, ferry.MessageStateDelivered)
	if got := eventStates(t, st, msg.ID); !slices.Equal(got, wantStates) {
		t.Errorf("events %v, want %v", got, wantStates)
	}
}

func TestDelayedDeliveryTiming(t *testing.T) {
	const messages = 5
	const delay = 2 * time.Second
	const maxLateness = 200 * time.Millisecond

	dest := newDestination(t, nil)
	p := startFerry(t, "")
	dest.trust(fetchKeys(t, p.URL))

	// Publishes 100 ms apart give every message its own due time.
	published := make([]publishedMessage, messages)
	for i := range published {
		published[i] = mustPublish(t, p.URL, dest.url(fmt.Sprintf("/delayed/%d", i)), []byte("later"),
			http.Header{"Upstash-Delay": {"2s"}})
		time.Sleep(100 * time.Millisecond)
	}

	if !ferrytest.WaitFor(t.Context(), delay+10*time.Second, func() bool { return dest.count() >= messages }) {
		t.Fatalf("destination received %d of %d delayed messages", dest.count(), messages)
	}
	dest.checkSignatures(t)

	received := map[string]time.Time{}
	for _, del := range dest.all() {
		received[del.MessageID] = del.Received
	}
	for i, msg := range published {
		at, ok := received[msg.ID]
		if !ok {
			t.Errorf("message %d (%s) was not delivered", i, msg.ID)
			continue
		}
		// The server takes its clock reading after the request was sent and
		// before the response, so those two bound the scheduled time.
		if early := at.Sub(msg.Sent); early < delay-storeResolution {
			t.Errorf("message %d arrived %v after its publish was sent, before the delay of %v", i, early, delay)
		}
		if late := at.Sub(msg.Acked); late > delay+maxLateness {
			t.Errorf("message %d arrived %v after its publish was acknowledged, want at most %v", i, late, delay+maxLateness)
		}
		t.Logf("message %d arrived %v after the acknowledgement", i, at.Sub(msg.Acked).Round(time.Millisecond))
	}
	if got := dest.count(); got != messages {
		t.Errorf("destination received %d requests, want %d", got, messages)
	}
}

func TestZeroRetriesFailsToDeadLetterQueue(t *testing.T) {
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		w.Header().Set("X-Failure-Reason", "disk full")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("boom"))
	})
	p := startFerry(t, "", "--backoff-scale", "0.001")
	dest.trust(fetchKeys(t, p.URL))

	msg := mustPublish(t, p.URL, dest.url("/fail"), []byte("payload"), http.Header{"Upstash-Retries": {"0"}})
	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateFailed, 10*time.Second)
	p.Stop(10 * time.Second)

	if got := dest.count(); got != 1 {
		t.Errorf("destination received %d requests, want 1", got)
	}
	dest.checkSignatures(t)

	m, err := st.MessageGet(t.Context(), msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != ferry.MessageStateFailed {
		t.Errorf("message state %s, want FAILED", m.State)
	}

	entry := dlqEntryOf(t, st, msg.ID)
	if entry.ResponseStatus != http.StatusInternalServerError {
		t.Errorf("dead-letter ResponseStatus = %d, want 500", entry.ResponseStatus)
	}
	if string(entry.ResponseBody) != "boom" {
		t.Errorf("dead-letter ResponseBody = %q, want boom", entry.ResponseBody)
	}
	if got := entry.ResponseHeader.Get("X-Failure-Reason"); got != "disk full" {
		t.Errorf("dead-letter ResponseHeader X-Failure-Reason = %q, want disk full", got)
	}
	if entry.Message.State != ferry.MessageStateFailed {
		t.Errorf("dead-letter message state %s, want FAILED", entry.Message.State)
	}

	want := []ferry.MessageState{ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateFailed}
	if got := eventStates(t, st, msg.ID); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestNonRetryableErrorFailsAtOnce(t *testing.T) {
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		w.Header().Set("Upstash-NonRetryable-Error", "true")
		w.WriteHeader(489)
		w.Write([]byte("invalid order"))
	})
	// With the scaled backoff a wrong retry would follow within about 12 ms.
	p := startFerry(t, "", "--backoff-scale", "0.001")
	dest.trust(fetchKeys(t, p.URL))

	msg := mustPublish(t, p.URL, dest.url("/orders"), []byte("order"), http.Header{"Upstash-Retries": {"3"}})
	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateFailed, 10*time.Second)
	p.Stop(10 * time.Second)

	if got := dest.count(); got != 1 {
		t.Errorf("destination received %d requests, want 1", got)
	}
	dest.checkSignatures(t)

	entry := dlqEntryOf(t, st, msg.ID)
	if entry.ResponseStatus != 489 {
		t.Errorf("dead-letter ResponseStatus = %d, want 489", entry.ResponseStatus)
	}
	if string(entry.ResponseBody) != "invalid order" {
		t.Errorf("dead-letter ResponseBody = %q, want invalid order", entry.ResponseBody)
	}
	want := []ferry.MessageState{ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateFailed}
	if got := eventStates(t, st, msg.ID); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	redirectTarget := newDestination(t, nil)
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		http.Redirect(w, r, redirectTarget.url("/landing"), http.StatusFound)
	})
	p := startFerry(t, "", "--backoff-scale", "0.001")
	dest.trust(fetchKeys(t, p.URL))

	msg := mustPublish(t, p.URL, dest.url("/moved"), []byte("payload"), http.Header{"Upstash-Retries": {"1"}})
	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateFailed, 10*time.Second)
	p.Stop(10 * time.Second)

	if got := dest.count(); got != 2 {
		t.Errorf("destination received %d requests, want 2 (the first attempt and one retry)", got)
	}
	if got := redirectTarget.count(); got != 0 {
		t.Errorf("redirect target received %d requests, want 0", got)
	}
	dest.checkSignatures(t)

	entry := dlqEntryOf(t, st, msg.ID)
	if entry.ResponseStatus != http.StatusFound {
		t.Errorf("dead-letter ResponseStatus = %d, want 302", entry.ResponseStatus)
	}
	if got := entry.ResponseHeader.Get("Location"); got != redirectTarget.url("/landing") {
		t.Errorf("dead-letter Location = %q, want %q", got, redirectTarget.url("/landing"))
	}

	want := []ferry.MessageState{
		ferry.MessageStateCreated,
		ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateRetry,
		ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateFailed,
	}
	if got := eventStates(t, st, msg.ID); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestRetryAfterOverridesBackoff(t *testing.T) {
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if attempt == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	// The scaled backoff before the first retry is about 12 ms, far from 1 s.
	p := startFerry(t, "", "--backoff-scale", "0.001")
	dest.trust(fetchKeys(t, p.URL))

	msg := mustPublish(t, p.URL, dest.url("/busy"), []byte("payload"), nil)
	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateDelivered, 15*time.Second)
	p.Stop(10 * time.Second)

	deliveries := dest.all()
	if len(deliveries) != 2 {
		t.Fatalf("destination received %d requests, want 2", len(deliveries))
	}
	dest.checkSignatures(t)

	const want = time.Second
	defer logEventsOnFailure(t, st, msg.ID)
	gap := deliveries[1].Received.Sub(deliveries[0].Received)
	if gap < want-storeResolution {
		t.Errorf("retry started %v after the first attempt, before the Retry-After of %v", gap, want)
	}
	if gap >= want+timingTolerance {
		t.Errorf("retry started %v after the first attempt, want less than %v", gap, want+timingTolerance)
	}
	t.Logf("retry after Retry-After: 1 started %v after the first attempt", gap.Round(time.Millisecond))
}

func TestTimeoutCountsAsFailedAttempt(t *testing.T) {
	const timeout = time.Second
	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		if attempt == 1 {
			// Hold the request until Ferry gives up on it. The 10 s bound
			// only keeps a broken run from hanging.
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	})
	p := startFerry(t, "", "--backoff-scale", "0.001")
	dest.trust(fetchKeys(t, p.URL))

	msg := mustPublish(t, p.URL, dest.url("/slow"), []byte("payload"), http.Header{"Upstash-Timeout": {"1s"}})
	st := openStore(t, p.DB)
	waitState(t, st, msg.ID, ferry.MessageStateDelivered, 15*time.Second)
	p.Stop(10 * time.Second)

	deliveries := dest.all()
	if len(deliveries) != 2 {
		t.Fatalf("destination received %d requests, want 2", len(deliveries))
	}
	dest.checkSignatures(t)
	if got := deliveries[1].Header.Get("Upstash-Retried"); got != "1" {
		t.Errorf("second attempt Upstash-Retried = %q, want 1", got)
	}

	// The retry follows the timeout plus the scaled backoff of about 12 ms.
	gap := deliveries[1].Received.Sub(deliveries[0].Received)
	if gap < timeout {
		t.Errorf("retry started %v after the first attempt, before the timeout of %v", gap, timeout)
	}
	if gap >= timeout+timingTolerance {
		t.Errorf("retry started %v after the first attempt, want less than %v", gap, timeout+timingTolerance)
	}

	events, err := st.EventList(t.Context(), &store.EventListParams{MessageID: msg.ID})
	if err != nil {
		t.Fatal(err)
	}
	var errorEvents []*ferry.Event
	for _, e := range events {
		if e.State == ferry.MessageStateError {
			errorEvents = append(errorEvents, e)
		}
	}
	if len(errorEvents) != 1 {
		t.Fatalf("%d ERROR events, want 1", len(errorEvents))
	}
	if e := errorEvents[0]; !strings.Contains(e.Error, "timed out") {
		t.Errorf("ERROR event error %q does not mention the timeout", e.Error)
	}
	if e := errorEvents[0]; e.ResponseStatus != 0 {
		t.Errorf("ERROR event ResponseStatus = %d, want 0 for an attempt without a response", e.ResponseStatus)
	}
}

func TestGracefulStopFinishesInFlight(t *testing.T) {
	const total = 300
	const publishers = 16
	const grace = 10 * time.Second

	dest := newDestination(t, func(w http.ResponseWriter, r *http.Request, attempt int) {
		time.Sleep(300 * time.Millisecond)
	})
	db := filepath.Join(t.TempDir(), "ferry.db")
	args := []string{"--concurrency", "32", "--shutdown-grace", grace.String(), "--node-id", "node-a"}
	first := startServe(t, db, args...)
	dest.trust(fetchKeys(t, first.URL))

	// Send SIGTERM while at least half of the slots wait for the
	// destination's response.
	load := startPublishLoad(t.Context(), first.URL, dest.url("/graceful"), total, publishers)
	ready := ferrytest.WaitFor(t.Context(), 30*time.Second, func() bool {
		return dest.respondedCount() >= 40 && len(dest.inFlightIDs()) >= 16
	})
	if !ready {
		t.Fatalf("after 30s, %d responses and %d requests in flight at the destination", dest.respondedCount(), len(dest.inFlightIDs()))
	}
	inFlight := dest.inFlightIDs()
	signalled := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("send SIGTERM: %v", err)
	}
	code, exited := first.waitExit(grace + 5*time.Second)
	stopTook := time.Since(signalled)
	if !exited {
		t.Fatalf("ferry serve still running %v after SIGTERM", grace+5*time.Second)
	}
	t.Logf("stopped %v after SIGTERM with %d deliveries in flight", stopTook.Round(time.Millisecond), len(inFlight))
	if code != 0 {
		t.Errorf("ferry serve exited with code %d after SIGTERM, want 0", code)
	}
	if stopTook >= grace {
		t.Errorf("ferry serve took %v to stop, want less than the grace of %v", stopTook, grace)
	}
	logs := first.logs.String()
	if !strings.Contains(logs, `msg="ferry stopped"`) {
		t.Errorf("logs lack the ferry stopped line")
	}
	if strings.Contains(logs, "still in flight") {
		t.Errorf("logs report deliveries abandoned at the end of the grace")
	}

	// Every delivery in flight at SIGTERM was finished and recorded, and no
	// message was left leased.
	st := openStore(t, db)
	for _, id := range inFlight {
		m, err := st.MessageGet(t.Context(), id)
		if err != nil {
			t.Fatalf("read message %s: %v", id, err)
		}
		if m.State != ferry.MessageStateDelivered {
			t.Errorf("message %s was in flight at SIGTERM and is %s after the stop, want DELIVERED", id, m.State)
		}
	}
	for id := range load.acceptedIDs() {
		m, err := st.MessageGet(t.Context(), id)
		if err != nil {
			t.Fatalf("read message %s: %v", id, err)
		}
		if m.State != ferry.MessageStateCreated && m.State != ferry.MessageStateDelivered {
			t.Errorf("message %s is %s after a clean stop, want CREATED or DELIVERED", id, m.State)
		}
	}
	st.Close()

	// The restarted server delivers the rest, and nothing twice.
	second := startServe(t, db, args...)
	load.restarted(second.URL)
	if err := load.wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	accepted := load.acceptedIDs()
	if len(accepted) != total {
		t.Fatalf("%d publishes accepted, want %d", len(accepted), total)
	}
	var missing int
	delivered := ferrytest.WaitFor(t.Context(), 60*time.Second, func() bool {
		counts := dest.attemptCounts()
		missing = 0
		for id := range accepted {
			if counts[id] == 0 {
				missing++
			}
		}
		return missing == 0
	})
	if !delivered {
		t.Fatalf("%d of %d accepted messages not delivered within 60s of the restart", missing, total)
	}
	dest.checkSignatures(t)

	duplicates := 0
	for _, n := range dest.attemptCounts() {
		duplicates += n - 1
	}
	if duplicates != 0 {
		t.Errorf("%d duplicate deliveries after a clean stop, want 0", duplicates)
	}
}

// The scaled schedule above is e^(2.5·n) ms, which DefaultBackoff states in
// seconds. The check keeps the two in step.
func TestScaledBackoffMatchesDefault(t *testing.T) {
	for n, want := range scaledBackoff {
		got := time.Duration(float64(dispatch.DefaultBackoff(n)) * 0.001)
		if (got - want).Abs() > time.Microsecond {
			t.Errorf("DefaultBackoff(%d) scaled by 0.001 = %v, want %v", n, got, want)
		}
	}
}
