// Package podnet gives each pod sandbox its own network: a network namespace
// pinned by a bind mount, loopback up, and a veth pair whose host end is a
// port of the node bridge (hairpin on) and whose pod end is eth0 with an
// address from the node's pod CIDR and a default route via the bridge. The
// bridge holds the CIDR's first address. Allocations are files on disk, so a
// restarted agent never hands out an address a live pod still has.
package podnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sentinel errors.
var (
	ErrBadCIDR   = errors.New("podnet: bad pod CIDR")
	ErrExhausted = errors.New("podnet: pod CIDR exhausted")
	ErrNotReady  = errors.New("podnet: no pod CIDR yet")
)

// Config says where the bridge and the allocation state live.
type Config struct {
	BridgeName string // default "skiff0"
	MTU        int    // default: the MTU of the default-route interface, else 1500
	StateDir   string // IPAM files
}

// Network is the node's pod network.
type Network struct {
	cfg Config

	mu  sync.Mutex
	rng *Range // nil until SetPodCIDR
}

// Attachment is what a pod got.
type Attachment struct {
	IP      netip.Addr
	Gateway netip.Addr
	Bits    int
	HostIf  string
}

// New returns a network that is not ready until SetPodCIDR.
func New(cfg Config) *Network {
	if cfg.BridgeName == "" {
		cfg.BridgeName = "skiff0"
	}
	if cfg.MTU == 0 {
		cfg.MTU = defaultMTU()
	}
	return &Network{cfg: cfg}
}

func defaultMTU() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
					return l.Attrs().MTU
				}
			}
		}
	}
	return 1500
}

// Ready says whether pods can be attached, and if not why.
func (n *Network) Ready() (bool, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rng == nil {
		return false, "no pod CIDR yet: the node's spec.podCIDR has not been passed to the runtime"
	}
	return true, ""
}

// Range returns the current pod range, if any.
func (n *Network) Range() (Range, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rng == nil {
		return Range{}, false
	}
	return *n.rng, true
}

// SetPodCIDR creates (or fixes up) the bridge with the gateway address and
// turns on IPv4 forwarding. Calling it again with the same CIDR is cheap.
func (n *Network) SetPodCIDR(cidr string) error {
	r, err := ParseRange(cidr)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rng != nil && *n.rng == r {
		return nil
	}
	br, err := netlink.LinkByName(n.cfg.BridgeName)
	if err != nil {
		b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.BridgeName, MTU: n.cfg.MTU}}
		if err := netlink.LinkAdd(b); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("podnet: create bridge %s: %w", n.cfg.BridgeName, err)
		}
		if br, err = netlink.LinkByName(n.cfg.BridgeName); err != nil {
			return fmt.Errorf("podnet: bridge %s: %w", n.cfg.BridgeName, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: r.Gateway.AsSlice(), Mask: net.CIDRMask(r.Prefix.Bits(), 32)}}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("podnet: address %s on %s: %w", addr, n.cfg.BridgeName, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("podnet: bring up %s: %w", n.cfg.BridgeName, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		return fmt.Errorf("podnet: enable ip_forward: %w", err)
	}
	n.rng = &r
	return nil
}

// hostIfName is the host end's name: short enough for IFNAMSIZ, stable for a
// sandbox so Detach finds it after a restart.
func hostIfName(id string) string {
	h := sha256.Sum256([]byte(id))
	return "sk" + hex.EncodeToString(h[:])[:11]
}

// Attach allocates an address for sandbox id and wires the namespace at
// nsPath to the bridge.
func (n *Network) Attach(id, nsPath string) (Attachment, error) {
	r, ok := n.Range()
	if !ok {
		return Attachment{}, ErrNotReady
	}
	st := store{dir: filepath.Join(n.cfg.StateDir, strings.ReplaceAll(r.Prefix.String(), "/", "_"))}
	ip, err := st.allocate(r, id)
	if err != nil {
		return Attachment{}, err
	}
	at := Attachment{IP: ip, Gateway: r.Gateway, Bits: r.Prefix.Bits(), HostIf: hostIfName(id)}
	if err := n.wire(at, nsPath); err != nil {
		n.unwire(at.HostIf)
		_ = st.release(id)
		return Attachment{}, err
	}
	return at, nil
}

func (n *Network) wire(at Attachment, nsPath string) error {
	br, err := netlink.LinkByName(n.cfg.BridgeName)
	if err != nil {
		return fmt.Errorf("podnet: bridge %s: %w", n.cfg.BridgeName, err)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("podnet: open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	peer := "p" + at.HostIf[1:]
	n.unwire(at.HostIf) // a leftover from a crash mid-attach
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: at.HostIf, MTU: n.cfg.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      peer,
		PeerMTU:       uint32(n.cfg.MTU),
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("podnet: create veth %s: %w", at.HostIf, err)
	}
	host, err := netlink.LinkByName(at.HostIf)
	if err != nil {
		return fmt.Errorf("podnet: veth %s: %w", at.HostIf, err)
	}
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("podnet: hairpin on %s: %w", at.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("podnet: bring up %s: %w", at.HostIf, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("podnet: netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	eth, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("podnet: pod end %s: %w", peer, err)
	}
	if err := h.LinkSetName(eth, "eth0"); err != nil {
		return fmt.Errorf("podnet: rename pod end: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: at.IP.AsSlice(), Mask: net.CIDRMask(at.Bits, 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("podnet: address %s: %w", addr, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("podnet: bring up eth0: %w", err)
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("podnet: bring up lo: %w", err)
		}
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: at.Gateway.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("podnet: default route via %s: %w", at.Gateway, err)
	}
	return nil
}

func (n *Network) unwire(hostIf string) {
	if l, err := netlink.LinkByName(hostIf); err == nil {
		_ = netlink.LinkDel(l)
	}
}

// Detach removes sandbox id's veth and frees its address. It is idempotent.
func (n *Network) Detach(id string) error {
	n.unwire(hostIfName(id))
	ents, err := os.ReadDir(n.cfg.StateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, store{dir: filepath.Join(n.cfg.StateDir, e.Name())}.release(id))
		}
	}
	return errors.Join(errs...)
}

// CreateNetns makes a new network namespace with loopback up and pins it by
// bind-mounting it onto path (created if missing).
func CreateNetns(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	restored := false
	defer func() {
		// A thread left in the pod's namespace must die with the goroutine.
		if restored {
			runtime.UnlockOSThread()
		}
	}()
	ns, err := netns.New()
	if err != nil {
		restored = true
		return fmt.Errorf("podnet: new netns: %w", err)
	}
	defer ns.Close()
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	merr := unix.Mount(src, path, "", unix.MS_BIND, "")
	if lo, err := netlink.LinkByName("lo"); err == nil && merr == nil {
		merr = netlink.LinkSetUp(lo)
	}
	restored = netns.Set(orig) == nil
	if merr != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		return fmt.Errorf("podnet: pin netns at %s: %w", path, merr)
	}
	return nil
}

// RemoveNetns unpins and deletes the namespace file; the namespace itself
// goes away when its last process exits. Idempotent.
func RemoveNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("podnet: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Do runs fn on an OS thread switched into the namespace at path; the
// sockets fn opens belong to that namespace.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("podnet: open netns %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("podnet: enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
