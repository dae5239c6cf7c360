package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-org/skiff/pkg/preflight"
)

func init() { commands = append(commands, newCheckCommand) }

func newCheckCommand() *cobra.Command {
	var (
		sf     serverFlags
		socket string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Say what on this host stops a node from working, and how to fix it",
		Long: `Check this host for what skiff server (with the same flags) needs: free ports, root,
iptables or nft, cgroups, IP forwarding, br_netfilter, CPU and memory, a writable data
dir. One line per check; the exit status is non-zero when something blocks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := sf.config(cmd.Flags(), io.Discard)
			if err != nil {
				return err
			}
			opts := preflightOptions(cfg)
			opts.ContainerdSocket = socket
			return printChecks(os.Stdout, preflight.Run(opts))
		},
	}
	addServerFlags(cmd.Flags(), &sf)
	cmd.Flags().StringVar(&socket, "containerd-socket", preflight.DefaultContainerdSocket, "where to look for containerd")
	return cmd
}

// errBlocked makes `skiff check` exit non-zero.
var errBlocked = errors.New("this host cannot run a skiff node until the errors above are fixed")

// printChecks prints one line per result and a summary, and returns
// errBlocked when something blocks.
func printChecks(w io.Writer, results []preflight.Result) error {
	var errs, warns int
	for _, r := range results {
		switch r.Severity {
		case preflight.Error:
			errs++
		case preflight.Warning:
			warns++
		}
		fmt.Fprintln(w, r.String())
	}
	fmt.Fprintf(w, "%d checks: %d errors, %d warnings\n", len(results), errs, warns)
	if errs > 0 {
		return errBlocked
	}
	return nil
}
