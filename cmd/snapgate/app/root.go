package app

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Version is the snapgate release, stamped at build time with
// -ldflags "-X github.com/snapgate/snapgate/cmd/snapgate/app.Version=v1.2.3".
var Version = "dev"

// NewRootCommand returns the snapgate command with all its subcommands.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "snapgate",
		Short:         "Snapshot every replica of a StatefulSet before a risky change lands",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCommand(), newServeCommand(), newListCommand(), newDescribeCommand(), newSnapshotCommand(), newRollbackCommand(), newRestoreCommand(), newVerifyCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the snapgate version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "snapgate", Version)
			return err
		},
	}
}

// Run executes the command line args and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "snapgate:", err)
		return 1
	}
	return 0
}
