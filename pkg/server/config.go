// Package server assembles `skiff server`: storage, API server, scheduler,
// controller manager and, unless disabled, an agent for this host.
package server

import (
	"log/slog"
	"time"
)

// Config is everything `skiff server` can be told on its command line.
type Config struct {
	DataDir            string   // certificates, kubeconfig, embedded etcd data
	BindAddress        string   // address the API server listens on (default 0.0.0.0)
	AdvertiseAddress   string   // address written into kubeconfigs and certificates (default: first non-loopback IPv4, else 127.0.0.1)
	HTTPSPort          int      // API server port (default 6443)
	EtcdServers        []string // external etcd; empty means embedded
	EtcdClientPort     int      // embedded etcd client port (default 2379, loopback only)
	EtcdPeerPort       int      // embedded etcd peer port (default 2380, loopback only)
	WriteKubeconfig    string   // also write the admin kubeconfig here
	ServiceCIDR        string   // --service-cluster-ip-range (default 10.43.0.0/16)
	ClusterCIDR        string   // --cluster-cidr (default 10.42.0.0/16)
	NodePortRange      string   // default 30000-32767
	ClusterDNS         string   // kube-dns ClusterIP (default 10.43.0.10)
	ProxyBackend       string   // service proxy backend of the built-in agent: nftables, legacy or nft; "" picks
	ClusterDomain      string   // default cluster.local
	DisableAgent       bool
	DisableScheduler   bool // for tests that run their own scheduler
	DisableControllers bool // for tests that run their own controllers

	NodeMonitorGracePeriod   time.Duration // default 40s
	DefaultTolerationSeconds int64         // not-ready/unreachable tolerations added to pods, default 300
	LeaderElect              bool

	Log *slog.Logger
}
