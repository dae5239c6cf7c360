package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/cgroups"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// On disk, under DataDir:
//
//	sandboxes/<id>/sandbox.json   sandboxMeta (runtime writes)
//	sandboxes/<id>/config.pb      the CRI PodSandboxConfig
//	sandboxes/<id>/netns          the pinned network namespace
//	sandboxes/<id>/hosts, resolv.conf, hostname
//	containers/<id>/container.json containerMeta (runtime writes)
//	containers/<id>/config.pb     the CRI ContainerConfig
//	containers/<id>/shim.json     shim.Spec (runtime writes, shim reads)
//	containers/<id>/status.json   shim.Status (shim writes; runtime only for failures to start)
//
// Everything the runtime knows is in these files, so a new Runtime over the
// same DataDir picks up running containers where the old one left them.

type sandboxMeta struct {
	ID          string         `json:"id"`
	CreatedAt   int64          `json:"createdAt"`
	Ready       bool           `json:"ready"`
	HostNetwork bool           `json:"hostNetwork"`
	NetNS       string         `json:"netns,omitempty"`
	IP          string         `json:"ip,omitempty"`
	Cgroup      *cgroups.Group `json:"cgroup,omitempty"`
	config      *runtimeapi.PodSandboxConfig
}

type containerMeta struct {
	ID        string         `json:"id"`
	SandboxID string         `json:"sandboxId"`
	CreatedAt int64          `json:"createdAt"`
	LogPath   string         `json:"logPath"`
	Cgroup    *cgroups.Group `json:"cgroup,omitempty"`
	config    *runtimeapi.ContainerConfig
}

func writeProto(file string, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return shim.WriteAtomic(file, b)
}

func readProto(file string, m proto.Message) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.cfg.DataDir, "sandboxes", id) }
func (r *Runtime) containerDir(id string) string {
	return filepath.Join(r.cfg.DataDir, "containers", id)
}

// load reads every sandbox and container from DataDir.
func (r *Runtime) load() error {
	var errs []error
	for _, kind := range []string{"sandboxes", "containers"} {
		ents, err := os.ReadDir(filepath.Join(r.cfg.DataDir, kind))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(r.cfg.DataDir, kind, e.Name())
			if kind == "sandboxes" {
				s := &sandboxMeta{config: &runtimeapi.PodSandboxConfig{}}
				if err := shim.ReadJSON(filepath.Join(dir, "sandbox.json"), s); err != nil {
					errs = append(errs, fmt.Errorf("sandbox %s: %w", e.Name(), err))
					continue
				}
				if err := readProto(filepath.Join(dir, "config.pb"), s.config); err != nil {
					errs = append(errs, fmt.Errorf("sandbox %s: %w", e.Name(), err))
					continue
				}
				r.sandboxes[s.ID] = s
				continue
			}
			c := &containerMeta{config: &runtimeapi.ContainerConfig{}}
			if err := shim.ReadJSON(filepath.Join(dir, "container.json"), c); err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", e.Name(), err))
				continue
			}
			if err := readProto(filepath.Join(dir, "config.pb"), c.config); err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", e.Name(), err))
				continue
			}
			r.containers[c.ID] = c
		}
	}
	// Unreadable entries are logged and skipped: one torn file must not keep
	// the node from running everything else.
	for _, err := range errs {
		r.log.Warn("skipping unreadable runtime state", "err", err)
	}
	return nil
}

// status reads a container's status file and checks that a "running"
// container's process is really there; a container whose process vanished
// while nobody watched (host reboot, shim killed) is reported exited.
func (r *Runtime) status(id string) shim.Status {
	var st shim.Status
	if err := shim.ReadJSON(filepath.Join(r.containerDir(id), "status.json"), &st); err != nil {
		return shim.Status{} // created, not started
	}
	if st.State == "running" && !alive(st.Pid, st.PidStart) && !alive(st.ShimPid, 0) {
		// The shim writes the final status before it exits; read once more.
		var again shim.Status
		if shim.ReadJSON(filepath.Join(r.containerDir(id), "status.json"), &again) == nil && again.State != "running" {
			return again
		}
		st.State = "exited"
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = "the container's process and its shim are gone (host restarted or shim killed)"
		if st.FinishedAt == 0 {
			st.FinishedAt = r.cfg.Now().UnixNano()
		}
	}
	return st
}

// alive reports whether pid exists (and, if start is non-zero, is the same
// process that had that start time, not a reused pid).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st, ok := shim.ProcStart(pid)
	if !ok {
		return false
	}
	return start == 0 || st == start
}
