// Package process is skiff's built-in container runtime, served over the CRI
// gRPC API so the kubelet talks to it exactly as it would to containerd. A
// pod sandbox is a network namespace wired to the node bridge (pkg/podnet);
// a container is a host process started by a small shim (this binary
// re-executed as `skiff runtime-shim`) that enters the pod's namespaces,
// bind-mounts the volumes in a private mount namespace, joins the
// container's cgroup (pkg/cgroups), writes CRI-format logs and records the
// exit. Shims outlive the agent; all state lives in files under DataDir, so a
// restarted runtime adopts the running containers.
package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/cgroups"
	"github.com/skiff-org/skiff/pkg/podnet"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
	"github.com/skiff-org/skiff/pkg/runtime/streaming"
)

// RuntimeName is what Version reports.
const RuntimeName = "skiff-process"

// Version is the runtime's own version string.
const Version = "0.1.0"

// Sentinel errors.
var (
	ErrNotFound = errors.New("process: not found")
	ErrState    = errors.New("process: wrong state")
)

// Compile-time checks: the kubelet sees only these two CRI services.
var (
	_ runtimeapi.RuntimeServiceServer = (*Runtime)(nil)
	_ runtimeapi.ImageServiceServer   = (*Runtime)(nil)
)

// Config configures a Runtime.
type Config struct {
	DataDir    string       // state, logs and pinned namespaces live under it
	Log        *slog.Logger // default: discard
	BridgeName string       // default "skiff0"
	MTU        int          // default: the MTU of the host's default-route link
	// ShimPath and ShimArgs start a shim: ShimPath ShimArgs... <container dir>.
	// Default: skiff-shim next to this binary if present, else this very
	// binary as `runtime-shim`.
	ShimPath string
	ShimArgs []string
	// CgroupParent names the group, below the agent's own, holding pods.
	CgroupParent string           // default "skiff"
	Now          func() time.Time // default time.Now
}

// Runtime is the process runtime. Methods are safe for concurrent use.
type Runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg     Config
	log     *slog.Logger
	root    bool
	net     *podnet.Network
	cg      *cgroups.Manager // nil: no cgroups (not root, or none mounted)
	cgError string
	// stream serves the URLs CRI Exec, Attach and PortForward hand out; it
	// listens on loopback once Serve runs.
	stream *streaming.Server

	mu         sync.Mutex
	sandboxes  map[string]*sandboxMeta
	containers map[string]*containerMeta
}

// New opens (or creates) the runtime state in cfg.DataDir and adopts the
// containers recorded there.
func New(cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("process: Config.DataDir is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BridgeName == "" {
		cfg.BridgeName = "skiff0"
	}
	if cfg.ShimPath == "" {
		cfg.ShimPath, cfg.ShimArgs = defaultShim()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "skiff"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range []string{"sandboxes", "containers", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
	}
	r := &Runtime{
		cfg:        cfg,
		log:        cfg.Log,
		root:       os.Geteuid() == 0,
		sandboxes:  map[string]*sandboxMeta{},
		containers: map[string]*containerMeta{},
	}
	if r.root {
		r.net = podnet.New(podnet.Config{BridgeName: cfg.BridgeName, MTU: cfg.MTU, StateDir: filepath.Join(cfg.DataDir, "ipam")})
		cg, err := cgroups.New("", cfg.CgroupParent)
		if err != nil {
			r.cgError = err.Error()
			r.log.Warn("no cgroups: containers run without memory or cpu limits", "err", err)
		} else if _, err := cg.Create("shims", cgroups.Resources{}); err != nil {
			r.cgError = err.Error()
			r.log.Warn("no cgroups: containers run without memory or cpu limits", "err", err)
		} else {
			r.cg = cg
		}
	} else {
		r.cgError = "not running as root"
		r.log.Warn("not running as root: pods share the host network (no pod IPs), volumes are not bind-mounted, and there are no memory or cpu limits", "uid", os.Geteuid())
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "podcidr")); err == nil && r.root {
		if err := r.net.SetPodCIDR(string(b)); err != nil {
			r.log.Warn("remembered pod CIDR not restored", "podCIDR", string(b), "err", err)
		}
	}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("process: load state: %w", err)
	}
	stream, err := streaming.New(streaming.Config{Addr: "127.0.0.1:0", Runtime: r.Streamer(), Log: r.log.With("component", "streaming")})
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	r.stream = stream
	running := 0
	for id := range r.containers {
		if r.status(id).State == "running" {
			running++
		}
	}
	r.log.Info("process runtime ready", "dataDir", cfg.DataDir, "sandboxes", len(r.sandboxes), "containers", len(r.containers), "adoptedRunning", running)
	return r, nil
}

// Serve serves the CRI runtime and image services on a unix socket, and the
// streaming server (exec, attach, port-forward) on loopback, until ctx is
// done.
func (r *Runtime) Serve(ctx context.Context, socketPath string) error {
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o755); err != nil {
		return err
	}
	_ = os.Remove(socketPath)
	ln, err := net.Listen("unix", socketPath)
	if err != nil {
		return fmt.Errorf("process: listen %s: %w", socketPath, err)
	}
	if err := r.stream.Start(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("process: %w", err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, r)
	runtimeapi.RegisterImageServiceServer(srv, r)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.Stop()
		<-errc
		_ = os.Remove(socketPath)
		return nil
	case err := <-errc:
		return err
	}
}

// defaultShim prefers a skiff-shim binary installed next to this one (small
// and quick to start); otherwise this binary re-executes itself.
func defaultShim() (string, []string) {
	if exe, err := os.Executable(); err == nil {
		lean := filepath.Join(filepath.Dir(exe), "skiff-shim")
		if fi, err := os.Stat(lean); err == nil && fi.Mode()&0o111 != 0 {
			return lean, nil
		}
	}
	return "/proc/self/exe", []string{"runtime-shim"}
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// grpcErr maps internal errors to gRPC status codes in one place.
func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrState), errors.Is(err, podnet.ErrNotReady):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, podnet.ErrExhausted):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// Version implements CRI.
func (r *Runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: RuntimeName, RuntimeVersion: Version, RuntimeApiVersion: "v1"}, nil
}

// Status implements CRI. Besides RuntimeReady and NetworkReady it reports
// ProcessIsolation, false with the reason when pods run with less isolation
// than a pod normally has (no root, no cgroups).
func (r *Runtime) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	conds := []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: true}}
	netc := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	iso := &runtimeapi.RuntimeCondition{Type: "ProcessIsolation", Status: true}
	switch {
	case !r.root:
		netc.Reason, netc.Message = "HostNetworkOnly", "not root: every pod shares the host's network namespace and has the node's IP"
		iso.Status, iso.Reason = false, "NotRoot"
		iso.Message = fmt.Sprintf("skiff runs as uid %d: pods share the host network (no pod IPs, ports collide), volumes are not bind-mounted, and memory/cpu limits are not enforced (no cgroups); run the agent as root for full isolation", os.Geteuid())
	default:
		if ok, why := r.net.Ready(); !ok {
			netc.Status, netc.Reason, netc.Message = false, "NoPodCIDR", why
		}
		if r.cg == nil {
			iso.Status, iso.Reason = false, "NoCgroups"
			iso.Message = "memory and cpu limits are not enforced: " + r.cgError
		}
	}
	conds = append(conds, netc, iso)
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: conds}}, nil
}

// UpdateRuntimeConfig implements CRI: the pod CIDR sets up the bridge.
func (r *Runtime) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" || !r.root {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	// The kubelet may pass a comma-separated dual-stack list; IPv4 first.
	for _, c := range splitComma(cidr) {
		if err := r.net.SetPodCIDR(c); err == nil {
			r.log.Info("pod network ready", "podCIDR", c, "bridge", r.cfg.BridgeName)
			// Remembered so a restarted runtime serves pods before the
			// kubelet repeats the call.
			if err := shim.WriteAtomic(filepath.Join(r.cfg.DataDir, "podcidr"), []byte(c)); err != nil {
				return nil, grpcErr(err)
			}
			return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
		} else if !errors.Is(err, podnet.ErrBadCIDR) {
			return nil, grpcErr(err)
		}
	}
	return nil, status.Errorf(codes.InvalidArgument, "process: pod CIDR %q has no usable IPv4 range", cidr)
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// The process runtime has no images: a "pull" is a no-op so the kubelet's
// pull step passes, and every image is reported present.

// PullImage implements CRI.
func (r *Runtime) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	return &runtimeapi.PullImageResponse{ImageRef: req.GetImage().GetImage()}, nil
}

// ImageStatus implements CRI.
func (r *Runtime) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: name, RepoTags: []string{name}, Spec: req.GetImage()}}, nil
}

// ListImages implements CRI: nothing is stored.
func (r *Runtime) ListImages(context.Context, *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	return &runtimeapi.ListImagesResponse{}, nil
}

// RemoveImage implements CRI.
func (r *Runtime) RemoveImage(context.Context, *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo implements CRI: the runtime stores no image layers.
func (r *Runtime) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{}, nil
}
