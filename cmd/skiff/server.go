package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-org/skiff/pkg/memtrim"
	"github.com/skiff-org/skiff/pkg/preflight"
	"github.com/skiff-org/skiff/pkg/proxy"
	"github.com/skiff-org/skiff/pkg/server"
)

func init() { commands = append(commands, newServerCommand) }

// serverFlags holds what the command line says before it becomes a
// server.Config; the two toleration flags share one Config field.
type serverFlags struct {
	cfg            server.Config
	notReadyTol    int64
	unreachableTol int64
	logLevel       string
}

func newServerCommand() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (etcd, API server, scheduler, controllers) and an agent for this host",
		Long: `Run a whole cluster on this host: embedded etcd (or --etcd-servers), the HTTPS API
server, the scheduler and the controller manager, and unless --disable-agent an agent
(kubelet, proxy, DNS) so this host runs pods. On first start it creates a CA and
certificates under --data-dir and writes DATA_DIR/admin.kubeconfig.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := sf.config(cmd.Flags(), os.Stderr)
			if err != nil {
				return err
			}
			return runServer(cmd.Context(), cfg, os.Stderr)
		},
	}
	addServerFlags(cmd.Flags(), &sf)
	return cmd
}

// addServerFlags defines `skiff server`'s flags with Kubernetes' names and
// server.Defaults() as defaults.
func addServerFlags(f *pflag.FlagSet, sf *serverFlags) {
	c, d := &sf.cfg, server.Defaults()
	f.StringVar(&c.DataDir, "data-dir", d.DataDir, "directory for certificates, kubeconfig and embedded etcd data")
	f.StringVar(&c.BindAddress, "bind-address", d.BindAddress, "address the API server listens on")
	f.StringVar(&c.AdvertiseAddress, "advertise-address", d.AdvertiseAddress, "address written into kubeconfigs and certificates (default: first non-loopback IPv4, else 127.0.0.1)")
	f.IntVar(&c.HTTPSPort, "https-port", d.HTTPSPort, "API server HTTPS port")
	f.StringSliceVar(&c.EtcdServers, "etcd-servers", nil, "external etcd client URLs, comma-separated; empty runs etcd embedded")
	f.IntVar(&c.EtcdClientPort, "etcd-client-port", d.EtcdClientPort, "embedded etcd client port (loopback only)")
	f.IntVar(&c.EtcdPeerPort, "etcd-peer-port", d.EtcdPeerPort, "embedded etcd peer port (loopback only)")
	f.StringVar(&c.WriteKubeconfig, "write-kubeconfig", "", "also write the admin kubeconfig to this path, e.g. ~/.kube/config")
	f.StringVar(&c.ServiceCIDR, "service-cluster-ip-range", d.ServiceCIDR, "CIDR that Service ClusterIPs are allocated from")
	f.StringVar(&c.ClusterCIDR, "cluster-cidr", d.ClusterCIDR, "CIDR that node pod CIDRs are carved from")
	f.StringVar(&c.NodePortRange, "service-node-port-range", d.NodePortRange, "range of ports NodePort Services get")
	f.StringVar(&c.ClusterDNS, "cluster-dns", d.ClusterDNS, "ClusterIP of the kube-dns Service, written into pods' resolv.conf")
	f.StringVar(&c.ProxyBackend, "proxy-backend", "", "how the built-in agent's service proxy programs the kernel: nftables, legacy (iptables-legacy) or nft (iptables-nft); default nftables when the kernel supports it, else legacy")
	f.StringVar(&c.ClusterDomain, "cluster-domain", d.ClusterDomain, "DNS domain of the cluster")
	f.BoolVar(&c.DisableAgent, "disable-agent", d.DisableAgent, "run only the control plane; this host runs no pods")
	f.DurationVar(&c.NodeMonitorGracePeriod, "node-monitor-grace-period", d.NodeMonitorGracePeriod, "how long a node may go without renewing its lease before it is marked NotReady")
	f.Int64Var(&sf.notReadyTol, "default-not-ready-toleration-seconds", d.DefaultTolerationSeconds, "tolerationSeconds of the not-ready toleration added to pods")
	f.Int64Var(&sf.unreachableTol, "default-unreachable-toleration-seconds", d.DefaultTolerationSeconds, "tolerationSeconds of the unreachable toleration added to pods")
	f.BoolVar(&c.LeaderElect, "leader-elect", d.LeaderElect, "elect a leader among servers before running the scheduler and controllers")
	f.StringVar(&sf.logLevel, "log-level", "info", "debug, info, warn or error")
}

// config validates the flags and builds the server configuration, with a
// text logger on logOut.
func (sf *serverFlags) config(f *pflag.FlagSet, logOut io.Writer) (server.Config, error) {
	cfg := sf.cfg
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(sf.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", sf.logLevel)
	}
	cfg.Log = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: lvl}))

	// Both taint tolerations share one field: take whichever was set, and
	// refuse two different values rather than silently dropping one.
	cfg.DefaultTolerationSeconds = sf.notReadyTol
	switch nr, un := f.Changed("default-not-ready-toleration-seconds"), f.Changed("default-unreachable-toleration-seconds"); {
	case nr && un && sf.notReadyTol != sf.unreachableTol:
		return cfg, errors.New("--default-not-ready-toleration-seconds and --default-unreachable-toleration-seconds must be equal in skiff; set one of them")
	case un:
		cfg.DefaultTolerationSeconds = sf.unreachableTol
	}
	if cfg.DefaultTolerationSeconds < 0 {
		return cfg, fmt.Errorf("toleration seconds %d: must not be negative", cfg.DefaultTolerationSeconds)
	}
	if err := validateServerConfig(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// validateServerConfig catches flag mistakes before anything starts, with
// the flag's name in the message.
func validateServerConfig(c server.Config) error {
	for _, p := range []struct {
		flag string
		v    int
	}{{"--https-port", c.HTTPSPort}, {"--etcd-client-port", c.EtcdClientPort}, {"--etcd-peer-port", c.EtcdPeerPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s %d: want a port from 1 to 65535", p.flag, p.v)
		}
	}
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	for _, a := range []struct{ flag, v string }{{"--bind-address", c.BindAddress}, {"--advertise-address", c.AdvertiseAddress}, {"--cluster-dns", c.ClusterDNS}} {
		if a.v != "" && net.ParseIP(a.v) == nil {
			return fmt.Errorf("%s %q: want an IP address", a.flag, a.v)
		}
	}
	for _, n := range []struct{ flag, v string }{{"--service-cluster-ip-range", c.ServiceCIDR}, {"--cluster-cidr", c.ClusterCIDR}} {
		if _, _, err := net.ParseCIDR(n.v); err != nil {
			return fmt.Errorf("%s %q: want a CIDR such as 10.43.0.0/16", n.flag, n.v)
		}
	}
	lo, hi, ok := strings.Cut(c.NodePortRange, "-")
	l, errL := strconv.Atoi(lo)
	h, errH := strconv.Atoi(hi)
	if !ok || errL != nil || errH != nil || l < 1 || h > 65535 || l > h {
		return fmt.Errorf("--service-node-port-range %q: want FIRST-LAST, e.g. 30000-32767", c.NodePortRange)
	}
	if err := proxy.CheckBackend(c.ProxyBackend); err != nil {
		return fmt.Errorf("--proxy-backend: %w", err)
	}
	for _, u := range c.EtcdServers {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("--etcd-servers %q: want URLs such as https://10.0.0.2:2379", u)
		}
	}
	return nil
}

// preflightOptions are the checks that apply to a server started with cfg.
func preflightOptions(cfg server.Config) preflight.Options {
	ports := preflight.ServerPorts(cfg.BindAddress, cfg.HTTPSPort, cfg.EtcdClientPort, cfg.EtcdPeerPort, len(cfg.EtcdServers) == 0)
	if !cfg.DisableAgent {
		kubelet := preflight.KubeletPort(0)
		kubelet.Flag = "--disable-agent" // skiff server cannot move the port, but can run without it
		ports = append(ports, kubelet)
	}
	return preflight.Options{
		DataDir: cfg.DataDir,
		Ports:   ports,
		Agent:   !cfg.DisableAgent,
		Command: "skiff server",
	}
}

// runServer runs the server until ctx ends. Problems the preflight checks
// find are logged before start; when the server fails, the blocking ones are
// printed again under the error, since they usually are the cause.
// trimDelay is how long after start a server or agent gives back the memory
// only start-up needed: long enough for the first syncs of informers and pods.
const trimDelay = 5 * time.Second

func runServer(ctx context.Context, cfg server.Config, stderr io.Writer) error {
	opts := preflightOptions(cfg)
	for _, r := range preflight.Run(opts) {
		if r.Severity >= preflight.Warning {
			cfg.Log.Warn("preflight", "check", r.Check, "problem", r.Message, "fix", r.Fix)
		}
	}
	err := server.RunWith(ctx, cfg, func(*server.Running) { go memtrim.After(ctx, trimDelay, cfg.Log) })
	if err == nil || (ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return nil // stopped by a signal
	}
	if ctx.Err() != nil {
		return err
	}
	var blocking []string
	for _, r := range preflight.Run(opts) {
		if r.Severity == preflight.Error {
			blocking = append(blocking, "  "+r.String())
		}
	}
	if len(blocking) > 0 {
		fmt.Fprintf(stderr, "skiff check finds what may have stopped the server:\n%s\n", strings.Join(blocking, "\n"))
	}
	return err
}
