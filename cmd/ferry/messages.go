package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/wire"
)

func newMessagesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "messages",
		Short: "Read and cancel messages",
	}
	cmd.AddCommand(newMessagesGetCommand(), newMessagesCancelCommand())
	return cmd
}

func newMessagesGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get MESSAGE_ID",
		Short: "Show a message",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			m, err := c.MessageGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), m, func(w io.Writer) { printMessage(w, m) })
		},
	}
	flags.register(cmd)
	return cmd
}

func printMessage(w io.Writer, m *wire.Message) {
	t := table(w)
	fmt.Fprintf(t, "id\t%s\n", m.MessageID)
	fmt.Fprintf(t, "url\t%s\n", m.URL)
	fmt.Fprintf(t, "method\t%s\n", m.Method)
	fmt.Fprintf(t, "created\t%s\n", formatMillis(m.CreatedAt))
	fmt.Fprintf(t, "not before\t%s\n", formatMillis(m.NotBefore))
	fmt.Fprintf(t, "max retries\t%d\n", m.MaxRetries)
	if m.RetryDelayExpression != "" {
		fmt.Fprintf(t, "retry delay\t%s\n", m.RetryDelayExpression)
	}
	if m.Callback != "" {
		fmt.Fprintf(t, "callback\t%s\n", m.Callback)
	}
	if m.FailureCallback != "" {
		fmt.Fprintf(t, "failure callback\t%s\n", m.FailureCallback)
	}
	if len(m.Labels) > 0 {
		fmt.Fprintf(t, "labels\t%s\n", strings.Join(m.Labels, ", "))
	}
	for name, values := range m.Header {
		fmt.Fprintf(t, "header\t%s: %s\n", name, strings.Join(values, ", "))
	}
	switch {
	case m.Body != "":
		fmt.Fprintf(t, "body\t%s\n", truncateText(m.Body, 400))
	case m.BodyBase64 != "":
		fmt.Fprintf(t, "body (base64)\t%s\n", truncateText(m.BodyBase64, 400))
	}
	t.Flush()
}

func newMessagesCancelCommand() *cobra.Command {
	var flags clientFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "cancel [MESSAGE_ID...]",
		Short: "Cancel messages that are waiting or in flight",
		Long: `Cancel messages by id, or every waiting message with --all. A message in
flight gets no further attempts, though its current attempt may still reach
the destination.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return fmt.Errorf("name the messages to cancel, or pass --all to cancel every waiting message")
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}

			var n int
			if len(args) == 1 {
				n, err = c.MessageCancel(cmd.Context(), args[0])
			} else {
				n, err = c.MessagesCancel(cmd.Context(), filterOfIDs(args))
			}
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), wire.CancelResponse{Cancelled: n}, func(w io.Writer) {
				fmt.Fprintf(w, "cancelled %d message(s)\n", n)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "cancel every waiting message")
	flags.register(cmd)
	return cmd
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
