package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// queueTests are the conformance tests of queues, URL groups and flow
// control.
func queueTests() []struct {
	name string
	fn   func(t *testing.T, s store.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"QueueUpsertGetList", testQueueUpsertGetList},
		{"QueueCreatedByInsert", testQueueCreatedByInsert},
		{"QueueDeleteCancels", testQueueDeleteCancels},
		{"QueueFIFORetryBlocks", testQueueFIFORetryBlocks},
		{"QueueParallelism", testQueueParallelism},
		{"QueuePaused", testQueuePaused},
		{"QueueCallbackHoldsSlot", testQueueCallbackHoldsSlot},
		{"QueueConcurrentClaimers", testQueueConcurrentClaimers},
		{"URLGroupEndpoints", testURLGroupEndpoints},
		{"MessageInsertAllFanOut", testMessageInsertAllFanOut},
		{"FlowParallelism", testFlowParallelism},
		{"FlowRate", testFlowRate},
		{"FlowPausedPinned", testFlowPausedPinned},
		{"FlowConfigFromMessages", testFlowConfigFromMessages},
		{"FlowConcurrentClaimers", testFlowConcurrentClaimers},
		{"FlowFilter", testFlowFilter},
		{"QueueHeadWaitsForFlow", testQueueHeadWaitsForFlow},
	}
}

// queueMessage returns a message of queue q that is due at notBefore.
func queueMessage(id, q string, notBefore time.Time) *ferry.Message {
	m := newMessage(id, notBefore)
	m.QueueName = q
	return m
}

// flowMessage returns a message of flow-control key key with the given
// limits that is due at notBefore.
func flowMessage(id, key string, parallelism, rate int, period time.Duration, notBefore time.Time) *ferry.Message {
	m := newMessage(id, notBefore)
	m.FlowControlKey = key
	m.FlowControlParallelism = parallelism
	m.FlowControlRate = rate
	m.FlowControlPeriod = period
	return m
}

func upsertQueue(t *testing.T, s store.Store, name string, parallelism int, paused bool, at time.Time) *ferry.Queue {
	t.Helper()
	q, err := s.QueueUpsert(t.Context(), &store.QueueUpsertParams{Name: name, Parallelism: &parallelism, Paused: &paused, Now: at})
	if err != nil {
		t.Fatalf("QueueUpsert(%s): %v", name, err)
	}
	return q
}

func getQueue(t *testing.T, s store.Store, name string) *ferry.Queue {
	t.Helper()
	q, err := s.QueueGet(t.Context(), name)
	if err != nil {
		t.Fatalf("QueueGet(%s): %v", name, err)
	}
	return q
}

// retry records a failed attempt of the claimed message m at time at,
// with the next attempt due at next.
func retry(t *testing.T, s store.Store, m *ferry.Message, at, next time.Time) {
	t.Helper()
	applied, err := s.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
		ID: m.ID, Attempts: m.Attempts, Now: at, NextAt: next,
		Result: store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"},
	})
	if err != nil || !applied {
		t.Fatalf("MessageMarkRetry(%s) = %v, %v; want true, nil", m.ID, applied, err)
	}
}

// claimIDs claims up to 10 messages at time at and returns their ids.
func claimIDs(t *testing.T, s store.Store, at time.Time) []string {
	t.Helper()
	return messageIDs(claim(t, s, "node-a", at, 10))
}

// requireClaim claims at time at and requires exactly the ids want.
func requireClaim(t *testing.T, s store.Store, at time.Time, want ...string) []*ferry.Message {
	t.Helper()
	msgs := claim(t, s, "node-a", at, 10)
	if got := messageIDs(msgs); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("MessageClaim at %v claimed %v, want %v", at, got, want)
	}
	return msgs
}

// requireNextDueNotBefore fails the test when MessageNextDueAt reports a
// time before earliest, which would make a dispatcher claim again at once
// while nothing can start.
func requireNextDueNotBefore(t *testing.T, s store.Store, earliest time.Time) {
	t.Helper()
	next, ok, err := s.MessageNextDueAt(t.Context())
	if err != nil {
		t.Fatalf("MessageNextDueAt: %v", err)
	}
	if ok && next.Before(earliest) {
		t.Errorf("MessageNextDueAt = %v, want nothing before %v", next, earliest)
	}
}

func testQueueUpsertGetList(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.QueueGet(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("QueueGet(missing) error = %v, want store.ErrNotFound", err)
	}
	if err := s.QueueSetPaused(ctx, "missing", true, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("QueueSetPaused(missing) error = %v, want store.ErrNotFound", err)
	}

	q, err := s.QueueUpsert(ctx, &store.QueueUpsertParams{Name: "orders", Now: now})
	if err != nil {
		t.Fatalf("QueueUpsert: %v", err)
	}
	if q.Name != "orders" || q.Parallelism != 1 || q.Paused || q.Lag != 0 {
		t.Errorf("new queue = %+v, want orders with parallelism 1, not paused, lag 0", *q)
	}
	checkTime(t, "CreatedAt", q.CreatedAt, now)
	checkTime(t, "UpdatedAt", q.UpdatedAt, now)

	later := now.Add(time.Minute)
	q = upsertQueue(t, s, "orders", 4, true, later)
	if q.Parallelism != 4 || !q.Paused {
		t.Errorf("updated queue = %+v, want parallelism 4, paused", *q)
	}
	checkTime(t, "CreatedAt after update", q.CreatedAt, now)
	checkTime(t, "UpdatedAt after update", q.UpdatedAt, later)

	// A nil setting keeps the stored one.
	parallelism := 2
	q, err = s.QueueUpsert(ctx, &store.QueueUpsertParams{Name: "orders", Parallelism: &parallelism, Now: later})
	if err != nil {
		t.Fatalf("QueueUpsert: %v", err)
	}
	if q.Parallelism != 2 || !q.Paused {
		t.Errorf("queue after parallelism-only upsert = %+v, want parallelism 2, still paused", *q)
	}

	if err := s.QueueSetPaused(ctx, "orders", false, later); err != nil {
		t.Fatalf("QueueSetPaused: %v", err)
	}
	if err := s.QueueSetPaused(ctx, "orders", false, later); err != nil {
		t.Errorf("QueueSetPaused twice: %v", err)
	}
	if getQueue(t, s, "orders").Paused {
		t.Errorf("queue is paused after resume")
	}

	upsertQueue(t, s, "emails", 1, false, now)
	insert(t, s, queueMessage("msg_1", "emails", now), now)
	insert(t, s, queueMessage("msg_2", "emails", now), now)
	list, err := s.QueueList(ctx)
	if err != nil {
		t.Fatalf("QueueList: %v", err)
	}
	var names []string
	for _, q := range list {
		names = append(names, q.Name)
	}
	if !slices.Equal(names, []string{"emails", "orders"}) {
		t.Errorf("QueueList names = %v, want [emails orders]", names)
	}
	if list[0].Lag != 2 {
		t.Errorf("emails lag = %d, want 2", list[0].Lag)
	}

	// Lag counts undelivered messages, in flight included.
	m := claimOne(t, s, "node-a", now, "msg_1")
	if lag := getQueue(t, s, "emails").Lag; lag != 2 {
		t.Errorf("lag with one message in flight = %d, want 2", lag)
	}
	deliver(t, s, m, now)
	if lag := getQueue(t, s, "emails").Lag; lag != 1 {
		t.Errorf("lag after one delivery = %d, want 1", lag)
	}
}

func testQueueCreatedByInsert(t *testing.T, s store.Store) {
	insert(t, s, queueMessage("msg_1", "auto", now), now)
	q := getQueue(t, s, "auto")
	if q.Parallelism != 1 || q.Paused || q.Lag != 1 {
		t.Errorf("queue created by insert = %+v, want parallelism 1, not paused, lag 1", *q)
	}

	// A later message keeps the queue's settings.
	upsertQueue(t, s, "auto", 3, false, now)
	insert(t, s, queueMessage("msg_2", "auto", now), now)
	if q := getQueue(t, s, "auto"); q.Parallelism != 3 {
		t.Errorf("parallelism after a second message = %d, want 3", q.Parallelism)
	}
}

func testQueueDeleteCancels(t *testing.T, s store.Store) {
	ctx := t.Context()
	insert(t, s, queueMessage("msg_1", "doomed", now), now)
	insert(t, s, queueMessage("msg_2", "doomed", now), now)
	insert(t, s, newMessage("msg_other", now), now)

	existed, err := s.QueueDelete(ctx, "doomed", now)
	if err != nil || !existed {
		t.Fatalf("QueueDelete = %v, %v; want true, nil", existed, err)
	}
	if _, err := s.QueueGet(ctx, "doomed"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("QueueGet after delete error = %v, want store.ErrNotFound", err)
	}
	for _, id := range []string{"msg_1", "msg_2"} {
		checkProgress(t, get(t, s, id), ferry.MessageStateCanceled, 0, 0)
	}
	checkProgress(t, get(t, s, "msg_other"), ferry.MessageStateCreated, 0, 0)

	existed, err = s.QueueDelete(ctx, "doomed", now)
	if err != nil || existed {
		t.Errorf("second QueueDelete = %v, %v; want false, nil", existed, err)
	}
}

func testQueueFIFORetryBlocks(t *testing.T, s store.Store) {
	// msg_c is due first, but the queue starts messages in the order they
	// were enqueued.
	insert(t, s, queueMessage("msg_a", "fifo", now), now.Add(-3*time.Second))
	insert(t, s, queueMessage("msg_b", "fifo", now), now.Add(-2*time.Second))
	insert(t, s, queueMessage("msg_c", "fifo", now.Add(-time.Second)), now.Add(-time.Second))

	a := requireClaim(t, s, now, "msg_a")[0]
	requireClaim(t, s, now)

	// The head in RETRY keeps its slot until it is delivered.
	retry(t, s, a, now.Add(time.Second), now.Add(10*time.Second))
	requireClaim(t, s, now.Add(2*time.Second))
	requireNextDueNotBefore(t, s, now.Add(2*time.Second))

	a = requireClaim(t, s, now.Add(10*time.Second), "msg_a")[0]
	checkProgress(t, a, ferry.MessageStateActive, 2, 1)
	deliver(t, s, a, now.Add(11*time.Second))

	b := requireClaim(t, s, now.Add(11*time.Second), "msg_b")[0]
	fail(t, s, b, now.Add(12*time.Second), "dlq_b", store.AttemptResult{ResponseStatus: 400, Error: "HTTP 400"})
	requireClaim(t, s, now.Add(12*time.Second), "msg_c")
}

func testQueueParallelism(t *testing.T, s store.Store) {
	upsertQueue(t, s, "wide", 2, false, now)
	for i := range 5 {
		insert(t, s, queueMessage(fmt.Sprintf("msg_%d", i), "wide", now), now.Add(time.Duration(i)*time.Millisecond))
	}
	insert(t, s, newMessage("msg_free", now), now)

	first := claim(t, s, "node-a", now, 10)
	if got := messageIDs(first); !slices.Equal(got, []string{"msg_0", "msg_1", "msg_free"}) &&
		!slices.Equal(got, []string{"msg_free", "msg_0", "msg_1"}) {
		t.Fatalf("first claim = %v, want msg_0, msg_1 and msg_free", got)
	}
	requireClaim(t, s, now)
	requireNextDueNotBefore(t, s, now.Add(time.Millisecond))

	for _, m := range first {
		if m.ID == "msg_1" {
			deliver(t, s, m, now)
		}
	}
	requireClaim(t, s, now, "msg_2")

	// A claim limit below the free slots takes the oldest first.
	upsertQueue(t, s, "wide", 4, false, now)
	if got := messageIDs(claim(t, s, "node-a", now, 1)); !slices.Equal(got, []string{"msg_3"}) {
		t.Errorf("claim with limit 1 = %v, want [msg_3]", got)
	}
	requireClaim(t, s, now, "msg_4")
}

func testQueuePaused(t *testing.T, s store.Store) {
	ctx := t.Context()
	upsertQueue(t, s, "held", 1, true, now)
	insert(t, s, queueMessage("msg_1", "held", now), now)
	insert(t, s, queueMessage("msg_2", "held", now), now.Add(time.Millisecond))

	requireClaim(t, s, now.Add(time.Minute))
	checkNextDueAt(t, s, time.Time{})

	if err := s.QueueSetPaused(ctx, "held", false, now); err != nil {
		t.Fatalf("QueueSetPaused: %v", err)
	}
	m := requireClaim(t, s, now.Add(time.Minute), "msg_1")[0]

	// A retry of a paused queue's message waits for the resume too.
	retry(t, s, m, now.Add(time.Minute), now.Add(2*time.Minute))
	if err := s.QueueSetPaused(ctx, "held", true, now); err != nil {
		t.Fatalf("QueueSetPaused: %v", err)
	}
	requireClaim(t, s, now.Add(3*time.Minute))
	checkNextDueAt(t, s, time.Time{})

	if err := s.QueueSetPaused(ctx, "held", false, now); err != nil {
		t.Fatalf("QueueSetPaused: %v", err)
	}
	requireClaim(t, s, now.Add(3*time.Minute), "msg_1")
}

func testQueueCallbackHoldsSlot(t *testing.T, s store.Store) {
	insert(t, s, queueMessage("msg_a", "cb", now), now)
	insert(t, s, queueMessage("msg_b", "cb", now), now.Add(time.Millisecond))

	a := requireClaim(t, s, now, "msg_a")[0]
	callback := newMessage("msg_a_callback", now)
	callback.CallbackOf = a.ID
	deliver(t, s, a, now, callback)

	// msg_b waits until the callback of msg_a is delivered.
	cb := requireClaim(t, s, now, "msg_a_callback")[0]
	retry(t, s, cb, now, now.Add(time.Second))
	requireClaim(t, s, now)

	cb = requireClaim(t, s, now.Add(time.Second), "msg_a_callback")[0]
	deliver(t, s, cb, now.Add(time.Second))
	requireClaim(t, s, now.Add(time.Second), "msg_b")
}

func testQueueConcurrentClaimers(t *testing.T, s store.Store) {
	upsertQueue(t, s, "busy", 3, false, now)
	for i := range 30 {
		insert(t, s, queueMessage(fmt.Sprintf("msg_%02d", i), "busy", now), now.Add(time.Duration(i)*time.Millisecond))
	}

	// Claims that never record a result: at most 3 may be in flight.
	claimed := claimConcurrently(t, s, 8, 4)
	if len(claimed) != 3 {
		t.Errorf("concurrent claims leased %d messages, want 3: %v", len(claimed), claimed)
	}
	for _, id := range claimed {
		if id > "msg_02" {
			t.Errorf("claimed %s before an older message of the queue", id)
		}
	}
}

// claimConcurrently runs claimers goroutines that each claim rounds times
// at now and returns every id claimed.
func claimConcurrently(t *testing.T, s store.Store, claimers, rounds int) []string {
	t.Helper()
	var mu sync.Mutex
	var claimed []string
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			for range rounds {
				msgs, err := s.MessageClaim(t.Context(), &store.MessageClaimParams{
					Owner: fmt.Sprintf("node-%d", i), Limit: 2, Now: now, DefaultTimeout: defaultTimeout, LeaseMargin: leaseMargin,
				})
				if err != nil {
					t.Errorf("MessageClaim: %v", err)
					return
				}
				mu.Lock()
				claimed = append(claimed, messageIDs(msgs)...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// A claimer skips a queue or key whose lock another claim holds, so
	// under contention the rounds may lease less than the limits allow.
	// Sequential claims collect the rest; the limits must still hold.
	for range 10 {
		msgs, err := s.MessageClaim(t.Context(), &store.MessageClaimParams{
			Owner: "node-final", Limit: 2, Now: now, DefaultTimeout: defaultTimeout, LeaseMargin: leaseMargin,
		})
		if err != nil {
			t.Fatalf("MessageClaim: %v", err)
		}
		if len(msgs) == 0 {
			break
		}
		claimed = append(claimed, messageIDs(msgs)...)
	}
	slices.Sort(claimed)
	return claimed
}

func testURLGroupEndpoints(t *testing.T, s store.Store) {
	ctx := t.Context()
	add := func(at time.Time, endpoints ...ferry.Endpoint) {
		t.Helper()
		if err := s.URLGroupAddEndpoints(ctx, &store.URLGroupEndpointsParams{Name: "fans", Endpoints: endpoints, Now: at}); err != nil {
			t.Fatalf("URLGroupAddEndpoints: %v", err)
		}
	}
	requireEndpoints := func(want ...ferry.Endpoint) {
		t.Helper()
		g, err := s.URLGroupGet(ctx, "fans")
		if err != nil {
			t.Fatalf("URLGroupGet: %v", err)
		}
		if !slices.Equal(g.Endpoints, want) {
			t.Fatalf("endpoints = %+v, want %+v", g.Endpoints, want)
		}
	}

	if _, err := s.URLGroupGet(ctx, "fans"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("URLGroupGet(missing) error = %v, want store.ErrNotFound", err)
	}

	add(now, ferry.Endpoint{URL: "https://b.example/"}, ferry.Endpoint{Name: "a", URL: "https://a.example/"})
	add(now.Add(time.Second), ferry.Endpoint{URL: "https://c.example/"})
	requireEndpoints(ferry.Endpoint{URL: "https://b.example/"}, ferry.Endpoint{Name: "a", URL: "https://a.example/"},
		ferry.Endpoint{URL: "https://c.example/"})

	// A name match takes the new URL; a URL match takes the new name.
	add(now.Add(2*time.Second), ferry.Endpoint{Name: "a", URL: "https://a2.example/"},
		ferry.Endpoint{Name: "c", URL: "https://c.example/"})
	requireEndpoints(ferry.Endpoint{URL: "https://b.example/"}, ferry.Endpoint{Name: "a", URL: "https://a2.example/"},
		ferry.Endpoint{Name: "c", URL: "https://c.example/"})

	g, err := s.URLGroupGet(ctx, "fans")
	if err != nil {
		t.Fatalf("URLGroupGet: %v", err)
	}
	checkTime(t, "CreatedAt", g.CreatedAt, now)
	checkTime(t, "UpdatedAt", g.UpdatedAt, now.Add(2*time.Second))

	add(now, ferry.Endpoint{URL: "https://solo.example/"})
	if err := s.URLGroupAddEndpoints(ctx, &store.URLGroupEndpointsParams{Name: "alpha",
		Endpoints: []ferry.Endpoint{{URL: "https://x.example/"}}, Now: now}); err != nil {
		t.Fatalf("URLGroupAddEndpoints(alpha): %v", err)
	}
	list, err := s.URLGroupList(ctx)
	if err != nil {
		t.Fatalf("URLGroupList: %v", err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "fans" || len(list[1].Endpoints) != 4 {
		t.Errorf("URLGroupList = %+v, want alpha and fans with 4 endpoints", list)
	}

	remove := func(endpoints ...ferry.Endpoint) error {
		return s.URLGroupRemoveEndpoints(ctx, &store.URLGroupEndpointsParams{Name: "fans", Endpoints: endpoints, Now: now})
	}
	err = remove(ferry.Endpoint{URL: "https://b.example/"}, ferry.Endpoint{URL: "https://nowhere.example/"})
	if ferry.ErrorCode(err) != ferry.ENOTFOUND {
		t.Errorf("removing an unknown endpoint: error %v, want code %s", err, ferry.ENOTFOUND)
	}
	if err := remove(ferry.Endpoint{URL: "https://b.example/"}, ferry.Endpoint{Name: "a"}); err != nil {
		t.Fatalf("URLGroupRemoveEndpoints: %v", err)
	}
	requireEndpoints(ferry.Endpoint{Name: "c", URL: "https://c.example/"}, ferry.Endpoint{URL: "https://solo.example/"})

	// Removing the last endpoint deletes the group.
	if err := remove(ferry.Endpoint{Name: "c"}, ferry.Endpoint{URL: "https://solo.example/"}); err != nil {
		t.Fatalf("URLGroupRemoveEndpoints: %v", err)
	}
	if _, err := s.URLGroupGet(ctx, "fans"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("URLGroupGet after removing every endpoint: error %v, want store.ErrNotFound", err)
	}
	if err := remove(ferry.Endpoint{Name: "c"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing from a missing group: error %v, want store.ErrNotFound", err)
	}

	existed, err := s.URLGroupDelete(ctx, "alpha")
	if err != nil || !existed {
		t.Errorf("URLGroupDelete(alpha) = %v, %v; want true, nil", existed, err)
	}
	existed, err = s.URLGroupDelete(ctx, "alpha")
	if err != nil || existed {
		t.Errorf("second URLGroupDelete(alpha) = %v, %v; want false, nil", existed, err)
	}
}

func testMessageInsertAllFanOut(t *testing.T, s store.Store) {
	fanOut := func(suffix string) []*store.MessageInsertParams {
		var params []*store.MessageInsertParams
		for _, name := range []string{"one", "two"} {
			m := newMessage("msg_"+name+suffix, now)
			m.URL = "https://" + name + ".example/"
			m.TopicName, m.EndpointName = "fans", name
			m.DeduplicationID = "id:order-7\n" + m.URL
			params = append(params, &store.MessageInsertParams{Message: m, DeduplicationWindow: time.Hour, Now: now})
		}
		return params
	}

	results, err := s.MessageInsertAll(t.Context(), fanOut(""))
	if err != nil {
		t.Fatalf("MessageInsertAll: %v", err)
	}
	if len(results) != 2 || results[0].MessageID != "msg_one" || results[1].MessageID != "msg_two" ||
		results[0].Deduplicated || results[1].Deduplicated {
		t.Fatalf("MessageInsertAll results = %+v %+v, want msg_one and msg_two stored", *results[0], *results[1])
	}
	m := get(t, s, "msg_two")
	if m.TopicName != "fans" || m.EndpointName != "two" {
		t.Errorf("msg_two TopicName, EndpointName = %q, %q; want fans, two", m.TopicName, m.EndpointName)
	}

	// The same publish again is deduplicated endpoint by endpoint.
	results, err = s.MessageInsertAll(t.Context(), fanOut("_again"))
	if err != nil {
		t.Fatalf("MessageInsertAll: %v", err)
	}
	if results[0].MessageID != "msg_one" || !results[0].Deduplicated || results[1].MessageID != "msg_two" ||
		!results[1].Deduplicated {
		t.Errorf("repeated MessageInsertAll = %+v %+v, want both deduplicated", *results[0], *results[1])
	}
	requireNotFound(t, s, "msg_one_again")
}

func testFlowParallelism(t *testing.T, s store.Store) {
	for i := range 5 {
		insert(t, s, flowMessage(fmt.Sprintf("msg_%d", i), "tenant", 2, 0, 0, now.Add(time.Duration(i)*time.Millisecond)), now)
	}
	insert(t, s, newMessage("msg_free", now.Add(time.Second)), now)

	at := now.Add(time.Second)
	first := requireClaim(t, s, at, "msg_0", "msg_1", "msg_free")
	requireClaim(t, s, at)
	requireNextDueNotBefore(t, s, at.Add(time.Millisecond))

	deliver(t, s, first[2], at)
	deliver(t, s, first[0], at)
	second := requireClaim(t, s, at, "msg_2")

	// A failed attempt also frees its slot.
	retry(t, s, first[1], at, at.Add(time.Hour))
	requireClaim(t, s, at, "msg_3")

	f, err := s.FlowControlGet(t.Context(), "tenant", at)
	if err != nil {
		t.Fatalf("FlowControlGet: %v", err)
	}
	if f.Parallelism != 2 || f.InFlight != 2 || f.WaitListSize != 2 || f.Rate != 0 {
		t.Errorf("flow control = %+v, want parallelism 2, 2 in flight, 2 waiting, no rate", *f)
	}

	// Expired leases free their slots: msg_2 and msg_3 may start again,
	// and msg_4, due earlier, goes first.
	lease := second[0].DueAt
	requireClaim(t, s, lease, "msg_4", "msg_2")
}

func testFlowRate(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 5 {
		insert(t, s, flowMessage(fmt.Sprintf("msg_%d", i), "api", 0, 2, 10*time.Second, now.Add(time.Duration(i)*time.Millisecond)), now)
	}

	at := now.Add(time.Second)
	requireClaim(t, s, at, "msg_0", "msg_1")
	requireClaim(t, s, at.Add(time.Second))
	checkNextDueAt(t, s, at.Add(10*time.Second))

	f, err := s.FlowControlGet(ctx, "api", at.Add(time.Second))
	if err != nil {
		t.Fatalf("FlowControlGet: %v", err)
	}
	if f.Rate != 2 || f.Period != 10*time.Second || f.RateCount != 2 {
		t.Errorf("flow control = %+v, want rate 2 per 10s with 2 counted", *f)
	}
	checkTime(t, "RateWindowStart", f.RateWindowStart, at)

	// The window slides: the starts at "at" leave it 10 s later.
	requireClaim(t, s, at.Add(10*time.Second-time.Millisecond))
	requireClaim(t, s, at.Add(10*time.Second), "msg_2", "msg_3")

	// A reset empties the window.
	if err := s.FlowControlUpdate(ctx, &store.FlowControlUpdateParams{Key: "api", ResetRate: true, Now: at}); err != nil {
		t.Fatalf("FlowControlUpdate: %v", err)
	}
	requireClaim(t, s, at.Add(10*time.Second), "msg_4")
}

func testFlowPausedPinned(t *testing.T, s store.Store) {
	ctx := t.Context()
	update := func(params store.FlowControlUpdateParams) {
		t.Helper()
		params.Now = now
		if err := s.FlowControlUpdate(ctx, &params); err != nil {
			t.Fatalf("FlowControlUpdate(%+v): %v", params, err)
		}
	}
	if err := s.FlowControlUpdate(ctx, &store.FlowControlUpdateParams{Key: "missing", Now: now}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FlowControlUpdate(missing) error = %v, want store.ErrNotFound", err)
	}
	if _, err := s.FlowControlGet(ctx, "missing", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FlowControlGet(missing) error = %v, want store.ErrNotFound", err)
	}

	insert(t, s, flowMessage("msg_1", "k", 5, 0, 0, now), now)
	insert(t, s, flowMessage("msg_2", "k", 5, 0, 0, now), now)
	paused := true
	update(store.FlowControlUpdateParams{Key: "k", Paused: &paused})
	requireClaim(t, s, now)
	checkNextDueAt(t, s, time.Time{})

	paused = false
	one := 1
	update(store.FlowControlUpdateParams{Key: "k", Paused: &paused, PinParallelism: &one})
	requireClaim(t, s, now, "msg_1")

	// A pinned parallelism ignores the values of new messages.
	insert(t, s, flowMessage("msg_3", "k", 9, 0, 0, now), now)
	f, err := s.FlowControlGet(ctx, "k", now)
	if err != nil {
		t.Fatalf("FlowControlGet: %v", err)
	}
	if f.Parallelism != 1 || !f.PinnedParallelism || f.PinnedRate || f.Paused {
		t.Errorf("pinned flow control = %+v, want parallelism 1 pinned", *f)
	}
	requireClaim(t, s, now)

	update(store.FlowControlUpdateParams{Key: "k", UnpinParallelism: true})
	insert(t, s, flowMessage("msg_4", "k", 3, 0, 0, now), now)
	requireClaim(t, s, now, "msg_2", "msg_3")

	rate := 7
	period := time.Minute
	update(store.FlowControlUpdateParams{Key: "k", PinRate: &rate, PinPeriod: &period})
	insert(t, s, flowMessage("msg_5", "k", 3, 1, time.Second, now), now)
	f, err = s.FlowControlGet(ctx, "k", now)
	if err != nil {
		t.Fatalf("FlowControlGet: %v", err)
	}
	if f.Rate != 7 || f.Period != time.Minute || !f.PinnedRate || f.Parallelism != 3 {
		t.Errorf("flow control with pinned rate = %+v, want rate 7 per minute pinned, parallelism 3", *f)
	}

	list, err := s.FlowControlList(ctx, "", now)
	if err != nil || len(list) != 1 || list[0].Key != "k" {
		t.Errorf("FlowControlList = %v, %v; want [k]", list, err)
	}
	list, err = s.FlowControlList(ctx, "zzz", now)
	if err != nil || len(list) != 0 {
		t.Errorf("FlowControlList(zzz) = %v, %v; want none", list, err)
	}
}

func testFlowConfigFromMessages(t *testing.T, s store.Store) {
	ctx := t.Context()
	insert(t, s, flowMessage("msg_1", "cfg", 2, 0, 0, now), now)
	insert(t, s, flowMessage("msg_2", "cfg", 0, 5, time.Hour, now), now.Add(time.Second))

	f, err := s.FlowControlGet(ctx, "cfg", now)
	if err != nil {
		t.Fatalf("FlowControlGet: %v", err)
	}
	if f.Parallelism != 0 || f.Rate != 5 || f.Period != time.Hour {
		t.Errorf("flow control = %+v, want the last message's limits: no parallelism, rate 5 per hour", *f)
	}
	checkTime(t, "CreatedAt", f.CreatedAt, now)
	checkTime(t, "UpdatedAt", f.UpdatedAt, now.Add(time.Second))

	m := get(t, s, "msg_2")
	if m.FlowControlKey != "cfg" || m.FlowControlRate != 5 || m.FlowControlPeriod != time.Hour {
		t.Errorf("stored message flow control = %q %d %v, want cfg 5 1h", m.FlowControlKey, m.FlowControlRate, m.FlowControlPeriod)
	}
}

func testFlowConcurrentClaimers(t *testing.T, s store.Store) {
	for i := range 30 {
		insert(t, s, flowMessage(fmt.Sprintf("msg_%02d", i), "hot", 4, 6, time.Minute, now), now)
	}
	claimed := claimConcurrently(t, s, 8, 4)
	if len(claimed) != 4 {
		t.Errorf("concurrent claims leased %d messages, want the parallelism of 4: %v", len(claimed), claimed)
	}
}

func testFlowFilter(t *testing.T, s store.Store) {
	insert(t, s, flowMessage("msg_a", "alpha", 1, 0, 0, now), now)
	insert(t, s, flowMessage("msg_b", "beta", 1, 0, 0, now), now)
	insert(t, s, newMessage("msg_none", now), now)

	n, err := s.MessageCancel(t.Context(), &store.MessageCancelParams{
		Filter: &store.MessageFilter{FlowControlKeys: []string{"alpha"}}, Now: now,
	})
	if err != nil || n != 1 {
		t.Fatalf("MessageCancel by flow-control key = %d, %v; want 1, nil", n, err)
	}
	checkProgress(t, get(t, s, "msg_a"), ferry.MessageStateCanceled, 0, 0)
	checkProgress(t, get(t, s, "msg_b"), ferry.MessageStateCreated, 0, 0)
}

func testQueueHeadWaitsForFlow(t *testing.T, s store.Store) {
	// The queue's head waits for its flow-control key, and the message
	// behind it waits for the head, though its own key is free.
	upsertQueue(t, s, "mixed", 2, false, now)
	insert(t, s, flowMessage("msg_busy", "narrow", 1, 0, 0, now), now.Add(-time.Second))
	head := flowMessage("msg_head", "narrow", 1, 0, 0, now)
	head.QueueName = "mixed"
	insert(t, s, head, now)
	insert(t, s, queueMessage("msg_next", "mixed", now), now.Add(time.Millisecond))

	busy := requireClaim(t, s, now, "msg_busy")[0]
	requireClaim(t, s, now)
	requireNextDueNotBefore(t, s, now.Add(time.Millisecond))

	deliver(t, s, busy, now)
	requireClaim(t, s, now, "msg_head", "msg_next")
}
