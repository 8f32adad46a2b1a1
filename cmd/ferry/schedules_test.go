package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/store/sqlite"
	"github.com/ferryhq/ferry/wire"
)

// scheduleCLIToken is the API token of the schedule CLI tests' server.
const scheduleCLIToken = "schedule-cli-token"

// newScheduleServer starts the API on a new SQLite store and returns its
// URL.
func newScheduleServer(t *testing.T) string {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	srv := httptest.NewServer(httpapi.NewServer(httpapi.Config{Store: db, Token: scheduleCLIToken}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// runSchedules runs "ferry schedules args..." against serverURL with stdin
// as standard input, and returns standard output.
func runSchedules(t *testing.T, serverURL, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append(append([]string{"schedules"}, args...), "--url", serverURL, "--token", scheduleCLIToken))
	err := root.ExecuteContext(t.Context())
	if errOut.Len() > 0 {
		t.Errorf("ferry schedules %s wrote to stderr: %s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

// mustRunSchedules is runSchedules that fails the test on an error.
func mustRunSchedules(t *testing.T, serverURL string, args ...string) string {
	t.Helper()
	out, err := runSchedules(t, serverURL, "", args...)
	if err != nil {
		t.Fatalf("ferry schedules %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decodeScheduleJSON[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q is not the expected JSON: %v", out, err)
	}
	return v
}

func TestSchedulesCommandLifecycle(t *testing.T) {
	url := newScheduleServer(t)

	out := mustRunSchedules(t, url, "create", "https://example.com/report?a=1", "--cron", "*/5 * * * *", "--id", "nightly",
		"--body", `{"k":1}`, "--content-type", "application/json", "--method", "PUT", "--retries", "0",
		"--delay", "30s", "--timeout", "10s", "--forward", "X-Trace: abc", "--label", "a", "--label", "b",
		"--queue", "reports", "--header", "Upstash-Callback: https://example.com/cb", "--json")
	if created := decodeScheduleJSON[wire.ScheduleCreateResponse](t, out); created.ScheduleID != "nightly" {
		t.Fatalf("create printed scheduleId %q, want nightly", created.ScheduleID)
	}

	list := decodeScheduleJSON[[]wire.Schedule](t, mustRunSchedules(t, url, "list", "--json"))
	if len(list) != 1 {
		t.Fatalf("list printed %d schedules, want 1", len(list))
	}
	s := list[0]
	if s.ScheduleID != "nightly" || s.Cron != "*/5 * * * *" || s.Destination != "https://example.com/report?a=1" {
		t.Errorf("schedule %s, cron %q, destination %q; want nightly, */5 * * * *, https://example.com/report?a=1",
			s.ScheduleID, s.Cron, s.Destination)
	}
	if s.Method != http.MethodPut || s.Retries != 0 || s.Delay != 30 || s.Timeout != 10 || s.QueueName != "reports" {
		t.Errorf("method %s, retries %d, delay %d, timeout %d, queue %q; want PUT, 0, 30, 10, reports",
			s.Method, s.Retries, s.Delay, s.Timeout, s.QueueName)
	}
	wantHeader := http.Header{"Content-Type": {"application/json"}, "X-Trace": {"abc"}}
	if !reflect.DeepEqual(s.Header, wantHeader) {
		t.Errorf("header = %v, want %v", s.Header, wantHeader)
	}
	if s.Body != `{"k":1}` || s.Callback != "https://example.com/cb" || !reflect.DeepEqual(s.Labels, []string{"a", "b"}) {
		t.Errorf("body %q, callback %q, labels %q", s.Body, s.Callback, s.Labels)
	}

	text := mustRunSchedules(t, url, "list")
	if !strings.Contains(text, "SCHEDULE ID") || !strings.Contains(text, "nightly") {
		t.Errorf("list text lacks the header or the schedule:\n%s", text)
	}
	text = mustRunSchedules(t, url, "get", "nightly")
	for _, want := range []string{"*/5 * * * *", "https://example.com/report?a=1", "header", "X-Trace: abc", "delay", "30s"} {
		if !strings.Contains(text, want) {
			t.Errorf("get text lacks %q:\n%s", want, text)
		}
	}

	mustRunSchedules(t, url, "pause", "nightly")
	if got := decodeScheduleJSON[wire.Schedule](t, mustRunSchedules(t, url, "get", "nightly", "--json")); !got.IsPaused {
		t.Errorf("isPaused = false after schedules pause")
	}
	out = mustRunSchedules(t, url, "resume", "nightly", "--json")
	if !strings.Contains(out, `"isPaused": false`) {
		t.Errorf("resume --json printed %q, want isPaused false", out)
	}
	if got := decodeScheduleJSON[wire.Schedule](t, mustRunSchedules(t, url, "get", "nightly", "--json")); got.IsPaused {
		t.Errorf("isPaused = true after schedules resume")
	}

	// Deleting twice succeeds, as the API's delete is idempotent.
	for range 2 {
		if out := mustRunSchedules(t, url, "delete", "nightly"); out != "deleted 1 schedule(s)\n" {
			t.Errorf("delete printed %q", out)
		}
	}
	if _, err := runSchedules(t, url, "", "get", "nightly"); err == nil || err.Error() != "server answered 404: schedule nightly not found" {
		t.Errorf("get after delete error = %v, want the 404", err)
	}
}

func TestSchedulesCreateBodyFromStdin(t *testing.T) {
	url := newScheduleServer(t)
	out, err := runSchedules(t, url, "from stdin\n", "create", "https://example.com/in", "--cron", "@hourly", "--body-file", "-")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "scd_") {
		t.Fatalf("create printed %q, want a scd_ id", out)
	}
	s := decodeScheduleJSON[wire.Schedule](t, mustRunSchedules(t, url, "get", id, "--json"))
	if s.Body != "from stdin\n" {
		t.Errorf("body = %q, want %q", s.Body, "from stdin\n")
	}
}

func TestSchedulesCreateErrors(t *testing.T) {
	url := newScheduleServer(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing cron", []string{"create", "https://example.com/x"},
			`missing --cron: pass a cron expression such as --cron "*/5 * * * *"`},
		{"two bodies", []string{"create", "https://example.com/x", "--cron", "* * * * *", "--body", "a", "--body-file", "b"},
			"--body and --body-file both set: pass only one"},
		{"bad forward", []string{"create", "https://example.com/x", "--cron", "* * * * *", "--forward", "novalue"},
			`invalid --forward "novalue": use the form "Name: value"`},
		{"six fields", []string{"create", "https://example.com/x", "--cron", "* * * * * *"},
			`server answered 400: invalid Upstash-Cron header "* * * * * *": expected 5 fields (minute hour day-of-month month day-of-week), found 6`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runSchedules(t, url, "", tc.args...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
