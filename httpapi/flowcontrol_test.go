package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry/wire"
)

func TestPublishFlowControl(t *testing.T) {
	s := newTestServer(t, nil)
	id := s.publishOK(t, hookTarget, headers("Upstash-Flow-Control-Key", "tenant-1",
		"Upstash-Flow-Control-Value", "parallelism=2, rate=5, period=1m"), "")

	m := s.message(t, id)
	if m.FlowControlKey != "tenant-1" || m.FlowControlParallelism != 2 || m.FlowControlRate != 5 || m.FlowControlPeriod != time.Minute {
		t.Errorf("stored flow control = %q %d %d %v, want tenant-1 2 5 1m",
			m.FlowControlKey, m.FlowControlParallelism, m.FlowControlRate, m.FlowControlPeriod)
	}

	resp := s.sendOK(t, http.MethodGet, "/v2/messages/"+id, "", http.StatusOK)
	var echo struct {
		FlowControlKey string `json:"flowControlKey"`
		Parallelism    int    `json:"parallelism"`
		Rate           int    `json:"rate"`
		Period         int    `json:"period"`
	}
	decodeInto(t, resp, &echo)
	if echo.FlowControlKey != "tenant-1" || echo.Parallelism != 2 || echo.Rate != 5 || echo.Period != 60 {
		t.Errorf("GET message echoes %s, want flowControlKey tenant-1, parallelism 2, rate 5, period 60", resp.body)
	}

	// Python's integer period and a rate alone are accepted too.
	id = s.publishOK(t, hookTarget, headers("Upstash-Flow-Control-Key", "tenant-2", "Upstash-Flow-Control-Value", "rate=3,period=30"), "")
	if m := s.message(t, id); m.FlowControlRate != 3 || m.FlowControlPeriod != 30*time.Second || m.FlowControlParallelism != 0 {
		t.Errorf("rate-only message = rate %d, period %v, parallelism %d; want 3, 30s, 0",
			m.FlowControlRate, m.FlowControlPeriod, m.FlowControlParallelism)
	}

	resp = s.sendOK(t, http.MethodGet, "/v2/events?flowControlKey=tenant-2", "", http.StatusOK)
	var events wire.EventsResponse
	decodeInto(t, resp, &events)
	if len(events.Events) != 1 || events.Events[0].MessageID != id || events.Events[0].FlowControlKey != "tenant-2" {
		t.Errorf("events filtered by flowControlKey = %s, want the CREATED event of %s", resp.body, id)
	}
}

func TestPublishFlowControlRejects(t *testing.T) {
	s := newTestServer(t, nil)
	const form = `expected comma-separated settings such as "parallelism=2, rate=10, period=1m"`
	tests := []struct {
		name, key, value, want string
	}{
		{"value without key", "", "parallelism=1", "missing Upstash-Flow-Control-Key header: Upstash-Flow-Control-Value needs a key"},
		{"key without value", "k", "", `missing Upstash-Flow-Control-Value header: set comma-separated settings such as "parallelism=2, rate=10, period=1m" for key "k"`},
		{"no limit", "k", "period=1s", `invalid Upstash-Flow-Control-Value header "period=1s": set parallelism, rate or both; ` + form},
		{"zero parallelism", "k", "parallelism=0", `invalid Upstash-Flow-Control-Value header "parallelism=0": parallelism must be an integer from 1 to 100000; ` + form},
		{"text rate", "k", "rate=fast", `invalid Upstash-Flow-Control-Value header "rate=fast": rate must be an integer from 1 to 1000000; ` + form},
		{"long period", "k", "rate=1, period=8d", `invalid Upstash-Flow-Control-Value header "rate=1, period=8d": period must be from 1s to 7d; ` + form},
		{"bad period", "k", "rate=1, period=1.5s", `invalid Upstash-Flow-Control-Value header "rate=1, period=1.5s": period must be a duration such as 30s or 1h30m, or a number of seconds; ` + form},
		{"unknown setting", "k", "burst=3", `invalid Upstash-Flow-Control-Value header "burst=3": unknown setting "burst"; ` + form},
		{"repeated setting", "k", "rate=1, rate=2", `invalid Upstash-Flow-Control-Value header "rate=1, rate=2": rate is set twice; ` + form},
		{"setting without value", "k", "parallelism", `invalid Upstash-Flow-Control-Value header "parallelism": setting "parallelism" has no value; ` + form},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.key != "" {
				h.Set("Upstash-Flow-Control-Key", tc.key)
			}
			if tc.value != "" {
				h.Set("Upstash-Flow-Control-Value", tc.value)
			}
			checkError(t, s.publish(t, hookTarget, h, ""), http.StatusBadRequest, tc.want)
		})
	}
}

func TestFlowControlRoutes(t *testing.T) {
	s := newTestServer(t, nil)
	for _, key := range []string{"alpha-1", "beta-1"} {
		s.publishOK(t, hookTarget, headers("Upstash-Flow-Control-Key", key, "Upstash-Flow-Control-Value", "parallelism=2, rate=4"), "")
	}

	resp := s.sendOK(t, http.MethodGet, "/v2/flowControl/alpha-1", "", http.StatusOK)
	fields := rawFields(t, resp.body)
	for _, name := range []string{"flowControlKey", "waitListSize", "parallelismMax", "parallelismCount", "rateMax", "rateCount",
		"ratePeriod", "ratePeriodStart", "isPaused", "isPinnedParallelism", "isPinnedRate"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("flow control %s lacks %q", resp.body, name)
		}
	}
	var f wire.FlowControl
	decodeInto(t, resp, &f)
	want := wire.FlowControl{FlowControlKey: "alpha-1", WaitListSize: 1, ParallelismMax: 2, RateMax: 4, RatePeriod: 1,
		RatePeriodStart: testNow.Unix()}
	if f != want {
		t.Errorf("flow control = %+v, want %+v", f, want)
	}

	resp = s.sendOK(t, http.MethodGet, "/v2/flowControl?search=beta", "", http.StatusOK)
	var list []wire.FlowControl
	decodeInto(t, resp, &list)
	if len(list) != 1 || list[0].FlowControlKey != "beta-1" {
		t.Errorf("search beta = %s, want [beta-1]", resp.body)
	}
	resp = s.sendOK(t, http.MethodGet, "/v2/flowControl/", "", http.StatusOK)
	decodeInto(t, resp, &list)
	if len(list) != 2 {
		t.Errorf("list = %s, want two keys", resp.body)
	}

	get := func() wire.FlowControl {
		t.Helper()
		var f wire.FlowControl
		decodeInto(t, s.sendOK(t, http.MethodGet, "/v2/flowControl/alpha-1", "", http.StatusOK), &f)
		return f
	}
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/pause", "", http.StatusOK)
	if f := get(); !f.IsPaused {
		t.Errorf("after pause: %+v, want paused", f)
	}
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/resume", "", http.StatusOK)
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/pin?parallelism=7&rate=9&period=60", "", http.StatusOK)
	if f := get(); f.IsPaused || f.ParallelismMax != 7 || f.RateMax != 9 || f.RatePeriod != 60 || !f.IsPinnedParallelism || !f.IsPinnedRate {
		t.Errorf("after resume and pin: %+v, want running with parallelism 7, rate 9 per 60 s, both pinned", f)
	}
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/unpin?rate=true", "", http.StatusOK)
	if f := get(); !f.IsPinnedParallelism || f.IsPinnedRate {
		t.Errorf("after unpin rate: %+v, want only the parallelism pinned", f)
	}
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/unpin", "", http.StatusOK)
	if f := get(); f.IsPinnedParallelism || f.IsPinnedRate {
		t.Errorf("after unpin: %+v, want nothing pinned", f)
	}
	s.sendOK(t, http.MethodPost, "/v2/flowControl/alpha-1/resetRate", "", http.StatusOK)

	resp = s.sendOK(t, http.MethodGet, "/v2/globalParallelism", "", http.StatusOK)
	var global map[string]json.RawMessage
	decodeInto(t, resp, &global)
	if string(global["parallelismMax"]) != "0" || string(global["parallelismCount"]) != "0" {
		t.Errorf("global parallelism = %s, want parallelismMax 0 (unset) and parallelismCount 0", resp.body)
	}
}

func TestFlowControlRoutesReject(t *testing.T) {
	s := newTestServer(t, nil)
	s.publishOK(t, hookTarget, headers("Upstash-Flow-Control-Key", "k", "Upstash-Flow-Control-Value", "parallelism=1"), "")
	const missing = "flow-control key nope not found; a key exists once a message used it"
	tests := []struct {
		name, method, target string
		wantStatus           int
		wantMessage          string
	}{
		{"get missing", http.MethodGet, "/v2/flowControl/nope", http.StatusNotFound, missing},
		{"pause missing", http.MethodPost, "/v2/flowControl/nope/pause", http.StatusNotFound, missing},
		{"pin nothing", http.MethodPost, "/v2/flowControl/k/pin", http.StatusBadRequest,
			"nothing to pin: set the parallelism, rate or period (seconds) query parameter"},
		{"pin zero", http.MethodPost, "/v2/flowControl/k/pin?parallelism=0", http.StatusBadRequest,
			`invalid parallelism parameter "0": expected an integer from 1 to 100000`},
		{"pin long period", http.MethodPost, "/v2/flowControl/k/pin?rate=1&period=604801", http.StatusBadRequest,
			`invalid period parameter "604801": expected an integer from 1 to 604800`},
		{"unpin not boolean", http.MethodPost, "/v2/flowControl/k/unpin?rate=yes", http.StatusBadRequest,
			`invalid rate parameter "yes": expected true or false`},
		{"unknown action", http.MethodPost, "/v2/flowControl/k/drain", http.StatusNotFound, "route not found: POST /v2/flowControl/k/drain"},
		{"post without action", http.MethodPost, "/v2/flowControl/k", http.StatusNotFound, "route not found: POST /v2/flowControl/k"},
		{"global with a path", http.MethodGet, "/v2/globalParallelism/x", http.StatusNotFound, "route not found: GET /v2/globalParallelism/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, s.send(t, tc.method, tc.target, ""), tc.wantStatus, tc.wantMessage)
		})
	}
	if resp := s.send(t, http.MethodDelete, "/v2/flowControl/k", ""); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE flow-control key status = %d, want 405", resp.status)
	}
}
