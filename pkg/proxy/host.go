package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// host applies rules, sysctls and routes to one network namespace: the
// process's own, or the one at netns (tests, or a node whose pod network
// lives in a namespace).
type host struct {
	netns string
	log   *slog.Logger
	// suffix picks the iptables binaries: "-legacy", "-nft", or "" for the
	// system's default.
	suffix string
}

func (h *host) withSuffix(suffix string) *host {
	c := *h
	c.suffix = suffix
	return &c
}

// do runs fn on an OS thread inside h's namespace; commands fn starts and
// netlink sockets it opens belong to that namespace.
func (h *host) do(fn func() error) error {
	if h.netns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: current netns: %w", ErrHost, err)
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(h.netns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: open netns %s: %w", ErrHost, h.netns, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: enter netns %s: %w", ErrHost, h.netns, err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread dies with the goroutine, still locked
		errc <- err
	}()
	return <-errc
}

func run(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%w: %s %s: %w: %s", ErrHost, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// save lists the chains that exist now.
func (h *host) save() (State, error) {
	var out []byte
	err := h.do(func() error {
		var err error
		out, err = run(nil, "iptables"+h.suffix+"-save")
		return err
	})
	if err != nil {
		return nil, err
	}
	return ParseSave(out), nil
}

// removeChains deletes skiff's chains and the jumps to them, if this
// flavour of iptables is installed and has any.
func (h *host) removeChains() error {
	if _, err := exec.LookPath("iptables" + h.suffix + "-save"); err != nil {
		return nil
	}
	if h.suffix == "-"+BackendLegacy {
		if _, err := os.Stat("/proc/net/ip_tables_names"); err != nil {
			return nil // no legacy iptables in this kernel
		}
	}
	return h.do(func() error {
		out, err := run(nil, "iptables"+h.suffix+"-save")
		if err != nil {
			return err
		}
		if text := RemoveInput(out); len(text) > 0 {
			_, err = run(text, "iptables"+h.suffix+"-restore", "-w", "5", "--noflush")
		}
		return err
	})
}

// restore applies one Render output atomically, table by table.
func (h *host) restore(text []byte) error {
	if len(text) == 0 {
		return nil
	}
	return h.do(func() error {
		_, err := run(text, "iptables"+h.suffix+"-restore", "-w", "5", "--noflush")
		return err
	})
}

// jump is a rule in a built-in chain that leads to one of ours.
type jump struct {
	table, chain string
	rule         []string
}

var jumps = []jump{
	{"nat", "PREROUTING", []string{"-m", "comment", "--comment", "skiff service portals", "-j", chainServices}},
	{"nat", "OUTPUT", []string{"-m", "comment", "--comment", "skiff service portals", "-j", chainServices}},
	{"nat", "POSTROUTING", []string{"-m", "comment", "--comment", "skiff postrouting rules", "-j", chainPostrouting}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainServices}},
	{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainExternalServices}},
	{"filter", "FORWARD", []string{"-j", chainForward}},
	{"filter", "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainServices}},
	{"filter", "OUTPUT", []string{"-j", chainFirewall}},
	{"filter", "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", chainExternalServices}},
	{"filter", "INPUT", []string{"-j", chainFirewall}},
}

// saveForm is how iptables-save prints a rule's arguments.
func saveForm(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// ensureJumps installs the jumps from the built-in chains, once each: a jump
// already there is left alone. Jumps go first in their chain (in the order
// listed) so that other software's ACCEPT or DROP rules cannot skip them.
// Presence is read from iptables-save, because iptables-nft's -C reports
// some absent rules as present.
func (h *host) ensureJumps() error {
	return h.do(func() error {
		have := map[string]bool{}
		for _, table := range []string{"filter", "nat"} {
			out, err := run(nil, "iptables"+h.suffix+"-save", "-t", table)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(out), "\n") {
				have[table+" "+line] = true
			}
		}
		pos := map[string]int{}
		for _, j := range jumps {
			key := j.table + "/" + j.chain
			pos[key]++
			if have[j.table+" -A "+j.chain+" "+saveForm(j.rule)] {
				continue
			}
			ins := append([]string{"-w", "5", "-t", j.table, "-I", j.chain, fmt.Sprint(pos[key])}, j.rule...)
			if _, err := run(nil, "iptables"+h.suffix, ins...); err != nil {
				return err
			}
		}
		return nil
	})
}

// sysctls turns on what the rules rely on. A missing bridge-netfilter is
// reported, not fatal: see the warning.
func (h *host) sysctls(localhostNodePorts bool) error {
	return h.do(func() error {
		set := map[string]string{"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
		if localhostNodePorts {
			set["net/ipv4/conf/all/route_localnet"] = "1"
		}
		for key, v := range set {
			err := os.WriteFile("/proc/sys/"+key, []byte(v), 0o644)
			if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(key, "net/bridge/") {
				_, _ = run(nil, "modprobe", "br_netfilter")
				err = os.WriteFile("/proc/sys/"+key, []byte(v), 0o644)
			}
			if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(key, "net/bridge/") {
				h.log.Warn("br_netfilter is missing: traffic between pods on one bridge bypasses iptables, so a pod reaching a service whose endpoint is on the same bridge gets replies it drops",
					"fix", "modprobe br_netfilter")
				continue
			}
			if err != nil {
				return fmt.Errorf("%w: sysctl %s: %w", ErrHost, key, err)
			}
		}
		return nil
	})
}

// routes keeps traffic for the two cluster ranges on this machine. Pod
// addresses outside this node's own pod CIDR (whose bridge route is more
// specific) and outside other nodes' routes are unreachable. Service
// addresses route to lo: a route lookup must succeed for the node's own
// connections to reach the OUTPUT chain where they are DNATed (an
// unreachable route fails connect() before any rule runs), and whatever no
// rule DNATs is rejected by SKIFF-SERVICES in the filter table, so nothing
// for the service range ever reaches the default route.
func (h *host) routes(clusterCIDR, serviceCIDR string) error {
	return h.do(func() error {
		if clusterCIDR != "" {
			_, dst, err := net.ParseCIDR(clusterCIDR)
			if err != nil {
				return fmt.Errorf("%w: cluster CIDR %q: %w", ErrConfig, clusterCIDR, err)
			}
			if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Type: unix.RTN_UNREACHABLE}); err != nil {
				return fmt.Errorf("%w: route unreachable %s: %w", ErrHost, dst, err)
			}
		}
		if serviceCIDR != "" {
			_, dst, err := net.ParseCIDR(serviceCIDR)
			if err != nil {
				return fmt.Errorf("%w: service CIDR %q: %w", ErrConfig, serviceCIDR, err)
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return fmt.Errorf("%w: lo: %w", ErrHost, err)
			}
			r := &netlink.Route{Dst: dst, LinkIndex: lo.Attrs().Index, Scope: netlink.SCOPE_LINK}
			if err := netlink.RouteReplace(r); err != nil {
				return fmt.Errorf("%w: route %s dev lo: %w", ErrHost, dst, err)
			}
		}
		return nil
	})
}
