package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferryhq/ferry/wire"
)

func newTopicsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "topics",
		Aliases: []string{"url-groups"},
		Short:   "Manage URL groups (topics): publishes to a group go to each endpoint",
		Long: `Manage URL groups, which the QStash API calls topics. A publish to
/v2/publish/{group} stores one message per endpoint of the group.`,
	}
	cmd.AddCommand(newTopicsListCommand(), newTopicsGetCommand(), newTopicsAddCommand(),
		newTopicsRemoveCommand(), newTopicsDeleteCommand())
	return cmd
}

func printURLGroups(w io.Writer, groups []wire.URLGroup) {
	t := table(w)
	fmt.Fprintln(t, "GROUP\tENDPOINT NAME\tURL")
	for _, g := range groups {
		for _, e := range g.Endpoints {
			name := e.Name
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(t, "%s\t%s\t%s\n", g.Name, name, e.URL)
		}
	}
	t.Flush()
}

func newTopicsListCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List URL groups and their endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			groups, err := c.URLGroupList(cmd.Context())
			if err != nil {
				return err
			}
			if groups == nil {
				groups = []wire.URLGroup{}
			}
			return flags.print(cmd.OutOrStdout(), groups, func(w io.Writer) { printURLGroups(w, groups) })
		},
	}
	flags.register(cmd)
	return cmd
}

func newTopicsGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get GROUP",
		Short: "Show a URL group and its endpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			g, err := c.URLGroupGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), g, func(w io.Writer) { printURLGroups(w, []wire.URLGroup{*g}) })
		},
	}
	flags.register(cmd)
	return cmd
}

// parseEndpoints reads endpoints given as URL or NAME=URL.
func parseEndpoints(args []string) []wire.Endpoint {
	endpoints := make([]wire.Endpoint, len(args))
	for i, arg := range args {
		name, url, ok := strings.Cut(arg, "=")
		if !ok || strings.Contains(name, "/") {
			name, url = "", arg
		}
		endpoints[i] = wire.Endpoint{Name: name, URL: url}
	}
	return endpoints
}

func newTopicsAddCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "add GROUP ENDPOINT...",
		Short: "Create a URL group or add endpoints, given as URL or NAME=URL",
		Long: `Create a URL group or add endpoints to it. Give each endpoint as its URL
or as NAME=URL. An endpoint with the name or URL of an existing one
replaces it.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.URLGroupAddEndpoints(cmd.Context(), args[0], parseEndpoints(args[1:])); err != nil {
				return err
			}
			g, err := c.URLGroupGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), g, func(w io.Writer) { printURLGroups(w, []wire.URLGroup{*g}) })
		},
	}
	flags.register(cmd)
	return cmd
}

func newTopicsRemoveCommand() *cobra.Command {
	var flags clientFlags
	var names []string
	cmd := &cobra.Command{
		Use:   "remove GROUP [URL...]",
		Short: "Remove endpoints by URL or --name; the last one removed deletes the group",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			endpoints := make([]wire.Endpoint, 0, len(args)-1+len(names))
			for _, u := range args[1:] {
				endpoints = append(endpoints, wire.Endpoint{URL: u})
			}
			for _, n := range splitComma(names) {
				endpoints = append(endpoints, wire.Endpoint{Name: n})
			}
			if len(endpoints) == 0 {
				return fmt.Errorf("name the endpoints to remove by URL or with --name")
			}
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.URLGroupRemoveEndpoints(cmd.Context(), args[0], endpoints); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]int{"removed": len(endpoints)}, func(w io.Writer) {
				fmt.Fprintf(w, "removed %d endpoint(s) from %s\n", len(endpoints), args[0])
			})
		},
	}
	cmd.Flags().StringSliceVar(&names, "name", nil, "remove the endpoint with this name (repeatable)")
	flags.register(cmd)
	return cmd
}

func newTopicsDeleteCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "delete GROUP",
		Short: "Delete a URL group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			if err := c.URLGroupDelete(cmd.Context(), args[0]); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted URL group %s\n", args[0])
			})
		},
	}
	flags.register(cmd)
	return cmd
}
