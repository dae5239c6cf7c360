package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/cgroups"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// ReasonNeedsCommand is the reason a container without a command ends with:
// the process runtime has no image to take an entrypoint from.
const ReasonNeedsCommand = "ProcessRuntimeNeedsCommand"

// shimStartTimeout bounds how long StartContainer waits for the shim.
const shimStartTimeout = 10 * time.Second

func (r *Runtime) container(id string) (*containerMeta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("%w: container %q", ErrNotFound, id)
	}
	return c, nil
}

func resourcesOf(lr *runtimeapi.LinuxContainerResources) cgroups.Resources {
	return cgroups.Resources{
		MemoryLimit: lr.GetMemoryLimitInBytes(),
		CPUShares:   lr.GetCpuShares(),
		CPUQuota:    lr.GetCpuQuota(),
		CPUPeriod:   lr.GetCpuPeriod(),
	}
}

// CreateContainer implements CRI.
func (r *Runtime) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	s, err := r.sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, grpcErr(err)
	}
	cfg := req.GetConfig()
	if cfg.GetMetadata() == nil {
		return nil, status.Error(codes.InvalidArgument, "process: container config needs metadata")
	}
	c := &containerMeta{ID: newID(), SandboxID: s.ID, CreatedAt: r.cfg.Now().UnixNano(), config: cfg}
	dir := r.containerDir(c.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, grpcErr(err)
	}
	c.LogPath = filepath.Join(r.cfg.DataDir, "logs", c.ID+".log")
	if ld := s.config.GetLogDirectory(); ld != "" && cfg.GetLogPath() != "" {
		c.LogPath = filepath.Join(ld, cfg.GetLogPath())
	}
	fail := func(err error) (*runtimeapi.CreateContainerResponse, error) {
		if c.Cgroup != nil {
			_ = c.Cgroup.Remove()
		}
		_ = os.RemoveAll(dir)
		return nil, grpcErr(err)
	}
	if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
		return fail(err)
	}
	if r.cg != nil {
		g, err := r.cg.Create("pod-"+s.ID+"/"+c.ID, resourcesOf(cfg.GetLinux().GetResources()))
		if err != nil {
			return fail(err)
		}
		c.Cgroup = &g
	}
	if cfg.GetStdin() {
		if err := syscall.Mkfifo(filepath.Join(dir, "stdin"), 0o600); err != nil {
			return fail(err)
		}
	}
	if err := writeProto(filepath.Join(dir, "config.pb"), cfg); err != nil {
		return fail(err)
	}
	if err := shim.WriteJSON(filepath.Join(dir, "container.json"), c); err != nil {
		return fail(err)
	}
	r.mu.Lock()
	r.containers[c.ID] = c
	r.mu.Unlock()
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// StartContainer implements CRI: it starts the shim and returns once the
// container's process runs (or could not be started, which is then also
// recorded as the container's exit).
func (r *Runtime) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := r.container(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	if st := r.status(c.ID); st.State != "" {
		return nil, grpcErr(fmt.Errorf("%w: container %s is %s, not created", ErrState, c.ID, st.State))
	}
	s, err := r.sandbox(c.SandboxID)
	if err != nil {
		return nil, grpcErr(err)
	}
	cfg := c.config
	argv := append(slices.Clone(cfg.GetCommand()), cfg.GetArgs()...)
	if len(argv) == 0 {
		msg := fmt.Sprintf("image %q cannot run in the process runtime: set command", cfg.GetImage().GetImage())
		r.recordStartFailure(c.ID, ReasonNeedsCommand, msg)
		return nil, status.Error(codes.FailedPrecondition, msg)
	}
	spec := r.shimSpecFor(c, s, argv)
	dir := r.containerDir(c.ID)
	if err := shim.WriteJSON(filepath.Join(dir, "shim.json"), spec); err != nil {
		return nil, grpcErr(err)
	}
	rep, err := r.runShim(dir)
	if err != nil {
		rep = shim.Report{Reason: "StartError", Error: err.Error()}
	}
	if rep.Error != "" {
		r.recordStartFailure(c.ID, rep.Reason, rep.Error)
		return nil, status.Errorf(codes.Unknown, "process: start container %s: %s", c.ID, rep.Error)
	}
	r.log.Debug("container started", "container", c.ID, "name", cfg.GetMetadata().GetName(), "pid", rep.Pid)
	return &runtimeapi.StartContainerResponse{}, nil
}

// recordStartFailure makes a container that never ran show as exited with
// exit code 128, as container runtimes report a failed start.
func (r *Runtime) recordStartFailure(id, reason, msg string) {
	now := r.cfg.Now().UnixNano()
	st := shim.Status{State: "exited", StartedAt: 0, FinishedAt: now, ExitCode: 128, Reason: reason, Message: msg}
	if err := shim.WriteJSON(filepath.Join(r.containerDir(id), "status.json"), st); err != nil {
		r.log.Error("record start failure", "container", id, "err", err)
	}
}

func (r *Runtime) shimSpecFor(c *containerMeta, s *sandboxMeta, argv []string) shim.Spec {
	cfg := c.config
	spec := shim.Spec{Argv: argv, WorkDir: cfg.GetWorkingDir(), Isolate: r.root, LogPath: c.LogPath, Stdin: cfg.GetStdin(), Cgroup: c.Cgroup}
	if spec.WorkDir == "" {
		spec.WorkDir = "/"
	}
	for _, kv := range cfg.GetEnvs() {
		spec.Env = append(spec.Env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	if shim.EnvValue(spec.Env, "PATH") == "" {
		spec.Env = append(spec.Env, "PATH="+shim.DefaultPath)
	}
	if sc := cfg.GetLinux().GetSecurityContext(); sc != nil {
		if u := sc.GetRunAsUser(); u != nil {
			v := uint32(u.GetValue())
			spec.UID = &v
		}
		if g := sc.GetRunAsGroup(); g != nil {
			v := uint32(g.GetValue())
			spec.GID = &v
		}
		for _, g := range sc.GetSupplementalGroups() {
			spec.Groups = append(spec.Groups, uint32(g))
		}
	}
	if r.cg != nil {
		g := r.cg.Join("shims")
		spec.ShimCgroup = &g
	}
	if !s.HostNetwork {
		spec.NetNS = s.NetNS
		spec.Hostname = s.config.GetHostname()
		if spec.Hostname == "" {
			spec.Hostname = s.config.GetMetadata().GetName()
		}
	}
	// Container runtimes give every container HOSTNAME (the pod's name, or
	// the node's with host networking); scripts and logs rely on it. The
	// user's own value wins.
	if shim.EnvValue(spec.Env, "HOSTNAME") == "" {
		h := spec.Hostname
		if h == "" {
			h, _ = os.Hostname()
		}
		if h != "" {
			spec.Env = append(spec.Env, "HOSTNAME="+h)
		}
	}
	if !r.root {
		return spec
	}
	given := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		given[filepath.Clean(m.GetContainerPath())] = true
	}
	sdir := r.sandboxDir(s.ID)
	for _, f := range []string{"hosts", "resolv.conf"} {
		target := "/etc/" + f
		if _, err := os.Stat(filepath.Join(sdir, f)); err == nil && !given[target] {
			spec.Mounts = append(spec.Mounts, shim.Mount{Host: filepath.Join(sdir, f), Container: target})
		}
	}
	for _, m := range cfg.GetMounts() {
		spec.Mounts = append(spec.Mounts, shim.Mount{Host: m.GetHostPath(), Container: filepath.Clean(m.GetContainerPath()), ReadOnly: m.GetReadonly(), Propagation: int32(m.GetPropagation())})
	}
	return spec
}

// runShim starts the shim in its own session (so it outlives the agent) and
// waits for its report.
func (r *Runtime) runShim(dir string) (shim.Report, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return shim.Report{}, err
	}
	defer pr.Close()
	logf, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		pw.Close()
		return shim.Report{}, err
	}
	defer logf.Close()
	cmd := exec.Command(r.cfg.ShimPath, append(slices.Clone(r.cfg.ShimArgs), dir)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return shim.Report{}, fmt.Errorf("start shim: %w", err)
	}
	// Reap the shim when it exits while this agent still runs; after an
	// agent restart, init reaps it.
	go func() { _ = cmd.Wait() }()
	done := make(chan struct{})
	var rep shim.Report
	var derr error
	go func() {
		defer close(done)
		derr = json.NewDecoder(pr).Decode(&rep)
	}()
	select {
	case <-done:
	case <-time.After(shimStartTimeout):
		_ = cmd.Process.Kill()
		<-done
		return shim.Report{}, errors.New("shim did not report within " + shimStartTimeout.String())
	}
	if derr != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "shim.log"))
		return shim.Report{}, fmt.Errorf("shim exited without a report: %v: %s", derr, strings.TrimSpace(string(b)))
	}
	return rep, nil
}

// waitExited polls the status file until the container has exited or the
// deadline passes.
func (r *Runtime) waitExited(ctx context.Context, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if r.status(id).State != "running" {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopContainer sends SIGTERM, waits up to timeout seconds, then SIGKILLs.
func (r *Runtime) stopContainer(ctx context.Context, c *containerMeta, timeout int64) error {
	st := r.status(c.ID)
	if st.State != "running" {
		return nil
	}
	if timeout > 0 {
		_ = syscall.Kill(st.Pid, syscall.SIGTERM)
		if r.waitExited(ctx, c.ID, time.Duration(timeout)*time.Second) {
			return nil
		}
	}
	if alive(st.Pid, st.PidStart) {
		_ = syscall.Kill(st.Pid, syscall.SIGKILL)
	}
	// A process the kernel cannot kill (D state) is rare; give up after a
	// while rather than hang the kubelet.
	if !r.waitExited(context.WithoutCancel(ctx), c.ID, 10*time.Second) {
		return fmt.Errorf("process: container %s (pid %d) did not exit after SIGKILL", c.ID, st.Pid)
	}
	return nil
}

// StopContainer implements CRI.
func (r *Runtime) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, err := r.container(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := r.stopContainer(ctx, c, req.GetTimeout()); err != nil {
		return nil, grpcErr(err)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer implements CRI (a running container is killed first).
func (r *Runtime) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, err := r.container(req.GetContainerId())
	if errors.Is(err, ErrNotFound) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err := r.removeContainer(ctx, c); err != nil {
		return nil, grpcErr(err)
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (r *Runtime) removeContainer(ctx context.Context, c *containerMeta) error {
	if err := r.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	dir := r.containerDir(c.ID)
	var created []string
	_ = shim.ReadJSON(filepath.Join(dir, "mountpoints.json"), &created)
	r.mu.Lock()
	delete(r.containers, c.ID)
	inUse := map[string]bool{}
	for _, o := range r.containers {
		for _, m := range o.config.GetMounts() {
			inUse[filepath.Clean(m.GetContainerPath())] = true
		}
	}
	r.mu.Unlock()
	// Remove the mountpoints this container's shim created, innermost
	// first, unless another container mounts there or something was put
	// inside them.
	for i := len(created) - 1; i >= 0; i-- {
		p := created[i]
		if inUse[p] {
			break
		}
		if fi, err := os.Lstat(p); err == nil && (fi.IsDir() || fi.Size() == 0) {
			_ = syscall.Rmdir(p)
			if !fi.IsDir() {
				_ = os.Remove(p)
			}
		}
	}
	if c.Cgroup != nil {
		if err := c.Cgroup.Remove(); err != nil {
			r.log.Warn("container cgroup not removed", "container", c.ID, "err", err)
		}
	}
	_ = os.Remove(c.LogPath)
	return os.RemoveAll(dir)
}

func stateOf(st shim.Status) runtimeapi.ContainerState {
	switch st.State {
	case "running":
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case "exited":
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_CREATED
}

func (r *Runtime) containerProto(c *containerMeta, st shim.Status) *runtimeapi.Container {
	img := c.config.GetImage()
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.config.GetMetadata(),
		Image: img, ImageRef: img.GetImage(), ImageId: img.GetImage(), State: stateOf(st), CreatedAt: c.CreatedAt,
		Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}
}

// ListContainers implements CRI.
func (r *Runtime) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	r.mu.Lock()
	cs := make([]*containerMeta, 0, len(r.containers))
	for _, id := range slices.Sorted(maps.Keys(r.containers)) {
		cs = append(cs, r.containers[id])
	}
	r.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range cs {
		if f.GetId() != "" && f.GetId() != c.ID {
			continue
		}
		if f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.SandboxID {
			continue
		}
		if !labelsMatch(c.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		p := r.containerProto(c, r.status(c.ID))
		if f.GetState() != nil && f.GetState().GetState() != p.State {
			continue
		}
		out = append(out, p)
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// ContainerStatus implements CRI.
func (r *Runtime) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := r.container(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	st := r.status(c.ID)
	p := r.containerProto(c, st)
	out := &runtimeapi.ContainerStatus{
		Id: p.Id, Metadata: p.Metadata, State: p.State, CreatedAt: p.CreatedAt,
		StartedAt: st.StartedAt, FinishedAt: st.FinishedAt, ExitCode: st.ExitCode,
		Image: p.Image, ImageRef: p.ImageRef, ImageId: p.ImageId, Reason: st.Reason, Message: st.Message,
		Labels: p.Labels, Annotations: p.Annotations, Mounts: c.config.GetMounts(), LogPath: c.LogPath,
		Resources: &runtimeapi.ContainerResources{Linux: c.config.GetLinux().GetResources()},
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: out}
	if req.GetVerbose() {
		resp.Info = map[string]string{"pid": fmt.Sprint(st.Pid), "shimPid": fmt.Sprint(st.ShimPid)}
	}
	return resp, nil
}

// UpdateContainerResources implements CRI.
func (r *Runtime) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, err := r.container(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	if c.Cgroup == nil {
		return nil, status.Error(codes.FailedPrecondition, "process: no cgroups on this node ("+r.cgError+"): limits cannot be changed")
	}
	if err := c.Cgroup.Update(resourcesOf(req.GetLinux())); err != nil {
		return nil, grpcErr(err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog implements CRI: the shim reopens the log on SIGUSR1.
func (r *Runtime) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, err := r.container(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	st := r.status(c.ID)
	if st.State != "running" || !alive(st.ShimPid, 0) {
		return nil, grpcErr(fmt.Errorf("%w: container %s is not running", ErrState, c.ID))
	}
	if err := syscall.Kill(st.ShimPid, syscall.SIGUSR1); err != nil {
		return nil, grpcErr(err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
