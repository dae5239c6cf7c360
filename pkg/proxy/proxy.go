// Package proxy is skiff's service proxy: on every node it steers traffic for
// a Service's ClusterIP, external IPs and node ports to the Service's ready
// endpoints with iptables NAT rules, in the kernel, as kube-proxy's iptables
// mode does.
//
// Build turns a snapshot of Services and EndpointSlices into the full
// ruleset (a pure function); Render diffs it against what the kernel holds
// and emits one iptables-restore --noflush input for just the changed chains.
// Proxier is the shell: informers wake a rate-limited sync loop that applies
// the result.
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
	// Backend is the iptables flavour, BackendLegacy or BackendNFT; empty
	// picks legacy when the kernel has it (much faster for large rulesets).
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
	Bytes    int           // size of the iptables-restore input
	Build    time.Duration // computing the rules and the diff
	Apply    time.Duration // iptables-restore
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

	// state is owned by the sync loop goroutine; nil means unknown.
	state State
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
	suffix, err := pickBackend(cfg.Backend)
	if err != nil {
		return nil, err
	}
	f := informers.NewSharedInformerFactory(client, 0)
	svcInf := f.Core().V1().Services()
	sliceInf := f.Discovery().V1().EndpointSlices()
	p := &Proxier{
		cfg:      cfg,
		host:     &host{netns: cfg.NetNS, log: cfg.Log, suffix: suffix},
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
	log.Info("starting service proxy", "iptables", "iptables"+p.host.suffix, "serviceCIDR", p.cfg.ServiceCIDR, "clusterCIDR", p.cfg.ClusterCIDR)
	if err := p.host.sysctls(!p.cfg.DisableLocalhostNodePorts); err != nil {
		return err
	}
	if err := p.host.routes(p.cfg.ClusterCIDR, p.cfg.ServiceCIDR); err != nil {
		return err
	}
	p.factory.Start(ctx.Done())
	defer p.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return ErrCacheSync
	}
	resync := time.NewTicker(p.cfg.ResyncPeriod)
	defer resync.Stop()
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
			p.state = nil
			retry = time.After(backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue // a failed full sync is retried in full
		}
		retry, backoff, full = nil, 100*time.Millisecond, false
	}
}

// sync applies the rules for the current caches; full rewrites every chain
// and re-checks the jump rules.
func (p *Proxier) sync(full bool) error {
	if full || p.state == nil {
		st, err := p.host.save()
		if err != nil {
			return err
		}
		p.state = st
	}
	start := time.Now()
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := p.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	rules := Build(Snapshot{
		Services:           svcs,
		Slices:             slices,
		ClusterCIDR:        p.cfg.ClusterCIDR,
		ServiceCIDR:        p.cfg.ServiceCIDR,
		LocalhostNodePorts: !p.cfg.DisableLocalhostNodePorts,
	})
	text, next := Render(p.state, rules)
	built := time.Now()
	if err := p.host.restore(text); err != nil {
		return err
	}
	applied := time.Now()
	p.state = next
	if full {
		if err := p.host.ensureJumps(); err != nil {
			return err
		}
	}
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(SyncStats{Full: full, Bytes: len(text), Build: built.Sub(start), Apply: applied.Sub(built), Services: len(svcs)})
	}
	return nil
}
