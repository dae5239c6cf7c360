package proxy

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// Backends: native nftables through netlink, or iptables rules loaded with
// iptables-restore (the legacy or the nft flavour of the tools).
const (
	BackendNFTables = "nftables"
	BackendLegacy   = "legacy"
	BackendNFT      = "nft"
)

// backend keeps the kernel's rules in step with snapshots.
type backend interface {
	name() string
	// sync makes the kernel's rules match snap. Unless full, it may write
	// only what changed since its last successful sync; full rewrites
	// everything, whatever else may have changed the rules since.
	sync(snap Snapshot, full bool) (SyncStats, error)
	// reset forgets what the kernel holds, after a failed sync: the next
	// sync is full.
	reset()
	// cleanupOthers removes rules the other backends left behind (a node
	// that switched backends).
	cleanupOthers() error
}

var (
	_ backend = (*nftBackend)(nil)
	_ backend = (*iptablesBackend)(nil)
)

// pickBackend resolves Config.Backend. The default is nftables when the
// kernel supports everything the table needs; then iptables-legacy when the
// kernel and the tools have it (iptables-nft-restore takes about 10 s to
// load 1,000 services with 10 endpoints each, legacy about 0.5 s); then
// whatever `iptables` is.
func pickBackend(want string, h *host, log *slog.Logger) (backend, error) {
	switch want {
	case BackendNFTables:
		return &nftBackend{kernel: &nftKernel{host: h}, log: log}, nil
	case BackendLegacy, BackendNFT:
		return &iptablesBackend{host: h.withSuffix("-" + want)}, nil
	case "":
		k := &nftKernel{host: h}
		err := k.probe()
		if err == nil {
			return &nftBackend{kernel: k, log: log}, nil
		}
		log.Info("nftables unusable, using iptables", "err", err)
		if _, err := exec.LookPath("iptables-legacy-restore"); err == nil {
			if _, err := os.Stat("/proc/net/ip_tables_names"); err == nil {
				return &iptablesBackend{host: h.withSuffix("-" + BackendLegacy)}, nil
			}
		}
		return &iptablesBackend{host: h.withSuffix("")}, nil
	}
	return nil, fmt.Errorf("%w: proxy backend %q: want %q, %q or %q", ErrConfig, want, BackendNFTables, BackendLegacy, BackendNFT)
}

// nftBackend programs `table ip skiff` through netlink, one transaction per
// sync, writing only what changed since the last one.
type nftBackend struct {
	kernel  *nftKernel
	log     *slog.Logger
	builder nftBuilder
	// applied is what the last successful transaction left in the
	// kernel; nil means unknown.
	applied *nftTable
}

func (b *nftBackend) name() string { return BackendNFTables }

func (b *nftBackend) reset() { b.applied = nil }

func (b *nftBackend) sync(snap Snapshot, full bool) (SyncStats, error) {
	start := time.Now()
	next := b.builder.build(snap)
	full = full || b.applied == nil
	var ops []nftOp
	replace := false
	if full {
		have, err := b.kernel.inventory()
		if err != nil {
			b.log.Info("cannot read the nftables table; replacing it", "err", err)
			replace = true
			ops = planCreate(next, true)
		} else {
			ops = planFull(have, next)
		}
	} else {
		ops = planIncremental(b.applied, next)
	}
	built := time.Now()
	n, err := b.kernel.apply(ops)
	if err != nil && full && !replace {
		// Most likely an object of ours with another definition (an
		// older skiff, or someone else): start from a new table.
		b.log.Info("rewriting the nftables table failed; replacing it", "err", err)
		ops = planCreate(next, true)
		n, err = b.kernel.apply(ops)
	}
	if err != nil {
		return SyncStats{}, err
	}
	b.applied = next
	return SyncStats{Full: full, Messages: n, Build: built.Sub(start), Apply: time.Since(built)}, nil
}

// cleanupOthers deletes skiff's iptables chains, of both flavours.
func (b *nftBackend) cleanupOthers() error {
	for _, suffix := range []string{"-" + BackendLegacy, "-" + BackendNFT} {
		if err := b.kernel.host.withSuffix(suffix).removeChains(); err != nil {
			return err
		}
	}
	return nil
}

// iptablesBackend loads the rules with iptables-restore, rewriting only the
// chains whose rules changed.
type iptablesBackend struct {
	host *host
	// state is what skiff's chains hold as far as the proxy knows; nil
	// means unknown.
	state State
}

func (b *iptablesBackend) name() string { return "iptables" + b.host.suffix }

func (b *iptablesBackend) reset() { b.state = nil }

func (b *iptablesBackend) sync(snap Snapshot, full bool) (SyncStats, error) {
	if full || b.state == nil {
		st, err := b.host.save()
		if err != nil {
			return SyncStats{}, err
		}
		b.state = st
	}
	start := time.Now()
	text, next := Render(b.state, Build(snap))
	built := time.Now()
	if err := b.host.restore(text); err != nil {
		return SyncStats{}, err
	}
	applied := time.Now()
	b.state = next
	if full {
		if err := b.host.ensureJumps(); err != nil {
			return SyncStats{}, err
		}
	}
	return SyncStats{Full: full, Bytes: len(text), Build: built.Sub(start), Apply: applied.Sub(built)}, nil
}

// cleanupOthers deletes skiff's nftables table, if the kernel has one.
func (b *iptablesBackend) cleanupOthers() error {
	k := &nftKernel{host: b.host}
	if have, err := k.inventory(); err != nil || have == nil {
		return nil // no table, or no nftables at all
	}
	return k.deleteTable()
}
