package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/wire"
)

func newEventsCommand() *cobra.Command {
	var flags clientFlags
	var messageIDs, states, urls, queues, labels []string
	var limit int
	var follow bool
	var interval time.Duration

	cmd := &cobra.Command{
		Use:   "events",
		Short: "List message events (state changes), newest first, or follow new ones",
		Long: `List message events: CREATED, ACTIVE, RETRY, ERROR, DELIVERED, FAILED,
CANCEL_REQUESTED and CANCELED, with the response status and error of
failed attempts. With --follow, print events oldest first and keep
printing new ones until interrupted; --json then prints one JSON object
per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			f := &client.Filter{MessageIDs: splitComma(messageIDs), States: splitComma(states), URLs: splitComma(urls),
				QueueNames: splitComma(queues), Labels: splitComma(labels)}
			out := cmd.OutOrStdout()

			if follow {
				return followEvents(cmd, c, f, flags.json, interval)
			}

			if limit < 1 || limit > 1000 {
				return fmt.Errorf("invalid --limit %d: use a number from 1 to 1000", limit)
			}
			page, err := c.Events(cmd.Context(), f, "", limit, "latestFirst")
			if err != nil {
				return err
			}
			return flags.print(out, page.Events, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "TIME\tMESSAGE ID\tSTATE\tSTATUS\tURL\tERROR")
				for _, e := range page.Events {
					printEventRow(t, e)
				}
				t.Flush()
			})
		},
	}
	cmd.Flags().StringSliceVar(&messageIDs, "message", nil, "only events of this message id (repeatable)")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only events in this state (repeatable)")
	cmd.Flags().StringSliceVar(&urls, "destination", nil, "only events of this destination URL (repeatable)")
	cmd.Flags().StringSliceVar(&queues, "queue", nil, "only events of this queue (repeatable)")
	cmd.Flags().StringSliceVar(&labels, "label", nil, "only events of messages with this label (repeatable)")
	cmd.Flags().IntVar(&limit, "limit", 100, "maximum number of events to list (at most 1000)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --follow asks for new events")
	flags.register(cmd)
	return cmd
}

func printEventRow(w io.Writer, e wire.Event) {
	status := "-"
	if e.ResponseStatus != 0 {
		status = fmt.Sprint(e.ResponseStatus)
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", formatMillis(e.Time), e.MessageID, e.State, status, e.URL, e.Error)
}

// followEvents prints events oldest first and then polls for new ones.
// Events that share the newest printed time are remembered so a poll that
// starts at that time prints none twice.
func followEvents(cmd *cobra.Command, c *client.Client, f *client.Filter, asJSON bool, interval time.Duration) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	enc := json.NewEncoder(out)
	seen := map[string]bool{}
	cursor := ""

	for {
		page, err := c.Events(ctx, f, cursor, 1000, "earliestFirst")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, e := range page.Events {
			key := fmt.Sprintf("%d/%s/%s/%d", e.Time, e.MessageID, e.State, e.Retried)
			if seen[key] {
				continue
			}
			if f.From.IsZero() || e.Time > f.From.UnixMilli() {
				seen = map[string]bool{}
				f.From = time.UnixMilli(e.Time)
			}
			seen[key] = true
			if asJSON {
				enc.Encode(e)
			} else {
				printEventRow(out, e)
			}
		}

		if page.Cursor != "" {
			cursor = page.Cursor
			continue
		}
		cursor = ""
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
