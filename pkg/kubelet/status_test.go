package kubelet

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestComputeStatusPhase(t *testing.T) {
	tests := []struct {
		name   string
		pod    *v1.Pod
		view   podView
		now    time.Time
		phase  v1.PodPhase
		reason string // first container's waiting or terminated reason
		ready  bool
	}{
		{"nothing yet", testPod(v1.RestartPolicyAlways, nil, "app"), podView{}, t0, v1.PodPending, "ContainerCreating", false},
		{"init running", testPod(v1.RestartPolicyAlways, []string{"i1"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, running, 0, t0, time.Time{})}}, t0, v1.PodPending, "PodInitializing", false},
		{"running", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, running, 0, t0, time.Time{})}}, t0, v1.PodRunning, "", true},
		{"never failed", testPod(v1.RestartPolicyNever, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, exited, 1, t0, t0)}}, t0, v1.PodFailed, "Error", false},
		{"never succeeded", testPod(v1.RestartPolicyNever, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, exited, 0, t0, t0)}}, t0, v1.PodSucceeded, "Completed", false},
		{"onfailure in back-off is running", testPod(v1.RestartPolicyOnFailure, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 1, exited, 2, t0, t0)}}, t0.Add(time.Second), v1.PodRunning, "CrashLoopBackOff", false},
		{"init failed under never", testPod(v1.RestartPolicyNever, []string{"i1"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, exited, 1, t0, t0)}}, t0, v1.PodFailed, "PodInitializing", false},
	}
	for _, tt := range tests {
		in := syncInput{Pod: tt.pod, View: tt.view, Now: tt.now}
		p := computePlan(in)
		st := computeStatus(statusInput{Pod: tt.pod, View: tt.view, Plan: p, RuntimeName: "skiff-process", HostIPs: []string{"192.0.2.1"}, Now: tt.now})
		if st.Phase != tt.phase {
			t.Errorf("%s: phase = %s, want %s", tt.name, st.Phase, tt.phase)
		}
		cs := st.ContainerStatuses[0]
		var reason string
		switch {
		case cs.State.Waiting != nil:
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			reason = cs.State.Terminated.Reason
		}
		if reason != tt.reason {
			t.Errorf("%s: container reason = %q, want %q", tt.name, reason, tt.reason)
		}
		ready := findCondition(st.Conditions, v1.PodReady)
		if (ready.Status == v1.ConditionTrue) != tt.ready {
			t.Errorf("%s: Ready = %s, want %v", tt.name, ready.Status, tt.ready)
		}
	}
}

func TestComputeStatusDetails(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, nil, "app")
	pod.Spec.Containers[0].ReadinessProbe = &v1.Probe{}
	view := podView{Sandboxes: sandboxOK(), Containers: []containerInstance{
		inst("app", 1, running, 0, t0, time.Time{}),
		inst("app", 0, exited, 137, t0.Add(-time.Minute), t0.Add(-time.Second)),
	}}
	view.Containers[1].Reason = "OOMKilled"
	st := computeStatus(statusInput{Pod: pod, View: view, RuntimeName: "skiff-process", HostIPs: []string{"192.0.2.1"}, Now: t0,
		Probes: map[string]probeState{"app-1": {Ready: false, Started: true}}})
	cs := st.ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.Ready || cs.ContainerID != "skiff-process://app-1" {
		t.Errorf("status = restarts %d ready %v id %q, want 1 false skiff-process://app-1", cs.RestartCount, cs.Ready, cs.ContainerID)
	}
	if lt := cs.LastTerminationState.Terminated; lt == nil || lt.Reason != "OOMKilled" || lt.ExitCode != 137 {
		t.Errorf("lastState = %+v, want OOMKilled 137", cs.LastTerminationState)
	}
	if st.PodIP != "10.42.0.5" || st.HostIP != "192.0.2.1" {
		t.Errorf("IPs = %s/%s, want 10.42.0.5/192.0.2.1", st.PodIP, st.HostIP)
	}
	c := findCondition(st.Conditions, v1.ContainersReady)
	if c.Status != v1.ConditionFalse || c.Message != "containers with unready status: [app]" {
		t.Errorf("ContainersReady = %s %q, want False with [app]", c.Status, c.Message)
	}
	// A second computation over the first status is unchanged.
	pod.Status = st
	st2 := computeStatus(statusInput{Pod: pod, View: view, RuntimeName: "skiff-process", HostIPs: []string{"192.0.2.1"}, Now: t0.Add(time.Minute),
		Probes: map[string]probeState{"app-1": {Ready: false, Started: true}}})
	if !statusEqual(&st, &st2) {
		t.Errorf("status changed with nothing new:\n%+v\n%+v", st, st2)
	}
}

func TestQOSClass(t *testing.T) {
	q := resource.MustParse("100m")
	m := resource.MustParse("64Mi")
	tests := []struct {
		name string
		res  v1.ResourceRequirements
		want v1.PodQOSClass
	}{
		{"none", v1.ResourceRequirements{}, v1.PodQOSBestEffort},
		{"requests only", v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: q}}, v1.PodQOSBurstable},
		{"limits equal", v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceCPU: q, v1.ResourceMemory: m}}, v1.PodQOSGuaranteed},
		{"cpu limit only", v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceCPU: q}}, v1.PodQOSBurstable},
	}
	for _, tt := range tests {
		p := testPod(v1.RestartPolicyAlways, nil, "app")
		p.Spec.Containers[0].Resources = tt.res
		if got := qosClass(p); got != tt.want {
			t.Errorf("qosClass(%s) = %s, want %s", tt.name, got, tt.want)
		}
	}
}
