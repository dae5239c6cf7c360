package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-org/skiff/pkg/agent"
	"github.com/skiff-org/skiff/pkg/memtrim"
	"github.com/skiff-org/skiff/pkg/pki"
	"github.com/skiff-org/skiff/pkg/proxy"
)

func init() { commands = append(commands, agentCommand) }

// agentCommand is `skiff agent`: join this host to a server as a node.
func agentCommand() *cobra.Command {
	var server, token string
	cfg := agent.Config{}
	cmd := &cobra.Command{
		Use:   "agent --server URL --token TOKEN",
		Short: "Run a node (runtime and kubelet) that joins a skiff server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := proxy.CheckBackend(cfg.ProxyBackend); err != nil {
				return fmt.Errorf("--proxy-backend: %w", err)
			}
			rc, err := pki.AgentRESTConfig(server, token)
			if err != nil {
				return err
			}
			cfg.RestConfig = rc
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			go memtrim.After(cmd.Context(), trimDelay, cfg.Log)
			return agent.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "URL of the skiff server, e.g. https://10.0.0.1:6443")
	f.StringVar(&token, "token", "", "join token: the content of DATA_DIR/join-token on the server (its path is in `skiff server`'s ready line)")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/skiff/agent", "directory for pod volumes, logs and runtime state")
	f.StringVar(&cfg.NodeName, "node-name", "", "name of this node (default: the host name)")
	f.StringVar(&cfg.NodeIP, "node-ip", "", "IP address other nodes and the server reach this node at (default: first non-loopback IPv4)")
	f.StringVar(&cfg.RuntimeEndpoint, "container-runtime-endpoint", "", "CRI socket of an external runtime such as containerd (default: the built-in process runtime)")
	f.StringVar(&cfg.ClusterDNS, "cluster-dns", "10.43.0.10", "cluster DNS service IP written into pods' resolv.conf")
	f.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain")
	f.IntVar(&cfg.KubeletPort, "kubelet-port", 10250, "HTTPS port of the kubelet (logs, exec, port-forward)")
	f.StringVar(&cfg.ProxyBackend, "proxy-backend", "", "how the service proxy programs the kernel: nftables, legacy (iptables-legacy) or nft (iptables-nft); default nftables when the kernel supports it, else legacy")
	_ = cmd.MarkFlagRequired("server")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}
