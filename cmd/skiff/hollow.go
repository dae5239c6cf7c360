package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-org/skiff/pkg/hollow"
)

func init() { commands = append(commands, hollowCommand) }

// hollowCommand is `skiff hollow-nodes`: simulated nodes for benchmarks.
func hollowCommand() *cobra.Command {
	var server, kubeconfig, cpu, memory string
	cfg := hollow.Config{}
	cmd := &cobra.Command{
		Use:   "hollow-nodes --count N --kubeconfig PATH",
		Short: "Register simulated nodes that run every pod bound to them at once (for benchmarks and scale tests)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := clientcmd.BuildConfigFromFlags(server, kubeconfig)
			if err != nil {
				return err
			}
			if cfg.CPU, err = resource.ParseQuantity(cpu); err != nil {
				return err
			}
			if cfg.Memory, err = resource.ParseQuantity(memory); err != nil {
				return err
			}
			cfg.Client = rc
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			return hollow.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Count, "count", 100, "number of nodes to simulate")
	f.StringVar(&server, "server", "", "URL of the API server (overrides the kubeconfig's)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with credentials that may write nodes, leases and pod status")
	f.StringVar(&cpu, "cpu", "4", "cpu capacity of each node")
	f.StringVar(&memory, "memory", "16Gi", "memory capacity of each node")
	f.IntVar(&cfg.Pods, "pods", 110, "pod capacity of each node")
	f.StringVar(&cfg.NamePrefix, "name-prefix", "hollow-", "node names are this prefix and a number")
	f.IntVar(&cfg.Zones, "zones", 3, "spread nodes over this many zones (topology.kubernetes.io/zone)")
	f.Float32Var(&cfg.QPS, "qps", 2000, "API client requests per second")
	f.IntVar(&cfg.Burst, "burst", 4000, "API client burst")
	f.IntVar(&cfg.Workers, "workers", 128, "pod status writes in flight at once")
	return cmd
}
