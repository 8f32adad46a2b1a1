package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/wire"
)

func TestQueuesCommands(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connection := []string{"--url", p.URL, "--token", p.Token}
	run := func(args ...string) string {
		t.Helper()
		out, err := runCommand(ctx, append(args, connection...)...)
		if err != nil {
			t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	var q wire.Queue
	if err := json.Unmarshal([]byte(run("queues", "upsert", "jobs", "--parallelism", "3", "--json")), &q); err != nil {
		t.Fatalf("queues upsert --json output is not a queue: %v", err)
	}
	if q.Name != "jobs" || q.Parallelism != 3 || q.Paused {
		t.Errorf("upserted queue = %+v, want jobs with parallelism 3, running", q)
	}

	run("queues", "pause", "jobs")
	var list []wire.Queue
	if err := json.Unmarshal([]byte(run("queues", "list", "--json")), &list); err != nil {
		t.Fatalf("queues list --json output is not a list: %v", err)
	}
	if len(list) != 1 || !list[0].Paused || list[0].Parallelism != 3 {
		t.Errorf("queue list = %+v, want jobs paused with parallelism 3", list)
	}
	if out := run("queues", "get", "jobs"); !strings.Contains(out, "paused") || !strings.Contains(out, "true") {
		t.Errorf("queues get output %q does not show the queue paused", out)
	}
	run("queues", "resume", "jobs")
	run("queues", "delete", "jobs")
	if out := run("queues", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("queues list after delete = %q, want []", out)
	}
}

func TestTopicsCommands(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connection := []string{"--url", p.URL, "--token", p.Token}
	run := func(args ...string) string {
		t.Helper()
		out, err := runCommand(ctx, append(args, connection...)...)
		if err != nil {
			t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	run("topics", "add", "fans", "https://a.example/in", "b=https://b.example/in")
	var g wire.URLGroup
	if err := json.Unmarshal([]byte(run("topics", "get", "fans", "--json")), &g); err != nil {
		t.Fatalf("topics get --json output is not a URL group: %v", err)
	}
	want := []wire.Endpoint{{URL: "https://a.example/in"}, {Name: "b", URL: "https://b.example/in"}}
	if len(g.Endpoints) != 2 || g.Endpoints[0] != want[0] || g.Endpoints[1] != want[1] {
		t.Errorf("endpoints = %+v, want %+v", g.Endpoints, want)
	}
	if out := run("topics", "list"); !strings.Contains(out, "https://b.example/in") {
		t.Errorf("topics list output %q lacks an endpoint", out)
	}

	run("topics", "remove", "fans", "--name", "b")
	run("topics", "remove", "fans", "https://a.example/in")
	if _, err := client.New(p.URL, p.Token).URLGroupGet(ctx, "fans"); !client.IsNotFound(err) {
		t.Errorf("URL group after removing every endpoint: error %v, want 404", err)
	}
	if _, err := runCommand(ctx, append([]string{"topics", "remove", "fans"}, connection...)...); err == nil {
		t.Errorf("topics remove without endpoints succeeded, want an error")
	}
}

func TestFlowCommands(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connection := []string{"--url", p.URL, "--token", p.Token}
	run := func(args ...string) string {
		t.Helper()
		out, err := runCommand(ctx, append(args, connection...)...)
		if err != nil {
			t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	// A message creates its key; its destination refuses connections, so
	// it stays waiting for retries.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/v2/publish/http://127.0.0.1:1/hook", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	req.Header.Set("Upstash-Flow-Control-Key", "tenant-9")
	req.Header.Set("Upstash-Flow-Control-Value", "parallelism=2, rate=4, period=1m")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish status = %d, want 200", resp.StatusCode)
	}

	run("flow", "pin", "tenant-9", "--parallelism", "5", "--rate", "7", "--period", "2m")
	var f wire.FlowControl
	if err := json.Unmarshal([]byte(run("flow", "get", "tenant-9", "--json")), &f); err != nil {
		t.Fatalf("flow get --json output is not a flow-control key: %v", err)
	}
	if f.ParallelismMax != 5 || f.RateMax != 7 || f.RatePeriod != 120 || !f.IsPinnedParallelism || !f.IsPinnedRate {
		t.Errorf("pinned key = %+v, want parallelism 5, rate 7 per 120 s, both pinned", f)
	}

	run("flow", "pause", "tenant-9")
	run("flow", "unpin", "tenant-9", "--rate")
	run("flow", "reset-rate", "tenant-9")
	var list []wire.FlowControl
	if err := json.Unmarshal([]byte(run("flow", "list", "--search", "tenant", "--json")), &list); err != nil {
		t.Fatalf("flow list --json output is not a list: %v", err)
	}
	if len(list) != 1 || !list[0].IsPaused || list[0].IsPinnedRate || !list[0].IsPinnedParallelism {
		t.Errorf("flow list = %+v, want tenant-9 paused with only the parallelism pinned", list)
	}
	run("flow", "resume", "tenant-9")
	if out := run("flow", "global"); !strings.Contains(out, "maximum 256") {
		t.Errorf("flow global output %q, want the default concurrency 256 as the maximum", out)
	}
	if _, err := runCommand(ctx, append([]string{"flow", "pin", "tenant-9"}, connection...)...); err == nil {
		t.Errorf("flow pin without settings succeeded, want an error")
	}
}
