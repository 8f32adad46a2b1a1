package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/wire"
)

func newQueuesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "List, create, pause and delete queues",
		Long: `Manage queues. A queue starts its messages in the order they were
enqueued, at most its parallelism at a time; a message counts until it and
its callbacks are delivered or failed. Enqueue with
POST /v2/enqueue/{queue}/{destination}; the queue is created on first use.`,
	}
	cmd.AddCommand(newQueuesListCommand(), newQueuesGetCommand(), newQueuesUpsertCommand(),
		newQueuesDeleteCommand(), newQueuesPauseCommand(true), newQueuesPauseCommand(false))
	return cmd
}

func newQueuesListCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List queues with their parallelism and lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			queues, err := c.QueueList(cmd.Context())
			if err != nil {
				return err
			}
			if queues == nil {
				queues = []wire.Queue{}
			}
			return flags.print(cmd.OutOrStdout(), queues, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "NAME\tPARALLELISM\tLAG\tPAUSED\tCREATED")
				for _, q := range queues {
					fmt.Fprintf(t, "%s\t%d\t%d\t%t\t%s\n", q.Name, q.Parallelism, q.Lag, q.Paused, formatMillis(q.CreatedAt))
				}
				t.Flush()
			})
		},
	}
	flags.register(cmd)
	return cmd
}

func printQueue(w io.Writer, q *wire.Queue) {
	t := table(w)
	fmt.Fprintf(t, "name\t%s\n", q.Name)
	fmt.Fprintf(t, "parallelism\t%d\n", q.Parallelism)
	fmt.Fprintf(t, "lag\t%d\n", q.Lag)
	fmt.Fprintf(t, "paused\t%t\n", q.Paused)
	fmt.Fprintf(t, "created\t%s\n", formatMillis(q.CreatedAt))
	fmt.Fprintf(t, "updated\t%s\n", formatMillis(q.UpdatedAt))
	t.Flush()
}

func newQueuesGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get QUEUE",
		Short: "Show a queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			q, err := c.QueueGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), q, func(w io.Writer) { printQueue(w, q) })
		},
	}
	flags.register(cmd)
	return cmd
}

func newQueuesUpsertCommand() *cobra.Command {
	var flags clientFlags
	var parallelism int
	var paused bool
	cmd := &cobra.Command{
		Use:   "upsert QUEUE",
		Short: "Create a queue or change its parallelism or paused state",
		Long: `Create a queue or change its settings. Only the flags given change an
existing queue; a new queue gets parallelism 1 and runs unless the flags
say otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			req := wire.QueueUpsertRequest{QueueName: args[0]}
			if cmd.Flags().Changed("parallelism") {
				req.Parallelism = &parallelism
			}
			if cmd.Flags().Changed("paused") {
				req.Paused = &paused
			}
			q, err := c.QueueUpsert(cmd.Context(), req)
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), q, func(w io.Writer) { printQueue(w, q) })
		},
	}
	cmd.Flags().IntVar(&parallelism, "parallelism", 1, "maximum number of messages in flight")
	cmd.Flags().BoolVar(&paused, "paused", false, "pause (true) or resume (false) the queue")
	flags.register(cmd)
	return cmd
}

func newQueuesDeleteCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "delete QUEUE",
		Short: "Delete a queue and cancel its undelivered messages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.QueueDelete(cmd.Context(), args[0]); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted queue %s\n", args[0])
			})
		},
	}
	flags.register(cmd)
	return cmd
}

// newQueuesPauseCommand returns "queues pause" when pause is true and
// "queues resume" otherwise.
func newQueuesPauseCommand(pause bool) *cobra.Command {
	var flags clientFlags
	use, short, done := "resume QUEUE", "Resume a paused queue with its earliest undelivered message", "resumed"
	if pause {
		use, short, done = "pause QUEUE", "Pause a queue: it keeps accepting messages but starts none", "paused"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.QueuePause(cmd.Context(), args[0], pause); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{done: args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "%s queue %s\n", done, args[0])
			})
		},
	}
	flags.register(cmd)
	return cmd
}
