// Command skiff is the whole cluster in one binary: `skiff server` runs the
// control plane (and an agent for this host), `skiff agent` joins a host to a
// server, `skiff check` says what on this host stops a node from working.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// commands holds the constructors of the subcommands; each subcommand lives in
// its own file and adds itself here from an init function.
var commands []func() *cobra.Command

func main() {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "A small, fast container orchestrator that kubectl drives",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range commands {
		root.AddCommand(c())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		os.Exit(1)
	}
}
