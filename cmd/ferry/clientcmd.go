package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferryhq/ferry/client"
)

// clientFlags are the connection flags of commands that call a server.
type clientFlags struct {
	url   string
	token string
	json  bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "url", "http://127.0.0.1:8080", "base URL of the Ferry server (env FERRY_URL)")
	cmd.Flags().StringVar(&f.token, "token", devToken, "API token (env FERRY_TOKEN; the default is the public token of ferry dev)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON for scripts instead of text")
}

// client returns an API client after applying FERRY_* environment values.
func (f *clientFlags) client(cmd *cobra.Command) (*client.Client, error) {
	if err := bindEnv(cmd); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(f.url, "http://") && !strings.HasPrefix(f.url, "https://") {
		return nil, fmt.Errorf("invalid --url %q: use the server's base URL with its scheme, such as http://127.0.0.1:8080", f.url)
	}
	if f.token == "" {
		return nil, fmt.Errorf("missing token: set --token or FERRY_TOKEN to the server's API token")
	}
	return client.New(f.url, f.token), nil
}

// print writes v as indented JSON when --json is set, and otherwise calls
// text to write the human form.
func (f *clientFlags) print(w io.Writer, v any, text func(w io.Writer)) error {
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(w)
	return nil
}

// table returns a tab-aligned writer for columns.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// formatMillis renders Unix milliseconds as an RFC 3339 UTC time, or "-".
func formatMillis(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

// newProgress returns a progress bar on stderr when stderr is a terminal,
// and nil otherwise, so scripts and logs get no control characters.
func newProgress(total int, what string) *progressbar.ProgressBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	)
}

// splitComma splits repeated or comma-separated flag values.
func splitComma(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
