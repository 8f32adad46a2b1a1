// Command ferry runs the Ferry server and talks to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Ferry delivers messages and runs jobs over HTTP; it speaks the QStash v2 API",
		Long: `Ferry stores messages durably and delivers them to HTTP endpoints with
delays, retries, signatures and a dead-letter queue. Apps written for the
Upstash QStash SDKs run against it unchanged.

Start a development server:  ferry dev
Start a production server:   ferry serve --token <secret> --db ferry.db`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCommand(), newServeCommand(), newVersionCommand(),
		newMessagesCommand(), newDLQCommand(), newEventsCommand(), newKeysCommand())
	root.AddCommand(newSchedulesCommand())
	root.AddCommand(newBenchCommand())
	root.AddCommand(newJobsCommand())
	root.AddCommand(newQueuesCommand(), newTopicsCommand(), newFlowCommand())
	return root
}

// bindEnv gives every flag of cmd that the user did not set the value of
// the environment variable FERRY_<FLAG>, with dashes as underscores.
func bindEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "FERRY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s=%q: %w", name, v, err))
		}
	})
	return errors.Join(errs...)
}
