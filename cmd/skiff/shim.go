package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// The process runtime re-executes this binary as `skiff runtime-shim DIR`
// to parent each container's process; users never call it.
func init() {
	commands = append(commands, func() *cobra.Command {
		return &cobra.Command{
			Use:                "runtime-shim DIR",
			Hidden:             true,
			DisableFlagParsing: true,
			Run: func(cmd *cobra.Command, args []string) {
				os.Exit(shim.Main(args))
			},
		}
	})
}
