package cgroups

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct{ shares, want int64 }{
		{2, 1}, {0, 1}, {1024, 39}, {262144, 10000}, {1 << 30, 10000},
	} {
		if got := SharesToWeight(tc.shares); got != tc.want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", tc.shares, got, tc.want)
		}
	}
}

func TestOwnGroups(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(f, []byte("4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/u\n"), 0o644)
	got, err := ownGroups(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory": "/a/b", "cpu": "/c", "cpuacct": "/c", "": "/u"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ownGroups()[%q] = %q, want %q", k, got[k], v)
		}
	}
}

// TestGroupLifecycle creates a real group, limits it, puts a process in it
// and removes it again.
func TestGroupLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	m, err := New("", "skiff-test")
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	g, err := m.Create("pod-x/ctr-y", Resources{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	check := func(ctl, v1file, v2file, want string) {
		t.Helper()
		file := filepath.Join(g.dir(ctl), v1file)
		if m.V2() {
			file = filepath.Join(g.dir(""), v2file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want && !(m.V2() && strings.HasPrefix(got, want)) {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	check("memory", "memory.limit_in_bytes", "memory.max", "67108864")
	if !m.V2() {
		check("cpu", "cpu.cfs_quota_us", "", "50000")
		check("cpu", "cpu.shares", "", "512")
	} else {
		check("", "", "cpu.max", "50000 100000")
	}
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids := g.Pids(); !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("Pids() = %v, want it to contain %d", pids, cmd.Process.Pid)
	}
	if err := g.Remove(); err == nil {
		t.Errorf("Remove() with a live process = nil, want error")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := g.Remove(); err != nil {
		t.Errorf("Remove() = %v", err)
	}
	if _, err := os.Stat(g.dir("memory")); !os.IsNotExist(err) {
		t.Errorf("group dir still exists after Remove: %v", err)
	}
	m.Join("pod-x").Remove()
}
