package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/signature"
)

// scheduleTick is the --schedule-tick of the schedule test: one cron
// minute lasts one second, so "* * * * *" fires every second.
const scheduleTick = time.Second

// scheduleDelivery is one request that the schedule test's destination
// received.
type scheduleDelivery struct {
	received time.Time
	header   http.Header
	body     []byte
	err      error // the result of verifying Upstash-Signature
}

// scheduleDestination records deliveries and verifies their signatures.
type scheduleDestination struct {
	server   *httptest.Server
	verifier *signature.Verifier

	mu         sync.Mutex
	deliveries []scheduleDelivery
}

func (d *scheduleDestination) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	err := d.verifier.Verify(r.Header.Get("Upstash-Signature"), d.server.URL+r.RequestURI, body)
	d.mu.Lock()
	d.deliveries = append(d.deliveries, scheduleDelivery{received: time.Now(), header: r.Header.Clone(), body: body, err: err})
	d.mu.Unlock()
}

func (d *scheduleDestination) received() []scheduleDelivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]scheduleDelivery(nil), d.deliveries...)
}

// waitDeliveries waits up to timeout for at least n deliveries.
func (d *scheduleDestination) waitDeliveries(t *testing.T, n int, timeout time.Duration) []scheduleDelivery {
	t.Helper()
	ferrytest.WaitFor(t.Context(), timeout, func() bool { return len(d.received()) >= n })
	got := d.received()
	if len(got) < n {
		t.Fatalf("destination received %d deliveries within %v, want at least %d", len(got), timeout, n)
	}
	return got
}

// TestScheduleDeliversEveryTick runs ferry serve with one-second cron
// minutes and follows a "* * * * *" schedule through deliveries, pause,
// resume and delete.
func TestScheduleDeliversEveryTick(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{Args: []string{"--schedule-tick", scheduleTick.String()}})
	api := client.New(p.URL, p.Token)
	ctx := t.Context()

	keys, err := api.Keys(ctx)
	if err != nil {
		t.Fatalf("GET /v2/keys: %v", err)
	}
	dest := &scheduleDestination{verifier: &signature.Verifier{CurrentKey: keys.Current, NextKey: keys.Next}}
	dest.server = httptest.NewServer(dest)
	t.Cleanup(dest.server.Close)

	header := http.Header{"Content-Type": {"application/json"}, "Upstash-Schedule-Id": {"every-tick"}}
	id, err := api.ScheduleCreate(ctx, dest.server.URL+"/tick", "* * * * *", []byte(`{"job":"tick"}`), header)
	if err != nil {
		t.Fatalf("create schedule: %v", err)
	}
	if id != "every-tick" {
		t.Fatalf("scheduleId = %q, want every-tick", id)
	}

	// Three ticks take about three seconds.
	got := dest.waitDeliveries(t, 3, 10*time.Second)
	seen := map[string]bool{}
	for i, d := range got {
		if d.err != nil {
			t.Errorf("delivery %d: signature did not verify: %v", i, d.err)
		}
		if v := d.header.Get("Upstash-Schedule-Id"); v != id {
			t.Errorf("delivery %d: Upstash-Schedule-Id = %q, want %q", i, v, id)
		}
		if v := d.header.Get("Content-Type"); v != "application/json" {
			t.Errorf("delivery %d: Content-Type = %q, want application/json", i, v)
		}
		if string(d.body) != `{"job":"tick"}` {
			t.Errorf("delivery %d: body = %q", i, d.body)
		}
		msgID := d.header.Get("Upstash-Message-Id")
		if seen[msgID] {
			t.Errorf("delivery %d repeats message %s; each tick must trigger a new message", i, msgID)
		}
		seen[msgID] = true

		// Ticks are a second apart. Dispatch latency can shorten a gap,
		// but two deliveries of one tick would arrive together.
		if i > 0 {
			if gap := d.received.Sub(got[i-1].received); gap < scheduleTick/2 {
				t.Errorf("deliveries %d and %d arrived %v apart, want about %v", i-1, i, gap, scheduleTick)
			}
		}
	}

	sc, err := api.ScheduleGet(ctx, id)
	if err != nil {
		t.Fatalf("GET schedule: %v", err)
	}
	if sc.LastScheduleTime == 0 || sc.NextScheduleTime <= sc.LastScheduleTime || len(sc.LastScheduleStates) != 1 {
		t.Errorf("schedule after deliveries: last %d, next %d, states %v; want a last time, a later next time and one state",
			sc.LastScheduleTime, sc.NextScheduleTime, sc.LastScheduleStates)
	}

	// A paused schedule sends nothing. A tick that fired just before the
	// pause may still be on its way, so the count starts after a grace.
	if err := api.SchedulePause(ctx, id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	pausedCount := settledCount(ctx, dest, 500*time.Millisecond)
	sleepCtx(ctx, 3*scheduleTick)
	if n := len(dest.received()); n != pausedCount {
		t.Errorf("destination received %d deliveries while paused, want 0", n-pausedCount)
	}

	if err := api.ScheduleResume(ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	dest.waitDeliveries(t, pausedCount+2, 10*time.Second)

	if err := api.ScheduleDelete(ctx, id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	deletedCount := settledCount(ctx, dest, 500*time.Millisecond)
	sleepCtx(ctx, 3*scheduleTick)
	if n := len(dest.received()); n != deletedCount {
		t.Errorf("destination received %d deliveries after the delete, want 0", n-deletedCount)
	}
	if _, err := api.ScheduleGet(ctx, id); !client.IsNotFound(err) {
		t.Errorf("GET deleted schedule error = %v, want 404", err)
	}
}

// settledCount waits for grace and returns the number of deliveries then.
func settledCount(ctx context.Context, dest *scheduleDestination, grace time.Duration) int {
	sleepCtx(ctx, grace)
	return len(dest.received())
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
