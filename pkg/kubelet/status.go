package kubelet

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerError is why the kubelet could not create or start a container,
// shown as its waiting reason (CreateContainerError, RunContainerError, ...).
type containerError struct {
	Reason  string
	Message string
}

// statusInput is the snapshot a pod status is computed from.
type statusInput struct {
	Pod         *v1.Pod
	View        podView
	Plan        plan
	Probes      map[string]probeState
	Errors      map[string]containerError
	RuntimeName string // prefix of containerIDs: <name>://<id>
	HostIPs     []string
	Now         time.Time
}

// computeStatus derives the pod's status from what the runtime reports. Like
// computePlan it is pure; times are cut to seconds, as the API stores them,
// so that an unchanged status compares equal to the stored one.
func computeStatus(in statusInput) v1.PodStatus {
	pod, v := in.Pod, &in.View
	old := pod.Status
	st := v1.PodStatus{
		HostIP:            first(in.HostIPs),
		StartTime:         old.StartTime,
		QOSClass:          qosClass(pod),
		NominatedNodeName: old.NominatedNodeName,
	}
	for _, ip := range in.HostIPs {
		st.HostIPs = append(st.HostIPs, v1.HostIP{IP: ip})
	}
	if st.StartTime == nil {
		t := metav1.NewTime(in.Now).Rfc3339Copy()
		st.StartTime = &t
	}
	sb := v.sandbox()
	switch {
	case pod.Spec.HostNetwork:
		st.PodIP = st.HostIP
		for _, ip := range in.HostIPs {
			st.PodIPs = append(st.PodIPs, v1.PodIP{IP: ip})
		}
	case sb != nil && sb.IP != "":
		st.PodIP = sb.IP
		for _, ip := range append([]string{sb.IP}, sb.IPs...) {
			if !slices.ContainsFunc(st.PodIPs, func(p v1.PodIP) bool { return p.IP == ip }) {
				st.PodIPs = append(st.PodIPs, v1.PodIP{IP: ip})
			}
		}
	default:
		st.PodIP, st.PodIPs = old.PodIP, old.PodIPs // keep the IP a finished pod had
	}

	inited := initDone(pod, v, in.Probes)
	for i := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, containerStatus(in, &pod.Spec.InitContainers[i], true, inited))
	}
	for i := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, containerStatus(in, &pod.Spec.Containers[i], false, inited))
	}

	st.Phase = podPhase(pod, &st, inited)
	if isTerminal(old.Phase) {
		st.Phase = old.Phase // a finished pod never runs again
	}

	// Conditions, in the order Kubernetes lists them.
	cond := func(t v1.PodConditionType, ok bool, reason, msg string) {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, "", ""
		}
		st.Conditions = append(st.Conditions, c)
	}
	sandboxReady := sb != nil && sb.Ready && !isTerminal(st.Phase)
	cond(v1.PodReadyToStartContainers, sandboxReady, "", "")
	var initPending []string
	for i, cs := range st.InitContainerStatuses {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			if cs.State.Running == nil || cs.Started == nil || !*cs.Started {
				initPending = append(initPending, cs.Name)
			}
			continue
		}
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			initPending = append(initPending, cs.Name)
		}
	}
	if inited || len(initPending) == 0 {
		cond(v1.PodInitialized, true, "", "")
	} else {
		cond(v1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(initPending, " ")))
	}
	var unready []string
	for i, cs := range st.InitContainerStatuses {
		if isSidecar(&pod.Spec.InitContainers[i]) && !cs.Ready && !isTerminal(st.Phase) {
			unready = append(unready, cs.Name) // a sidecar's readiness counts toward the pod's
		}
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if st.Phase == v1.PodSucceeded {
		readyReason, readyMsg = "PodCompleted", ""
	}
	if !inited && len(initPending) > 0 {
		readyMsg = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	cond(v1.PodReady, len(unready) == 0, readyReason, readyMsg)
	cond(v1.ContainersReady, len(unready) == 0, readyReason, readyMsg)
	if c := findCondition(old.Conditions, v1.PodScheduled); c != nil {
		st.Conditions = append(st.Conditions, *c)
	} else {
		cond(v1.PodScheduled, true, "", "")
	}
	// Conditions other components own (readiness gates, DisruptionTarget)
	// pass through.
	for _, c := range old.Conditions {
		if findCondition(st.Conditions, c.Type) == nil {
			st.Conditions = append(st.Conditions, c)
		}
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if prev := findCondition(old.Conditions, c.Type); prev != nil && prev.Status == c.Status {
			c.LastTransitionTime, c.LastProbeTime = prev.LastTransitionTime, prev.LastProbeTime
		} else if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(in.Now).Rfc3339Copy()
		}
		c.ObservedGeneration = 0
	}
	return st
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func findCondition(cs []v1.PodCondition, t v1.PodConditionType) *v1.PodCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// containerStatus reports one container of the spec.
func containerStatus(in statusInput, c *v1.Container, init, inited bool) v1.ContainerStatus {
	v := &in.View
	cs := v1.ContainerStatus{Name: c.Name, Image: c.Image}
	f := false
	cs.Started = &f
	inst := v.latest(c.Name)
	if init && inst != nil && v.sandbox() != nil && inst.SandboxID != v.sandbox().ID && !inited {
		// Init containers of an earlier sandbox run again in the new one.
		cs.LastTerminationState = terminatedState(in, inst)
		cs.RestartCount = int32(inst.Attempt)
		inst = nil
	}
	waitingReason := "ContainerCreating"
	if !init && !inited {
		waitingReason = "PodInitializing"
	}
	if init {
		waitingReason = "PodInitializing"
	}
	if inst == nil {
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: waitingReason}
		if e, ok := in.Errors[c.Name]; ok {
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: e.Reason, Message: e.Message}
		}
		return cs
	}
	cs.RestartCount = int32(inst.Attempt)
	cs.ImageID = inst.ImageRef
	cs.ContainerID = in.RuntimeName + "://" + inst.ID
	if prev := v.previous(c.Name); prev != nil && prev.exited() {
		cs.LastTerminationState = terminatedState(in, prev)
	}
	switch {
	case inst.running():
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(inst.StartedAt).Rfc3339Copy()}
		pr, ok := in.Probes[inst.ID]
		started := c.StartupProbe == nil || (ok && pr.Started)
		cs.Started = &started
		if init && !isSidecar(c) {
			cs.Ready = false
		} else {
			cs.Ready = started && (c.ReadinessProbe == nil || (ok && pr.Ready))
		}
	case inst.exited():
		term := terminatedState(in, inst)
		if d, ok := in.Plan.BackOff[c.Name]; ok {
			cs.LastTerminationState = term
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", d, c.Name, in.Pod.Name, in.Pod.Namespace, in.Pod.UID)}
		} else if e, ok := in.Errors[c.Name]; ok {
			cs.LastTerminationState = term
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: e.Reason, Message: e.Message}
		} else {
			cs.State = term
		}
		cs.Ready = init && inst.ExitCode == 0 // a completed init container counts as ready
	default:
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: waitingReason}
	}
	return cs
}

// terminatedState describes an exited instance.
func terminatedState(in statusInput, c *containerInstance) v1.ContainerState {
	reason := c.Reason
	if reason == "" {
		reason = "Completed"
		if c.ExitCode != 0 {
			reason = "Error"
		}
	}
	return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
		ExitCode:    c.ExitCode,
		Reason:      reason,
		Message:     c.Message,
		StartedAt:   metav1.NewTime(c.StartedAt).Rfc3339Copy(),
		FinishedAt:  metav1.NewTime(c.FinishedAt).Rfc3339Copy(),
		ContainerID: in.RuntimeName + "://" + c.ID,
	}}
}

// podPhase applies Kubernetes' phase rules to the container statuses.
func podPhase(pod *v1.Pod, st *v1.PodStatus, inited bool) v1.PodPhase {
	if !inited {
		for i, cs := range st.InitContainerStatuses {
			if isSidecar(&pod.Spec.InitContainers[i]) {
				continue // restarted whatever the pod's restartPolicy
			}
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				return v1.PodFailed
			}
			if w := cs.State.Waiting; w != nil && cs.LastTerminationState.Terminated != nil &&
				cs.LastTerminationState.Terminated.ExitCode != 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				return v1.PodFailed
			}
		}
		return v1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range st.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0:
		return v1.PodRunning
	case stopped > 0:
		if pod.Spec.RestartPolicy == v1.RestartPolicyAlways {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyOnFailure {
			return v1.PodRunning
		}
		return v1.PodFailed
	}
	return v1.PodPending
}

// qosClass is Guaranteed when every container's requests equal its limits for
// cpu and memory, BestEffort when none sets any, Burstable otherwise.
func qosClass(pod *v1.Pod) v1.PodQOSClass {
	all := append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
	any, guaranteed := false, true
	for _, c := range all {
		for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq && !req.IsZero() || hasLim && !lim.IsZero() {
				any = true
			}
			if !hasLim {
				guaranteed = false
				continue
			}
			if hasReq && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return v1.PodQOSBestEffort
	case guaranteed:
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}

// statusEqual says whether writing st over old would change nothing.
func statusEqual(old, st *v1.PodStatus) bool {
	return equality.Semantic.DeepEqual(old, st)
}
