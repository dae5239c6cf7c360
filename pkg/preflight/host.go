package preflight

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Gather reads this host's facts for opts.
func Gather(opts Options) Host {
	g := gatherer{root: "/", lookPath: exec.LookPath, euid: os.Geteuid(), numCPU: runtime.NumCPU()}
	return g.gather(opts)
}

// gatherer reads /proc and /sys under root, so tests can point it at a fake
// tree. Port probes and the data dir check always touch the real system.
type gatherer struct {
	root     string
	lookPath func(string) (string, error)
	euid     int
	numCPU   int
}

func (g gatherer) gather(opts Options) Host {
	h := Host{
		EUID:  g.euid,
		Ports: map[int]PortState{},
	}
	for _, p := range opts.Ports {
		h.Ports[p.Port] = g.probePort(p)
	}
	_, err := g.lookPath("iptables")
	h.HasIptables = err == nil
	_, err = g.lookPath("nft")
	h.HasNft = err == nil
	h.Cgroups = g.cgroups()
	h.IPForward = g.readTrim("proc/sys/net/ipv4/ip_forward")
	h.BridgeNFIptables = g.readTrim("proc/sys/net/bridge/bridge-nf-call-iptables")
	h.BridgeNFLoaded = h.BridgeNFIptables != ""
	h.CPUs = g.cpus(h.Cgroups.Version)
	h.MemoryBytes = g.memory(h.Cgroups.Version)
	sock := opts.ContainerdSocket
	if sock == "" {
		sock = DefaultContainerdSocket
	}
	if fi, err := os.Stat(g.path(sock)); err == nil && fi.Mode()&os.ModeSocket != 0 {
		h.Containerd = true
	}
	if opts.DataDir != "" {
		h.DataDirErr = writable(opts.DataDir)
	}
	return h
}

func (g gatherer) path(p string) string { return filepath.Join(g.root, p) }

func (g gatherer) readTrim(p string) string {
	data, err := os.ReadFile(g.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// probePort tries to listen where the component will, which is the only
// reliable test: /proc/net/tcp misses wildcard-versus-specific conflicts.
func (g gatherer) probePort(p Port) PortState {
	host := p.Host
	if host == "" {
		host = "0.0.0.0"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p.Port)))
	if err == nil {
		ln.Close()
		return PortState{}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return PortState{InUse: true, Owner: g.portOwner(p.Port)}
	}
	return PortState{Err: err}
}

// portOwner names the process listening on port, "name (pid N)", or "" when
// it cannot tell (e.g. the listener belongs to another user and we are not
// root).
func (g gatherer) portOwner(port int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"proc/net/tcp", "proc/net/tcp6"} {
		for _, ino := range listeningInodes(g.path(f), port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, err := os.ReadDir(g.path("proc"))
	if err != nil {
		return ""
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := g.path(filepath.Join("proc", p.Name(), "fd"))
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := strings.CutPrefix(link, "socket:[")
			if ok && inodes[strings.TrimSuffix(ino, "]")] {
				name := g.readTrim(filepath.Join("proc", p.Name(), "comm"))
				if name == "" {
					name = "process"
				}
				return fmt.Sprintf("%s (pid %d)", name, pid)
			}
		}
	}
	return ""
}

// listeningInodes returns the socket inodes of TCP listeners on port in a
// /proc/net/tcp{,6} table.
func listeningInodes(file string, port int) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	want := fmt.Sprintf("%04X", port)
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(fields) < 10 || fields[3] != "0A" { // 0A is TCP_LISTEN
			continue
		}
		_, localPort, ok := strings.Cut(fields[1], ":")
		if ok && strings.EqualFold(localPort, want) {
			out = append(out, fields[9])
		}
	}
	return out
}

// cgroups finds the cgroup version and the controllers that container limits
// need (cpu, memory) that are missing.
func (g gatherer) cgroups() Cgroups {
	want := []string{"cpu", "memory"}
	if ctl := g.readTrim("sys/fs/cgroup/cgroup.controllers"); ctl != "" || g.exists("sys/fs/cgroup/cgroup.controllers") {
		have := map[string]bool{}
		for _, c := range strings.Fields(ctl) {
			have[c] = true
		}
		cg := Cgroups{Version: 2}
		for _, c := range want {
			if !have[c] {
				cg.Missing = append(cg.Missing, c)
			}
		}
		return cg
	}
	marker := map[string]string{"cpu": "cpu.shares", "memory": "memory.limit_in_bytes"}
	cg := Cgroups{Version: 1}
	for _, c := range want {
		if !g.exists(filepath.Join("sys/fs/cgroup", c, marker[c])) {
			cg.Missing = append(cg.Missing, c)
		}
	}
	if len(cg.Missing) == len(want) {
		return Cgroups{}
	}
	return cg
}

func (g gatherer) exists(p string) bool {
	_, err := os.Stat(g.path(p))
	return err == nil
}

// cpus is the CPU count, lowered by a CFS quota on our cgroup when one is set.
func (g gatherer) cpus(cgroupVersion int) float64 {
	n := float64(g.numCPU)
	var quota, period float64
	switch cgroupVersion {
	case 1:
		quota, _ = strconv.ParseFloat(g.readTrim("sys/fs/cgroup/cpu/cpu.cfs_quota_us"), 64)
		period, _ = strconv.ParseFloat(g.readTrim("sys/fs/cgroup/cpu/cpu.cfs_period_us"), 64)
	case 2:
		f := strings.Fields(g.readTrim("sys/fs/cgroup/cpu.max"))
		if len(f) == 2 {
			quota, _ = strconv.ParseFloat(f[0], 64) // "max" parses to an error, leaving 0
			period, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if quota > 0 && period > 0 && quota/period < n {
		n = quota / period
	}
	return n
}

// memory is MemTotal, lowered by a memory limit on our cgroup when one is set.
func (g gatherer) memory(cgroupVersion int) uint64 {
	var total uint64
	for line := range strings.Lines(g.readTrim("proc/meminfo")) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				total = kb << 10
			}
			break
		}
	}
	var limitFile string
	switch cgroupVersion {
	case 1:
		limitFile = "sys/fs/cgroup/memory/memory.limit_in_bytes"
	case 2:
		limitFile = "sys/fs/cgroup/memory.max"
	}
	if limitFile != "" {
		if limit, err := strconv.ParseUint(g.readTrim(limitFile), 10, 64); err == nil && limit > 0 && (total == 0 || limit < total) {
			total = limit
		}
	}
	return total
}

// writable reports why dir cannot be used as a data dir: it, or the nearest
// ancestor that exists when it does not yet, must accept a new file.
func writable(dir string) error {
	d := filepath.Clean(dir)
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return err
		}
		d = parent
	}
	f, err := os.CreateTemp(d, ".skiff-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
