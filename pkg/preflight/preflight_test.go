package preflight

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// goodHost passes every check.
func goodHost() Host {
	return Host{
		EUID:             0,
		Ports:            map[int]PortState{},
		HasIptables:      true,
		HasNft:           true,
		Cgroups:          Cgroups{Version: 1},
		IPForward:        "1",
		BridgeNFLoaded:   true,
		BridgeNFIptables: "1",
		CPUs:             2,
		MemoryBytes:      4 << 30,
	}
}

func find(rs []Result, check string) (Result, bool) {
	for _, r := range rs {
		if r.Check == check {
			return r, true
		}
	}
	return Result{}, false
}

func TestEvaluate(t *testing.T) {
	agent := Options{DataDir: "/var/lib/skiff", Agent: true, Ports: ServerPorts("", 6443, 2379, 2380, true)}
	tests := []struct {
		name     string
		opts     Options
		change   func(*Host)
		check    string
		want     Severity
		wantText string // substring of the printed line
	}{
		{name: "healthy root", opts: agent, check: "root", want: OK},
		{name: "not root", opts: agent, change: func(h *Host) { h.EUID = 1000 }, check: "root", want: Error, wantText: "run as root: sudo skiff server"},
		{name: "not root, agent command", opts: Options{Agent: true, Command: "skiff agent"}, change: func(h *Host) { h.EUID = 1000 }, check: "root", want: Error, wantText: "sudo skiff agent"},
		{name: "port in use, owner unknown", opts: agent, change: func(h *Host) { h.Ports[6443] = PortState{InUse: true} },
			check: "port-6443", want: Error, wantText: "port 6443 (API server) is in use by another process; stop it or pass --https-port"},
		{name: "port in use, owner known", opts: agent, change: func(h *Host) { h.Ports[2379] = PortState{InUse: true, Owner: "etcd (pid 7)"} },
			check: "port-2379", want: Error, wantText: "in use by etcd (pid 7); stop it or pass --etcd-client-port"},
		{name: "port bind error", opts: agent, change: func(h *Host) { h.Ports[2380] = PortState{Err: errors.New("permission denied")} },
			check: "port-2380", want: Error, wantText: "permission denied"},
		{name: "port free", opts: agent, check: "port-6443", want: OK},
		{name: "no firewall tools", opts: agent, change: func(h *Host) { h.HasIptables, h.HasNft = false, false },
			check: "iptables", want: Warning, wantText: "apt-get install iptables"},
		{name: "nft only", opts: agent, change: func(h *Host) { h.HasIptables = false }, check: "iptables", want: Info},
		{name: "no cgroups", opts: agent, change: func(h *Host) { h.Cgroups = Cgroups{} }, check: "cgroups", want: Error, wantText: "mount"},
		{name: "memory controller missing", opts: agent, change: func(h *Host) { h.Cgroups.Missing = []string{"memory"} },
			check: "cgroups", want: Warning, wantText: "lacks the memory controller: those limits are not enforced; mount it: mkdir -p /sys/fs/cgroup/memory"},
		{name: "forwarding off", opts: agent, change: func(h *Host) { h.IPForward = "0" }, check: "ip-forward", want: Error, wantText: "sysctl -w net.ipv4.ip_forward=1"},
		{name: "forwarding unknown", opts: agent, change: func(h *Host) { h.IPForward = "" }, check: "ip-forward", want: Warning},
		{name: "br_netfilter missing", opts: agent, change: func(h *Host) { h.BridgeNFLoaded, h.BridgeNFIptables = false, "" },
			check: "br-netfilter", want: Warning, wantText: "modprobe br_netfilter"},
		{name: "bridge-nf-call-iptables off", opts: agent, change: func(h *Host) { h.BridgeNFIptables = "0" },
			check: "br-netfilter", want: Warning, wantText: "sysctl -w net.bridge.bridge-nf-call-iptables=1"},
		{name: "half a CPU", opts: agent, change: func(h *Host) { h.CPUs = 0.5 }, check: "cpu", want: Warning, wantText: "0.5 CPUs"},
		{name: "tiny memory", opts: agent, change: func(h *Host) { h.MemoryBytes = 128 << 20 }, check: "memory", want: Error, wantText: "128 MiB"},
		{name: "low memory", opts: agent, change: func(h *Host) { h.MemoryBytes = 512 << 20 }, check: "memory", want: Warning},
		{name: "no containerd", opts: agent, check: "runtime", want: Info, wantText: "process runtime will be used"},
		{name: "containerd", opts: agent, change: func(h *Host) { h.Containerd = true }, check: "runtime", want: Info, wantText: "--container-runtime-endpoint /run/containerd/containerd.sock"},
		{name: "data dir not writable", opts: agent, change: func(h *Host) { h.DataDirErr = os.ErrPermission },
			check: "data-dir", want: Error, wantText: "pass --data-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := goodHost()
			if tt.change != nil {
				tt.change(&h)
			}
			rs := Evaluate(tt.opts, h)
			got, ok := find(rs, tt.check)
			if !ok {
				t.Fatalf("Evaluate() has no %q result: %v", tt.check, rs)
			}
			if got.Severity != tt.want || !strings.Contains(got.String(), tt.wantText) {
				t.Errorf("Evaluate() %s = %q (%v), want %v containing %q", tt.check, got.String(), got.Severity, tt.want, tt.wantText)
			}
			if Blocking(rs) != (tt.want == Error) {
				t.Errorf("Blocking() = %v, want %v", Blocking(rs), tt.want == Error)
			}
		})
	}
}

func TestEvaluateWithoutAgentSkipsNodeChecks(t *testing.T) {
	h := goodHost()
	h.EUID, h.HasIptables, h.HasNft, h.IPForward, h.Cgroups = 1000, false, false, "0", Cgroups{}
	rs := Evaluate(Options{Ports: ServerPorts("", 6443, 2379, 2380, false)}, h)
	if Blocking(rs) {
		t.Errorf("Evaluate(no agent) blocks: %v", rs)
	}
	var checks []string
	for _, r := range rs {
		checks = append(checks, r.Check)
	}
	if want := []string{"port-6443", "cpu", "memory"}; !slices.Equal(checks, want) {
		t.Errorf("Evaluate(no agent, external etcd) checks = %v, want %v", checks, want)
	}
}

// writeTree creates files under root from path → content.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGatherFakeTree(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Host
	}{
		{
			name: "cgroup v1 with quota and limit",
			files: map[string]string{
				"proc/sys/net/ipv4/ip_forward":                "0\n",
				"proc/meminfo":                                "MemTotal:        8000000 kB\nMemFree: 1 kB\n",
				"sys/fs/cgroup/cpu/cpu.shares":                "1024\n",
				"sys/fs/cgroup/cpu/cpu.cfs_quota_us":          "150000\n",
				"sys/fs/cgroup/cpu/cpu.cfs_period_us":         "100000\n",
				"sys/fs/cgroup/memory/memory.limit_in_bytes":  "536870912\n",
				"proc/sys/net/bridge/bridge-nf-call-iptables": "1\n",
			},
			want: Host{IPForward: "0", BridgeNFLoaded: true, BridgeNFIptables: "1", CPUs: 1.5, MemoryBytes: 512 << 20,
				Cgroups: Cgroups{Version: 1}},
		},
		{
			name: "cgroup v2 without limits",
			files: map[string]string{
				"proc/sys/net/ipv4/ip_forward":     "1\n",
				"proc/meminfo":                     "MemTotal:        2048 kB\n",
				"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io pids\n",
				"sys/fs/cgroup/cpu.max":            "max 100000\n",
				"sys/fs/cgroup/memory.max":         "max\n",
			},
			want: Host{IPForward: "1", CPUs: 4, MemoryBytes: 2 << 20, Cgroups: Cgroups{Version: 2, Missing: []string{"memory"}}},
		},
		{
			name:  "nothing mounted",
			files: map[string]string{"proc/meminfo": "MemTotal: 1024 kB\n"},
			want:  Host{CPUs: 4, MemoryBytes: 1 << 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			g := gatherer{root: root, lookPath: func(string) (string, error) { return "", errors.New("not found") }, euid: 0, numCPU: 4}
			h := g.gather(Options{})
			if h.IPForward != tt.want.IPForward || h.BridgeNFLoaded != tt.want.BridgeNFLoaded || h.BridgeNFIptables != tt.want.BridgeNFIptables {
				t.Errorf("gather() forwarding = %q %v %q, want %q %v %q", h.IPForward, h.BridgeNFLoaded, h.BridgeNFIptables,
					tt.want.IPForward, tt.want.BridgeNFLoaded, tt.want.BridgeNFIptables)
			}
			if h.CPUs != tt.want.CPUs || h.MemoryBytes != tt.want.MemoryBytes {
				t.Errorf("gather() CPUs, memory = %v, %d, want %v, %d", h.CPUs, h.MemoryBytes, tt.want.CPUs, tt.want.MemoryBytes)
			}
			if h.Cgroups.Version != tt.want.Cgroups.Version || !slices.Equal(h.Cgroups.Missing, tt.want.Cgroups.Missing) {
				t.Errorf("gather() cgroups = %+v, want %+v", h.Cgroups, tt.want.Cgroups)
			}
			if h.HasIptables || h.HasNft || h.Containerd {
				t.Errorf("gather() found iptables/nft/containerd in an empty tree: %+v", h)
			}
		})
	}
}

func TestGatherContainerdSocket(t *testing.T) {
	root := t.TempDir()
	sock := filepath.Join(root, "run/containerd/containerd.sock")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := gatherer{root: root, lookPath: func(string) (string, error) { return "/usr/sbin/x", nil }, numCPU: 1}
	h := g.gather(Options{})
	if !h.Containerd || !h.HasIptables || !h.HasNft {
		t.Errorf("gather() containerd, iptables, nft = %v %v %v, want all true", h.Containerd, h.HasIptables, h.HasNft)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()

	opts := Options{Ports: []Port{
		{Host: "127.0.0.1", Port: busy, Use: "API server", Flag: "--https-port"},
		{Host: "127.0.0.1", Port: freePort, Use: "etcd client", Flag: "--etcd-client-port"},
	}}
	g := gatherer{root: "/", lookPath: func(string) (string, error) { return "", errors.New("not found") }, numCPU: 1}
	h := g.gather(opts)
	if st := h.Ports[busy]; !st.InUse {
		t.Errorf("Ports[%d] = %+v, want in use", busy, st)
	} else if _, err := os.Stat("/proc/net/tcp"); err == nil && !strings.Contains(st.Owner, "(pid ") {
		// This test process owns the listener, so /proc must name it.
		t.Errorf("Ports[%d].Owner = %q, want this test's process", busy, st.Owner)
	}
	if st := h.Ports[freePort]; st.InUse || st.Err != nil {
		t.Errorf("Ports[%d] = %+v, want free", freePort, st)
	}
	r, _ := find(Evaluate(opts, h), "port-"+strconv.Itoa(busy))
	if r.Severity != Error || !strings.Contains(r.String(), "--https-port") {
		t.Errorf("Evaluate() for busy port = %q, want an error naming --https-port", r.String())
	}
}

func TestWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		dir     string
		wantErr bool
	}{
		{dir: dir},
		{dir: filepath.Join(dir, "not", "yet", "there")},
		{dir: filepath.Join(file, "sub"), wantErr: true},
		{dir: file, wantErr: true},
	}
	for _, tt := range tests {
		err := writable(tt.dir)
		if (err != nil) != tt.wantErr {
			t.Errorf("writable(%s) = %v, want error %v", tt.dir, err, tt.wantErr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "not")); !os.IsNotExist(err) {
		t.Errorf("writable() created directories: %v", err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("writable() left files behind: %v", left)
	}
}

func TestListeningInodes(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0950 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:192B 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
`
	f := filepath.Join(t.TempDir(), "tcp")
	os.WriteFile(f, []byte(table), 0o644)
	tests := []struct {
		port int
		want []string
	}{
		{port: 6443, want: []string{"111"}}, // 333 is an established connection, not a listener
		{port: 2384, want: []string{"222"}},
		{port: 80, want: nil},
	}
	for _, tt := range tests {
		if got := listeningInodes(f, tt.port); !slices.Equal(got, tt.want) {
			t.Errorf("listeningInodes(%d) = %v, want %v", tt.port, got, tt.want)
		}
	}
}
