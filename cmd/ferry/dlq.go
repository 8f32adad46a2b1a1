package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/wire"
)

// dlqPage is the page size of bulk dead-letter commands, the server's
// maximum.
const dlqPage = 100

func newDLQCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, inspect, retry and delete dead-letter entries",
	}
	cmd.AddCommand(newDLQListCommand(), newDLQGetCommand(), newDLQRetryCommand(), newDLQDeleteCommand())
	return cmd
}

// dlqFilterFlags select dead-letter entries.
type dlqFilterFlags struct {
	urls, queues, labels, statuses []string
}

func (f *dlqFilterFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.urls, "destination", nil, "only entries for this destination URL (repeatable)")
	cmd.Flags().StringSliceVar(&f.queues, "queue", nil, "only entries of this queue (repeatable)")
	cmd.Flags().StringSliceVar(&f.labels, "label", nil, "only entries with this label (repeatable)")
	cmd.Flags().StringSliceVar(&f.statuses, "status", nil, "only entries whose last response had this HTTP status (repeatable)")
}

func (f *dlqFilterFlags) filter() *client.Filter {
	return &client.Filter{URLs: splitComma(f.urls), QueueNames: splitComma(f.queues), Labels: splitComma(f.labels),
		ResponseStatuses: splitComma(f.statuses)}
}

func filterOfIDs(ids []string) *client.Filter {
	return &client.Filter{MessageIDs: ids}
}

func newDLQListCommand() *cobra.Command {
	var flags clientFlags
	var filter dlqFilterFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead-letter entries, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			// Empty lists print as [] in JSON, which scripts can iterate.
			entries := []wire.DLQMessage{}
			cursor := ""
			for limit <= 0 || len(entries) < limit {
				page, err := c.DLQList(cmd.Context(), filter.filter(), cursor, dlqPage)
				if err != nil {
					return err
				}
				entries = append(entries, page.Messages...)
				if page.Cursor == "" {
					break
				}
				cursor = page.Cursor
			}
			if limit > 0 && len(entries) > limit {
				entries = entries[:limit]
			}
			return flags.print(cmd.OutOrStdout(), entries, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "DLQ ID\tMESSAGE ID\tSTATUS\tURL\tCREATED AT")
				for _, e := range entries {
					fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\n", e.DLQID, e.MessageID, e.ResponseStatus, e.URL, formatMillis(e.CreatedAt))
				}
				t.Flush()
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many entries (0: all)")
	filter.register(cmd)
	flags.register(cmd)
	return cmd
}

func newDLQGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get DLQ_ID",
		Short: "Show a dead-letter entry with its last response",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			e, err := c.DLQGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), e, func(w io.Writer) {
				fmt.Fprintf(w, "dlq id       %s\n", e.DLQID)
				printMessage(w, &e.Message)
				fmt.Fprintf(w, "last status  %d\n", e.ResponseStatus)
				if e.Error != "" {
					fmt.Fprintf(w, "last error   %s\n", e.Error)
				}
				if e.ResponseBody != "" {
					fmt.Fprintf(w, "last body    %s\n", truncateText(e.ResponseBody, 400))
				}
			})
		},
	}
	flags.register(cmd)
	return cmd
}

// dlqBulk runs a page-wise bulk operation over the entries f selects,
// with a progress bar on a terminal. op returns how many entries the page
// handled and the cursor to continue with.
func dlqBulk(ctx context.Context, c *client.Client, f *client.Filter, what string,
	op func(cursor string) (int, string, error)) (int, error) {
	// Count first, so the progress bar has a total.
	total := 0
	cursor := ""
	for {
		page, err := c.DLQList(ctx, f, cursor, dlqPage)
		if err != nil {
			return 0, err
		}
		total += len(page.Messages)
		if page.Cursor == "" {
			break
		}
		cursor = page.Cursor
	}

	bar := newProgress(total, what)
	done := 0
	cursor = ""
	for {
		n, next, err := op(cursor)
		if err != nil {
			return done, fmt.Errorf("%s stopped after %d entries: %w; run the command again to continue", what, done, err)
		}
		done += n
		if bar != nil {
			bar.Add(n)
		}
		if next == "" || n == 0 {
			break
		}
		cursor = next
	}
	if bar != nil {
		bar.Finish()
	}
	return done, nil
}

func newDLQRetryCommand() *cobra.Command {
	var flags clientFlags
	var filter dlqFilterFlags
	var all bool
	var retries int
	cmd := &cobra.Command{
		Use:   "retry [DLQ_ID...]",
		Short: "Deliver dead-letter entries again as new messages",
		Long: `Deliver dead-letter entries again as new messages; each retried entry
leaves the dead-letter queue. Name entries by id, or select them with
--all and the filter flags.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return fmt.Errorf("name the entries to retry, or pass --all (with filters to narrow it)")
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			header := http.Header{}
			if cmd.Flags().Changed("retries") {
				header.Set("Upstash-Retries", strconv.Itoa(retries))
			}

			responses := []wire.PublishResponse{}
			if len(args) > 0 {
				for _, id := range args {
					r, err := c.DLQRetry(cmd.Context(), id, header)
					if err != nil {
						return fmt.Errorf("retry %s: %w", id, err)
					}
					responses = append(responses, *r)
				}
			} else {
				f := filter.filter()
				_, err := dlqBulk(cmd.Context(), c, f, "retrying", func(cursor string) (int, string, error) {
					// Retried entries leave the queue, so each page starts
					// from the front again.
					page, err := c.DLQRetryPage(cmd.Context(), f, "", dlqPage, header)
					if err != nil {
						return 0, "", err
					}
					responses = append(responses, page.Responses...)
					return len(page.Responses), page.Cursor, nil
				})
				if err != nil {
					return err
				}
			}
			return flags.print(cmd.OutOrStdout(), wire.DLQRetryResponse{Responses: responses}, func(w io.Writer) {
				fmt.Fprintf(w, "retried %d entr%s as new messages\n", len(responses), plural(len(responses), "y", "ies"))
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every entry that the filters select")
	cmd.Flags().IntVar(&retries, "retries", 0, "override the retries of the new messages")
	filter.register(cmd)
	flags.register(cmd)
	return cmd
}

func newDLQDeleteCommand() *cobra.Command {
	var flags clientFlags
	var filter dlqFilterFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "delete [DLQ_ID...]",
		Short: "Delete dead-letter entries",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return fmt.Errorf("name the entries to delete, or pass --all (with filters to narrow it)")
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}

			deleted := 0
			if len(args) > 0 {
				for _, id := range args {
					if err := c.DLQDelete(cmd.Context(), id); err != nil {
						return fmt.Errorf("delete %s: %w", id, err)
					}
					deleted++
				}
			} else {
				f := filter.filter()
				deleted, err = dlqBulk(cmd.Context(), c, f, "deleting", func(cursor string) (int, string, error) {
					page, err := c.DLQDeletePage(cmd.Context(), f, "", dlqPage)
					if err != nil {
						return 0, "", err
					}
					return page.Deleted, page.Cursor, nil
				})
				if err != nil {
					return err
				}
			}
			return flags.print(cmd.OutOrStdout(), wire.DLQDeleteResponse{Deleted: deleted}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted %d entr%s\n", deleted, plural(deleted, "y", "ies"))
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "delete every entry that the filters select")
	filter.register(cmd)
	flags.register(cmd)
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
