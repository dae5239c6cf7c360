// Package proxy is skiff's service proxy: on every node it steers traffic for
// a Service's ClusterIP, external IPs and node ports to the Service's ready
// endpoints with NAT rules in the kernel, as kube-proxy does.
//
// Two backends program the kernel. The default, nftables, keeps one table
// of its own (`table ip skiff`) and writes it through netlink: buildNFT
// turns a snapshot of Services and EndpointSlices into the desired table (a
// pure function), planIncremental or planFull turn the difference into the
// operations of one transaction, and nftKernel sends it. The iptables
// backend (legacy or nft flavour) does the same with iptables chains: Build
// computes the ruleset, Render emits one iptables-restore --noflush input for
// just the changed chains. Proxier is the shell: informers wake a
// rate-limited sync loop that applies the result.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Sentinel errors.
var (
	ErrConfig    = errors.New("proxy: invalid configuration")
	ErrHost      = errors.New("proxy: host networking")
	ErrCacheSync = errors.New("proxy: caches did not sync")
)

// Config is what one node's proxy needs.
type Config struct {
	Client      *rest.Config
	Log         *slog.Logger
	NodeName    string
	NodeIP      string
	ServiceCIDR string // default 10.43.0.0/16
	ClusterCIDR string // default 10.42.0.0/16
	// DisableLocalhostNodePorts stops 127.0.0.1:<nodePort> from working and
	// leaves route_localnet alone.
	DisableLocalhostNodePorts bool
	// MinSyncInterval is the least time between two syncs: bursts of
	// changes within it are applied together. Default 10ms.
	MinSyncInterval time.Duration
	// ResyncPeriod is how often every chain is rewritten and the jump rules
	// checked, in case something else changed them. Default 5m.
	ResyncPeriod time.Duration
	// CheckPeriod is how often the proxy checks, cheaply, whether someone
	// else changed its rules, to rewrite them at once (only the nftables
	// backend can tell). Default 10s.
	CheckPeriod time.Duration
	// Backend is BackendNFTables, BackendLegacy (iptables-legacy) or
	// BackendNFT (iptables-nft); empty picks nftables when the kernel
	// supports it, else iptables-legacy when present (see pickBackend).
	Backend string
	// NetNS, when set, is the path of the network namespace to program
	// (e.g. /var/run/netns/NAME); empty means the process's own.
	NetNS string
	// OnSync, when set, is called after each successful apply.
	OnSync func(SyncStats)
}

// SyncStats describes one applied sync.
type SyncStats struct {
	Full     bool          // every chain was rewritten
	Bytes    int           // iptables: size of the iptables-restore input
	Messages int           // nftables: netlink messages in the transaction
	Build    time.Duration // computing the rules and the diff
	Apply    time.Duration // iptables-restore, or the nftables transaction
	Services int
}

// Proxier keeps one node's rules in step with the API.
type Proxier struct {
	cfg      Config
	host     *host
	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced
	trigger  chan struct{}

	// backend is owned by the sync loop goroutine.
	backend backend
}

// Run runs a proxy until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil {
		return fmt.Errorf("%w: Client is required", ErrConfig)
	}
	client, err := kubernetes.NewForConfig(cfg.Client)
	if err != nil {
		return fmt.Errorf("proxy: client: %w", err)
	}
	p, err := New(client, cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// New builds a proxier on client; cfg.Client is not used.
func New(client kubernetes.Interface, cfg Config) (*Proxier, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = "10.43.0.0/16"
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = "10.42.0.0/16"
	}
	if cfg.MinSyncInterval == 0 {
		cfg.MinSyncInterval = 10 * time.Millisecond
	}
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = 5 * time.Minute
	}
	if cfg.CheckPeriod == 0 {
		cfg.CheckPeriod = 10 * time.Second
	}
	hst := &host{netns: cfg.NetNS, log: cfg.Log}
	be, err := pickBackend(cfg.Backend, hst, cfg.Log)
	if err != nil {
		return nil, err
	}
	f := informers.NewSharedInformerFactory(client, 0)
	svcInf := f.Core().V1().Services()
	sliceInf := f.Discovery().V1().EndpointSlices()
	p := &Proxier{
		cfg:      cfg,
		host:     hst,
		backend:  be,
		factory:  f,
		services: svcInf.Lister(),
		slices:   sliceInf.Lister(),
		synced:   []cache.InformerSynced{svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		trigger:  make(chan struct{}, 1),
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.wake() },
		UpdateFunc: func(any, any) { p.wake() },
		DeleteFunc: func(any) { p.wake() },
	}
	_, _ = svcInf.Informer().AddEventHandler(h)
	_, _ = sliceInf.Informer().AddEventHandler(h)
	return p, nil
}

func (p *Proxier) wake() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Run prepares the host, then applies rules on every change until ctx ends.
func (p *Proxier) Run(ctx context.Context) error {
	log := p.cfg.Log
	log.Info("starting service proxy", "backend", p.backend.name(), "serviceCIDR", p.cfg.ServiceCIDR, "clusterCIDR", p.cfg.ClusterCIDR)
	if err := p.host.sysctls(!p.cfg.DisableLocalhostNodePorts); err != nil {
		return err
	}
	if err := p.host.routes(p.cfg.ClusterCIDR, p.cfg.ServiceCIDR); err != nil {
		return err
	}
	if err := p.backend.cleanupOthers(); err != nil {
		log.Warn("cannot remove the rules of another proxy backend; they may still steer some traffic", "err", err)
	}
	p.factory.Start(ctx.Done())
	defer p.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return ErrCacheSync
	}
	resync := time.NewTicker(p.cfg.ResyncPeriod)
	defer resync.Stop()
	check := time.NewTicker(p.cfg.CheckPeriod)
	defer check.Stop()
	var retry <-chan time.Time
	backoff := 100 * time.Millisecond
	var last time.Time
	full := true
	for {
		if !full {
			select {
			case <-ctx.Done():
				return nil
			case <-p.trigger:
			case <-retry:
			case <-resync.C:
				full = true
			case <-check.C:
				if !p.backend.drifted() {
					continue
				}
				log.Info("rules changed behind the proxy's back; rewriting them")
				full = true
			}
		}
		if wait := p.cfg.MinSyncInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		select { // changes that came in while waiting are in this sync
		case <-p.trigger:
		default:
		}
		last = time.Now()
		if err := p.sync(full); err != nil {
			log.Error("sync failed", "err", err, "retry", backoff)
			p.backend.reset()
			retry = time.After(backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue // a failed full sync is retried in full
		}
		retry, backoff, full = nil, 100*time.Millisecond, false
	}
}

// sync applies the rules for the current caches; full rewrites everything.
func (p *Proxier) sync(full bool) error {
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := p.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	stats, err := p.backend.sync(Snapshot{
		Services:           svcs,
		Slices:             slices,
		ClusterCIDR:        p.cfg.ClusterCIDR,
		ServiceCIDR:        p.cfg.ServiceCIDR,
		LocalhostNodePorts: !p.cfg.DisableLocalhostNodePorts,
	}, full)
	if err != nil {
		return err
	}
	stats.Services = len(svcs)
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(stats)
	}
	return nil
}
