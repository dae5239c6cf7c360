package kubelet

import (
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels and annotations the kubelet sets on every sandbox and container, so
// that a restarted agent can find the pods' state in the runtime alone. The
// names are the ones Kubernetes' kubelet uses, which keeps crictl output
// familiar.
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	labelContainerType = "skiff.io/container-type" // "init" or "app"
	annotationHash     = "io.kubernetes.container.hash"
	annotationRestarts = "io.kubernetes.container.restartCount"
	annotationGrace    = "io.kubernetes.pod.terminationGracePeriod"
)

// sandboxInstance is one pod sandbox as the runtime reports it.
type sandboxInstance struct {
	ID        string
	Attempt   uint32
	Ready     bool
	IP        string
	IPs       []string
	CreatedAt time.Time
}

// containerInstance is one container (one attempt) as the runtime reports it.
type containerInstance struct {
	ID         string
	SandboxID  string
	Name       string
	Init       bool
	Attempt    uint32
	Hash       string
	State      runtimeapi.ContainerState
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	Message    string
	Image      string
	ImageRef   string
	LogPath    string
}

func (c *containerInstance) running() bool {
	return c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
}

func (c *containerInstance) exited() bool {
	return c.State == runtimeapi.ContainerState_CONTAINER_EXITED
}

// podView is everything the runtime knows about one pod: its sandboxes newest
// first, and all container instances of all of them, newest attempt first.
type podView struct {
	Sandboxes  []sandboxInstance
	Containers []containerInstance
}

// sortView orders sandboxes and containers newest first, which every lookup
// below relies on.
func (v *podView) sortView() {
	slices.SortStableFunc(v.Sandboxes, func(a, b sandboxInstance) int {
		if a.Attempt != b.Attempt {
			return int(b.Attempt) - int(a.Attempt)
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	slices.SortStableFunc(v.Containers, func(a, b containerInstance) int {
		if a.Attempt != b.Attempt {
			return int(b.Attempt) - int(a.Attempt)
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

// sandbox is the newest sandbox, or nil.
func (v *podView) sandbox() *sandboxInstance {
	if len(v.Sandboxes) == 0 {
		return nil
	}
	return &v.Sandboxes[0]
}

// latest is the newest instance of the named container, or nil.
func (v *podView) latest(name string) *containerInstance {
	for i := range v.Containers {
		if v.Containers[i].Name == name {
			return &v.Containers[i]
		}
	}
	return nil
}

// previous is the instance of the named container before the newest, or nil.
func (v *podView) previous(name string) *containerInstance {
	seen := false
	for i := range v.Containers {
		if v.Containers[i].Name != name {
			continue
		}
		if seen {
			return &v.Containers[i]
		}
		seen = true
	}
	return nil
}

// running lists the instances that are running or created (not yet exited).
func (v *podView) running() []containerInstance {
	var out []containerInstance
	for _, c := range v.Containers {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING || c.State == runtimeapi.ContainerState_CONTAINER_CREATED {
			out = append(out, c)
		}
	}
	return out
}

// keepPerContainer is how many instances of each container a pod keeps: the
// newest, and the one before it for `kubectl logs --previous` and the
// status's lastState. Older exited ones are removed, as Kubernetes' container
// garbage collection does, so a crash-looping container does not pile up
// directories and logs.
const keepPerContainer = 2

// surplus lists the exited instances older than the newest keepPerContainer
// of their container.
func (v *podView) surplus() []containerInstance {
	seen := map[string]int{}
	var out []containerInstance
	for _, c := range v.Containers {
		seen[c.Name]++
		if seen[c.Name] > keepPerContainer && c.exited() {
			out = append(out, c)
		}
	}
	return out
}

// drop removes the instance with id from the view.
func (v *podView) drop(id string) {
	v.Containers = slices.DeleteFunc(v.Containers, func(c containerInstance) bool { return c.ID == id })
}
