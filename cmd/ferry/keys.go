package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Show or rotate the signing keys",
	}
	cmd.AddCommand(newKeysGetCommand(), newKeysRotateCommand())
	return cmd
}

func newKeysGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show the current and next signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), k, func(w io.Writer) {
				fmt.Fprintf(w, "QSTASH_CURRENT_SIGNING_KEY=%s\nQSTASH_NEXT_SIGNING_KEY=%s\n", k.Current, k.Next)
			})
		},
	}
	flags.register(cmd)
	return cmd
}

func newKeysRotateCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make the next key current and create a new next key",
		Long: `Make the next key current and create a new next key. Receivers that hold
the old pair keep verifying, because they try the next key too; update
them with the new pair before rotating again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.KeysRotate(cmd.Context())
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), k, func(w io.Writer) {
				fmt.Fprintf(w, "rotated; update your receivers:\nQSTASH_CURRENT_SIGNING_KEY=%s\nQSTASH_NEXT_SIGNING_KEY=%s\n", k.Current, k.Next)
			})
		},
	}
	flags.register(cmd)
	return cmd
}
