package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/schedule"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// scheduleTarget is the request target that creates a schedule for
// https://example.com/hook.
const scheduleTarget = "/v2/schedules/https://example.com/hook"

// auth returns a header with the test token and the given pairs.
func auth(pairs ...string) http.Header {
	h := headers(pairs...)
	h.Set("Authorization", "Bearer "+testToken)
	return h
}

// createSchedule creates a schedule and returns its id, failing the test
// unless the status is 200 and the body is exactly {"scheduleId": ...}.
func (s *testServer) createSchedule(t *testing.T, target string, header http.Header, body string) string {
	t.Helper()
	resp := s.publish(t, target, header, body)
	if resp.status != http.StatusOK {
		t.Fatalf("POST %s status = %d, want 200 (body %s)", target, resp.status, resp.body)
	}
	object := decodeObject(t, resp)
	id, _ := object["scheduleId"].(string)
	if id == "" || len(object) != 1 {
		t.Fatalf("POST %s body = %s, want only a scheduleId", target, resp.body)
	}
	return id
}

// getSchedule returns GET /v2/schedules/{id} decoded twice: as a JSON
// object, to check which fields are present, and as wire.Schedule.
func (s *testServer) getSchedule(t *testing.T, id string) (map[string]any, wire.Schedule) {
	t.Helper()
	resp := s.do(t, http.MethodGet, "/v2/schedules/"+id, auth(), "")
	if resp.status != http.StatusOK {
		t.Fatalf("GET schedule %s status = %d, want 200 (body %s)", id, resp.status, resp.body)
	}
	object := decodeObject(t, resp)
	var sc wire.Schedule
	if err := json.Unmarshal(resp.body, &sc); err != nil {
		t.Fatalf("decode schedule %s: %v", resp.body, err)
	}
	return object, sc
}

// listSchedules returns GET /v2/schedules.
func (s *testServer) listSchedules(t *testing.T) []wire.Schedule {
	t.Helper()
	resp := s.do(t, http.MethodGet, "/v2/schedules", auth(), "")
	if resp.status != http.StatusOK {
		t.Fatalf("GET /v2/schedules status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	var list []wire.Schedule
	if err := json.Unmarshal(resp.body, &list); err != nil {
		t.Fatalf("decode schedule list %s: %v", resp.body, err)
	}
	return list
}

func TestScheduleCreateStoresSettings(t *testing.T) {
	s := newTestServer(t, nil)
	header := headers(
		"Upstash-Cron", "*/10 * * * * ",
		"Content-Type", "application/json",
		"Upstash-Method", "PUT",
		"Upstash-Delay", "30s",
		"Upstash-Retries", "5",
		"Upstash-Retry-Delay", "1000 * retried",
		"Upstash-Timeout", "45s",
		"Upstash-Callback", "https://example.com/cb",
		"Upstash-Callback-Retries", "1",
		"Upstash-Failure-Callback", "https://example.com/failed",
		"Upstash-Forward-X-Trace", "abc",
		"Upstash-Label", "nightly,billing",
		"Upstash-Queue-Name", "reports",
	)
	id := s.createSchedule(t, scheduleTarget+"?region=eu", header, `{"report":"daily"}`)
	if !strings.HasPrefix(id, "scd_") {
		t.Errorf("scheduleId = %q, want a scd_ prefix", id)
	}

	object, sc := s.getSchedule(t, id)
	want := wire.Schedule{
		ScheduleID:           id,
		Cron:                 "*/10 * * * *",
		Destination:          "https://example.com/hook?region=eu",
		CreatedAt:            testNow.UnixMilli(),
		Method:               http.MethodPut,
		Header:               http.Header{"Content-Type": {"application/json"}, "X-Trace": {"abc"}},
		Body:                 `{"report":"daily"}`,
		Retries:              5,
		Delay:                30,
		Timeout:              45,
		Callback:             "https://example.com/cb",
		FailureCallback:      "https://example.com/failed",
		CallbackHeader:       http.Header{"Upstash-Callback-Retries": {"1"}},
		CallerIP:             "127.0.0.1",
		CallerIp:             "127.0.0.1",
		QueueName:            "reports",
		RetryDelayExpression: "1000 * retried",
		Label:                "nightly",
		Labels:               []string{"nightly", "billing"},
		NextScheduleTime:     time.Date(2030, 1, 2, 3, 10, 0, 0, time.UTC).UnixMilli(),
	}
	if !reflect.DeepEqual(sc, want) {
		t.Errorf("schedule =\n%+v\nwant\n%+v", sc, want)
	}
	if paused, ok := object["isPaused"]; !ok || paused != false {
		t.Errorf("isPaused = %v (present %v), want false", paused, ok)
	}
	for _, absent := range []string{"bodyBase64", "lastScheduleTime", "lastScheduleStates", "error"} {
		if _, ok := object[absent]; ok {
			t.Errorf("field %s is present, want it omitted", absent)
		}
	}
}

func TestScheduleCreateDefaults(t *testing.T) {
	s := newTestServer(t, nil)
	id := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "@daily"), "")

	object, sc := s.getSchedule(t, id)
	if sc.Method != http.MethodPost || sc.Retries != DefaultRetriesDefault || sc.Delay != 0 || sc.Timeout != 0 {
		t.Errorf("method %s, retries %d, delay %d, timeout %d; want POST, %d, 0, 0",
			sc.Method, sc.Retries, sc.Delay, sc.Timeout, DefaultRetriesDefault)
	}
	if sc.Cron != "@daily" {
		t.Errorf("cron = %q, want %q", sc.Cron, "@daily")
	}
	if want := time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC).UnixMilli(); sc.NextScheduleTime != want {
		t.Errorf("nextScheduleTime = %d, want %d (midnight UTC)", sc.NextScheduleTime, want)
	}
	for _, absent := range []string{"body", "bodyBase64", "header", "delay", "timeout", "callback", "queueName"} {
		if _, ok := object[absent]; ok {
			t.Errorf("field %s is present, want it omitted", absent)
		}
	}
}

func TestScheduleBinaryBody(t *testing.T) {
	s := newTestServer(t, nil)
	id := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "* * * * *"), "\xff\x00a")

	_, sc := s.getSchedule(t, id)
	if sc.Body != "" || sc.BodyBase64 != "/wBh" {
		t.Errorf("body, bodyBase64 = %q, %q; want empty, %q", sc.Body, sc.BodyBase64, "/wBh")
	}
}

func TestScheduleCustomIDOverwrite(t *testing.T) {
	s := newTestServer(t, nil)
	first := headers(
		"Upstash-Cron", "0 * * * *",
		"Upstash-Schedule-Id", "nightly.report_1-a",
		"Content-Type", "text/plain",
		"Upstash-Callback", "https://example.com/cb",
		"Upstash-Label", "old",
		"Upstash-Delay", "1m",
	)
	if id := s.createSchedule(t, scheduleTarget, first, "first body"); id != "nightly.report_1-a" {
		t.Fatalf("scheduleId = %q, want the custom id", id)
	}
	if resp := s.do(t, http.MethodPatch, "/v2/schedules/nightly.report_1-a/pause", auth(), ""); resp.status != http.StatusOK {
		t.Fatalf("pause status = %d, want 200", resp.status)
	}

	// The second create replaces the schedule as a whole: what it does not
	// set is gone, and the paused schedule runs again.
	second := headers("Upstash-Cron", "*/5 * * * *", "Upstash-Schedule-Id", "nightly.report_1-a")
	if id := s.createSchedule(t, "/v2/schedules/https://example.com/other", second, ""); id != "nightly.report_1-a" {
		t.Fatalf("scheduleId = %q, want the custom id", id)
	}

	object, sc := s.getSchedule(t, "nightly.report_1-a")
	if sc.Cron != "*/5 * * * *" || sc.Destination != "https://example.com/other" {
		t.Errorf("cron, destination = %q, %q; want the second create's", sc.Cron, sc.Destination)
	}
	for _, absent := range []string{"body", "header", "callback", "label", "labels", "delay"} {
		if _, ok := object[absent]; ok {
			t.Errorf("field %s = %v after the overwrite, want it omitted", absent, object[absent])
		}
	}
	if sc.IsPaused {
		t.Errorf("isPaused = true after the overwrite, want false")
	}
	if list := s.listSchedules(t); len(list) != 1 {
		t.Errorf("GET /v2/schedules returned %d schedules, want 1", len(list))
	}
}

func TestSchedulePauseResume(t *testing.T) {
	var now atomic.Pointer[time.Time]
	now.Store(&testNow)
	s := newTestServer(t, func(cfg *Config) { cfg.Now = func() time.Time { return *now.Load() } })
	id := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "0 * * * *"), "")

	for _, method := range []string{http.MethodPatch, http.MethodPost} {
		resp := s.do(t, method, "/v2/schedules/"+id+"/pause", auth(), "")
		if resp.status != http.StatusOK || len(resp.body) != 0 {
			t.Fatalf("%s pause = %d %q, want 200 with no body", method, resp.status, resp.body)
		}
	}
	object, sc := s.getSchedule(t, id)
	if !sc.IsPaused {
		t.Errorf("isPaused = false after pause")
	}
	if _, ok := object["nextScheduleTime"]; ok {
		t.Errorf("nextScheduleTime is present while paused, want it omitted")
	}
	paused, err := s.store.ScheduleGet(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !paused.Paused {
		t.Errorf("the store has the schedule unpaused")
	}

	// Resuming three hours later skips the ticks in between.
	later := testNow.Add(3 * time.Hour)
	now.Store(&later)
	for _, method := range []string{http.MethodPost, http.MethodPatch} {
		resp := s.do(t, method, "/v2/Schedules/"+id+"/resume", auth(), "")
		if resp.status != http.StatusOK {
			t.Fatalf("%s resume status = %d, want 200 (body %s)", method, resp.status, resp.body)
		}
	}
	_, sc = s.getSchedule(t, id)
	if sc.IsPaused {
		t.Errorf("isPaused = true after resume")
	}
	if want := time.Date(2030, 1, 2, 7, 0, 0, 0, time.UTC).UnixMilli(); sc.NextScheduleTime != want {
		t.Errorf("nextScheduleTime = %d, want %d, the first tick after the resume", sc.NextScheduleTime, want)
	}

	for _, action := range []string{"pause", "resume"} {
		resp := s.do(t, http.MethodPatch, "/v2/schedules/scd_missing/"+action, auth(), "")
		checkError(t, resp, http.StatusNotFound, "schedule scd_missing not found")
	}
}

func TestScheduleDeleteIdempotent(t *testing.T) {
	s := newTestServer(t, nil)
	id := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "* * * * *"), "")

	for i := range 2 {
		resp := s.do(t, http.MethodDelete, "/v2/schedules/"+id, auth(), "")
		if resp.status != http.StatusOK || len(resp.body) != 0 {
			t.Errorf("DELETE %d = %d %q, want 200 with no body", i+1, resp.status, resp.body)
		}
	}
	resp := s.do(t, http.MethodGet, "/v2/schedules/"+id, auth(), "")
	checkError(t, resp, http.StatusNotFound, "schedule "+id+" not found")
	if list := s.listSchedules(t); len(list) != 0 {
		t.Errorf("GET /v2/schedules returned %d schedules after the delete, want 0", len(list))
	}
}

func TestScheduleList(t *testing.T) {
	var now atomic.Pointer[time.Time]
	now.Store(&testNow)
	s := newTestServer(t, func(cfg *Config) { cfg.Now = func() time.Time { return *now.Load() } })

	resp := s.do(t, http.MethodGet, "/v2/schedules/", auth(), "")
	if resp.status != http.StatusOK || strings.TrimSpace(string(resp.body)) != "[]" {
		t.Fatalf("empty list = %d %q, want 200 []", resp.status, resp.body)
	}

	first := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "* * * * *"), "")
	later := testNow.Add(time.Second)
	now.Store(&later)
	second := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "0 0 * * 1"), "")

	list := s.listSchedules(t)
	if len(list) != 2 || list[0].ScheduleID != first || list[1].ScheduleID != second {
		t.Fatalf("list = %+v, want %s then %s", list, first, second)
	}
	if list[1].Cron != "0 0 * * 1" {
		t.Errorf("second cron = %q, want %q", list[1].Cron, "0 0 * * 1")
	}
}

func TestScheduleRejects(t *testing.T) {
	s := newTestServer(t, nil)
	cron := "Upstash-Cron"
	allowedID := "1 to 256 letters, digits, hyphens (-), underscores (_) and periods (.)"

	tests := []struct {
		name        string
		target      string
		header      http.Header
		wantStatus  int
		wantMessage string
	}{
		{"missing cron", scheduleTarget, headers(), http.StatusBadRequest,
			`missing Upstash-Cron header: set a cron expression such as "*/5 * * * *"`},
		{"six fields", scheduleTarget, headers(cron, "* * * * * *"), http.StatusBadRequest,
			`invalid Upstash-Cron header "* * * * * *": expected 5 fields (minute hour day-of-month month day-of-week), found 6`},
		{"minute out of range", scheduleTarget, headers(cron, "60 * * * *"), http.StatusBadRequest,
			`invalid Upstash-Cron header "60 * * * *": invalid minute field "60": end of range (60) above maximum (59): 60`},
		{"unknown zone", scheduleTarget, headers(cron, "CRON_TZ=Nowhere/City 0 9 * * *"), http.StatusBadRequest,
			`invalid Upstash-Cron header "CRON_TZ=Nowhere/City 0 9 * * *": invalid CRON_TZ zone "Nowhere/City": use an IANA zone such as America/New_York`},
		{"every macro", scheduleTarget, headers(cron, "@every 5m"), http.StatusBadRequest,
			`invalid Upstash-Cron header "@every 5m": unknown macro "@every 5m"; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly`},
		{"id with space", scheduleTarget, headers(cron, "* * * * *", "Upstash-Schedule-Id", "my schedule"), http.StatusBadRequest,
			`invalid Upstash-Schedule-Id header "my schedule": expected ` + allowedID},
		{"id with slash", scheduleTarget, headers(cron, "* * * * *", "Upstash-Schedule-Id", "a/b"), http.StatusBadRequest,
			`invalid Upstash-Schedule-Id header "a/b": expected ` + allowedID},
		{"id too long", scheduleTarget, headers(cron, "* * * * *", "Upstash-Schedule-Id", strings.Repeat("a", 257)), http.StatusBadRequest,
			`invalid Upstash-Schedule-Id header "` + strings.Repeat("a", 200) + `...": expected ` + allowedID},
		{"queue name", scheduleTarget, headers(cron, "* * * * *", "Upstash-Queue-Name", "a b"), http.StatusBadRequest,
			`invalid Upstash-Queue-Name header "a b": expected letters, digits, hyphens (-), underscores (_) and periods (.)`},
		{"not before", scheduleTarget, headers(cron, "* * * * *", "Upstash-Not-Before", "1900000000"), http.StatusBadRequest,
			"the Upstash-Not-Before header is not supported on schedules: every tick sends its message at the tick time plus Upstash-Delay"},
		{"invalid retries", scheduleTarget, headers(cron, "* * * * *", "Upstash-Retries", "-1"), http.StatusBadRequest,
			`invalid Upstash-Retries header "-1": expected an integer from 0 to 100`},
		{"no destination", "/v2/schedules/", headers(cron, "* * * * *"), http.StatusBadRequest,
			"a non-empty destination must be provided: create a schedule with POST /v2/schedules/https://your.app/path"},
		{"no destination or slash", "/v2/schedules", headers(cron, "* * * * *"), http.StatusBadRequest,
			"a non-empty destination must be provided: create a schedule with POST /v2/schedules/https://your.app/path"},
		{"url group", "/v2/schedules/my-group", headers(cron, "* * * * *"), http.StatusNotFound,
			"topic my-group not found: schedules to URL groups are not supported yet; use an http:// or https:// URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.publish(t, tc.target, tc.header, "")
			checkError(t, resp, tc.wantStatus, tc.wantMessage)
		})
	}

	if list := s.listSchedules(t); len(list) != 0 {
		t.Errorf("%d schedules stored after rejected creates, want 0", len(list))
	}
}

func TestScheduleRouteMethods(t *testing.T) {
	s := newTestServer(t, nil)
	tests := []struct {
		method, target, allow string
	}{
		{http.MethodPut, "/v2/schedules/scd_x", "DELETE, GET"},
		{http.MethodGet, "/v2/schedules/scd_x/pause", "PATCH, POST"},
		{http.MethodDelete, "/v2/schedules", "GET"},
	}
	for _, tc := range tests {
		resp := s.do(t, tc.method, tc.target, auth(), "")
		if resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q", tc.method, tc.target, resp.status, resp.header.Get("Allow"), tc.allow)
		}
	}

	resp := s.do(t, http.MethodGet, "/v2/schedules/scd_x/other", auth(), "")
	checkError(t, resp, http.StatusNotFound, "route not found: GET /v2/schedules/scd_x/other")
}

// TestScheduleLastStates fires a schedule and follows its message to the
// end, including after retention removed it.
func TestScheduleLastStates(t *testing.T) {
	var now atomic.Pointer[time.Time]
	now.Store(&testNow)
	clock := func() time.Time { return *now.Load() }
	s := newTestServer(t, func(cfg *Config) { cfg.Now = clock })
	id := s.createSchedule(t, scheduleTarget, headers("Upstash-Cron", "* * * * *"), "")
	scheduler := schedule.New(schedule.Config{Store: s.store, Now: clock})

	// fire moves the clock to the next tick, fires, and returns the id of
	// the new message.
	fire := func() string {
		t.Helper()
		at := now.Load().Truncate(time.Minute).Add(time.Minute)
		now.Store(&at)
		if n, err := scheduler.FireDue(t.Context()); err != nil || n != 1 {
			t.Fatalf("FireDue at %s = %d, %v; want 1, nil", at, n, err)
		}
		sc, err := s.store.ScheduleGet(t.Context(), id)
		if err != nil || len(sc.LastMessageIDs) != 1 {
			t.Fatalf("ScheduleGet = %+v, %v; want one last message", sc, err)
		}
		return sc.LastMessageIDs[0]
	}
	checkStates := func(want map[string]string) {
		t.Helper()
		_, sc := s.getSchedule(t, id)
		if !reflect.DeepEqual(sc.LastScheduleStates, want) {
			t.Errorf("lastScheduleStates = %v, want %v", sc.LastScheduleStates, want)
		}
		if sc.LastScheduleTime != now.Load().UnixMilli() {
			t.Errorf("lastScheduleTime = %d, want %d", sc.LastScheduleTime, now.Load().UnixMilli())
		}
	}
	claim := func() *ferry.Message {
		t.Helper()
		msgs, err := s.store.MessageClaim(t.Context(), &store.MessageClaimParams{Owner: "test", Limit: 1, Now: clock(),
			DefaultTimeout: time.Minute, LeaseMargin: time.Minute})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("MessageClaim = %d messages, %v; want 1", len(msgs), err)
		}
		return msgs[0]
	}

	delivered := fire()
	checkStates(map[string]string{delivered: "IN_PROGRESS"})
	m := claim()
	if _, err := s.store.MessageMarkDelivered(t.Context(), &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: clock(), ResponseStatus: 200}); err != nil {
		t.Fatal(err)
	}
	checkStates(map[string]string{delivered: "SUCCESS"})

	// Retention removes the finished message, but its events keep its state.
	if _, err := s.store.MessageDeleteFinished(t.Context(), &store.CleanupParams{Before: clock().Add(time.Hour), Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.MessageGet(t.Context(), delivered); err == nil {
		t.Fatalf("message %s is still stored after the cleanup", delivered)
	}
	checkStates(map[string]string{delivered: "SUCCESS"})

	failed := fire()
	m = claim()
	if _, _, err := s.store.MessageMarkFailed(t.Context(), &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: m.Attempts, Now: clock(), DLQID: ferry.NewDLQID(),
		Result: store.AttemptResult{ResponseStatus: 500}}); err != nil {
		t.Fatal(err)
	}
	checkStates(map[string]string{failed: "FAIL"})
}
