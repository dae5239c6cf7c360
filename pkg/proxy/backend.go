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

// CheckBackend says what is wrong with a backend name given on the command
// line; "" (pick one) is valid.
func CheckBackend(name string) error {
	switch name {
	case "", BackendNFTables, BackendLegacy, BackendNFT:
		return nil
	}
	return fmt.Errorf("unknown proxy backend %q: want %s, %s or %s", name, BackendNFTables, BackendLegacy, BackendNFT)
}

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
	// drifted reports whether someone else changed the rules since the
	// last sync, so that the next one must be full.
	drifted() bool
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
	// gen is the ruleset generation after the last transaction, or the
	// last one checked and found harmless.
	gen uint32
}

func (b *nftBackend) name() string { return BackendNFTables }

func (b *nftBackend) reset() { b.applied = nil }

func (b *nftBackend) sync(snap Snapshot, full bool) (SyncStats, error) {
	start := time.Now()
	if !full && b.applied != nil && b.drifted() {
		b.log.Info("the nftables table changed behind the proxy's back; rewriting it")
		full = true
	}
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
	n, gen, err := b.kernel.apply(ops)
	if err != nil && full && !replace {
		// Most likely an object of ours with another definition (an
		// older skiff, or someone else): start from a new table.
		b.log.Info("rewriting the nftables table failed; replacing it", "err", err)
		ops = planCreate(next, true)
		n, gen, err = b.kernel.apply(ops)
	}
	if err != nil {
		return SyncStats{}, err
	}
	if n > 0 {
		b.gen = gen
	}
	b.applied = next
	return SyncStats{Full: full, Messages: n, Build: built.Sub(start), Apply: time.Since(built)}, nil
}

// drifted checks the ruleset generation, which moves on with every
// transaction, anyone's; when it has moved since the last sync, the table
// must still have the chains and sets the proxy left. (Rules changed
// inside skiff's chains go unnoticed until the next full sync.)
func (b *nftBackend) drifted() bool {
	if b.applied == nil {
		return true
	}
	gen, err := b.kernel.generation()
	if err != nil {
		return true
	}
	if gen == b.gen {
		return false
	}
	have, err := b.kernel.inventory()
	if err != nil || have == nil || !have.matches(b.applied) {
		return true
	}
	b.gen = gen
	return false
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

// drifted is never known: full syncs every ResyncPeriod repair the chains.
func (b *iptablesBackend) drifted() bool { return false }

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
