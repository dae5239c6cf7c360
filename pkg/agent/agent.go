// Package agent is what runs on every node: the container runtime (the
// built-in process runtime unless a CRI socket is given), the kubelet, and —
// once they exist — the service proxy and cluster DNS. `skiff agent` runs it
// alone against a remote server; `skiff server` runs it in-process.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/pkg/dns"
	"github.com/skiff-org/skiff/pkg/kubelet"
	"github.com/skiff-org/skiff/pkg/proxy"
	"github.com/skiff-org/skiff/pkg/runtime/process"
)

// ErrConfig marks an agent configuration that cannot work.
var ErrConfig = errors.New("agent: invalid configuration")

// Config is everything one node's agent needs.
type Config struct {
	RestConfig      *rest.Config // how to reach and authenticate to the API server
	NodeName        string       // default: the host name, lower-cased
	DataDir         string       // pods' volumes and logs, the built-in runtime's state
	RuntimeEndpoint string       // CRI unix socket; empty: start the built-in process runtime
	ClusterDNS      string
	ServiceCIDR     string // default 10.43.0.0/16
	ClusterCIDR     string // default 10.42.0.0/16
	ClusterDomain   string // default cluster.local
	KubeletPort     int    // default 10250; negative disables the kubelet's HTTPS server
	NodeIP          string // default: the first non-loopback IPv4 address
	ProxyBackend    string // proxy.BackendNFTables, BackendLegacy or BackendNFT; empty: nftables when the kernel has it
	ControlPlane    bool   // this node also runs the control plane (labels it so)
	// PodSyncPeriod is how often a running pod is resynced without an event
	// (and its configMap/secret volumes refreshed); default 10s.
	PodSyncPeriod time.Duration
	Log           *slog.Logger
}

// Run runs the node's components until ctx ends, and returns once all of
// them have stopped. The first component to fail stops the others.
func Run(ctx context.Context, cfg Config) error {
	if cfg.RestConfig == nil || cfg.DataDir == "" {
		return fmt.Errorf("%w: RestConfig and DataDir are required", ErrConfig)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("%w: no node name and no host name: %w", ErrConfig, err)
		}
		cfg.NodeName = strings.ToLower(h)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = 10250
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return fmt.Errorf("agent: client: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("agent: %s: %w", name, err)
				cancel()
			}
		}()
	}

	endpoint := cfg.RuntimeEndpoint
	if endpoint == "" {
		endpoint = filepath.Join(dataDir, "run", "cri.sock")
		rt, err := process.New(process.Config{DataDir: filepath.Join(dataDir, "runtime"), Log: cfg.Log.With("component", "runtime")})
		if err != nil {
			return fmt.Errorf("agent: built-in runtime: %w", err)
		}
		start("runtime", func(ctx context.Context) error { return rt.Serve(ctx, endpoint) })
	}

	kl, err := kubelet.New(kubelet.Config{
		Client:          client,
		RestConfig:      cfg.RestConfig,
		NodeName:        cfg.NodeName,
		NodeIP:          cfg.NodeIP,
		DataDir:         dataDir,
		RuntimeEndpoint: endpoint,
		ClusterDNS:      cfg.ClusterDNS,
		ClusterDomain:   cfg.ClusterDomain,
		Port:            cfg.KubeletPort,
		ControlPlane:    cfg.ControlPlane,
		SyncPeriod:      cfg.PodSyncPeriod,
		Log:             cfg.Log.With("component", "kubelet"),
	})
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	start("kubelet", kl.Run)

	// Services: the proxy programs this node's kernel, and the node serves
	// cluster DNS on its own address, which the proxy reaches through the
	// kube-dns ClusterIP. Both need root; a failure is logged with what it
	// breaks rather than taking the pods down with it.
	optional := func(name, breaks string, run func(context.Context) error) {
		start(name, func(ctx context.Context) error {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				cfg.Log.Error(name+" stopped: "+breaks, "err", err)
			}
			return nil
		})
	}
	if os.Geteuid() != 0 {
		cfg.Log.Warn("not root: no service proxy and no cluster DNS on this node; Services and DNS names will not resolve from its pods; run the agent as root")
	} else {
		optional("proxy", "Services are unreachable from this node (does the kernel have nf_tables, or is iptables installed? apt-get install iptables)", func(ctx context.Context) error {
			return proxy.Run(ctx, proxy.Config{Client: cfg.RestConfig, Log: cfg.Log.With("component", "proxy"), Backend: cfg.ProxyBackend,
				NodeName: cfg.NodeName, NodeIP: cfg.NodeIP, ServiceCIDR: cfg.ServiceCIDR, ClusterCIDR: cfg.ClusterCIDR})
		})
		if cfg.NodeIP != "" && cfg.ClusterDNS != "" {
			optional("dns", "cluster DNS names do not resolve from this node's pods", func(ctx context.Context) error {
				return dns.Run(ctx, dns.Config{Client: cfg.RestConfig, Log: cfg.Log.With("component", "dns"),
					ListenAddr: net.JoinHostPort(cfg.NodeIP, "53"), ClusterDomain: cfg.ClusterDomain,
					NodeName: cfg.NodeName, ServiceIP: cfg.ClusterDNS, ManageService: true})
			})
		}
	}

	wg.Wait()
	close(errc)
	return <-errc
}
