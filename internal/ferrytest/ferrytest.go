// Package ferrytest builds the ferry binary and runs it as a child process
// for end-to-end tests, including tests that kill it with SIGKILL.
package ferrytest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds ./cmd/ferry once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferrytest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/ferry")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ModuleRoot returns the repository's root directory.
func ModuleRoot() string { return moduleRoot() }

// Process is a running ferry server.
type Process struct {
	// URL is the API's base URL, such as http://127.0.0.1:43121.
	URL string

	// Token is the bearer token the server requires.
	Token string

	// DB is the database the server uses.
	DB string

	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

// Options configures Start.
type Options struct {
	// DB is the SQLite path; defaults to a new file in t.TempDir().
	DB string

	// Token defaults to "test-token".
	Token string

	// Args are extra flags for ferry serve.
	Args []string
}

var addrPattern = regexp.MustCompile(`msg="ferry started" addr=(\S+)`)

// Start runs "ferry serve" on 127.0.0.1 with a random port and waits until
// it listens. The process is stopped when the test ends.
func Start(t testing.TB, opts Options) *Process {
	t.Helper()
	if opts.DB == "" {
		opts.DB = filepath.Join(t.TempDir(), "ferry.db")
	}
	if opts.Token == "" {
		opts.Token = "test-token"
	}

	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--db", opts.DB, "--token", opts.Token}, opts.Args...)
	cmd := exec.Command(Binary(t), args...)
	logs := &syncBuffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ferry: %v", err)
	}

	p := &Process{Token: opts.Token, DB: opts.DB, cmd: cmd, logs: logs, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			line := scanner.Text()
			logs.Write([]byte(line + "\n"))
			if m := addrPattern.FindStringSubmatch(line); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("ferry logs:\n%s", p.Logs())
		}
	})

	select {
	case addr := <-addrCh:
		p.URL = "http://" + addr
	case <-p.done:
		t.Fatalf("ferry exited before listening:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry did not start within 30s:\n%s", logs.String())
	}
	return p
}

// Logs returns what the process wrote so far.
func (p *Process) Logs() string { return p.logs.String() }

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
func (p *Process) Stop(timeout time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitFor polls cond every 20 ms until it returns true or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return cond()
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
	return strings.Clone(b.buf.String())
}
