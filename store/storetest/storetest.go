// Package storetest is the conformance suite of store.Store. Each backend's
// tests call Run with a function that opens a new, empty store, so every
// backend is held to the same behaviour.
//
// The suite injects a fixed clock: every time it passes is a whole number
// of milliseconds, the precision of the stores.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// now is the suite's fixed clock reading.
var now = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// Claim settings of the suite. A message without its own timeout gets a
// lease of defaultTimeout + leaseMargin.
const (
	defaultTimeout = 30 * time.Second
	leaseMargin    = 5 * time.Second
)

// Run runs every conformance test against stores from open. Each test runs
// in parallel with the others and calls open once, so open must return a
// new, empty store that shares no data with the stores of other calls. Run
// closes the store when the test ends. open registers the cleanup of
// anything else it creates with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"MessageInsertRoundTrip", testMessageInsertRoundTrip},
		{"MessageInsertEmptyFields", testMessageInsertEmptyFields},
		{"MessageInsertDuplicateID", testMessageInsertDuplicateID},
		{"MessageGetNotFound", testMessageGetNotFound},
		{"DedupWithinWindow", testDedupWithinWindow},
		{"DedupAfterWindow", testDedupAfterWindow},
		{"DedupConcurrentInserts", testDedupConcurrentInserts},
		{"ClaimDueOrder", testClaimDueOrder},
		{"ClaimLimit", testClaimLimit},
		{"ClaimLease", testClaimLease},
		{"ClaimConcurrentClaimers", testClaimConcurrentClaimers},
		{"ClaimExpiredLease", testClaimExpiredLease},
		{"LateResultAfterTakeover", testLateResultAfterTakeover},
		{"LateResultRacesCurrent", testLateResultRacesCurrent},
		{"MarkDelivered", testMarkDelivered},
		{"MarkRetry", testMarkRetry},
		{"MarkFailed", testMarkFailed},
		{"MarkWithoutClaim", testMarkWithoutClaim},
		{"NextDueAt", testNextDueAt},
		{"ReleaseLeases", testReleaseLeases},
		{"EventList", testEventList},
		{"DLQGetNotFound", testDLQGetNotFound},
		{"DLQListPaging", testDLQListPaging},
		{"SigningKeysInitKeepsFirst", testSigningKeysInitKeepsFirst},
		{"SigningKeysSetReplaces", testSigningKeysSetReplaces},
		{"SigningKeysGetEmpty", testSigningKeysGetEmpty},
		{"MarkStoresCallbacks", testMarkStoresCallbacks},
		{"EventListFilterOrder", testEventListFilterOrder},
		{"DLQListFilterOrder", testDLQListFilterOrder},
		{"MessageCancelAll", testMessageCancelAll},
		{"MessageCancelSelect", testMessageCancelSelect},
		{"DLQDelete", testDLQDelete},
		{"DLQRetry", testDLQRetry},
		{"SigningKeysRotate", testSigningKeysRotate},
		{"CleanupRetention", testCleanupRetention},
		{"DedupDeleteExpired", testDedupDeleteExpired},
		{"ScheduleRoundTrip", testScheduleRoundTrip},
		{"ScheduleEmptyFields", testScheduleEmptyFields},
		{"ScheduleGetNotFound", testScheduleGetNotFound},
		{"ScheduleUpsertReplaces", testScheduleUpsertReplaces},
		{"ScheduleListOrder", testScheduleListOrder},
		{"ScheduleDelete", testScheduleDelete},
		{"SchedulePauseResume", testSchedulePauseResume},
		{"ScheduleFireDue", testScheduleFireDue},
		{"ScheduleFireMissedTicksOnce", testScheduleFireMissedTicksOnce},
		{"ScheduleFireLimit", testScheduleFireLimit},
		{"ScheduleFireWithoutMessage", testScheduleFireWithoutMessage},
		{"ScheduleFireConcurrent", testScheduleFireConcurrent},
		{"ScheduleNextFireAt", testScheduleNextFireAt},
	}

	tests = append(tests, jobTests...)
	tests = append(tests, jobFlowTests...)
	tests = append(tests, queueTests()...)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// newMessage returns a minimal message that becomes due at notBefore.
func newMessage(id string, notBefore time.Time) *ferry.Message {
	return &ferry.Message{
		ID:         id,
		URL:        "https://receiver.example/" + id,
		Method:     http.MethodPost,
		Header:     http.Header{"Content-Type": {"text/plain"}},
		Body:       []byte("body of " + id),
		MaxRetries: 3,
		NotBefore:  notBefore,
	}
}

// insert stores m at time at without deduplication.
func insert(t *testing.T, s store.Store, m *ferry.Message, at time.Time) {
	t.Helper()
	res, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{Message: m, Now: at})
	if err != nil {
		t.Fatalf("MessageInsert(%s): %v", m.ID, err)
	}
	if res.MessageID != m.ID || res.Deduplicated {
		t.Fatalf("MessageInsert(%s) = %+v, want the new message stored", m.ID, *res)
	}
}

// claim leases up to limit messages to owner at time at.
func claim(t *testing.T, s store.Store, owner string, at time.Time, limit int) []*ferry.Message {
	t.Helper()
	msgs, err := s.MessageClaim(t.Context(), &store.MessageClaimParams{
		Owner: owner, Limit: limit, Now: at, DefaultTimeout: defaultTimeout, LeaseMargin: leaseMargin,
	})
	if err != nil {
		t.Fatalf("MessageClaim(owner %s, at %v, limit %d): %v", owner, at, limit, err)
	}
	return msgs
}

// claimOne claims at time at and requires exactly the message id.
func claimOne(t *testing.T, s store.Store, owner string, at time.Time, id string) *ferry.Message {
	t.Helper()
	msgs := claim(t, s, owner, at, 10)
	if got := messageIDs(msgs); !slices.Equal(got, []string{id}) {
		t.Fatalf("MessageClaim at %v claimed %v, want [%s]", at, got, id)
	}
	return msgs[0]
}

func get(t *testing.T, s store.Store, id string) *ferry.Message {
	t.Helper()
	m, err := s.MessageGet(t.Context(), id)
	if err != nil {
		t.Fatalf("MessageGet(%s): %v", id, err)
	}
	return m
}

// messageEvents returns the events of one message.
func messageEvents(t *testing.T, s store.Store, id string) []*ferry.Event {
	t.Helper()
	events, err := s.EventList(t.Context(), &store.EventListParams{MessageID: id})
	if err != nil {
		t.Fatalf("EventList(message %s): %v", id, err)
	}
	return events
}

func messageIDs(msgs []*ferry.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func eventStates(events []*ferry.Event) []ferry.MessageState {
	states := make([]ferry.MessageState, len(events))
	for i, e := range events {
		states[i] = e.State
	}
	return states
}

// requireStates fails the test unless events have exactly the states want.
func requireStates(t *testing.T, events []*ferry.Event, want ...ferry.MessageState) {
	t.Helper()
	if got := eventStates(events); !slices.Equal(got, want) {
		t.Fatalf("event states = %v, want %v", got, want)
	}
}

// sameHeader compares headers, treating nil and empty as equal because
// stores return an empty header for a nil one.
func sameHeader(a, b http.Header) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// sameStrings compares lists, treating nil and empty as equal.
func sameStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(a, b)
}

// checkTime reports a time field that differs from want.
func checkTime(t *testing.T, field string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", field, got, want)
	}
}

// checkStoredFields compares the fields a publish sets, which no state
// transition changes.
func checkStoredFields(t *testing.T, got, want *ferry.Message) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("ID = %q, want %q", got.ID, want.ID)
	}
	if got.URL != want.URL {
		t.Errorf("URL = %q, want %q", got.URL, want.URL)
	}
	if got.Method != want.Method {
		t.Errorf("Method = %q, want %q", got.Method, want.Method)
	}
	if !sameHeader(got.Header, want.Header) {
		t.Errorf("Header = %v, want %v", got.Header, want.Header)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("Body = %q, want %q", got.Body, want.Body)
	}
	if got.MaxRetries != want.MaxRetries {
		t.Errorf("MaxRetries = %d, want %d", got.MaxRetries, want.MaxRetries)
	}
	if got.RetryDelayExpr != want.RetryDelayExpr {
		t.Errorf("RetryDelayExpr = %q, want %q", got.RetryDelayExpr, want.RetryDelayExpr)
	}
	if got.Timeout != want.Timeout {
		t.Errorf("Timeout = %v, want %v", got.Timeout, want.Timeout)
	}

	checkTime(t, "NotBefore", got.NotBefore, want.NotBefore)
	if !sameStrings(got.Labels, want.Labels) {
		t.Errorf("Labels = %q, want %q", got.Labels, want.Labels)
	}
	if got.DeduplicationID != want.DeduplicationID {
		t.Errorf("DeduplicationID = %q, want %q", got.DeduplicationID, want.DeduplicationID)
	}
	if got.CallerIP != want.CallerIP {
		t.Errorf("CallerIP = %q, want %q", got.CallerIP, want.CallerIP)
	}

	if got.Callback != want.Callback {
		t.Errorf("Callback = %q, want %q", got.Callback, want.Callback)
	}
	if got.FailureCallback != want.FailureCallback {
		t.Errorf("FailureCallback = %q, want %q", got.FailureCallback, want.FailureCallback)
	}
	if !sameHeader(got.CallbackHeader, want.CallbackHeader) {
		t.Errorf("CallbackHeader = %v, want %v", got.CallbackHeader, want.CallbackHeader)
	}
	if !sameHeader(got.FailureCallbackHeader, want.FailureCallbackHeader) {
		t.Errorf("FailureCallbackHeader = %v, want %v", got.FailureCallbackHeader, want.FailureCallbackHeader)
	}

	if got.TopicName != want.TopicName {
		t.Errorf("TopicName = %q, want %q", got.TopicName, want.TopicName)
	}
	if got.EndpointName != want.EndpointName {
		t.Errorf("EndpointName = %q, want %q", got.EndpointName, want.EndpointName)
	}
	if got.QueueName != want.QueueName {
		t.Errorf("QueueName = %q, want %q", got.QueueName, want.QueueName)
	}
	if got.ScheduleID != want.ScheduleID {
		t.Errorf("ScheduleID = %q, want %q", got.ScheduleID, want.ScheduleID)
	}
	if got.CallbackOf != want.CallbackOf {
		t.Errorf("CallbackOf = %q, want %q", got.CallbackOf, want.CallbackOf)
	}
}

// checkProgress compares the delivery progress of a message.
func checkProgress(t *testing.T, m *ferry.Message, state ferry.MessageState, attempts, retried int) {
	t.Helper()
	if m.State != state {
		t.Errorf("message %s State = %s, want %s", m.ID, m.State, state)
	}
	if m.Attempts != attempts {
		t.Errorf("message %s Attempts = %d, want %d", m.ID, m.Attempts, attempts)
	}
	if m.Retried != retried {
		t.Errorf("message %s Retried = %d, want %d", m.ID, m.Retried, retried)
	}
}

// checkLease compares the lease of an ACTIVE message.
func checkLease(t *testing.T, m *ferry.Message, owner string, expires time.Time) {
	t.Helper()
	if m.LeaseOwner != owner {
		t.Errorf("message %s LeaseOwner = %q, want %q", m.ID, m.LeaseOwner, owner)
	}
	checkTime(t, "message "+m.ID+" DueAt", m.DueAt, expires)
}

// checkNextDueAt compares MessageNextDueAt with want, where the zero time
// means that nothing is waiting.
func checkNextDueAt(t *testing.T, s store.Store, want time.Time) {
	t.Helper()
	got, ok, err := s.MessageNextDueAt(t.Context())
	if err != nil {
		t.Fatalf("MessageNextDueAt: %v", err)
	}
	if want.IsZero() {
		if ok {
			t.Errorf("MessageNextDueAt = %v, true; want nothing waiting", got)
		}
		return
	}
	if !ok {
		t.Errorf("MessageNextDueAt reports nothing waiting, want %v", want)
		return
	}
	checkTime(t, "MessageNextDueAt", got, want)
}

func testMessageInsertRoundTrip(t *testing.T, s store.Store) {
	want := &ferry.Message{
		ID:     "msg_roundtrip",
		URL:    "https://receiver.example/hook?tenant=7&mode=a%20b",
		Method: http.MethodPut,
		Header: http.Header{
			"Content-Type":    {"application/json"},
			"X-Repeated":      {"first", "second"},
			"X-Empty-Value":   {""},
			"Idempotency-Key": {"k-1"},
		},
		Body:            []byte{0x00, 0xff, 0xfe, 'o', 'k', 0x80, '\n'},
		MaxRetries:      5,
		RetryDelayExpr:  "pow(2, retried) * 1000",
		Timeout:         2500 * time.Millisecond,
		NotBefore:       now.Add(90 * time.Second),
		Labels:          []string{"billing", "eu-west"},
		DeduplicationID: "order-42",
		CallerIP:        "203.0.113.7",

		Callback:              "https://receiver.example/callback",
		FailureCallback:       "https://receiver.example/failure",
		CallbackHeader:        http.Header{"Upstash-Callback-Retries": {"2"}},
		FailureCallbackHeader: http.Header{"Upstash-Failure-Callback-Forward-X-Id": {"a", "b"}},
		TopicName:             "orders",
		EndpointName:          "billing",
		QueueName:             "queue-1",
		ScheduleID:            "scd_1",
		CallbackOf:            "msg_parent",
	}
	res, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{
		Message: want, DeduplicationWindow: time.Hour, Now: now,
	})
	if err != nil {
		t.Fatalf("MessageInsert: %v", err)
	}
	if res.MessageID != want.ID {
		t.Errorf("MessageInsert MessageID = %q, want %q", res.MessageID, want.ID)
	}
	if res.Deduplicated {
		t.Errorf("MessageInsert Deduplicated = true, want false")
	}

	got := get(t, s, want.ID)
	checkStoredFields(t, got, want)
	checkProgress(t, got, ferry.MessageStateCreated, 0, 0)
	checkLease(t, got, "", want.NotBefore)
	checkTime(t, "CreatedAt", got.CreatedAt, now)

	events := messageEvents(t, s, want.ID)
	requireStates(t, events, ferry.MessageStateCreated)
	e := events[0]
	if e.MessageID != want.ID {
		t.Errorf("CREATED event MessageID = %q, want %q", e.MessageID, want.ID)
	}
	checkTime(t, "CREATED event Time", e.Time, now)
	if e.URL != want.URL {
		t.Errorf("CREATED event URL = %q, want %q", e.URL, want.URL)
	}
	if e.Retried != 0 {
		t.Errorf("CREATED event Retried = %d, want 0", e.Retried)
	}
	checkTime(t, "CREATED event NextDeliveryTime", e.NextDeliveryTime, want.NotBefore)
}

func testMessageInsertEmptyFields(t *testing.T, s store.Store) {
	want := &ferry.Message{
		ID:        "msg_empty",
		URL:       "https://receiver.example/",
		Method:    http.MethodPost,
		Body:      []byte{},
		NotBefore: now,
	}
	insert(t, s, want, now)

	got := get(t, s, want.ID)
	checkStoredFields(t, got, want)
	if len(got.Body) != 0 {
		t.Errorf("Body = %q, want empty", got.Body)
	}
	if len(got.Header) != 0 {
		t.Errorf("Header = %v, want empty", got.Header)
	}
	if len(got.Labels) != 0 {
		t.Errorf("Labels = %q, want empty", got.Labels)
	}
	checkProgress(t, got, ferry.MessageStateCreated, 0, 0)
	checkLease(t, got, "", now)
}

func testMessageInsertDuplicateID(t *testing.T, s store.Store) {
	first := newMessage("msg_dup", now)
	insert(t, s, first, now)

	second := newMessage("msg_dup", now)
	second.URL = "https://other.example/"
	if _, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{Message: second, Now: now}); err == nil {
		t.Errorf("MessageInsert of an existing id succeeded, want an error")
	}

	if got := get(t, s, "msg_dup"); got.URL != first.URL {
		t.Errorf("URL = %q after the rejected insert, want %q", got.URL, first.URL)
	}
	requireStates(t, messageEvents(t, s, "msg_dup"), ferry.MessageStateCreated)
}

func testMessageGetNotFound(t *testing.T, s store.Store) {
	_, err := s.MessageGet(t.Context(), "msg_missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MessageGet(msg_missing) error = %v, want store.ErrNotFound", err)
	}
}

// insertWithDedup inserts m with deduplication id dedupID and a ten-minute
// window at time at.
func insertWithDedup(t *testing.T, s store.Store, m *ferry.Message, dedupID string, at time.Time) *store.MessageInsertResult {
	t.Helper()
	m.DeduplicationID = dedupID
	res, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{
		Message: m, DeduplicationWindow: 10 * time.Minute, Now: at,
	})
	if err != nil {
		t.Fatalf("MessageInsert(%s): %v", m.ID, err)
	}
	return res
}

func testDedupWithinWindow(t *testing.T, s store.Store) {
	res := insertWithDedup(t, s, newMessage("msg_first", now), "order-42", now)
	if res.MessageID != "msg_first" || res.Deduplicated {
		t.Fatalf("first insert = %+v, want msg_first stored", *res)
	}

	res = insertWithDedup(t, s, newMessage("msg_second", now), "order-42", now.Add(10*time.Minute-time.Millisecond))
	if res.MessageID != "msg_first" {
		t.Errorf("second insert MessageID = %q, want msg_first", res.MessageID)
	}
	if !res.Deduplicated {
		t.Errorf("second insert Deduplicated = false, want true")
	}
	if _, err := s.MessageGet(t.Context(), "msg_second"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MessageGet(msg_second) error = %v, want store.ErrNotFound", err)
	}
	if events := messageEvents(t, s, "msg_second"); len(events) != 0 {
		t.Errorf("deduplicated message has %d events, want 0", len(events))
	}

	res = insertWithDedup(t, s, newMessage("msg_other", now), "order-43", now.Add(time.Minute))
	if res.MessageID != "msg_other" || res.Deduplicated {
		t.Errorf("insert with another deduplication id = %+v, want msg_other stored", *res)
	}
}

func testDedupAfterWindow(t *testing.T, s store.Store) {
	insertWithDedup(t, s, newMessage("msg_first", now), "order-42", now)

	// A deduplicated insert does not extend the window of the first.
	res := insertWithDedup(t, s, newMessage("msg_within", now), "order-42", now.Add(5*time.Minute))
	if res.MessageID != "msg_first" || !res.Deduplicated {
		t.Fatalf("insert within the window = %+v, want msg_first deduplicated", *res)
	}

	res = insertWithDedup(t, s, newMessage("msg_after", now), "order-42", now.Add(10*time.Minute))
	if res.MessageID != "msg_after" {
		t.Errorf("insert after the window MessageID = %q, want msg_after", res.MessageID)
	}
	if res.Deduplicated {
		t.Errorf("insert after the window Deduplicated = true, want false")
	}
	get(t, s, "msg_after")
	get(t, s, "msg_first")

	// The id is now reserved for the second stored message.
	res = insertWithDedup(t, s, newMessage("msg_later", now), "order-42", now.Add(15*time.Minute))
	if res.MessageID != "msg_after" || !res.Deduplicated {
		t.Errorf("insert in the new window = %+v, want msg_after deduplicated", *res)
	}
}

func testDedupConcurrentInserts(t *testing.T, s store.Store) {
	const inserters = 16
	results := make([]*store.MessageInsertResult, inserters)
	errs := make([]error, inserters)

	var wg sync.WaitGroup
	for i := range inserters {
		wg.Go(func() {
			m := newMessage(fmt.Sprintf("msg_%02d", i), now)
			m.DeduplicationID = "order-42"
			results[i], errs[i] = s.MessageInsert(t.Context(), &store.MessageInsertParams{
				Message: m, DeduplicationWindow: time.Hour, Now: now,
			})
		})
	}
	wg.Wait()

	var stored []string
	for i, err := range errs {
		if err != nil {
			t.Fatalf("MessageInsert(msg_%02d): %v", i, err)
		}
		if !results[i].Deduplicated {
			stored = append(stored, results[i].MessageID)
		}
	}
	if len(stored) != 1 {
		t.Fatalf("%d inserts stored a message (%v), want exactly 1", len(stored), stored)
	}
	for i, res := range results {
		if res.MessageID != stored[0] {
			t.Errorf("insert msg_%02d MessageID = %q, want %q", i, res.MessageID, stored[0])
		}
	}

	var found []string
	for i := range inserters {
		id := fmt.Sprintf("msg_%02d", i)
		_, err := s.MessageGet(t.Context(), id)
		if err == nil {
			found = append(found, id)
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("MessageGet(%s): %v", id, err)
		}
	}
	if !slices.Equal(found, stored) {
		t.Errorf("stored messages = %v, want %v", found, stored)
	}

	events, err := s.EventList(t.Context(), &store.EventListParams{})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	if len(events) != 1 {
		t.Errorf("got %d events, want 1 CREATED event", len(events))
	}
}

func testClaimDueOrder(t *testing.T, s store.Store) {
	// msg_retry was published first, so its NotBefore is the earliest, but
	// its retry makes it due after msg_a and msg_b.
	insert(t, s, newMessage("msg_retry", now.Add(-20*time.Second)), now.Add(-time.Minute))
	insert(t, s, newMessage("msg_b", now.Add(-5*time.Second)), now.Add(-time.Minute))
	insert(t, s, newMessage("msg_now", now), now.Add(-time.Minute))
	insert(t, s, newMessage("msg_a", now.Add(-10*time.Second)), now.Add(-time.Minute))
	insert(t, s, newMessage("msg_future", now.Add(time.Millisecond)), now.Add(-time.Minute))

	first := claimOne(t, s, "node-a", now.Add(-20*time.Second), "msg_retry")
	applied, err := s.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
		ID: first.ID, Attempts: first.Attempts, Now: now.Add(-19 * time.Second),
		Result: store.AttemptResult{ResponseStatus: 503, Error: "HTTP 503"}, NextAt: now.Add(-time.Second),
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want applied", applied, err)
	}

	got := messageIDs(claim(t, s, "node-a", now, 10))
	want := []string{"msg_a", "msg_b", "msg_retry", "msg_now"}
	if !slices.Equal(got, want) {
		t.Errorf("claimed %v, want %v in due order", got, want)
	}

	future := get(t, s, "msg_future")
	checkProgress(t, future, ferry.MessageStateCreated, 0, 0)
	checkLease(t, future, "", now.Add(time.Millisecond))
}

func testClaimLimit(t *testing.T, s store.Store) {
	// Ids sort against due order, so a claim that picks by id fails.
	for i := range 5 {
		insert(t, s, newMessage(fmt.Sprintf("msg_%d", i), now.Add(-time.Duration(i)*time.Second)), now)
	}

	if got := claim(t, s, "node-a", now, 0); len(got) != 0 {
		t.Errorf("claim with limit 0 returned %v, want none", messageIDs(got))
	}
	checkProgress(t, get(t, s, "msg_4"), ferry.MessageStateCreated, 0, 0)

	if got := messageIDs(claim(t, s, "node-a", now, 2)); !slices.Equal(got, []string{"msg_4", "msg_3"}) {
		t.Errorf("first claim = %v, want [msg_4 msg_3]", got)
	}
	if got := messageIDs(claim(t, s, "node-a", now, 10)); !slices.Equal(got, []string{"msg_2", "msg_1", "msg_0"}) {
		t.Errorf("second claim = %v, want [msg_2 msg_1 msg_0]", got)
	}
	if got := claim(t, s, "node-a", now, 10); len(got) != 0 {
		t.Errorf("third claim = %v, want none", messageIDs(got))
	}
}

func testClaimLease(t *testing.T, s store.Store) {
	own := newMessage("msg_own_timeout", now.Add(-2*time.Second))
	own.Timeout = 2 * time.Second
	own.Labels = []string{"l1"}
	insert(t, s, own, now.Add(-time.Minute))
	insert(t, s, newMessage("msg_default_timeout", now.Add(-time.Second)), now.Add(-time.Minute))

	claimed := claim(t, s, "node-a", now, 10)
	if got := messageIDs(claimed); !slices.Equal(got, []string{"msg_own_timeout", "msg_default_timeout"}) {
		t.Fatalf("claimed %v, want [msg_own_timeout msg_default_timeout]", got)
	}

	leases := map[string]time.Time{
		"msg_own_timeout":     now.Add(2*time.Second + leaseMargin),
		"msg_default_timeout": now.Add(defaultTimeout + leaseMargin),
	}
	for _, m := range claimed {
		checkProgress(t, m, ferry.MessageStateActive, 1, 0)
		checkLease(t, m, "node-a", leases[m.ID])

		stored := get(t, s, m.ID)
		checkStoredFields(t, stored, m)
		checkProgress(t, stored, ferry.MessageStateActive, 1, 0)
		checkLease(t, stored, "node-a", leases[m.ID])

		events := messageEvents(t, s, m.ID)
		requireStates(t, events, ferry.MessageStateCreated, ferry.MessageStateActive)
		active := events[1]
		checkTime(t, "ACTIVE event Time", active.Time, now)
		if active.URL != m.URL {
			t.Errorf("ACTIVE event URL = %q, want %q", active.URL, m.URL)
		}
		if active.Retried != 0 {
			t.Errorf("ACTIVE event Retried = %d, want 0", active.Retried)
		}
	}
	checkStoredFields(t, claimed[0], own)
}

func testClaimConcurrentClaimers(t *testing.T, s store.Store) {
	const messages, claimers, batch = 200, 4, 7

	// Insert with several goroutines so that stores which commit
	// concurrent writes together can do so.
	var wg sync.WaitGroup
	insertErrs := make(chan error, messages)
	for i := range messages {
		wg.Go(func() {
			m := newMessage(fmt.Sprintf("msg_%03d", i), now.Add(time.Duration(i-messages)*time.Millisecond))
			if _, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{Message: m, Now: now}); err != nil {
				insertErrs <- fmt.Errorf("MessageInsert(%s): %w", m.ID, err)
			}
		})
	}
	wg.Wait()
	close(insertErrs)
	for err := range insertErrs {
		t.Fatal(err)
	}

	claimedBy := make([][]*ferry.Message, claimers)
	claimErrs := make([]error, claimers)
	for c := range claimers {
		wg.Go(func() {
			owner := fmt.Sprintf("node-%d", c)
			for {
				msgs, err := s.MessageClaim(t.Context(), &store.MessageClaimParams{
					Owner: owner, Limit: batch, Now: now, DefaultTimeout: defaultTimeout, LeaseMargin: leaseMargin,
				})
				if err != nil {
					claimErrs[c] = err
					return
				}
				if len(msgs) == 0 {
					return
				}
				claimedBy[c] = append(claimedBy[c], msgs...)
			}
		})
	}
	wg.Wait()

	owners := map[string]string{}
	for c, msgs := range claimedBy {
		if claimErrs[c] != nil {
			t.Fatalf("claimer node-%d: %v", c, claimErrs[c])
		}
		owner := fmt.Sprintf("node-%d", c)
		for _, m := range msgs {
			if previous, ok := owners[m.ID]; ok {
				t.Errorf("message %s claimed by %s and %s", m.ID, previous, owner)
			}
			owners[m.ID] = owner
			if m.Attempts != 1 || m.LeaseOwner != owner {
				t.Errorf("message %s claimed by %s has Attempts %d, LeaseOwner %q", m.ID, owner, m.Attempts, m.LeaseOwner)
			}
		}
	}
	if len(owners) != messages {
		t.Errorf("claimed %d distinct messages, want %d", len(owners), messages)
	}
	if got := claim(t, s, "node-late", now, messages); len(got) != 0 {
		t.Errorf("claim after the claimers finished returned %d messages, want 0", len(got))
	}

	events, err := s.EventList(t.Context(), &store.EventListParams{})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	active := 0
	for _, e := range events {
		if e.State == ferry.MessageStateActive {
			active++
		}
	}
	if active != messages {
		t.Errorf("got %d ACTIVE events, want %d", active, messages)
	}
}

func testClaimExpiredLease(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_lease", now), now)
	lease := defaultTimeout + leaseMargin

	first := claimOne(t, s, "node-a", now, "msg_lease")
	checkProgress(t, first, ferry.MessageStateActive, 1, 0)

	if got := claim(t, s, "node-b", now.Add(lease-time.Millisecond), 10); len(got) != 0 {
		t.Fatalf("claim before the lease expired returned %v, want none", messageIDs(got))
	}

	expiredAt := now.Add(lease)
	second := claimOne(t, s, "node-b", expiredAt, "msg_lease")
	checkProgress(t, second, ferry.MessageStateActive, 2, 0)
	checkLease(t, second, "node-b", expiredAt.Add(lease))

	// Results of the first attempt arrive late and must change nothing.
	ctx := t.Context()
	stale := store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"}
	if applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
		ID: "msg_lease", Attempts: first.Attempts, Now: expiredAt, ResponseStatus: 200,
	}); err != nil || applied {
		t.Errorf("stale MessageMarkDelivered = %v, %v; want false, nil", applied, err)
	}
	if applied, err := s.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: "msg_lease", Attempts: first.Attempts, Now: expiredAt, Result: stale, NextAt: expiredAt.Add(time.Minute),
	}); err != nil || applied {
		t.Errorf("stale MessageMarkRetry = %v, %v; want false, nil", applied, err)
	}
	if dlqID, applied, err := s.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: "msg_lease", Attempts: first.Attempts, Now: expiredAt, Result: stale, DLQID: "dlq_stale",
	}); err != nil || applied || dlqID != "" {
		t.Errorf("stale MessageMarkFailed = %q, %v, %v; want \"\", false, nil", dlqID, applied, err)
	}

	stored := get(t, s, "msg_lease")
	checkProgress(t, stored, ferry.MessageStateActive, 2, 0)
	checkLease(t, stored, "node-b", expiredAt.Add(lease))
	requireStates(t, messageEvents(t, s, "msg_lease"),
		ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateActive)
	if _, err := s.DLQGet(ctx, "dlq_stale"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DLQGet(dlq_stale) error = %v, want store.ErrNotFound", err)
	}

	// The current attempt applies once.
	for i, want := range []bool{true, false} {
		applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
			ID: "msg_lease", Attempts: second.Attempts, Now: expiredAt.Add(time.Second), ResponseStatus: 200,
		})
		if err != nil || applied != want {
			t.Errorf("MessageMarkDelivered call %d = %v, %v; want %v, nil", i+1, applied, err, want)
		}
	}
	checkProgress(t, get(t, s, "msg_lease"), ferry.MessageStateDelivered, 2, 0)
}

func testMarkDelivered(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_ok", now), now)
	m := claimOne(t, s, "node-a", now, "msg_ok")

	applied, err := s.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: now.Add(2 * time.Second), ResponseStatus: 201,
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkDelivered = %v, %v; want true, nil", applied, err)
	}

	got := get(t, s, "msg_ok")
	checkProgress(t, got, ferry.MessageStateDelivered, 1, 0)
	checkLease(t, got, "", time.Time{})

	events := messageEvents(t, s, "msg_ok")
	requireStates(t, events, ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateDelivered)
	delivered := events[2]
	checkTime(t, "DELIVERED event Time", delivered.Time, now.Add(2*time.Second))
	if delivered.ResponseStatus != 201 {
		t.Errorf("DELIVERED event ResponseStatus = %d, want 201", delivered.ResponseStatus)
	}
	if delivered.Retried != 0 {
		t.Errorf("DELIVERED event Retried = %d, want 0", delivered.Retried)
	}
	if delivered.URL != m.URL {
		t.Errorf("DELIVERED event URL = %q, want %q", delivered.URL, m.URL)
	}

	checkNextDueAt(t, s, time.Time{})
	if got := claim(t, s, "node-a", now.Add(24*time.Hour), 10); len(got) != 0 {
		t.Errorf("claim after delivery returned %v, want none", messageIDs(got))
	}
}

func testMarkRetry(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_retry", now), now)
	m := claimOne(t, s, "node-a", now, "msg_retry")

	result := store.AttemptResult{
		ResponseStatus: 503,
		ResponseHeader: http.Header{"Retry-After": {"7"}, "X-Trace": {"a", "b"}},
		ResponseBody:   []byte("busy\xff"),
		Error:          "HTTP 503 Service Unavailable",
	}
	nextAt := now.Add(10 * time.Second)
	applied, err := s.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
		ID: m.ID, Attempts: m.Attempts, Now: now.Add(time.Second), Result: result, NextAt: nextAt,
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want true, nil", applied, err)
	}

	got := get(t, s, "msg_retry")
	checkProgress(t, got, ferry.MessageStateRetry, 1, 1)
	checkLease(t, got, "", nextAt)
	checkNextDueAt(t, s, nextAt)

	events := messageEvents(t, s, "msg_retry")
	requireStates(t, events, ferry.MessageStateCreated, ferry.MessageStateActive,
		ferry.MessageStateError, ferry.MessageStateRetry)
	failed, retry := events[2], events[3]
	checkTime(t, "ERROR event Time", failed.Time, now.Add(time.Second))
	if failed.Retried != 0 {
		t.Errorf("ERROR event Retried = %d, want 0", failed.Retried)
	}
	if failed.ResponseStatus != result.ResponseStatus {
		t.Errorf("ERROR event ResponseStatus = %d, want %d", failed.ResponseStatus, result.ResponseStatus)
	}
	if !sameHeader(failed.ResponseHeader, result.ResponseHeader) {
		t.Errorf("ERROR event ResponseHeader = %v, want %v", failed.ResponseHeader, result.ResponseHeader)
	}
	if !bytes.Equal(failed.ResponseBody, result.ResponseBody) {
		t.Errorf("ERROR event ResponseBody = %q, want %q", failed.ResponseBody, result.ResponseBody)
	}
	if failed.Error != result.Error {
		t.Errorf("ERROR event Error = %q, want %q", failed.Error, result.Error)
	}
	if !failed.NextDeliveryTime.IsZero() {
		t.Errorf("ERROR event NextDeliveryTime = %v, want zero", failed.NextDeliveryTime)
	}
	checkTime(t, "RETRY event Time", retry.Time, now.Add(time.Second))
	checkTime(t, "RETRY event NextDeliveryTime", retry.NextDeliveryTime, nextAt)
	if retry.Retried != 1 {
		t.Errorf("RETRY event Retried = %d, want 1", retry.Retried)
	}
	if retry.ID <= failed.ID {
		t.Errorf("RETRY event id %d is not after ERROR event id %d", retry.ID, failed.ID)
	}

	if got := claim(t, s, "node-a", nextAt.Add(-time.Millisecond), 10); len(got) != 0 {
		t.Errorf("claim before NextAt returned %v, want none", messageIDs(got))
	}
	again := claimOne(t, s, "node-b", nextAt, "msg_retry")
	checkProgress(t, again, ferry.MessageStateActive, 2, 1)
	checkLease(t, again, "node-b", nextAt.Add(defaultTimeout+leaseMargin))

	events = messageEvents(t, s, "msg_retry")
	if last := events[len(events)-1]; last.State != ferry.MessageStateActive || last.Retried != 1 {
		t.Errorf("last event = %s with Retried %d, want ACTIVE with Retried 1", last.State, last.Retried)
	}
}

func testMarkFailed(t *testing.T, s store.Store) {
	want := newMessage("msg_fail", now)
	want.Header = http.Header{"Content-Type": {"application/json"}, "X-Multi": {"1", "2"}}
	want.Body = []byte(`{"order":42}`)
	insert(t, s, want, now)

	first := claimOne(t, s, "node-a", now, "msg_fail")
	if applied, err := s.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
		ID: first.ID, Attempts: first.Attempts, Now: now.Add(time.Second),
		Result: store.AttemptResult{Error: "dial tcp: connection refused"}, NextAt: now.Add(10 * time.Second),
	}); err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want true, nil", applied, err)
	}
	second := claimOne(t, s, "node-a", now.Add(10*time.Second), "msg_fail")

	failedAt := now.Add(11 * time.Second)
	result := store.AttemptResult{
		ResponseStatus: 500,
		ResponseHeader: http.Header{"Content-Type": {"text/plain"}, "X-Reason": {"a", "b"}},
		ResponseBody:   []byte("boom\x00\xff"),
		Error:          "HTTP 500 Internal Server Error",
	}
	dlqID, applied, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
		ID: second.ID, Attempts: second.Attempts, Now: failedAt, Result: result, DLQID: "dlq_01",
	})
	if err != nil || !applied || dlqID != "dlq_01" {
		t.Fatalf("MessageMarkFailed = %q, %v, %v; want dlq_01, true, nil", dlqID, applied, err)
	}

	got := get(t, s, "msg_fail")
	checkProgress(t, got, ferry.MessageStateFailed, 2, 1)
	checkLease(t, got, "", time.Time{})
	checkNextDueAt(t, s, time.Time{})

	events := messageEvents(t, s, "msg_fail")
	requireStates(t, events, ferry.MessageStateCreated, ferry.MessageStateActive, ferry.MessageStateError,
		ferry.MessageStateRetry, ferry.MessageStateActive, ferry.MessageStateError, ferry.MessageStateFailed)
	errorEvent, failedEvent := events[5], events[6]
	checkTime(t, "ERROR event Time", errorEvent.Time, failedAt)
	if errorEvent.Retried != 1 {
		t.Errorf("ERROR event Retried = %d, want 1", errorEvent.Retried)
	}
	if errorEvent.ResponseStatus != 500 {
		t.Errorf("ERROR event ResponseStatus = %d, want 500", errorEvent.ResponseStatus)
	}
	if !sameHeader(errorEvent.ResponseHeader, result.ResponseHeader) {
		t.Errorf("ERROR event ResponseHeader = %v, want %v", errorEvent.ResponseHeader, result.ResponseHeader)
	}
	if !bytes.Equal(errorEvent.ResponseBody, result.ResponseBody) {
		t.Errorf("ERROR event ResponseBody = %q, want %q", errorEvent.ResponseBody, result.ResponseBody)
	}
	if errorEvent.Error != result.Error {
		t.Errorf("ERROR event Error = %q, want %q", errorEvent.Error, result.Error)
	}
	checkTime(t, "FAILED event Time", failedEvent.Time, failedAt)
	if failedEvent.Retried != 1 {
		t.Errorf("FAILED event Retried = %d, want 1", failedEvent.Retried)
	}
	if failedEvent.ResponseStatus != 500 {
		t.Errorf("FAILED event ResponseStatus = %d, want 500", failedEvent.ResponseStatus)
	}
	if failedEvent.Error != result.Error {
		t.Errorf("FAILED event Error = %q, want %q", failedEvent.Error, result.Error)
	}

	entry, err := s.DLQGet(t.Context(), "dlq_01")
	if err != nil {
		t.Fatalf("DLQGet(dlq_01): %v", err)
	}
	if entry.ID != "dlq_01" {
		t.Errorf("DLQ entry ID = %q, want dlq_01", entry.ID)
	}
	checkTime(t, "DLQ entry CreatedAt", entry.CreatedAt, failedAt)
	if entry.ResponseStatus != 500 {
		t.Errorf("DLQ entry ResponseStatus = %d, want 500", entry.ResponseStatus)
	}
	if !sameHeader(entry.ResponseHeader, result.ResponseHeader) {
		t.Errorf("DLQ entry ResponseHeader = %v, want %v", entry.ResponseHeader, result.ResponseHeader)
	}
	if !bytes.Equal(entry.ResponseBody, result.ResponseBody) {
		t.Errorf("DLQ entry ResponseBody = %q, want %q", entry.ResponseBody, result.ResponseBody)
	}
	if entry.Error != result.Error {
		t.Errorf("DLQ entry Error = %q, want %q", entry.Error, result.Error)
	}
	if entry.Message == nil {
		t.Fatalf("DLQ entry Message is nil")
	}
	checkStoredFields(t, entry.Message, want)
	checkProgress(t, entry.Message, ferry.MessageStateFailed, 2, 1)
	checkTime(t, "DLQ entry Message.CreatedAt", entry.Message.CreatedAt, now)
}

func testMarkWithoutClaim(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_waiting", now), now)
	ctx := t.Context()
	result := store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"}

	for _, id := range []string{"msg_waiting", "msg_missing"} {
		if applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
			ID: id, Attempts: 0, Now: now, ResponseStatus: 200,
		}); err != nil || applied {
			t.Errorf("MessageMarkDelivered(%s) = %v, %v; want false, nil", id, applied, err)
		}
		if applied, err := s.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
			ID: id, Attempts: 0, Now: now, Result: result, NextAt: now.Add(time.Minute),
		}); err != nil || applied {
			t.Errorf("MessageMarkRetry(%s) = %v, %v; want false, nil", id, applied, err)
		}
		if dlqID, applied, err := s.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
			ID: id, Attempts: 0, Now: now, Result: result, DLQID: "dlq_" + id,
		}); err != nil || applied || dlqID != "" {
			t.Errorf("MessageMarkFailed(%s) = %q, %v, %v; want \"\", false, nil", id, dlqID, applied, err)
		}
	}

	got := get(t, s, "msg_waiting")
	checkProgress(t, got, ferry.MessageStateCreated, 0, 0)
	checkLease(t, got, "", now)
	requireStates(t, messageEvents(t, s, "msg_waiting"), ferry.MessageStateCreated)
	entries, err := s.DLQList(ctx, &store.DLQListParams{})
	if err != nil {
		t.Fatalf("DLQList: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("DLQList returned %d entries, want 0", len(entries))
	}
}

func testNextDueAt(t *testing.T, s store.Store) {
	checkNextDueAt(t, s, time.Time{})

	insert(t, s, newMessage("msg_late", now.Add(5*time.Second)), now)
	insert(t, s, newMessage("msg_early", now.Add(2*time.Second)), now)
	checkNextDueAt(t, s, now.Add(2*time.Second))

	// An ACTIVE message is due again when its lease expires.
	early := claimOne(t, s, "node-a", now.Add(2*time.Second), "msg_early")
	checkNextDueAt(t, s, now.Add(5*time.Second))

	late := claimOne(t, s, "node-a", now.Add(5*time.Second), "msg_late")
	checkNextDueAt(t, s, now.Add(2*time.Second).Add(defaultTimeout+leaseMargin))

	if applied, err := s.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: early.ID, Attempts: early.Attempts, Now: now.Add(6 * time.Second), ResponseStatus: 200,
	}); err != nil || !applied {
		t.Fatalf("MessageMarkDelivered = %v, %v; want true, nil", applied, err)
	}
	checkNextDueAt(t, s, now.Add(5*time.Second).Add(defaultTimeout+leaseMargin))

	if _, applied, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
		ID: late.ID, Attempts: late.Attempts, Now: now.Add(7 * time.Second),
		Result: store.AttemptResult{ResponseStatus: 400, Error: "HTTP 400"}, DLQID: "dlq_late",
	}); err != nil || !applied {
		t.Fatalf("MessageMarkFailed = %v, %v; want true, nil", applied, err)
	}
	checkNextDueAt(t, s, time.Time{})
}

func testReleaseLeases(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_done", now.Add(-4*time.Second)), now)
	insert(t, s, newMessage("msg_a1", now.Add(-3*time.Second)), now)
	insert(t, s, newMessage("msg_a2", now.Add(-2*time.Second)), now)
	insert(t, s, newMessage("msg_b1", now.Add(-1*time.Second)), now)
	insert(t, s, newMessage("msg_waiting", now.Add(time.Hour)), now)

	done := claim(t, s, "node-a", now, 1)
	if got := messageIDs(done); !slices.Equal(got, []string{"msg_done"}) {
		t.Fatalf("claimed %v, want [msg_done]", got)
	}
	if applied, err := s.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: "msg_done", Attempts: 1, Now: now, ResponseStatus: 200,
	}); err != nil || !applied {
		t.Fatalf("MessageMarkDelivered = %v, %v; want true, nil", applied, err)
	}
	if got := messageIDs(claim(t, s, "node-a", now, 2)); !slices.Equal(got, []string{"msg_a1", "msg_a2"}) {
		t.Fatalf("node-a claimed %v, want [msg_a1 msg_a2]", got)
	}
	if got := messageIDs(claim(t, s, "node-b", now, 10)); !slices.Equal(got, []string{"msg_b1"}) {
		t.Fatalf("node-b claimed %v, want [msg_b1]", got)
	}

	releasedAt := now.Add(time.Second)
	n, err := s.MessageReleaseLeases(t.Context(), "node-a", releasedAt)
	if err != nil {
		t.Fatalf("MessageReleaseLeases(node-a): %v", err)
	}
	if n != 2 {
		t.Errorf("MessageReleaseLeases(node-a) = %d, want 2", n)
	}

	for _, id := range []string{"msg_a1", "msg_a2"} {
		m := get(t, s, id)
		checkProgress(t, m, ferry.MessageStateActive, 1, 0)
		checkTime(t, id+" DueAt", m.DueAt, releasedAt)
	}
	b1 := get(t, s, "msg_b1")
	checkProgress(t, b1, ferry.MessageStateActive, 1, 0)
	checkLease(t, b1, "node-b", now.Add(defaultTimeout+leaseMargin))
	checkLease(t, get(t, s, "msg_waiting"), "", now.Add(time.Hour))
	doneMsg := get(t, s, "msg_done")
	checkProgress(t, doneMsg, ferry.MessageStateDelivered, 1, 0)
	checkLease(t, doneMsg, "", time.Time{})

	if n, err := s.MessageReleaseLeases(t.Context(), "node-c", releasedAt); err != nil || n != 0 {
		t.Errorf("MessageReleaseLeases(node-c) = %d, %v; want 0, nil", n, err)
	}

	reclaimed := claim(t, s, "node-c", releasedAt, 10)
	if got := messageIDs(reclaimed); !slices.Equal(got, []string{"msg_a1", "msg_a2"}) {
		t.Fatalf("claim after release = %v, want [msg_a1 msg_a2]", got)
	}
	for _, m := range reclaimed {
		checkProgress(t, m, ferry.MessageStateActive, 2, 0)
		checkLease(t, m, "node-c", releasedAt.Add(defaultTimeout+leaseMargin))
	}
}

// eventKey is the message id and state of an event.
type eventKey struct {
	messageID string
	state     ferry.MessageState
}

func eventKeys(events []*ferry.Event) []eventKey {
	keys := make([]eventKey, len(events))
	for i, e := range events {
		keys[i] = eventKey{e.MessageID, e.State}
	}
	return keys
}

func testEventList(t *testing.T, s store.Store) {
	for i, id := range []string{"msg_1", "msg_2", "msg_3"} {
		insert(t, s, newMessage(id, now.Add(time.Duration(i)*time.Millisecond)), now)
	}
	claimed := claim(t, s, "node-a", now.Add(time.Second), 10)
	if len(claimed) != 3 {
		t.Fatalf("claimed %d messages, want 3", len(claimed))
	}

	ctx := t.Context()
	all, err := s.EventList(ctx, &store.EventListParams{})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	created, active := ferry.MessageStateCreated, ferry.MessageStateActive
	want := []eventKey{
		{"msg_1", created}, {"msg_2", created}, {"msg_3", created},
		{"msg_1", active}, {"msg_2", active}, {"msg_3", active},
	}
	if got := eventKeys(all); !slices.Equal(got, want) {
		t.Fatalf("EventList = %v, want %v", got, want)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("event %d has id %d, not after id %d of the event before it", i, all[i].ID, all[i-1].ID)
		}
	}

	cases := []struct {
		name   string
		params store.EventListParams
		want   []eventKey
	}{
		{"by message", store.EventListParams{MessageID: "msg_2"}, []eventKey{{"msg_2", created}, {"msg_2", active}}},
		{"after id", store.EventListParams{AfterID: all[2].ID}, want[3:]},
		{"limit", store.EventListParams{Limit: 2}, want[:2]},
		{"after id and limit", store.EventListParams{AfterID: all[1].ID, Limit: 2}, want[2:4]},
		{"message and after id", store.EventListParams{MessageID: "msg_3", AfterID: all[2].ID}, []eventKey{{"msg_3", active}}},
		{"after last", store.EventListParams{AfterID: all[5].ID}, []eventKey{}},
		{"unknown message", store.EventListParams{MessageID: "msg_missing"}, []eventKey{}},
	}
	for _, tc := range cases {
		got, err := s.EventList(ctx, &tc.params)
		if err != nil {
			t.Errorf("EventList(%s): %v", tc.name, err)
			continue
		}
		if keys := eventKeys(got); !slices.Equal(keys, tc.want) {
			t.Errorf("EventList(%s) = %v, want %v", tc.name, keys, tc.want)
		}
	}
}

func testDLQGetNotFound(t *testing.T, s store.Store) {
	_, err := s.DLQGet(t.Context(), "dlq_missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DLQGet(dlq_missing) error = %v, want store.ErrNotFound", err)
	}
}

func testDLQListPaging(t *testing.T, s store.Store) {
	// The entries are created out of id order, and DLQList sorts by id.
	failures := []struct {
		messageID, dlqID string
		result           store.AttemptResult
	}{
		{"msg_b", "dlq_02", store.AttemptResult{ResponseStatus: 404, ResponseBody: []byte("no such hook"), Error: "HTTP 404"}},
		{"msg_a", "dlq_01", store.AttemptResult{Error: "dial tcp: connection refused"}},
		{"msg_c", "dlq_03", store.AttemptResult{ResponseStatus: 410, Error: "HTTP 410"}},
	}
	for i, f := range failures {
		at := now.Add(time.Duration(i) * time.Second)
		insert(t, s, newMessage(f.messageID, at), at)
		m := claimOne(t, s, "node-a", at, f.messageID)
		if _, applied, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
			ID: m.ID, Attempts: m.Attempts, Now: at, Result: f.result, DLQID: f.dlqID,
		}); err != nil || !applied {
			t.Fatalf("MessageMarkFailed(%s) = %v, %v; want true, nil", m.ID, applied, err)
		}
	}

	cases := []struct {
		name   string
		params store.DLQListParams
		want   []string
	}{
		{"all", store.DLQListParams{}, []string{"dlq_01", "dlq_02", "dlq_03"}},
		{"first page", store.DLQListParams{Limit: 2}, []string{"dlq_01", "dlq_02"}},
		{"second page", store.DLQListParams{AfterID: "dlq_02", Limit: 2}, []string{"dlq_03"}},
		{"after last", store.DLQListParams{AfterID: "dlq_03"}, []string{}},
	}
	for _, tc := range cases {
		entries, err := s.DLQList(t.Context(), &tc.params)
		if err != nil {
			t.Fatalf("DLQList(%s): %v", tc.name, err)
		}
		got := make([]string, len(entries))
		for i, e := range entries {
			got[i] = e.ID
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("DLQList(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}

	entries, err := s.DLQList(t.Context(), &store.DLQListParams{})
	if err != nil {
		t.Fatalf("DLQList: %v", err)
	}
	byID := map[string]*ferry.DLQEntry{}
	for _, e := range entries {
		byID[e.ID] = e
	}
	for i, f := range failures {
		e := byID[f.dlqID]
		if e == nil {
			t.Errorf("DLQList lacks %s", f.dlqID)
			continue
		}
		if e.Message == nil || e.Message.ID != f.messageID {
			t.Errorf("entry %s Message = %+v, want message %s", f.dlqID, e.Message, f.messageID)
		}
		checkTime(t, f.dlqID+" CreatedAt", e.CreatedAt, now.Add(time.Duration(i)*time.Second))
		if e.ResponseStatus != f.result.ResponseStatus {
			t.Errorf("entry %s ResponseStatus = %d, want %d", f.dlqID, e.ResponseStatus, f.result.ResponseStatus)
		}
		if !bytes.Equal(e.ResponseBody, f.result.ResponseBody) {
			t.Errorf("entry %s ResponseBody = %q, want %q", f.dlqID, e.ResponseBody, f.result.ResponseBody)
		}
		if len(e.ResponseHeader) != 0 {
			t.Errorf("entry %s ResponseHeader = %v, want empty", f.dlqID, e.ResponseHeader)
		}
		if e.Error != f.result.Error {
			t.Errorf("entry %s Error = %q, want %q", f.dlqID, e.Error, f.result.Error)
		}
	}
}

func testSigningKeysInitKeepsFirst(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := store.SigningKeys{Current: "sig_current_1", Next: "sig_next_1"}
	got, err := s.SigningKeysInit(ctx, first)
	if err != nil {
		t.Fatalf("SigningKeysInit(first): %v", err)
	}
	if got != first {
		t.Errorf("SigningKeysInit(first) = %+v, want %+v", got, first)
	}

	got, err = s.SigningKeysInit(ctx, store.SigningKeys{Current: "sig_current_2", Next: "sig_next_2"})
	if err != nil {
		t.Fatalf("SigningKeysInit(second): %v", err)
	}
	if got != first {
		t.Errorf("SigningKeysInit(second) = %+v, want the first keys %+v", got, first)
	}

	got, err = s.SigningKeysGet(ctx)
	if err != nil {
		t.Fatalf("SigningKeysGet: %v", err)
	}
	if got != first {
		t.Errorf("SigningKeysGet = %+v, want %+v", got, first)
	}
}

func testSigningKeysSetReplaces(t *testing.T, s store.Store) {
	ctx := t.Context()
	set := store.SigningKeys{Current: "sig_current_set", Next: "sig_next_set"}
	if err := s.SigningKeysSet(ctx, set); err != nil {
		t.Fatalf("SigningKeysSet on an empty store: %v", err)
	}
	if got, err := s.SigningKeysGet(ctx); err != nil || got != set {
		t.Errorf("SigningKeysGet = %+v, %v; want %+v, nil", got, err, set)
	}

	replaced := store.SigningKeys{Current: "sig_current_new", Next: "sig_next_new"}
	if err := s.SigningKeysSet(ctx, replaced); err != nil {
		t.Fatalf("SigningKeysSet: %v", err)
	}
	if got, err := s.SigningKeysGet(ctx); err != nil || got != replaced {
		t.Errorf("SigningKeysGet after Set = %+v, %v; want %+v, nil", got, err, replaced)
	}

	got, err := s.SigningKeysInit(ctx, store.SigningKeys{Current: "sig_current_init", Next: "sig_next_init"})
	if err != nil {
		t.Fatalf("SigningKeysInit: %v", err)
	}
	if got != replaced {
		t.Errorf("SigningKeysInit after Set = %+v, want %+v", got, replaced)
	}
}

func testSigningKeysGetEmpty(t *testing.T, s store.Store) {
	_, err := s.SigningKeysGet(t.Context())
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SigningKeysGet on an empty store error = %v, want store.ErrNotFound", err)
	}
}
