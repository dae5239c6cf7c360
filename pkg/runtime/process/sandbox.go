package process

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/cgroups"
	"github.com/skiff-org/skiff/pkg/podnet"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// hostsFile renders the pod's /etc/hosts.
func hostsFile(hostname, ip string) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if ip != "" && hostname != "" {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.String()
}

// resolvConf renders the pod's /etc/resolv.conf from the CRI DNSConfig.
func resolvConf(d *runtimeapi.DNSConfig) string {
	var b strings.Builder
	if len(d.GetSearches()) > 0 {
		b.WriteString("search " + strings.Join(d.GetSearches(), " ") + "\n")
	}
	for _, s := range d.GetServers() {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(d.GetOptions()) > 0 {
		b.WriteString("options " + strings.Join(d.GetOptions(), " ") + "\n")
	}
	return b.String()
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) bool {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// RunPodSandbox implements CRI.
func (r *Runtime) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata() == nil {
		return nil, status.Error(codes.InvalidArgument, "process: sandbox config needs metadata")
	}
	s := &sandboxMeta{ID: newID(), CreatedAt: r.cfg.Now().UnixNano(), HostNetwork: hostNetwork(cfg) || !r.root, config: cfg}
	dir := r.sandboxDir(s.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, grpcErr(err)
	}
	if err := r.setupSandbox(s, dir); err != nil {
		r.teardownNetwork(s)
		if s.Cgroup != nil {
			_ = s.Cgroup.Remove()
		}
		_ = os.RemoveAll(dir)
		return nil, grpcErr(err)
	}
	r.mu.Lock()
	r.sandboxes[s.ID] = s
	r.mu.Unlock()
	r.log.Info("sandbox ready", "sandbox", s.ID, "pod", cfg.Metadata.Namespace+"/"+cfg.Metadata.Name, "ip", s.IP, "hostNetwork", s.HostNetwork)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: s.ID}, nil
}

func (r *Runtime) setupSandbox(s *sandboxMeta, dir string) error {
	cfg := s.config
	if !s.HostNetwork {
		if ok, why := r.net.Ready(); !ok {
			return fmt.Errorf("%w: %s", podnet.ErrNotReady, why)
		}
		s.NetNS = filepath.Join(dir, "netns")
		if err := podnet.CreateNetns(s.NetNS); err != nil {
			return err
		}
		at, err := r.net.Attach(s.ID, s.NetNS)
		if err != nil {
			return err
		}
		s.IP = at.IP.String()
	}
	if r.cg != nil {
		g, err := r.cg.Create("pod-"+s.ID, cgroups.Resources{})
		if err != nil {
			return err
		}
		s.Cgroup = &g
	}
	hostname := cfg.GetHostname()
	if hostname == "" {
		hostname = cfg.GetMetadata().GetName()
	}
	files := map[string]string{"hostname": hostname + "\n"}
	if !s.HostNetwork {
		files["hosts"] = hostsFile(hostname, s.IP)
	}
	if d := cfg.GetDnsConfig(); d != nil && (len(d.Servers) > 0 || len(d.Searches) > 0 || len(d.Options) > 0) {
		files["resolv.conf"] = resolvConf(d)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if ld := cfg.GetLogDirectory(); ld != "" {
		if err := os.MkdirAll(ld, 0o755); err != nil {
			return err
		}
	}
	s.Ready = true
	if err := writeProto(filepath.Join(dir, "config.pb"), cfg); err != nil {
		return err
	}
	return shim.WriteJSON(filepath.Join(dir, "sandbox.json"), s)
}

func (r *Runtime) teardownNetwork(s *sandboxMeta) error {
	if s.HostNetwork || !r.root {
		return nil
	}
	var errs []error
	errs = append(errs, r.net.Detach(s.ID))
	if s.NetNS != "" {
		errs = append(errs, podnet.RemoveNetns(s.NetNS))
	}
	return errors.Join(errs...)
}

func (r *Runtime) sandbox(id string) (*sandboxMeta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("%w: sandbox %q", ErrNotFound, id)
	}
	return s, nil
}

func (r *Runtime) containersOf(sandboxID string) []*containerMeta {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*containerMeta
	for _, c := range r.containers {
		if c.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}

// StopPodSandbox implements CRI: kills the pod's containers and tears down
// its network. Idempotent, and a missing sandbox is not an error.
func (r *Runtime) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	s, err := r.sandbox(req.GetPodSandboxId())
	if errors.Is(err, ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	for _, c := range r.containersOf(s.ID) {
		if err := r.stopContainer(ctx, c, 0); err != nil {
			return nil, grpcErr(err)
		}
	}
	if err := r.teardownNetwork(s); err != nil {
		return nil, grpcErr(err)
	}
	r.mu.Lock()
	s.Ready = false
	err = shim.WriteJSON(filepath.Join(r.sandboxDir(s.ID), "sandbox.json"), s)
	r.mu.Unlock()
	if err != nil {
		return nil, grpcErr(err)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox implements CRI: removes the pod's containers and every
// trace of the sandbox. Idempotent.
func (r *Runtime) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	s, err := r.sandbox(req.GetPodSandboxId())
	if errors.Is(err, ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	for _, c := range r.containersOf(s.ID) {
		if err := r.removeContainer(ctx, c); err != nil {
			return nil, grpcErr(err)
		}
	}
	if err := r.teardownNetwork(s); err != nil {
		return nil, grpcErr(err)
	}
	if s.Cgroup != nil {
		if err := s.Cgroup.Remove(); err != nil {
			r.log.Warn("pod cgroup not removed", "sandbox", s.ID, "err", err)
		}
	}
	if err := os.RemoveAll(r.sandboxDir(s.ID)); err != nil {
		return nil, grpcErr(err)
	}
	r.mu.Lock()
	delete(r.sandboxes, s.ID)
	r.mu.Unlock()
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (r *Runtime) sandboxProto(s *sandboxMeta) *runtimeapi.PodSandbox {
	state := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	if s.Ready {
		state = runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return &runtimeapi.PodSandbox{
		Id: s.ID, Metadata: s.config.GetMetadata(), State: state, CreatedAt: s.CreatedAt,
		Labels: s.config.GetLabels(), Annotations: s.config.GetAnnotations(), RuntimeHandler: "",
	}
}

// PodSandboxStatus implements CRI.
func (r *Runtime) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s, err := r.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, grpcErr(err)
	}
	r.mu.Lock()
	p := r.sandboxProto(s)
	ip := s.IP
	r.mu.Unlock()
	mode := runtimeapi.NamespaceMode_POD
	if s.HostNetwork {
		mode = runtimeapi.NamespaceMode_NODE
	}
	st := &runtimeapi.PodSandboxStatus{
		Id: p.Id, Metadata: p.Metadata, State: p.State, CreatedAt: p.CreatedAt,
		Labels: p.Labels, Annotations: p.Annotations,
		Network: &runtimeapi.PodSandboxNetworkStatus{Ip: ip},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: mode, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE,
		}}},
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st}, nil
}

// ListPodSandbox implements CRI.
func (r *Runtime) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, id := range slices.Sorted(maps.Keys(r.sandboxes)) {
		p := r.sandboxProto(r.sandboxes[id])
		if f.GetId() != "" && f.GetId() != p.Id {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != p.State {
			continue
		}
		if !labelsMatch(p.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, p)
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func labelsMatch(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
