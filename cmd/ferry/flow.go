package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/wire"
)

func newFlowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flow",
		Short: "Inspect and control flow-control keys",
		Long: `Inspect and control flow-control keys. Messages published with the
same Upstash-Flow-Control-Key share its limits: at most parallelism
attempts in flight and at most rate attempts started in any window of the
period, whatever their destination.`,
	}
	cmd.AddCommand(newFlowListCommand(), newFlowGetCommand(), newFlowActionCommand("pause"),
		newFlowActionCommand("resume"), newFlowActionCommand("reset-rate"), newFlowPinCommand(),
		newFlowUnpinCommand(), newFlowGlobalCommand())
	return cmd
}

func printFlowControls(w io.Writer, list []wire.FlowControl) {
	t := table(w)
	fmt.Fprintln(t, "KEY\tWAITING\tIN FLIGHT\tPARALLELISM\tRATE\tPERIOD\tSTARTED IN PERIOD\tPAUSED\tPINNED")
	for _, f := range list {
		pinned := "-"
		switch {
		case f.IsPinnedParallelism && f.IsPinnedRate:
			pinned = "parallelism, rate"
		case f.IsPinnedParallelism:
			pinned = "parallelism"
		case f.IsPinnedRate:
			pinned = "rate"
		}
		fmt.Fprintf(t, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%t\t%s\n", f.FlowControlKey, f.WaitListSize, f.ParallelismCount,
			limitText(f.ParallelismMax), limitText(f.RateMax), time.Duration(f.RatePeriod)*time.Second, f.RateCount,
			f.IsPaused, pinned)
	}
	t.Flush()
}

// limitText renders a limit, where 0 means none.
func limitText(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func newFlowListCommand() *cobra.Command {
	var flags clientFlags
	var search string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List flow-control keys with their limits and counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.FlowControlList(cmd.Context(), search)
			if err != nil {
				return err
			}
			if list == nil {
				list = []wire.FlowControl{}
			}
			return flags.print(cmd.OutOrStdout(), list, func(w io.Writer) { printFlowControls(w, list) })
		},
	}
	cmd.Flags().StringVar(&search, "search", "", "only keys that contain this text")
	flags.register(cmd)
	return cmd
}

func newFlowGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Show a flow-control key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			f, err := c.FlowControlGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), f, func(w io.Writer) { printFlowControls(w, []wire.FlowControl{*f}) })
		},
	}
	flags.register(cmd)
	return cmd
}

// flowActions maps the pause, resume and reset-rate commands to their API
// action and text.
var flowActions = map[string]struct{ action, short, done string }{
	"pause":      {"pause", "Pause a key: its messages wait until it is resumed", "paused"},
	"resume":     {"resume", "Resume a paused key", "resumed"},
	"reset-rate": {"resetRate", "Forget the attempts started in the current rate period", "reset the rate of"},
}

func newFlowActionCommand(name string) *cobra.Command {
	var flags clientFlags
	a := flowActions[name]
	cmd := &cobra.Command{
		Use:   name + " KEY",
		Short: a.short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.FlowControlAction(cmd.Context(), args[0], a.action, nil); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{"key": args[0], "action": a.action}, func(w io.Writer) {
				fmt.Fprintf(w, "%s flow-control key %s\n", a.done, args[0])
			})
		},
	}
	flags.register(cmd)
	return cmd
}

func newFlowPinCommand() *cobra.Command {
	var flags clientFlags
	var parallelism, rate int
	var period time.Duration
	cmd := &cobra.Command{
		Use:   "pin KEY",
		Short: "Pin the parallelism or rate of a key, so new messages do not change them",
		Long: `Pin the parallelism, the rate with its period, or both. While pinned, the
values that new messages carry are ignored. Pinning a rate also resets it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if parallelism == 0 && rate == 0 && period == 0 {
				return fmt.Errorf("nothing to pin: set --parallelism, --rate or --period")
			}
			if period%time.Second != 0 {
				return fmt.Errorf("invalid --period %s: use whole seconds", period)
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.FlowControlPin(cmd.Context(), args[0], parallelism, rate, int(period/time.Second)); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{"pinned": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "pinned flow-control key %s\n", args[0])
			})
		},
	}
	cmd.Flags().IntVar(&parallelism, "parallelism", 0, "maximum number of attempts in flight")
	cmd.Flags().IntVar(&rate, "rate", 0, "maximum number of attempts started per period")
	cmd.Flags().DurationVar(&period, "period", 0, "length of the rate period, in whole seconds, such as 1s or 1m")
	flags.register(cmd)
	return cmd
}

func newFlowUnpinCommand() *cobra.Command {
	var flags clientFlags
	var parallelism, rate bool
	cmd := &cobra.Command{
		Use:   "unpin KEY",
		Short: "Let new messages set the parallelism or rate of a key again",
		Long:  "Unpin the parallelism (--parallelism), the rate (--rate), or both when neither flag is given.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !parallelism && !rate {
				parallelism, rate = true, true
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.FlowControlUnpin(cmd.Context(), args[0], parallelism, rate); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{"unpinned": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "unpinned flow-control key %s\n", args[0])
			})
		},
	}
	cmd.Flags().BoolVar(&parallelism, "parallelism", false, "unpin the parallelism")
	cmd.Flags().BoolVar(&rate, "rate", false, "unpin the rate and its period")
	flags.register(cmd)
	return cmd
}

func newFlowGlobalCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "global",
		Short: "Show the attempts in flight on all nodes and this node's maximum",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			g, err := c.GlobalParallelism(cmd.Context())
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), g, func(w io.Writer) {
				fmt.Fprintf(w, "in flight %d, maximum %d\n", g.ParallelismCount, g.ParallelismMax)
			})
		},
	}
	flags.register(cmd)
	return cmd
}
