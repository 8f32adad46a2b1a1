package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/store"
)

// The public credentials of the QStash development server (its first user).
// The QStash TypeScript SDK's dev mode uses the same values, so apps with
// QSTASH_DEV=true work against `ferry dev` unchanged. They are public: never
// use them outside development.
const (
	devToken      = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
	devCurrentKey = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
	devNextKey    = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
)

func newDevCommand() *cobra.Command {
	var flags serverFlags
	var port int

	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a development server on 127.0.0.1 with the public QStash dev credentials",
		Long: `Run a development server on 127.0.0.1:8080 with the public token and
signing keys of the QStash development server, so apps with QSTASH_DEV=true
and the SDKs' receivers work against it unchanged. Data goes to a SQLite file
in a temporary directory unless --db names one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			logger, err := flags.logger(os.Stderr)
			if err != nil {
				return err
			}

			if flags.db == "" {
				dir, err := os.MkdirTemp("", "ferry-dev-")
				if err != nil {
					return fmt.Errorf("create a temporary directory for the dev database: %w; pass --db to choose a file", err)
				}
				defer os.RemoveAll(dir)
				flags.db = filepath.Join(dir, "ferry.db")
			}
			if flags.nodeID == "" {
				flags.nodeID = "dev"
			}

			cfg, err := flags.nodeConfig(logger)
			if err != nil {
				return err
			}
			cfg.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			cfg.Token = devToken
			cfg.Keys = &store.SigningKeys{Current: devCurrentKey, Next: devNextKey}
			out := cmd.OutOrStdout()
			cfg.Started = func(addr net.Addr) {
				url := "http://" + addr.String()
				fmt.Fprintf(out, "Ferry development server (QStash compatible), data in %s\n\n", flags.db)
				fmt.Fprintf(out, "Paste into your .env:\n\n")
				fmt.Fprintf(out, "QSTASH_URL=%q\n", url)
				fmt.Fprintf(out, "QSTASH_TOKEN=%q\n", devToken)
				fmt.Fprintf(out, "QSTASH_CURRENT_SIGNING_KEY=%q\n", devCurrentKey)
				fmt.Fprintf(out, "QSTASH_NEXT_SIGNING_KEY=%q\n\n", devNextKey)
				fmt.Fprintf(out, "Ferry dev server at %s is running.\n", url)
			}
			return node.Run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().IntVar(&port, "port", 8080, "TCP port on 127.0.0.1")
	flags.register(cmd, "", "SQLite database file (default: a file in a new temporary directory, removed at exit)")
	return cmd
}
