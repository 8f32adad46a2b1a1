// Package interop runs the official QStash TypeScript SDK, @upstash/qstash
// at the exact version pinned in package.json, against a Ferry server. It
// needs Node.js 20 or newer and npm in PATH.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
)

// testTimeout bounds the whole test, including npm ci on a cold cache.
const testTimeout = 3 * time.Minute

func TestQStashSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	dir := filepath.Join(ferrytest.ModuleRoot(), "interop")
	requireTool(t, "node")
	installPackages(t, ctx, dir)

	// Each file gets a server of its own: management.test.mjs cancels every
	// waiting message and keys.test.mjs rotates the signing keys.
	t.Run("publish", func(t *testing.T) {
		runAgainstFerry(t, ctx, dir, "publish.test.mjs")
	})

	t.Run("management", func(t *testing.T) {
		runAgainstFerry(t, ctx, dir, "management.test.mjs")
	})

	t.Run("signing keys", func(t *testing.T) {
		runAgainstFerry(t, ctx, dir, "keys.test.mjs")
	})

	t.Run("queues, URL groups, batch and flow control", func(t *testing.T) {
		runAgainstFerry(t, ctx, dir, "queues.test.mjs")
	})

	t.Run("schedules", func(t *testing.T) {
		// One cron minute lasts one second, so "* * * * *" fires every second.
		runAgainstFerry(t, ctx, dir, "schedules.test.mjs", "--schedule-tick", "1s")
	})

	t.Run("dev mode", func(t *testing.T) {
		port := startDev(t, ctx)
		runNode(t, ctx, dir, "dev.test.mjs", map[string]string{
			"QSTASH_DEV":      "true",
			"QSTASH_DEV_PORT": strconv.Itoa(port),
			// The SDK caches a downloaded dev server under $HOME. dev.test.mjs
			// blocks that download, and a temporary HOME keeps a binary
			// cached by earlier use of the SDK from being started instead.
			"HOME": t.TempDir(),
		})
	})
}

// runAgainstFerry starts a Ferry server with the extra ferry serve flags
// serveArgs and runs the node test file against it, passing the server's
// URL, token and signing keys in FERRY_* variables.
func runAgainstFerry(t *testing.T, ctx context.Context, dir, file string, serveArgs ...string) {
	t.Helper()
	p := ferrytest.Start(t, ferrytest.Options{DB: filepath.Join(t.TempDir(), "ferry.db"), Args: serveArgs})
	current, next := signingKeys(t, ctx, p)
	runNode(t, ctx, dir, file, map[string]string{
		"FERRY_URL":                 p.URL,
		"FERRY_TOKEN":               p.Token,
		"FERRY_CURRENT_SIGNING_KEY": current,
		"FERRY_NEXT_SIGNING_KEY":    next,
	})
}

// requireTool fails the test when name is not in PATH.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in PATH: install Node.js 20 or newer with npm to run the SDK interop tests (%v)", name, err)
	}
}

// installPackages runs npm ci in dir unless dir/node_modules exists.
func installPackages(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err == nil {
		return
	}
	requireTool(t, "npm")
	t.Logf("interop/node_modules is missing, running npm ci in %s", dir)
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s failed: %v\n%s", dir, err, out)
	}
}

// signingKeys reads the server's signing keys from GET /v2/keys.
func signingKeys(t *testing.T, ctx context.Context, p *ferrytest.Process) (current, next string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v2/keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v2/keys failed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/keys returned status %d, expected 200", resp.StatusCode)
	}

	var keys struct {
		Current string `json:"current"`
		Next    string `json:"next"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatalf("decoding the GET /v2/keys response failed: %v", err)
	}
	if keys.Current == "" || keys.Next == "" {
		t.Fatalf("GET /v2/keys returned an empty key: current=%q next=%q", keys.Current, keys.Next)
	}
	return keys.Current, keys.Next
}

// startDev runs `ferry dev` on a free port of 127.0.0.1 until the test ends
// and returns the port once the server accepts requests.
func startDev(t *testing.T, ctx context.Context) int {
	t.Helper()
	port := freePort(t)
	cmd := exec.CommandContext(ctx, ferrytest.Binary(t), "dev",
		"--port", strconv.Itoa(port),
		"--db", filepath.Join(t.TempDir(), "ferry-dev.db"))
	// FERRY_* variables set flags of ferry dev, so the test drops inherited ones.
	cmd.Env = environment(nil, "FERRY_")
	var output syncBuffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ferry dev failed: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("ferry dev output:\n%s", output.String())
		}
	})

	// ferry dev prints this line to stdout once it listens.
	ready := fmt.Sprintf("Ferry dev server at http://127.0.0.1:%d is running.", port)
	started := ferrytest.WaitFor(ctx, 30*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
			return strings.Contains(output.String(), ready)
		}
	})
	select {
	case <-done:
		t.Fatalf("ferry dev exited before listening:\n%s", output.String())
	default:
	}
	if !started {
		t.Fatalf("ferry dev did not print %q within 30s:\n%s", ready, output.String())
	}
	return port
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port failed: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runNode runs `node --test file` in dir with vars added to the environment,
// writes its output to the test log line by line, and fails the test when
// node fails.
func runNode(t *testing.T, ctx context.Context, dir, file string, vars map[string]string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", file)
	cmd.Dir = dir
	// Inherited QSTASH_* variables would redirect the SDK, for example to
	// the dev server or to another region's credentials.
	cmd.Env = environment(vars, "QSTASH_", "FERRY_", "NODE_OPTIONS=")
	log := &lineLogger{t: t}
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.WaitDelay = 5 * time.Second

	err := cmd.Run()
	log.Flush()
	if ctx.Err() != nil {
		t.Fatalf("node --test %s did not finish within %s", file, testTimeout)
	}
	if err != nil {
		t.Fatalf("node --test %s failed: %v (see the node output above)", file, err)
	}
}

// environment returns os.Environ() without the variables whose "NAME=value"
// form starts with one of dropPrefixes, plus vars.
func environment(vars map[string]string, dropPrefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		drop := false
		for _, prefix := range dropPrefixes {
			if strings.HasPrefix(kv, prefix) {
				drop = true
				break
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	for name, value := range vars {
		env = append(env, name+"="+value)
	}
	return env
}

// lineLogger writes each complete line it receives to the test log.
type lineLogger struct {
	t       *testing.T
	mu      sync.Mutex
	pending []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p...)
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.pending[:i]))
		l.pending = l.pending[i+1:]
	}
}

// Flush logs a last line that did not end in a newline.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		l.t.Log(string(l.pending))
		l.pending = nil
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
