package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// manager is the part of the store contract that the operator API and the
// retention cleaner use.
type manager interface {
	MessageCancel(ctx context.Context, params *store.MessageCancelParams) (int, error)
	DLQDelete(ctx context.Context, params *store.DLQDeleteParams) (int, error)
	DLQRetry(ctx context.Context, params *store.DLQRetryParams) (*ferry.Message, error)
	SigningKeysRotate(ctx context.Context, newNext string) (store.SigningKeys, error)
	MessageDeleteFinished(ctx context.Context, params *store.CleanupParams) (int, error)
	EventDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error)
	DLQDeleteBefore(ctx context.Context, params *store.CleanupParams) (int, error)
	DedupDeleteExpired(ctx context.Context, params *store.CleanupParams) (int, error)
}

// asManager returns s as a manager, or skips the test when s lacks those
// methods.
func asManager(t *testing.T, s store.Store) manager {
	t.Helper()
	m, ok := s.(manager)
	if !ok {
		t.Skipf("%T does not implement the management methods", s)
	}
	return m
}

// deliver records a 200 response for the claimed message m at time at.
func deliver(t *testing.T, s store.Store, m *ferry.Message, at time.Time, callbacks ...*ferry.Message) {
	t.Helper()
	applied, err := s.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, ResponseStatus: 200, Callbacks: callbacks,
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkDelivered(%s) = %v, %v; want true, nil", m.ID, applied, err)
	}
}

// fail records the final failure of the claimed message m at time at.
func fail(t *testing.T, s store.Store, m *ferry.Message, at time.Time, dlqID string, result store.AttemptResult) {
	t.Helper()
	_, applied, err := s.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, Result: result, DLQID: dlqID,
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkFailed(%s) = %v, %v; want true, nil", m.ID, applied, err)
	}
}

// requireNotFound fails the test unless message id is gone.
func requireNotFound(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.MessageGet(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MessageGet(%s) error = %v, want store.ErrNotFound", id, err)
	}
}

func testMarkStoresCallbacks(t *testing.T, s store.Store) {
	insert(t, s, newMessage("msg_ok", now), now)
	insert(t, s, newMessage("msg_retry", now.Add(time.Millisecond)), now)
	insert(t, s, newMessage("msg_fail", now.Add(2*time.Millisecond)), now)
	claimed := claim(t, s, "node-a", now.Add(time.Second), 10)
	if len(claimed) != 3 {
		t.Fatalf("claimed %v, want 3 messages", messageIDs(claimed))
	}
	ok, retry, failed := claimed[0], claimed[1], claimed[2]

	callback := func(id, of string) *ferry.Message {
		m := newMessage(id, now.Add(time.Minute))
		m.CallbackOf = of
		return m
	}
	ctx := t.Context()
	markedAt := now.Add(2 * time.Second)

	// A dropped transition stores no callback.
	if applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
		ID: ok.ID, Attempts: ok.Attempts + 1, Now: markedAt, ResponseStatus: 200,
		Callbacks: []*ferry.Message{callback("msg_cb_stale", ok.ID)},
	}); err != nil || applied {
		t.Fatalf("stale MessageMarkDelivered = %v, %v; want false, nil", applied, err)
	}
	requireNotFound(t, s, "msg_cb_stale")

	deliver(t, s, ok, markedAt, callback("msg_cb_ok", ok.ID))
	if applied, err := s.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: retry.ID, Attempts: retry.Attempts, Now: markedAt, Result: store.AttemptResult{ResponseStatus: 500},
		NextAt: now.Add(time.Hour), Callbacks: []*ferry.Message{callback("msg_cb_retry", retry.ID)},
	}); err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want true, nil", applied, err)
	}
	if _, applied, err := s.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: failed.ID, Attempts: failed.Attempts, Now: markedAt, Result: store.AttemptResult{ResponseStatus: 400},
		DLQID: "dlq_01", Callbacks: []*ferry.Message{callback("msg_cb_fail", failed.ID), callback("msg_cb_fail2", failed.ID)},
	}); err != nil || !applied {
		t.Fatalf("MessageMarkFailed = %v, %v; want true, nil", applied, err)
	}

	for id, of := range map[string]string{
		"msg_cb_ok": "msg_ok", "msg_cb_retry": "msg_retry", "msg_cb_fail": "msg_fail", "msg_cb_fail2": "msg_fail",
	} {
		cb := get(t, s, id)
		checkProgress(t, cb, ferry.MessageStateCreated, 0, 0)
		checkTime(t, id+" CreatedAt", cb.CreatedAt, markedAt)
		checkLease(t, cb, "", now.Add(time.Minute))
		if cb.CallbackOf != of {
			t.Errorf("%s CallbackOf = %q, want %q", id, cb.CallbackOf, of)
		}
		events := messageEvents(t, s, id)
		requireStates(t, events, ferry.MessageStateCreated)
		checkTime(t, id+" CREATED event Time", events[0].Time, markedAt)
	}
}

func testEventListFilterOrder(t *testing.T, s store.Store) {
	m1 := newMessage("msg_1", now)
	m1.URL = "https://a.example/orders"
	m1.TopicName = "orders"
	m1.Labels = []string{"eu", "vip"}
	m2 := newMessage("msg_2", now.Add(time.Millisecond))
	m2.URL = "https://b.example/refunds"
	m2.QueueName = "queue-1"
	m2.Labels = []string{"us"}
	m3 := newMessage("msg_3", now.Add(2*time.Millisecond))
	m3.URL = "https://b.example/orders"
	m3.CallerIP = "198.51.100.9"
	for i, m := range []*ferry.Message{m1, m2, m3} {
		insert(t, s, m, now.Add(time.Duration(i)*time.Second))
	}
	if got := claim(t, s, "node-a", now.Add(3*time.Second), 10); len(got) != 3 {
		t.Fatalf("claimed %v, want 3 messages", messageIDs(got))
	}

	ctx := t.Context()
	all, err := s.EventList(ctx, &store.EventListParams{})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	if len(all) != 6 {
		t.Fatalf("EventList returned %d events, want 6", len(all))
	}
	for _, e := range all {
		if e.Message == nil || e.Message.ID != e.MessageID {
			t.Errorf("event %d of %s has Message %+v, want its message", e.ID, e.MessageID, e.Message)
		}
	}
	if m := all[0].Message; m != nil && (m.TopicName != "orders" || m.State != ferry.MessageStateActive) {
		t.Errorf("event message = topic %q, state %s; want topic orders, state ACTIVE", m.TopicName, m.State)
	}

	created, active := ferry.MessageStateCreated, ferry.MessageStateActive
	cases := []struct {
		name   string
		params store.EventListParams
		want   []eventKey
	}{
		{"newest first", store.EventListParams{NewestFirst: true, Limit: 2},
			[]eventKey{{"msg_3", active}, {"msg_2", active}}},
		{"before id", store.EventListParams{BeforeID: all[3].ID},
			[]eventKey{{"msg_3", created}, {"msg_2", created}, {"msg_1", created}}},
		{"state", store.EventListParams{Filter: &store.MessageFilter{States: []ferry.MessageState{active}}},
			[]eventKey{{"msg_1", active}, {"msg_2", active}, {"msg_3", active}}},
		{"label", store.EventListParams{Filter: &store.MessageFilter{Labels: []string{"vip", "none"}}},
			[]eventKey{{"msg_1", created}, {"msg_1", active}}},
		{"host", store.EventListParams{Filter: &store.MessageFilter{Hosts: []string{"b.example"}, States: []ferry.MessageState{created}}},
			[]eventKey{{"msg_2", created}, {"msg_3", created}}},
		{"path", store.EventListParams{Filter: &store.MessageFilter{Paths: []string{"/orders"}, States: []ferry.MessageState{active}}},
			[]eventKey{{"msg_1", active}, {"msg_3", active}}},
		{"url", store.EventListParams{Filter: &store.MessageFilter{URLs: []string{"https://b.example/refunds"}}},
			[]eventKey{{"msg_2", created}, {"msg_2", active}}},
		{"topic", store.EventListParams{Filter: &store.MessageFilter{TopicNames: []string{"orders"}}},
			[]eventKey{{"msg_1", created}, {"msg_1", active}}},
		{"queue", store.EventListParams{Filter: &store.MessageFilter{QueueNames: []string{"queue-1"}}},
			[]eventKey{{"msg_2", created}, {"msg_2", active}}},
		{"caller ip", store.EventListParams{Filter: &store.MessageFilter{CallerIPs: []string{"198.51.100.9"}}},
			[]eventKey{{"msg_3", created}, {"msg_3", active}}},
		{"message ids", store.EventListParams{Filter: &store.MessageFilter{MessageIDs: []string{"msg_1", "msg_3"}, States: []ferry.MessageState{created}}},
			[]eventKey{{"msg_1", created}, {"msg_3", created}}},
		{"time range", store.EventListParams{Filter: &store.MessageFilter{From: now.Add(time.Second), To: now.Add(2 * time.Second)}},
			[]eventKey{{"msg_2", created}, {"msg_3", created}}},
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

// failThree stores three failed messages with dead-letter entries dlq_01
// (status 404, label eu), dlq_02 (no response) and dlq_03 (status 410),
// created one second apart from now.
func failThree(t *testing.T, s store.Store) {
	t.Helper()
	failures := []struct {
		messageID, dlqID string
		labels           []string
		result           store.AttemptResult
	}{
		{"msg_a", "dlq_01", []string{"eu"}, store.AttemptResult{ResponseStatus: 404, Error: "HTTP 404"}},
		{"msg_b", "dlq_02", nil, store.AttemptResult{Error: "dial tcp: connection refused"}},
		{"msg_c", "dlq_03", nil, store.AttemptResult{ResponseStatus: 410, Error: "HTTP 410"}},
	}
	for i, f := range failures {
		at := now.Add(time.Duration(i) * time.Second)
		m := newMessage(f.messageID, at)
		m.Labels = f.labels
		insert(t, s, m, at)
		fail(t, s, claimOne(t, s, "node-a", at, f.messageID), at, f.dlqID, f.result)
	}
}

// dlqIDs lists the ids of the entries that params select.
func dlqIDs(t *testing.T, s store.Store, params store.DLQListParams) []string {
	t.Helper()
	entries, err := s.DLQList(t.Context(), &params)
	if err != nil {
		t.Fatalf("DLQList(%+v): %v", params, err)
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

func testDLQListFilterOrder(t *testing.T, s store.Store) {
	failThree(t, s)

	cases := []struct {
		name   string
		params store.DLQListParams
		want   []string
	}{
		{"newest first", store.DLQListParams{NewestFirst: true, Limit: 2}, []string{"dlq_03", "dlq_02"}},
		{"newest first after id", store.DLQListParams{NewestFirst: true, AfterID: "dlq_02"}, []string{"dlq_01"}},
		{"ids", store.DLQListParams{IDs: []string{"dlq_03", "dlq_01", "dlq_missing"}}, []string{"dlq_01", "dlq_03"}},
		{"ids ignore filter", store.DLQListParams{IDs: []string{"dlq_02"}, Filter: &store.MessageFilter{ResponseStatuses: []int{404}}},
			[]string{"dlq_02"}},
		{"status", store.DLQListParams{Filter: &store.MessageFilter{ResponseStatuses: []int{404, 410}}}, []string{"dlq_01", "dlq_03"}},
		{"label", store.DLQListParams{Filter: &store.MessageFilter{Labels: []string{"eu"}}}, []string{"dlq_01"}},
		{"message id", store.DLQListParams{Filter: &store.MessageFilter{MessageIDs: []string{"msg_b"}}}, []string{"dlq_02"}},
		{"time range", store.DLQListParams{Filter: &store.MessageFilter{From: now.Add(time.Second)}}, []string{"dlq_02", "dlq_03"}},
	}
	for _, tc := range cases {
		if got := dlqIDs(t, s, tc.params); !slices.Equal(got, tc.want) {
			t.Errorf("DLQList(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testMessageCancelAll(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	ctx := t.Context()

	insert(t, s, newMessage("msg_done", now), now)
	insert(t, s, newMessage("msg_active", now.Add(time.Millisecond)), now)
	insert(t, s, newMessage("msg_retry", now.Add(2*time.Millisecond)), now)
	insert(t, s, newMessage("msg_waiting", now.Add(time.Hour)), now)
	deliver(t, s, claimOne(t, s, "node-a", now, "msg_done"), now)
	active := claimOne(t, s, "node-a", now.Add(time.Millisecond), "msg_active")
	retry := claimOne(t, s, "node-a", now.Add(2*time.Millisecond), "msg_retry")
	if applied, err := s.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: retry.ID, Attempts: retry.Attempts, Now: now, Result: store.AttemptResult{ResponseStatus: 503},
		NextAt: now.Add(time.Minute),
	}); err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want true, nil", applied, err)
	}

	canceledAt := now.Add(time.Second)
	n, err := mgr.MessageCancel(ctx, &store.MessageCancelParams{Now: canceledAt})
	if err != nil {
		t.Fatalf("MessageCancel: %v", err)
	}
	if n != 3 {
		t.Errorf("MessageCancel = %d, want 3", n)
	}

	for _, id := range []string{"msg_active", "msg_retry", "msg_waiting"} {
		m := get(t, s, id)
		if m.State != ferry.MessageStateCanceled {
			t.Errorf("%s State = %s, want CANCELED", id, m.State)
		}
		checkLease(t, m, "", time.Time{})
	}
	if m := get(t, s, "msg_done"); m.State != ferry.MessageStateDelivered {
		t.Errorf("msg_done State = %s, want DELIVERED", m.State)
	}

	activeEvents := messageEvents(t, s, "msg_active")
	requireStates(t, activeEvents, ferry.MessageStateCreated, ferry.MessageStateActive,
		ferry.MessageStateCancelRequested, ferry.MessageStateCanceled)
	checkTime(t, "CANCELED event Time", activeEvents[3].Time, canceledAt)
	requireStates(t, messageEvents(t, s, "msg_waiting"), ferry.MessageStateCreated, ferry.MessageStateCanceled)
	requireStates(t, messageEvents(t, s, "msg_retry"), ferry.MessageStateCreated, ferry.MessageStateActive,
		ferry.MessageStateError, ferry.MessageStateRetry, ferry.MessageStateCanceled)

	// The attempt in flight finishes after the cancel, and its result is
	// dropped.
	if applied, err := s.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
		ID: active.ID, Attempts: active.Attempts, Now: canceledAt, ResponseStatus: 200,
	}); err != nil || applied {
		t.Errorf("MessageMarkDelivered after cancel = %v, %v; want false, nil", applied, err)
	}
	checkNextDueAt(t, s, time.Time{})

	if n, err := mgr.MessageCancel(ctx, &store.MessageCancelParams{Now: canceledAt}); err != nil || n != 0 {
		t.Errorf("second MessageCancel = %d, %v; want 0, nil", n, err)
	}
}

func testMessageCancelSelect(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	ctx := t.Context()
	for i, id := range []string{"msg_1", "msg_2", "msg_3", "msg_4", "msg_5"} {
		m := newMessage(id, now.Add(time.Hour))
		if i >= 2 {
			m.Labels = []string{"batch"}
		}
		insert(t, s, m, now.Add(time.Duration(i)*time.Second))
	}

	n, err := mgr.MessageCancel(ctx, &store.MessageCancelParams{
		IDs: []string{"msg_1", "msg_3", "msg_missing"}, Filter: &store.MessageFilter{Labels: []string{"none"}}, Now: now,
	})
	if err != nil || n != 2 {
		t.Errorf("MessageCancel(ids) = %d, %v; want 2, nil", n, err)
	}

	// The filter matches msg_4 and msg_5, and the limit takes the oldest.
	n, err = mgr.MessageCancel(ctx, &store.MessageCancelParams{
		Filter: &store.MessageFilter{Labels: []string{"batch"}}, Limit: 1, Now: now,
	})
	if err != nil || n != 1 {
		t.Errorf("MessageCancel(label, limit 1) = %d, %v; want 1, nil", n, err)
	}

	want := map[string]ferry.MessageState{
		"msg_1": ferry.MessageStateCanceled, "msg_2": ferry.MessageStateCreated, "msg_3": ferry.MessageStateCanceled,
		"msg_4": ferry.MessageStateCanceled, "msg_5": ferry.MessageStateCreated,
	}
	for id, state := range want {
		if got := get(t, s, id).State; got != state {
			t.Errorf("%s State = %s, want %s", id, got, state)
		}
	}
}

func testDLQDelete(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	ctx := t.Context()
	failThree(t, s)

	steps := []struct {
		name   string
		params store.DLQDeleteParams
		want   int
		left   []string
	}{
		{"ids", store.DLQDeleteParams{IDs: []string{"dlq_02", "dlq_missing"}}, 1, []string{"dlq_01", "dlq_03"}},
		{"status", store.DLQDeleteParams{Filter: &store.MessageFilter{ResponseStatuses: []int{404}}}, 1, []string{"dlq_03"}},
		{"limit", store.DLQDeleteParams{Limit: 5}, 1, []string{}},
	}
	for _, step := range steps {
		n, err := mgr.DLQDelete(ctx, &step.params)
		if err != nil {
			t.Fatalf("DLQDelete(%s): %v", step.name, err)
		}
		if n != step.want {
			t.Errorf("DLQDelete(%s) = %d, want %d", step.name, n, step.want)
		}
		if got := dlqIDs(t, s, store.DLQListParams{}); !slices.Equal(got, step.left) {
			t.Errorf("entries after DLQDelete(%s) = %v, want %v", step.name, got, step.left)
		}
	}

	// The messages stay, and only their entries are gone.
	if m := get(t, s, "msg_a"); m.State != ferry.MessageStateFailed {
		t.Errorf("msg_a State = %s, want FAILED", m.State)
	}
}

func testDLQRetry(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	ctx := t.Context()
	failThree(t, s)

	retriedAt := now.Add(time.Minute)
	var buildGot *ferry.Message
	created, err := mgr.DLQRetry(ctx, &store.DLQRetryParams{
		DLQID: "dlq_01",
		Build: func(failed *ferry.Message) (*ferry.Message, error) {
			buildGot = failed
			m := newMessage("msg_again", retriedAt)
			m.Body = failed.Body
			return m, nil
		},
		Now: retriedAt,
	})
	if err != nil {
		t.Fatalf("DLQRetry(dlq_01): %v", err)
	}
	if buildGot == nil || buildGot.ID != "msg_a" || buildGot.State != ferry.MessageStateFailed {
		t.Errorf("Build got %+v, want the FAILED message msg_a", buildGot)
	}
	if created == nil || created.ID != "msg_again" {
		t.Fatalf("DLQRetry returned %+v, want msg_again", created)
	}

	again := get(t, s, "msg_again")
	checkProgress(t, again, ferry.MessageStateCreated, 0, 0)
	checkTime(t, "msg_again CreatedAt", again.CreatedAt, retriedAt)
	if string(again.Body) != "body of msg_a" {
		t.Errorf("msg_again Body = %q, want the failed message's body", again.Body)
	}
	requireStates(t, messageEvents(t, s, "msg_again"), ferry.MessageStateCreated)
	if _, err := s.DLQGet(ctx, "dlq_01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DLQGet(dlq_01) after retry error = %v, want store.ErrNotFound", err)
	}

	build := func(*ferry.Message) (*ferry.Message, error) { return newMessage("msg_never", now), nil }
	if _, err := mgr.DLQRetry(ctx, &store.DLQRetryParams{DLQID: "dlq_01", Build: build, Now: retriedAt}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DLQRetry(dlq_01) error = %v, want store.ErrNotFound", err)
	}

	errBuild := errors.New("invalid destination")
	_, err = mgr.DLQRetry(ctx, &store.DLQRetryParams{
		DLQID: "dlq_02",
		Build: func(*ferry.Message) (*ferry.Message, error) { return nil, errBuild },
		Now:   retriedAt,
	})
	if !errors.Is(err, errBuild) {
		t.Errorf("DLQRetry with a failing Build error = %v, want %v", err, errBuild)
	}
	if _, err := s.DLQGet(ctx, "dlq_02"); err != nil {
		t.Errorf("DLQGet(dlq_02) after a failed retry: %v, want the entry kept", err)
	}
	requireNotFound(t, s, "msg_never")
}

func testSigningKeysRotate(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	ctx := t.Context()

	if _, err := mgr.SigningKeysRotate(ctx, "sig_next_2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SigningKeysRotate on an empty store error = %v, want store.ErrNotFound", err)
	}

	if _, err := s.SigningKeysInit(ctx, store.SigningKeys{Current: "sig_current_1", Next: "sig_next_1"}); err != nil {
		t.Fatalf("SigningKeysInit: %v", err)
	}
	want := store.SigningKeys{Current: "sig_next_1", Next: "sig_next_2"}
	got, err := mgr.SigningKeysRotate(ctx, "sig_next_2")
	if err != nil || got != want {
		t.Errorf("SigningKeysRotate = %+v, %v; want %+v, nil", got, err, want)
	}
	if got, err := s.SigningKeysGet(ctx); err != nil || got != want {
		t.Errorf("SigningKeysGet after rotation = %+v, %v; want %+v, nil", got, err, want)
	}
}

// cleanup runs one retention delete with the given cutoff and limit.
func cleanup(t *testing.T, name string, del func(context.Context, *store.CleanupParams) (int, error),
	before time.Time, limit, want int) {
	t.Helper()
	n, err := del(t.Context(), &store.CleanupParams{Before: before, Limit: limit})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if n != want {
		t.Errorf("%s(before %v, limit %d) = %d, want %d", name, before, limit, n, want)
	}
}

func testCleanupRetention(t *testing.T, s store.Store) {
	mgr := asManager(t, s)

	insert(t, s, newMessage("msg_delivered_old", now), now)
	insert(t, s, newMessage("msg_failed_old", now.Add(10*time.Millisecond)), now)
	insert(t, s, newMessage("msg_canceled_old", now.Add(time.Hour)), now)
	insert(t, s, newMessage("msg_delivered_new", now.Add(2*time.Hour)), now)
	insert(t, s, newMessage("msg_waiting", now.Add(3*time.Hour)), now)

	deliver(t, s, claimOne(t, s, "node-a", now, "msg_delivered_old"), now.Add(time.Second))
	fail(t, s, claimOne(t, s, "node-a", now.Add(10*time.Millisecond), "msg_failed_old"), now.Add(3*time.Second),
		"dlq_old", store.AttemptResult{ResponseStatus: 400})
	if n, err := mgr.MessageCancel(t.Context(), &store.MessageCancelParams{
		IDs: []string{"msg_canceled_old"}, Now: now.Add(2 * time.Second),
	}); err != nil || n != 1 {
		t.Fatalf("MessageCancel = %d, %v; want 1, nil", n, err)
	}
	deliver(t, s, claimOne(t, s, "node-a", now.Add(2*time.Hour), "msg_delivered_new"), now.Add(2*time.Hour))

	cutoff := now.Add(time.Hour)
	cleanup(t, "MessageDeleteFinished", mgr.MessageDeleteFinished, cutoff, 1, 1)
	cleanup(t, "MessageDeleteFinished", mgr.MessageDeleteFinished, cutoff, 10, 1)
	cleanup(t, "MessageDeleteFinished", mgr.MessageDeleteFinished, cutoff, 10, 0)
	requireNotFound(t, s, "msg_delivered_old")
	requireNotFound(t, s, "msg_canceled_old")
	for _, id := range []string{"msg_failed_old", "msg_delivered_new", "msg_waiting"} {
		get(t, s, id)
	}

	// A failed message stays while its dead-letter entry exists.
	cleanup(t, "DLQDeleteBefore", mgr.DLQDeleteBefore, now.Add(3*time.Second), 10, 0)
	cleanup(t, "DLQDeleteBefore", mgr.DLQDeleteBefore, cutoff, 10, 1)
	cleanup(t, "MessageDeleteFinished", mgr.MessageDeleteFinished, cutoff, 10, 1)
	requireNotFound(t, s, "msg_failed_old")

	// Before the cutoff lie 5 CREATED events, ACTIVE and DELIVERED of
	// msg_delivered_old, ACTIVE, ERROR and FAILED of msg_failed_old, and
	// CANCELED of msg_canceled_old.
	cleanup(t, "EventDeleteBefore", mgr.EventDeleteBefore, cutoff, 5, 5)
	cleanup(t, "EventDeleteBefore", mgr.EventDeleteBefore, cutoff, 100, 6)
	events, err := s.EventList(t.Context(), &store.EventListParams{})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	want := []eventKey{{"msg_delivered_new", ferry.MessageStateActive}, {"msg_delivered_new", ferry.MessageStateDelivered}}
	if got := eventKeys(events); !slices.Equal(got, want) {
		t.Errorf("events after cleanup = %v, want %v", got, want)
	}
}

func testDedupDeleteExpired(t *testing.T, s store.Store) {
	mgr := asManager(t, s)
	insertWithDedup(t, s, newMessage("msg_short", now), "order-1", now)
	long := newMessage("msg_long", now)
	long.DeduplicationID = "order-2"
	if _, err := s.MessageInsert(t.Context(), &store.MessageInsertParams{
		Message: long, DeduplicationWindow: time.Hour, Now: now,
	}); err != nil {
		t.Fatalf("MessageInsert(msg_long): %v", err)
	}

	expiry := now.Add(10 * time.Minute)
	cleanup(t, "DedupDeleteExpired", mgr.DedupDeleteExpired, expiry, 10, 0)
	cleanup(t, "DedupDeleteExpired", mgr.DedupDeleteExpired, expiry.Add(time.Millisecond), 10, 1)

	// The unexpired id still deduplicates.
	res := insertWithDedup(t, s, newMessage("msg_long_again", now), "order-2", now.Add(20*time.Minute))
	if res.MessageID != "msg_long" || !res.Deduplicated {
		t.Errorf("insert with the unexpired id = %+v, want msg_long deduplicated", *res)
	}
	res = insertWithDedup(t, s, newMessage("msg_short_again", now), "order-1", now.Add(20*time.Minute))
	if res.MessageID != "msg_short_again" || res.Deduplicated {
		t.Errorf("insert with the deleted id = %+v, want msg_short_again stored", *res)
	}
}
