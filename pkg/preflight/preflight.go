// Package preflight says what on this host stops a skiff node from working,
// and the command that fixes it. `skiff check` prints its results; `skiff
// server` prints the blocking ones when it fails to start, so a port in use
// or a missing iptables is reported as such rather than as a bare bind error.
//
// Gather reads the host into a Host snapshot; Evaluate, a plain function over
// that snapshot, decides what is wrong. Tests drive Evaluate with made-up
// hosts and Gather with a fake /proc and /sys tree.
package preflight

import (
	"fmt"
	"strconv"
	"strings"
)

// Severity says how much a finding matters.
type Severity int

// Severities, from harmless to blocking.
const (
	OK      Severity = iota // the check passed
	Info                    // worth knowing, changes nothing
	Warning                 // the node works, with less
	Error                   // the node does not work until this is fixed
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Info:
		return "info"
	case Warning:
		return "warn"
	case Error:
		return "error"
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// Result is the outcome of one check.
type Result struct {
	Check    string // short stable name, e.g. "port-6443", "ip-forward"
	Severity Severity
	Message  string // what is the case
	Fix      string // what to run or change; empty when nothing is needed
}

// String is the one line `skiff check` prints for r.
func (r Result) String() string {
	line := fmt.Sprintf("%-5s %-12s %s", r.Severity, r.Check, r.Message)
	if r.Fix != "" {
		line += "; " + r.Fix
	}
	return line
}

// Blocking reports whether any result is an Error.
func Blocking(results []Result) bool {
	for _, r := range results {
		if r.Severity == Error {
			return true
		}
	}
	return false
}

// Port is a TCP port a component will listen on.
type Port struct {
	Host string // address to bind, e.g. "0.0.0.0" or "127.0.0.1"
	Port int
	Use  string // what listens there, e.g. "API server"
	Flag string // the flag that moves it, e.g. "--https-port"; empty if none
}

// Options say what the node will run, so only relevant checks apply.
type Options struct {
	DataDir string
	Ports   []Port
	// Agent is true when this host runs pods (skiff agent, or skiff server
	// without --disable-agent): root, iptables, cgroups and forwarding matter.
	Agent bool
	// ContainerdSocket is where the CRI runtime is looked for.
	ContainerdSocket string
	// Command is how the user starts skiff, for fixes such as "sudo skiff
	// server"; default "skiff server".
	Command string
}

// DefaultContainerdSocket is containerd's standard socket.
const DefaultContainerdSocket = "/run/containerd/containerd.sock"

// ServerPorts lists the ports `skiff server` listens on: the API server on
// bind, and the embedded etcd on loopback unless external etcd is used.
func ServerPorts(bind string, httpsPort, etcdClientPort, etcdPeerPort int, embeddedEtcd bool) []Port {
	if bind == "" {
		bind = "0.0.0.0"
	}
	ports := []Port{{Host: bind, Port: httpsPort, Use: "API server", Flag: "--https-port"}}
	if embeddedEtcd {
		ports = append(ports,
			Port{Host: "127.0.0.1", Port: etcdClientPort, Use: "etcd client", Flag: "--etcd-client-port"},
			Port{Host: "127.0.0.1", Port: etcdPeerPort, Use: "etcd peer", Flag: "--etcd-peer-port"})
	}
	return ports
}

// DefaultKubeletPort is where the kubelet serves logs, exec and port-forward.
const DefaultKubeletPort = 10250

// KubeletPort is the kubelet's HTTPS port on all addresses; 0 means the
// default. `skiff agent --kubelet-port` moves it.
func KubeletPort(port int) Port {
	if port == 0 {
		port = DefaultKubeletPort
	}
	return Port{Host: "0.0.0.0", Port: port, Use: "kubelet", Flag: "--kubelet-port"}
}

// Thresholds below which the control plane and a few pods do not fit.
const (
	minCPUs        = 1.0
	minMemoryBytes = 256 << 20 // etcd + API server + controllers, nothing else
	lowMemoryBytes = 1 << 30   // below this, expect memory pressure with pods
)

// PortState is what probing one port found.
type PortState struct {
	InUse bool
	Owner string // "name (pid N)" when known
	Err   error  // another error binding the port, e.g. permission denied
}

// Cgroups is what is mounted at /sys/fs/cgroup.
type Cgroups struct {
	Version int      // 0 when not mounted, 1 or 2
	Missing []string // controllers container limits need (cpu, memory) that are absent
}

// Host is a snapshot of the facts the checks decide on.
type Host struct {
	EUID             int
	Ports            map[int]PortState
	HasIptables      bool
	HasNft           bool
	Cgroups          Cgroups
	IPForward        string // contents of net.ipv4.ip_forward; "" when unreadable
	BridgeNFLoaded   bool   // br_netfilter loaded (its sysctl exists)
	BridgeNFIptables string // net.bridge.bridge-nf-call-iptables
	CPUs             float64
	MemoryBytes      uint64
	Containerd       bool  // a socket exists at Options.ContainerdSocket
	DataDirErr       error // nil when the data dir is (or can be made) writable
}

// Run checks this host for opts.
func Run(opts Options) []Result {
	return Evaluate(opts, Gather(opts))
}

// Evaluate decides, from a snapshot, what on the host stops a node from
// working. One result per check, in a fixed order.
func Evaluate(opts Options, h Host) []Result {
	cmd := opts.Command
	if cmd == "" {
		cmd = "skiff server"
	}
	var rs []Result
	add := func(check string, sev Severity, msg, fix string) {
		rs = append(rs, Result{Check: check, Severity: sev, Message: msg, Fix: fix})
	}

	if opts.Agent {
		if h.EUID != 0 {
			add("root", Error, "not running as root: pods need network namespaces, cgroups and iptables",
				"run as root: sudo "+cmd)
		} else {
			add("root", OK, "running as root", "")
		}
	}

	for _, p := range opts.Ports {
		name := "port-" + strconv.Itoa(p.Port)
		st := h.Ports[p.Port]
		move := "stop it"
		if p.Flag != "" {
			move += " or pass " + p.Flag
		}
		switch {
		case st.InUse:
			by := "another process"
			if st.Owner != "" {
				by = st.Owner
			}
			add(name, Error, fmt.Sprintf("port %d (%s) is in use by %s", p.Port, p.Use, by), move)
		case st.Err != nil:
			add(name, Error, fmt.Sprintf("cannot listen on %s port %d (%s): %v", p.Host, p.Port, p.Use, st.Err), move)
		default:
			add(name, OK, fmt.Sprintf("port %d (%s) is free", p.Port, p.Use), "")
		}
	}

	if h.DataDirErr != nil {
		add("data-dir", Error, fmt.Sprintf("data dir %s is not writable: %v", opts.DataDir, h.DataDirErr),
			"run as root or pass --data-dir with a writable directory")
	} else if opts.DataDir != "" {
		add("data-dir", OK, fmt.Sprintf("data dir %s is writable", opts.DataDir), "")
	}

	switch {
	case h.CPUs < minCPUs:
		add("cpu", Warning, fmt.Sprintf("only %.2g CPUs available; the control plane needs at least %g", h.CPUs, minCPUs),
			"give this host or container more CPU")
	default:
		add("cpu", OK, fmt.Sprintf("%.3g CPUs", h.CPUs), "")
	}
	mem := fmt.Sprintf("%d MiB of memory", h.MemoryBytes>>20)
	switch {
	case h.MemoryBytes == 0:
		add("memory", Warning, "cannot tell how much memory this host has", "")
	case h.MemoryBytes < minMemoryBytes:
		add("memory", Error, "only "+mem+"; the control plane needs at least 256 MiB", "give this host or container more memory")
	case h.MemoryBytes < lowMemoryBytes:
		add("memory", Warning, "only "+mem+"; pods will run short below 1 GiB", "give this host or container more memory")
	default:
		add("memory", OK, mem, "")
	}

	if !opts.Agent {
		return rs
	}

	switch {
	case !h.HasIptables && !h.HasNft:
		add("iptables", Warning, "neither iptables nor nft is installed: services work only if the kernel has nf_tables, which the proxy programs directly", "apt-get install iptables")
	case !h.HasIptables:
		add("iptables", Info, "nft found, iptables not installed", "")
	default:
		add("iptables", OK, "iptables found", "")
	}

	switch {
	case h.Cgroups.Version == 0:
		add("cgroups", Error, "no cgroups mounted at /sys/fs/cgroup: container limits cannot be applied",
			"mount -t cgroup2 none /sys/fs/cgroup")
	case len(h.Cgroups.Missing) > 0:
		fix := "boot with cgroup_enable=" + strings.Join(h.Cgroups.Missing, ",")
		if h.Cgroups.Version == 1 {
			c := h.Cgroups.Missing[0]
			fix = "mount it: mkdir -p /sys/fs/cgroup/" + c + " && mount -t cgroup -o " + c + " cgroup /sys/fs/cgroup/" + c
		}
		add("cgroups", Warning, fmt.Sprintf("cgroup v%d lacks the %s controller: those limits are not enforced",
			h.Cgroups.Version, strings.Join(h.Cgroups.Missing, " and ")), fix)
	default:
		add("cgroups", OK, fmt.Sprintf("cgroup v%d with cpu and memory", h.Cgroups.Version), "")
	}

	switch h.IPForward {
	case "1":
		add("ip-forward", OK, "net.ipv4.ip_forward is 1", "")
	case "":
		add("ip-forward", Warning, "cannot read net.ipv4.ip_forward", "sysctl -w net.ipv4.ip_forward=1")
	default:
		add("ip-forward", Error, "net.ipv4.ip_forward is "+h.IPForward+": pods cannot reach services or other nodes",
			"sysctl -w net.ipv4.ip_forward=1")
	}

	switch {
	case !h.BridgeNFLoaded:
		add("br-netfilter", Warning, "br_netfilter is not loaded: a pod reaching a service backed by a pod on the same node may fail",
			"modprobe br_netfilter")
	case h.BridgeNFIptables != "1":
		add("br-netfilter", Warning, "net.bridge.bridge-nf-call-iptables is "+h.BridgeNFIptables+": bridged pod traffic skips service rules",
			"sysctl -w net.bridge.bridge-nf-call-iptables=1")
	default:
		add("br-netfilter", OK, "br_netfilter loaded", "")
	}

	sock := opts.ContainerdSocket
	if sock == "" {
		sock = DefaultContainerdSocket
	}
	if h.Containerd {
		add("runtime", Info, "containerd found at "+sock+": real images can run through it", "skiff agent --container-runtime-endpoint "+sock)
	} else {
		add("runtime", Info, "no containerd socket at "+sock+": the built-in process runtime will be used", "")
	}
	return rs
}
