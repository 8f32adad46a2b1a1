package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/dispatch"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
)

// wakeTimeout bounds the wait for a notification. Notifications arrive
// within milliseconds; the margin covers a loaded test machine.
const wakeTimeout = 2 * time.Second

// quietPeriod is how long a test waits to conclude that no notification
// arrives.
const quietPeriod = 300 * time.Millisecond

// listener runs Listen on a store and counts the wake calls.
type listener struct {
	wakes  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func startListener(t *testing.T, db *postgres.DB) *listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{wakes: make(chan struct{}, 1000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		if err := db.Listen(ctx, func() { l.wakes <- struct{}{} }); err != nil {
			t.Errorf("Listen returned %v, want nil", err)
		}
	}()
	t.Cleanup(l.stop)

	// Listen wakes once when it has subscribed.
	l.expectWake(t, "the subscription")
	return l
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}

// expectWake waits for one wake call and returns how long it took.
func (l *listener) expectWake(t *testing.T, after string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-l.wakes:
		return time.Since(start)
	case <-time.After(wakeTimeout):
		t.Fatalf("no wake-up within %v after %s", wakeTimeout, after)
		return 0
	}
}

// expectQuiet fails when a wake call arrives within quietPeriod.
func (l *listener) expectQuiet(t *testing.T, after string) {
	t.Helper()
	select {
	case <-l.wakes:
		t.Errorf("woken after %s, want no wake-up", after)
	case <-time.After(quietPeriod):
	}
}

// insertDue stores a message on db that becomes due at notBefore.
func insertDue(t *testing.T, db *postgres.DB, id string, notBefore time.Time, dedupID string) {
	t.Helper()
	m := &ferry.Message{ID: id, URL: "http://127.0.0.1:9/" + id, Method: http.MethodPost, NotBefore: notBefore,
		DeduplicationID: dedupID}
	if _, err := db.MessageInsert(t.Context(), &store.MessageInsertParams{
		Message: m, Now: time.Now(), DeduplicationWindow: time.Minute,
	}); err != nil {
		t.Fatalf("MessageInsert(%s): %v", id, err)
	}
}

func TestListenWakesOnDueWrites(t *testing.T) {
	dsn := newSchema(t)
	listening := open(t, dsn)
	defer listening.Close()
	writing := open(t, dsn)
	defer writing.Close()
	l := startListener(t, listening)

	insertDue(t, writing, "msg_now", time.Now(), "dedup_a")
	took := l.expectWake(t, "a due message was stored on another store")
	t.Logf("woken %v after the insert returned", took.Round(time.Microsecond))

	insertDue(t, writing, "msg_later", time.Now().Add(time.Hour), "")
	l.expectQuiet(t, "storing a message due in an hour")

	insertDue(t, writing, "msg_dedup", time.Now(), "dedup_a")
	l.expectQuiet(t, "a deduplicated publish")

	// A retry that is due soon wakes, so another node can take it.
	claimed, err := writing.MessageClaim(t.Context(), &store.MessageClaimParams{
		Owner: "node-a", Limit: 10, Now: time.Now(), DefaultTimeout: time.Second, LeaseMargin: time.Second,
	})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("MessageClaim = %d messages, %v; want 1, nil", len(claimed), err)
	}
	l.expectQuiet(t, "a claim")
	now := time.Now()
	if applied, err := writing.MessageMarkRetry(t.Context(), &store.MessageMarkRetryParams{
		ID: claimed[0].ID, Attempts: claimed[0].Attempts, Now: now,
		Result: store.AttemptResult{ResponseStatus: 500, Error: "HTTP 500"}, NextAt: now.Add(100 * time.Millisecond),
	}); err != nil || !applied {
		t.Fatalf("MessageMarkRetry = %v, %v; want true, nil", applied, err)
	}
	l.expectWake(t, "a retry due in 100 ms was scheduled")
}

func TestListenIgnoresOtherSchemas(t *testing.T) {
	listening := open(t, newSchema(t))
	defer listening.Close()
	other := open(t, newSchema(t))
	defer other.Close()
	l := startListener(t, listening)

	insertDue(t, other, "msg_elsewhere", time.Now(), "")
	l.expectQuiet(t, "a message was stored in another schema")
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
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

func TestListenReconnectsAfterTermination(t *testing.T) {
	// A name of its own lets the test terminate this store's sessions
	// alone, while other tests use the same server.
	suffix := make([]byte, 6)
	rand.Read(suffix)
	appName := "ferry_listen_test_" + hex.EncodeToString(suffix)
	dsn := newSchema(t) + "&application_name=" + appName

	var logs lockedBuffer
	listening, err := postgres.Open(t.Context(), dsn, postgres.Options{
		MaxConns: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("open PostgreSQL store: %v", err)
	}
	defer listening.Close()
	writing := open(t, dsn)
	defer writing.Close()
	l := startListener(t, listening)

	exec(t, baseURL(t), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '"+appName+
		"' AND query LIKE 'LISTEN%'")

	// The listener wakes once after it reconnects, for the notifications
	// it may have missed, and then receives new ones.
	took := l.expectWake(t, "the listener's session was terminated")
	t.Logf("listening again %v after the termination", took.Round(time.Millisecond))
	insertDue(t, writing, "msg_after_reconnect", time.Now(), "")
	l.expectWake(t, "a due message was stored after the reconnect")

	out := logs.String()
	for _, want := range []string{"notification listener lost its connection", "notification listener reconnected"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

func TestIdleDispatcherWakesOnOtherNodesPublish(t *testing.T) {
	dsn := newSchema(t)
	nodeA := open(t, dsn)
	defer nodeA.Close()
	nodeB := open(t, dsn)
	defer nodeB.Close()

	received := make(chan time.Time, 1)
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received <- time.Now()
	}))
	defer dest.Close()

	// The poll interval is an hour, so only a notification can make the
	// dispatcher of node A look at the store within the test.
	key, err := signature.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	disp, err := dispatch.New(dispatch.Config{
		Store: nodeA, SigningKey: func() string { return key }, Owner: "node-a", PollInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() { disp.Run(ctx) })
	wg.Go(func() { nodeA.Listen(ctx, disp.Notify) })

	// Let the dispatcher settle into its hour-long sleep.
	time.Sleep(500 * time.Millisecond)

	published := time.Now()
	m := &ferry.Message{ID: "msg_cross_node", URL: dest.URL + "/hook", Method: http.MethodPost, NotBefore: published}
	if _, err := nodeB.MessageInsert(t.Context(), &store.MessageInsertParams{Message: m, Now: published}); err != nil {
		t.Fatalf("MessageInsert on node B: %v", err)
	}
	select {
	case at := <-received:
		t.Logf("node A delivered the message %v after node B stored it", at.Sub(published).Round(time.Microsecond))
	case <-time.After(wakeTimeout):
		t.Fatalf("node A did not deliver a message stored on node B within %v", wakeTimeout)
	}
}
