package kubelet

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Crash-loop back-off: the first restart is immediate, then the wait after
// each exit doubles from backoffInitial up to backoffMax. A container that ran
// for backoffReset before exiting starts over from an immediate restart.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
)

// restartDelay is how long to wait after the exit of attempt before starting
// the next one. base is the attempt at which the back-off was last reset.
func restartDelay(attempt, base uint32) time.Duration {
	if attempt <= base {
		return 0
	}
	d := backoffInitial
	for i := base + 1; i < attempt; i++ {
		d *= 2
		if d >= backoffMax {
			return backoffMax
		}
	}
	return d
}

// probeState is what the probers concluded about one running container.
type probeState struct {
	Ready       bool   // readiness probe passing (or none defined)
	Started     bool   // startup probe passed (or none defined)
	Kill        bool   // liveness or startup probe failed: restart the container
	KillMessage string // why, for the Killing event
}

// startAction starts the named container; ExistingID, when set, is a
// container already created by an earlier sync that only needs starting.
type startAction struct {
	Name       string
	Init       bool
	Attempt    uint32
	ExistingID string
}

// killAction stops one container.
type killAction struct {
	ID      string
	Name    string
	Grace   time.Duration
	Message string // for the Killing event; empty means none
}

// plan is what one sync of a pod should do next. The shell executes it, looks
// at the runtime again and plans again until nothing is left to do.
type plan struct {
	CreateSandbox  bool
	SandboxAttempt uint32
	Kill           []killAction
	Start          []startAction
	StopSandboxes  []string // sandboxes to stop once their containers are gone
	Terminate      bool     // the pod is finished on this node
	DeleteFromAPI  bool     // terminated and deletion was requested: remove the API object
	BackOff        map[string]time.Duration
	RequeueAfter   time.Duration // wake up then even if nothing happens (back-off end)
}

// syncInput is the snapshot a plan is computed from.
type syncInput struct {
	Pod         *v1.Pod
	View        podView
	Probes      map[string]probeState // by container ID
	BackoffBase map[string]uint32     // by container name
	Now         time.Time
}

// containerHash identifies the parts of a container's spec that, changed,
// require a new container. Only the image is mutable in a pod's spec.
func containerHash(c *v1.Container) string {
	h := fnv.New32a()
	h.Write([]byte(c.Image))
	return fmt.Sprintf("%08x", h.Sum32())
}

// isTerminal says whether phase is one a pod never leaves.
func isTerminal(phase v1.PodPhase) bool {
	return phase == v1.PodSucceeded || phase == v1.PodFailed
}

// gracePeriod is how long containers get between SIGTERM and SIGKILL now.
func gracePeriod(pod *v1.Pod, now time.Time) time.Duration {
	if pod.DeletionTimestamp != nil {
		if pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds == 0 {
			return 0
		}
		left := pod.DeletionTimestamp.Sub(now)
		if left < time.Second {
			// The API rounds deletionTimestamp to seconds; give at least a
			// moment for SIGTERM to land.
			left = time.Second
		}
		return left.Round(time.Second)
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// probeGrace is the grace for a container killed by a failing probe:
// the probe's own terminationGracePeriodSeconds wins over the pod's.
func probeGrace(pod *v1.Pod, c *v1.Container) time.Duration {
	for _, p := range []*v1.Probe{c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
		}
	}
	return gracePeriod(pod, time.Time{})
}

// shouldRestart applies the pod's restartPolicy to an exited container.
func shouldRestart(policy v1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// isSidecar reports whether an init container is a sidecar: restartPolicy
// Always makes it start in order with the init containers, keep running
// beside the app containers, restart whenever it exits and stop after them.
func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// sidecarStarted reports whether a sidecar instance runs and has passed its
// startup probe, which is when the next init container may start.
func sidecarStarted(c *v1.Container, inst *containerInstance, probes map[string]probeState) bool {
	if inst == nil || !inst.running() {
		return false
	}
	return c.StartupProbe == nil || probes[inst.ID].Started
}

// initDone says whether the pod's init containers have all completed (a
// sidecar: started) in the current sandbox, or app containers already
// started, which implies it.
func initDone(pod *v1.Pod, v *podView, probes map[string]probeState) bool {
	if len(pod.Spec.InitContainers) == 0 {
		return true
	}
	sb := v.sandbox()
	if sb == nil {
		return false
	}
	for _, c := range v.Containers {
		if !c.Init && c.SandboxID == sb.ID {
			return true
		}
	}
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		inst := latestIn(v, ic.Name, sb.ID)
		if isSidecar(ic) {
			if !sidecarStarted(ic, inst, probes) {
				return false
			}
			continue
		}
		if inst == nil || !inst.exited() || inst.ExitCode != 0 {
			return false
		}
	}
	return true
}

// sidecarNamed reports whether name is one of pod's sidecars.
func sidecarNamed(pod *v1.Pod, name string) bool {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return isSidecar(&pod.Spec.InitContainers[i])
		}
	}
	return false
}

// latestIn is the newest instance of name in the given sandbox.
func latestIn(v *podView, name, sandboxID string) *containerInstance {
	for i := range v.Containers {
		if v.Containers[i].Name == name && v.Containers[i].SandboxID == sandboxID {
			return &v.Containers[i]
		}
	}
	return nil
}

// nextAttempt is the attempt number for a new instance of name, which is also
// its restart count.
func nextAttempt(v *podView, name string) uint32 {
	if inst := v.latest(name); inst != nil {
		return inst.Attempt + 1
	}
	return 0
}

// computePlan decides what to do next for one pod. It is the kubelet's
// deterministic core: no I/O, no clock.
func computePlan(in syncInput) plan {
	pod, v := in.Pod, &in.View
	p := plan{BackOff: map[string]time.Duration{}}

	if pod.DeletionTimestamp != nil || isTerminal(pod.Status.Phase) {
		p.Terminate = true
		grace := gracePeriod(pod, in.Now)
		// App containers stop first; sidecars only once they are gone, so
		// that a proxy or log shipper outlives the app it serves.
		running := v.running()
		apps := slices.DeleteFunc(slices.Clone(running), func(c containerInstance) bool { return sidecarNamed(pod, c.Name) })
		if len(apps) > 0 {
			running = apps
		}
		for _, c := range running {
			p.Kill = append(p.Kill, killAction{ID: c.ID, Name: c.Name, Grace: grace, Message: fmt.Sprintf("Stopping container %s", c.Name)})
		}
		for _, sb := range v.Sandboxes {
			if sb.Ready {
				p.StopSandboxes = append(p.StopSandboxes, sb.ID)
			}
		}
		p.DeleteFromAPI = pod.DeletionTimestamp != nil
		return p
	}

	sb := v.sandbox()
	if sb == nil || !sb.Ready {
		for _, c := range v.running() {
			p.Kill = append(p.Kill, killAction{ID: c.ID, Name: c.Name, Grace: gracePeriod(pod, in.Now)})
		}
		if sb != nil {
			// A dead sandbox with Never and containers that already ran:
			// the pod is done rather than started again.
			if pod.Spec.RestartPolicy == v1.RestartPolicyNever && len(v.Containers) > 0 {
				return p
			}
			p.SandboxAttempt = sb.Attempt + 1
		}
		p.CreateSandbox = true
		return p
	}

	// Containers the spec no longer has, or whose spec changed, are stopped.
	specs := map[string]*v1.Container{}
	for i := range pod.Spec.InitContainers {
		specs[pod.Spec.InitContainers[i].Name] = &pod.Spec.InitContainers[i]
	}
	for i := range pod.Spec.Containers {
		specs[pod.Spec.Containers[i].Name] = &pod.Spec.Containers[i]
	}
	for _, c := range v.running() {
		spec, ok := specs[c.Name]
		switch {
		case !ok:
			p.Kill = append(p.Kill, killAction{ID: c.ID, Name: c.Name, Grace: gracePeriod(pod, in.Now)})
		case c.Hash != "" && c.Hash != containerHash(spec):
			p.Kill = append(p.Kill, killAction{ID: c.ID, Name: c.Name, Grace: gracePeriod(pod, in.Now),
				Message: fmt.Sprintf("Container %s definition changed, will be restarted", c.Name)})
		case in.Probes[c.ID].Kill:
			p.Kill = append(p.Kill, killAction{ID: c.ID, Name: c.Name, Grace: probeGrace(pod, spec), Message: in.Probes[c.ID].KillMessage})
		}
	}
	if len(p.Kill) > 0 {
		return p
	}

	if !initDone(pod, v, in.Probes) {
		for i := range pod.Spec.InitContainers {
			ic := &pod.Spec.InitContainers[i]
			inst := latestIn(v, ic.Name, sb.ID)
			if isSidecar(ic) {
				if sidecarStarted(ic, inst, in.Probes) {
					continue
				}
				keepSidecar(&p, in, ic.Name, inst)
				return p // starting, or running until its startup probe passes
			}
			switch {
			case inst == nil:
				p.Start = append(p.Start, startAction{Name: ic.Name, Init: true, Attempt: nextAttempt(v, ic.Name)})
				return p
			case inst.State == 0: // CREATED
				p.Start = append(p.Start, startAction{Name: ic.Name, Init: true, Attempt: inst.Attempt, ExistingID: inst.ID})
				return p
			case !inst.exited():
				return p // running: wait for it to finish
			case inst.ExitCode == 0:
				continue
			case pod.Spec.RestartPolicy == v1.RestartPolicyNever:
				return p // the pod has failed; status says so
			default:
				restartAfterBackOff(&p, in, ic.Name, true, inst)
				return p
			}
		}
		return p
	}

	// Sidecars keep running beside the app containers, whatever the pod's
	// restartPolicy.
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		if !isSidecar(ic) {
			continue
		}
		keepSidecar(&p, in, ic.Name, latestIn(v, ic.Name, sb.ID))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		inst := v.latest(c.Name)
		switch {
		case inst == nil:
			p.Start = append(p.Start, startAction{Name: c.Name, Attempt: 0})
		case inst.State == 0 && inst.SandboxID == sb.ID: // CREATED
			p.Start = append(p.Start, startAction{Name: c.Name, Attempt: inst.Attempt, ExistingID: inst.ID})
		case inst.running():
		case !inst.exited():
			// UNKNOWN state: leave it to the runtime to settle.
		case inst.SandboxID != sb.ID && pod.Spec.RestartPolicy != v1.RestartPolicyNever:
			// Its sandbox is gone: start afresh in the new one.
			p.Start = append(p.Start, startAction{Name: c.Name, Attempt: inst.Attempt + 1})
		case shouldRestart(pod.Spec.RestartPolicy, inst.ExitCode):
			restartAfterBackOff(&p, in, c.Name, false, inst)
		}
	}
	return p
}

// keepSidecar starts the named sidecar when its newest instance in the
// current sandbox (inst) is missing, only created, or exited (after its
// back-off); a running one is left alone.
func keepSidecar(p *plan, in syncInput, name string, inst *containerInstance) {
	switch {
	case inst == nil:
		p.Start = append(p.Start, startAction{Name: name, Init: true, Attempt: nextAttempt(&in.View, name)})
	case inst.State == 0: // CREATED
		p.Start = append(p.Start, startAction{Name: name, Init: true, Attempt: inst.Attempt, ExistingID: inst.ID})
	case inst.exited():
		restartAfterBackOff(p, in, name, true, inst)
	}
}

// restartAfterBackOff starts a new instance of an exited container now, or
// records the back-off it is waiting in and when to look again.
func restartAfterBackOff(p *plan, in syncInput, name string, init bool, inst *containerInstance) {
	base := in.BackoffBase[name]
	if !inst.StartedAt.IsZero() && inst.FinishedAt.Sub(inst.StartedAt) >= backoffReset {
		base = inst.Attempt
	}
	delay := restartDelay(inst.Attempt, base)
	at := inst.FinishedAt.Add(delay)
	if in.Now.Before(at) {
		p.BackOff[name] = delay
		wait := at.Sub(in.Now)
		if p.RequeueAfter == 0 || wait < p.RequeueAfter {
			p.RequeueAfter = wait
		}
		return
	}
	p.Start = append(p.Start, startAction{Name: name, Init: init, Attempt: inst.Attempt + 1})
}

// updateBackoffBase records, for every container instance that ran long
// enough, that its back-off starts over after it.
func updateBackoffBase(base map[string]uint32, v *podView) {
	for _, c := range v.Containers {
		if c.exited() && !c.StartedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= backoffReset && c.Attempt > base[c.Name] {
			base[c.Name] = c.Attempt
		}
	}
}
