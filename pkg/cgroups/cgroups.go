// Package cgroups puts processes under memory and cpu limits with Linux
// control groups, on both the v1 layout (one hierarchy per controller under
// /sys/fs/cgroup/<controller>) and the v2 unified hierarchy, detected at run
// time. It knows only what the process runtime needs: create a group with
// limits, add a process, read usage and the OOM-kill counter, remove it.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors.
var (
	ErrUnavailable = errors.New("cgroups: not available")
	ErrBusy        = errors.New("cgroups: group still has processes")
)

// Resources are the limits the runtime applies; zero means "no limit".
type Resources struct {
	MemoryLimit int64 // bytes
	CPUShares   int64 // v1 shares (2..262144); mapped to cpu.weight on v2
	CPUQuota    int64 // microseconds per period; 0 or negative: no quota
	CPUPeriod   int64 // microseconds; default 100000
}

// Stats are the usage figures the CRI stats calls report.
type Stats struct {
	CPUUsageNanos    uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64
	OOMKills         uint64
}

// Manager creates groups below one parent in every hierarchy it uses.
type Manager struct {
	root string // /sys/fs/cgroup
	v2   bool
	// parent is the group path (relative to each hierarchy's root) under
	// which skiff creates its groups, e.g. "/process_api/x/skiff".
	parent map[string]string // controller ("" on v2) → relative path
}

// v1Controllers are the hierarchies the runtime touches on cgroup v1.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids"}

// New detects the cgroup layout under root (normally /sys/fs/cgroup) and
// places skiff's groups in a child named name of the calling process's own
// group, so an agent that itself runs in a limited group stays accounted.
func New(root, name string) (*Manager, error) {
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	m := &Manager{root: root, parent: map[string]string{}}
	own, err := ownGroups("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		m.v2 = true
		m.parent[""] = filepath.Join(own[""], name)
		if err := os.MkdirAll(filepath.Join(root, m.parent[""]), 0o755); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		// Enable memory, cpu and pids for children; ignore controllers the
		// kernel does not offer.
		for _, c := range []string{"memory", "cpu", "pids"} {
			_ = os.WriteFile(filepath.Join(root, m.parent[""], "cgroup.subtree_control"), []byte("+"+c), 0)
		}
		return m, nil
	}
	for _, c := range v1Controllers {
		if _, err := os.Stat(filepath.Join(root, c)); err != nil {
			if c == "memory" || c == "cpu" {
				return nil, fmt.Errorf("%w: no %s hierarchy under %s", ErrUnavailable, c, root)
			}
			continue
		}
		m.parent[c] = filepath.Join(own[c], name)
		if err := os.MkdirAll(filepath.Join(root, c, m.parent[c]), 0o755); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	return m, nil
}

// V2 reports whether the unified hierarchy is in use.
func (m *Manager) V2() bool { return m.v2 }

// ownGroups parses /proc/<pid>/cgroup into controller → path ("" for v2).
func ownGroups(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer f.Close()
	out := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, s.Err()
}

// Group is one cgroup (in every hierarchy on v1), named by its path relative
// to the manager's parent, e.g. "pod-abc/ctr-def".
type Group struct {
	// Dirs are absolute directories, one per hierarchy (controller name, or
	// "" on v2). They are stored in runtime state so a restarted agent finds
	// the same groups.
	Dirs map[string]string `json:"dirs"`
}

// Create makes the group (and its parents) and applies r.
func (m *Manager) Create(rel string, r Resources) (Group, error) {
	g := Group{Dirs: map[string]string{}}
	for c, p := range m.parent {
		var dir string
		if m.v2 {
			dir = filepath.Join(m.root, p, rel)
			// Every ancestor below the parent must delegate controllers.
			parts := strings.Split(rel, "/")
			cur := filepath.Join(m.root, p)
			for _, part := range parts[:len(parts)-1] {
				cur = filepath.Join(cur, part)
				if err := os.MkdirAll(cur, 0o755); err != nil {
					return g, err
				}
				for _, ctl := range []string{"memory", "cpu", "pids"} {
					_ = os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+"+ctl), 0)
				}
			}
		} else {
			dir = filepath.Join(m.root, c, p, rel)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return g, fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		g.Dirs[c] = dir
	}
	return g, g.Update(r)
}

// Join returns the group rel without creating it.
func (m *Manager) Join(rel string) Group {
	g := Group{Dirs: map[string]string{}}
	for c, p := range m.parent {
		if m.v2 {
			g.Dirs[c] = filepath.Join(m.root, p, rel)
		} else {
			g.Dirs[c] = filepath.Join(m.root, c, p, rel)
		}
	}
	return g
}

func (g Group) v2() bool { _, ok := g.Dirs[""]; return ok }

func (g Group) dir(controller string) string {
	if d, ok := g.Dirs[""]; ok {
		return d
	}
	return g.Dirs[controller]
}

// Update applies r to an existing group.
func (g Group) Update(r Resources) error {
	period := r.CPUPeriod
	if period <= 0 {
		period = 100000
	}
	var writes [][2]string // file, value
	if g.v2() {
		mem := "max"
		if r.MemoryLimit > 0 {
			mem = strconv.FormatInt(r.MemoryLimit, 10)
		}
		writes = append(writes, [2]string{"memory.max", mem})
		if r.MemoryLimit > 0 {
			writes = append(writes, [2]string{"?memory.swap.max", "0"})
		}
		quota := "max"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		writes = append(writes, [2]string{"cpu.max", quota + " " + strconv.FormatInt(period, 10)})
		if r.CPUShares > 0 {
			writes = append(writes, [2]string{"cpu.weight", strconv.FormatInt(SharesToWeight(r.CPUShares), 10)})
		}
	} else {
		mem := "-1"
		if r.MemoryLimit > 0 {
			mem = strconv.FormatInt(r.MemoryLimit, 10)
		}
		writes = append(writes, [2]string{"memory/memory.limit_in_bytes", mem})
		if r.MemoryLimit > 0 {
			// Without swap accounting this file is absent; ignore then.
			writes = append(writes, [2]string{"memory/?memory.memsw.limit_in_bytes", mem})
		}
		quota := "-1"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		writes = append(writes,
			[2]string{"cpu/cpu.cfs_period_us", strconv.FormatInt(period, 10)},
			[2]string{"cpu/cpu.cfs_quota_us", quota})
		if r.CPUShares > 0 {
			writes = append(writes, [2]string{"cpu/cpu.shares", strconv.FormatInt(r.CPUShares, 10)})
		}
	}
	for _, w := range writes {
		file := w[0]
		var dir string
		if i := strings.IndexByte(file, '/'); i >= 0 {
			dir, file = g.dir(file[:i]), file[i+1:]
		} else {
			dir = g.dir("")
		}
		optional := strings.HasPrefix(file, "?")
		file = strings.TrimPrefix(file, "?")
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(w[1]), 0); err != nil {
			if optional {
				continue
			}
			return fmt.Errorf("cgroups: set %s=%s: %w", filepath.Join(dir, file), w[1], err)
		}
	}
	return nil
}

// SharesToWeight maps v1 cpu.shares (2..262144) onto v2 cpu.weight
// (1..10000) linearly, the conversion the OCI runtimes agreed on.
func SharesToWeight(shares int64) int64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// Add moves pid into the group in every hierarchy.
func (g Group) Add(pid int) error {
	for _, d := range g.Dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("cgroups: add %d to %s: %w", pid, d, err)
		}
	}
	return nil
}

// Pids lists the processes in the group.
func (g Group) Pids() []int {
	d := g.dir("memory")
	if d == "" {
		for _, v := range g.Dirs {
			d = v
		}
	}
	b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// OOMKills returns how many times the kernel's OOM killer fired in the group.
func (g Group) OOMKills() uint64 {
	if g.v2() {
		return keyed(filepath.Join(g.dir(""), "memory.events"), "oom_kill")
	}
	return keyed(filepath.Join(g.dir("memory"), "memory.oom_control"), "oom_kill")
}

// Stats reads current usage.
func (g Group) Stats() Stats {
	var s Stats
	if g.v2() {
		d := g.dir("")
		s.CPUUsageNanos = keyed(filepath.Join(d, "cpu.stat"), "usage_usec") * 1000
		s.MemoryUsage = single(filepath.Join(d, "memory.current"))
		inactive := keyed(filepath.Join(d, "memory.stat"), "inactive_file")
		s.MemoryWorkingSet = sub(s.MemoryUsage, inactive)
	} else {
		s.CPUUsageNanos = single(filepath.Join(g.dir("cpuacct"), "cpuacct.usage"))
		s.MemoryUsage = single(filepath.Join(g.dir("memory"), "memory.usage_in_bytes"))
		inactive := keyed(filepath.Join(g.dir("memory"), "memory.stat"), "total_inactive_file")
		s.MemoryWorkingSet = sub(s.MemoryUsage, inactive)
	}
	s.OOMKills = g.OOMKills()
	return s
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Remove deletes the group, killing nothing: callers stop processes first.
// It retries briefly because the kernel frees a group a moment after its
// last process has been reaped.
func (g Group) Remove() error {
	var errs []error
	for _, d := range g.Dirs {
		var err error
		for i := 0; i < 50; i++ {
			err = os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %v", ErrBusy, d, err))
		}
	}
	return errors.Join(errs...)
}

func single(file string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// keyed reads "key value" lines.
func keyed(file, key string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}
