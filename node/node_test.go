package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSQLiteNodeIsLeader(t *testing.T) {
	addrs := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Listen:  "127.0.0.1:0",
			DB:      filepath.Join(t.TempDir(), "ferry.db"),
			Token:   "node-test-token",
			NodeID:  "node-a",
			Started: func(addr net.Addr) { addrs <- addr },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not listen within 30s")
	}

	// The gauge is set when the elector starts, shortly after the API.
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		body = fetchMetrics(t, "http://"+addr.String())
		if strings.Contains(body, "\nferry_leader 1\n") {
			return
		}
	}
	t.Errorf("/metrics lacks ferry_leader 1 on a SQLite node within 5s:\n%s", body)
}

// fetchMetrics returns the body of GET /metrics.
func fetchMetrics(t *testing.T, baseURL string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer node-test-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %s", resp.StatusCode, body)
	}
	return string(body)
}
