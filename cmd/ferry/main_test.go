package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
)

// commandPaths returns the argument path of cmd and of every command below
// it, such as ["dlq", "retry"], depth first. The root's path is empty.
func commandPaths(cmd *cobra.Command, prefix []string) [][]string {
	paths := [][]string{prefix}
	for _, sub := range cmd.Commands() {
		if sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		path := append(append([]string(nil), prefix...), sub.Name())
		paths = append(paths, commandPaths(sub, path)...)
	}
	return paths
}

// runCommand runs a new root command with args and returns its standard
// output and error. A panic, as cobra raises for colliding flag names,
// becomes an error.
func runCommand(ctx context.Context, args ...string) (stdout string, err error) {
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	err = root.ExecuteContext(ctx)
	if errOut.Len() > 0 && err == nil {
		err = fmt.Errorf("unexpected output on stderr: %s", errOut.String())
	}
	return out.String(), err
}

// buildRoot returns the root command, failing the test when building it
// panics, as pflag does when one command defines a flag name twice.
func buildRoot(t *testing.T) (root *cobra.Command) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("building the command tree panicked: %v", r)
		}
	}()
	return newRootCommand()
}

func TestHelpForEveryCommand(t *testing.T) {
	paths := commandPaths(buildRoot(t), nil)

	// The tree had 16 commands when this test was written, so fewer means
	// the walk stopped early.
	if len(paths) < 1+7+2+4+2 {
		t.Errorf("found %d commands, want at least 16: %v", len(paths), paths)
	}
	for _, path := range paths {
		name := strings.Join(append([]string{"ferry"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			out, err := runCommand(context.Background(), append(path, "--help")...)
			if err != nil {
				t.Fatalf("%s --help: %v", name, err)
			}
			if !strings.Contains(out, "Usage:") {
				t.Errorf("%s --help printed no usage:\n%s", name, out)
			}
			if !strings.Contains(out, name) {
				t.Errorf("%s --help does not name the command:\n%s", name, out)
			}
		})
	}
}

func TestHelpShorthandH(t *testing.T) {
	for _, path := range commandPaths(buildRoot(t), nil) {
		name := strings.Join(append([]string{"ferry"}, path...), " ")
		if _, err := runCommand(context.Background(), append(path, "-h")...); err != nil {
			t.Errorf("%s -h: %v", name, err)
		}
	}
}

func TestNewProgressWithoutTerminal(t *testing.T) {
	// A regular file is never a terminal, whatever runs the test.
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	defer func() { os.Stderr = saved }()

	if bar := newProgress(1000, "retrying"); bar != nil {
		t.Errorf("newProgress returned a progress bar although stderr is a regular file")
	}
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != 0 {
		t.Errorf("newProgress wrote %d bytes to stderr without a terminal", info.Size())
	}
}

// keysOutput is the JSON that ferry keys get --json prints.
type keysOutput struct {
	Current string `json:"current"`
	Next    string `json:"next"`
}

// decodeKeysOutput decodes out strictly: one object with exactly the
// fields current and next.
func decodeKeysOutput(t *testing.T, out string) keysOutput {
	t.Helper()
	decoder := json.NewDecoder(strings.NewReader(out))
	decoder.DisallowUnknownFields()
	var keys keysOutput
	if err := decoder.Decode(&keys); err != nil {
		t.Fatalf("output is not the keys object: %v\n%s", err, out)
	}
	if decoder.More() {
		t.Errorf("output has more than one JSON value:\n%s", out)
	}
	if !strings.HasPrefix(keys.Current, "sig_") || !strings.HasPrefix(keys.Next, "sig_") {
		t.Errorf("keys = %+v, want two keys with the sig_ prefix", keys)
	}
	return keys
}

func TestKeysJSONOutput(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connection := []string{"--json", "--url", p.URL, "--token", p.Token}

	out, err := runCommand(ctx, append([]string{"keys", "get"}, connection...)...)
	if err != nil {
		t.Fatalf("ferry keys get --json: %v", err)
	}
	got := decodeKeysOutput(t, out)

	served, err := client.New(p.URL, p.Token).Keys(ctx)
	if err != nil {
		t.Fatalf("GET /v2/keys: %v", err)
	}
	if got.Current != served.Current || got.Next != served.Next {
		t.Errorf("ferry keys get --json = %+v, want the served keys %+v", got, *served)
	}

	out, err = runCommand(ctx, append([]string{"keys", "rotate"}, connection...)...)
	if err != nil {
		t.Fatalf("ferry keys rotate --json: %v", err)
	}
	rotated := decodeKeysOutput(t, out)
	if rotated.Current != got.Next {
		t.Errorf("rotated current = %q, want the previous next key %q", rotated.Current, got.Next)
	}
	if rotated.Next == got.Next || rotated.Next == got.Current {
		t.Errorf("rotated next = %q, want a new key", rotated.Next)
	}

	out, err = runCommand(ctx, append([]string{"keys", "get"}, connection...)...)
	if err != nil {
		t.Fatalf("ferry keys get --json after the rotation: %v", err)
	}
	if after := decodeKeysOutput(t, out); after != rotated {
		t.Errorf("keys after the rotation = %+v, want %+v", after, rotated)
	}
}

func TestKeysTextOutput(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := runCommand(ctx, "keys", "get", "--url", p.URL, "--token", p.Token)
	if err != nil {
		t.Fatalf("ferry keys get: %v", err)
	}
	served, err := client.New(p.URL, p.Token).Keys(ctx)
	if err != nil {
		t.Fatalf("GET /v2/keys: %v", err)
	}
	want := "QSTASH_CURRENT_SIGNING_KEY=" + served.Current + "\nQSTASH_NEXT_SIGNING_KEY=" + served.Next + "\n"
	if out != want {
		t.Errorf("ferry keys get printed %q, want %q", out, want)
	}
}

func TestEmptyListsJSONOutput(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connection := []string{"--json", "--url", p.URL, "--token", p.Token}

	// Scripts iterate over these with jq '.[]', which fails on null.
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "list"}, "[]\n"},
		{[]string{"dlq", "retry", "--all"}, "{\n  \"responses\": []\n}\n"},
		{[]string{"dlq", "delete", "--all"}, "{\n  \"deleted\": 0\n}\n"},
	}
	for _, tt := range tests {
		name := strings.Join(tt.args, " ")
		t.Run(name, func(t *testing.T) {
			out, err := runCommand(ctx, append(tt.args, connection...)...)
			if err != nil {
				t.Fatalf("ferry %s --json: %v", name, err)
			}
			if out != tt.want {
				t.Errorf("ferry %s --json printed %q, want %q", name, out, tt.want)
			}
		})
	}
}

func TestClientCommandReportsServerError(t *testing.T) {
	p := ferrytest.Start(t, ferrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := runCommand(ctx, "keys", "get", "--url", p.URL, "--token", "wrong-token")
	if err == nil || !strings.Contains(err.Error(), "server answered 401") {
		t.Errorf("ferry keys get with a wrong token: error %v, want one naming status 401", err)
	}
	_, err = runCommand(ctx, "dlq", "get", "dlq_missing", "--url", p.URL, "--token", p.Token)
	if !client.IsNotFound(err) {
		t.Errorf("ferry dlq get of a missing entry: error %v, want a 404", err)
	}
}
