package kubelet

import (
	"reflect"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	running = runtimeapi.ContainerState_CONTAINER_RUNNING
	exited  = runtimeapi.ContainerState_CONTAINER_EXITED
	created = runtimeapi.ContainerState_CONTAINER_CREATED
)

func testPod(policy v1.RestartPolicy, inits []string, apps ...string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}
	p.Spec.RestartPolicy = policy
	for _, n := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, v1.Container{Name: n, Image: "img"})
	}
	for _, n := range apps {
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: n, Image: "img"})
	}
	return p
}

func sandboxOK() []sandboxInstance {
	return []sandboxInstance{{ID: "sb1", Ready: true, IP: "10.42.0.5"}}
}

func inst(name string, attempt uint32, state runtimeapi.ContainerState, exit int32, started, finished time.Time) containerInstance {
	return containerInstance{ID: name + "-" + string(rune('0'+attempt)), SandboxID: "sb1", Name: name, Attempt: attempt,
		Init:  name[0] == 'i', // init containers are named i1, i2 in these tests
		State: state, ExitCode: exit, StartedAt: started, FinishedAt: finished, Hash: containerHash(&v1.Container{Image: "img"})}
}

func TestRestartDelay(t *testing.T) {
	tests := []struct {
		attempt, base uint32
		want          time.Duration
	}{
		{0, 0, 0},
		{1, 0, 10 * time.Second},
		{2, 0, 20 * time.Second},
		{3, 0, 40 * time.Second},
		{5, 0, 160 * time.Second},
		{6, 0, 5 * time.Minute},
		{40, 0, 5 * time.Minute},
		{7, 7, 0},
		{8, 7, 10 * time.Second},
	}
	for _, tt := range tests {
		if got := restartDelay(tt.attempt, tt.base); got != tt.want {
			t.Errorf("restartDelay(%d, %d) = %v, want %v", tt.attempt, tt.base, got, tt.want)
		}
	}
}

func TestComputePlan(t *testing.T) {
	deleting := testPod(v1.RestartPolicyAlways, nil, "app")
	ts := metav1.NewTime(t0.Add(20 * time.Second))
	deleting.DeletionTimestamp = &ts

	type want struct {
		sandbox   bool
		start     []startAction
		kill      []string
		backoff   map[string]time.Duration
		requeue   time.Duration
		terminate bool
		del       bool
	}
	tests := []struct {
		name   string
		pod    *v1.Pod
		view   podView
		probes map[string]probeState
		base   map[string]uint32
		want   want
	}{
		{"new pod needs a sandbox", testPod(v1.RestartPolicyAlways, nil, "app"), podView{},
			nil, nil, want{sandbox: true}},
		{"sandbox ready starts init container first", testPod(v1.RestartPolicyAlways, []string{"i1", "i2"}, "app"),
			podView{Sandboxes: sandboxOK()}, nil, nil,
			want{start: []startAction{{Name: "i1", Init: true}}}},
		{"init running waits", testPod(v1.RestartPolicyAlways, []string{"i1", "i2"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, running, 0, t0, time.Time{})}}, nil, nil,
			want{}},
		{"first init done starts second", testPod(v1.RestartPolicyAlways, []string{"i1", "i2"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, exited, 0, t0, t0)}}, nil, nil,
			want{start: []startAction{{Name: "i2", Init: true}}}},
		{"init failed under Never does nothing", testPod(v1.RestartPolicyNever, []string{"i1"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, exited, 1, t0, t0)}}, nil, nil,
			want{}},
		{"init failed under OnFailure restarts at once the first time", testPod(v1.RestartPolicyOnFailure, []string{"i1"}, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, exited, 1, t0, t0)}}, nil, nil,
			want{start: []startAction{{Name: "i1", Init: true, Attempt: 1}}}},
		{"inits done start all app containers", testPod(v1.RestartPolicyAlways, []string{"i1"}, "a", "b"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("i1", 0, exited, 0, t0, t0)}}, nil, nil,
			want{start: []startAction{{Name: "a"}, {Name: "b"}}}},
		{"running container left alone", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, running, 0, t0, time.Time{})}}, nil, nil,
			want{}},
		{"second exit waits 10s", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 1, exited, 1, t0, t0.Add(-3*time.Second))}}, nil, nil,
			want{backoff: map[string]time.Duration{"app": 10 * time.Second}, requeue: 7 * time.Second}},
		{"back-off over restarts", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 1, exited, 1, t0, t0.Add(-10*time.Second))}}, nil, nil,
			want{start: []startAction{{Name: "app", Attempt: 2}}}},
		{"long run resets back-off", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 4, exited, 1, t0.Add(-11*time.Minute), t0.Add(-time.Second))}}, nil, nil,
			want{start: []startAction{{Name: "app", Attempt: 5}}}},
		{"Always restarts success too", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, exited, 0, t0, t0)}}, nil, nil,
			want{start: []startAction{{Name: "app", Attempt: 1}}}},
		{"OnFailure leaves success", testPod(v1.RestartPolicyOnFailure, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, exited, 0, t0, t0)}}, nil, nil,
			want{}},
		{"Never leaves failure", testPod(v1.RestartPolicyNever, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, exited, 1, t0, t0)}}, nil, nil,
			want{}},
		{"liveness failure kills", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, running, 0, t0, time.Time{})}},
			map[string]probeState{"app-0": {Kill: true, KillMessage: "x"}}, nil,
			want{kill: []string{"app-0"}}},
		{"created container is started", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 2, created, 0, time.Time{}, time.Time{})}}, nil, nil,
			want{start: []startAction{{Name: "app", Attempt: 2, ExistingID: "app-2"}}}},
		{"dead sandbox is replaced", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: []sandboxInstance{{ID: "sb1", Attempt: 0}}}, nil, nil,
			want{sandbox: true}},
		{"deletion kills and stops", deleting,
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("app", 0, running, 0, t0, time.Time{})}}, nil, nil,
			want{kill: []string{"app-0"}, terminate: true, del: true}},
		{"unknown container killed", testPod(v1.RestartPolicyAlways, nil, "app"),
			podView{Sandboxes: sandboxOK(), Containers: []containerInstance{inst("gone", 0, running, 0, t0, time.Time{}), inst("app", 0, running, 0, t0, time.Time{})}}, nil, nil,
			want{kill: []string{"gone-0"}}},
	}
	for _, tt := range tests {
		p := computePlan(syncInput{Pod: tt.pod, View: tt.view, Probes: tt.probes, BackoffBase: tt.base, Now: t0})
		var kills []string
		for _, k := range p.Kill {
			kills = append(kills, k.ID)
		}
		if tt.want.backoff == nil {
			tt.want.backoff = map[string]time.Duration{}
		}
		got := want{sandbox: p.CreateSandbox, start: p.Start, kill: kills, backoff: p.BackOff, requeue: p.RequeueAfter, terminate: p.Terminate, del: p.DeleteFromAPI}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: computePlan = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestGracePeriod(t *testing.T) {
	p := testPod(v1.RestartPolicyAlways, nil, "app")
	if got := gracePeriod(p, t0); got != 30*time.Second {
		t.Errorf("gracePeriod(default) = %v, want 30s", got)
	}
	ts := metav1.NewTime(t0.Add(5 * time.Second))
	p.DeletionTimestamp = &ts
	if got := gracePeriod(p, t0); got != 5*time.Second {
		t.Errorf("gracePeriod(deleting in 5s) = %v, want 5s", got)
	}
	if got := gracePeriod(p, t0.Add(time.Minute)); got != time.Second {
		t.Errorf("gracePeriod(past deadline) = %v, want 1s", got)
	}
}

func TestSurplus(t *testing.T) {
	tests := []struct {
		name string
		view podView
		want []string
	}{
		{"none", podView{}, nil},
		{"newest two kept", podView{Containers: []containerInstance{
			inst("app", 1, running, 0, t0, time.Time{}), inst("app", 0, exited, 1, t0, t0)}}, nil},
		{"older exited removed", podView{Containers: []containerInstance{
			inst("app", 3, exited, 1, t0, t0), inst("app", 2, exited, 1, t0, t0), inst("app", 1, exited, 1, t0, t0), inst("app", 0, exited, 1, t0, t0)}},
			[]string{"app-1", "app-0"}},
		{"counted per container", podView{Containers: []containerInstance{
			inst("app", 2, running, 0, t0, time.Time{}), inst("side", 2, exited, 1, t0, t0), inst("app", 1, exited, 1, t0, t0),
			inst("side", 1, exited, 1, t0, t0), inst("app", 0, exited, 1, t0, t0)}},
			[]string{"app-0"}},
		{"a running old instance stays", podView{Containers: []containerInstance{
			inst("app", 2, exited, 1, t0, t0), inst("app", 1, exited, 1, t0, t0), inst("app", 0, running, 0, t0, time.Time{})}}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range tt.view.surplus() {
			got = append(got, c.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: surplus = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// sidecarPod has sidecar isc (restartPolicy Always, optionally a startup
// probe), then init container i1, then app.
func sidecarPod(policy v1.RestartPolicy, startupProbe bool) *v1.Pod {
	p := testPod(policy, []string{"isc", "i1"}, "app")
	always := v1.ContainerRestartPolicyAlways
	p.Spec.InitContainers[0].RestartPolicy = &always
	if startupProbe {
		p.Spec.InitContainers[0].StartupProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}
	}
	return p
}

func TestSidecarPlan(t *testing.T) {
	sc := func(state runtimeapi.ContainerState, attempt uint32) containerInstance {
		finished := time.Time{}
		if state == exited {
			finished = t0.Add(-time.Minute)
		}
		return inst("isc", attempt, state, 1, t0.Add(-2*time.Minute), finished)
	}
	deleting := sidecarPod(v1.RestartPolicyAlways, false)
	ts := metav1.NewTime(t0.Add(20 * time.Second))
	deleting.DeletionTimestamp = &ts
	tests := []struct {
		name      string
		pod       *v1.Pod
		view      []containerInstance
		probes    map[string]probeState
		wantStart []string
		wantKill  []string
		wantWait  bool // back-off
	}{
		{"the sidecar starts first", sidecarPod(v1.RestartPolicyAlways, false), nil, nil, []string{"isc"}, nil, false},
		{"a running sidecar lets the next init container start", sidecarPod(v1.RestartPolicyAlways, false),
			[]containerInstance{sc(running, 0)}, nil, []string{"i1"}, nil, false},
		{"its startup probe holds the next one back", sidecarPod(v1.RestartPolicyAlways, true),
			[]containerInstance{sc(running, 0)}, map[string]probeState{"isc-0": {Started: false}}, nil, nil, false},
		{"once started, the next one goes", sidecarPod(v1.RestartPolicyAlways, true),
			[]containerInstance{sc(running, 0)}, map[string]probeState{"isc-0": {Started: true}}, []string{"i1"}, nil, false},
		{"init done: the app starts beside the running sidecar", sidecarPod(v1.RestartPolicyAlways, false),
			[]containerInstance{sc(running, 0), inst("i1", 0, exited, 0, t0, t0)}, nil, []string{"app"}, nil, false},
		{"an exited sidecar restarts even under Never", sidecarPod(v1.RestartPolicyNever, false),
			[]containerInstance{inst("app", 0, running, 0, t0, time.Time{}), sc(exited, 1), inst("i1", 0, exited, 0, t0, t0)}, nil, []string{"isc"}, nil, false},
		{"a sidecar that just died waits its back-off", sidecarPod(v1.RestartPolicyAlways, false),
			[]containerInstance{inst("app", 0, running, 0, t0, time.Time{}), inst("isc", 3, exited, 1, t0.Add(-3*time.Second), t0.Add(-time.Second)), inst("i1", 0, exited, 0, t0, t0)},
			nil, nil, nil, true},
		{"deletion stops the app first", deleting,
			[]containerInstance{inst("app", 0, running, 0, t0, time.Time{}), sc(running, 0), inst("i1", 0, exited, 0, t0, t0)}, nil, nil, []string{"app-0"}, false},
		{"then the sidecar", deleting,
			[]containerInstance{inst("app", 0, exited, 0, t0, t0), sc(running, 0), inst("i1", 0, exited, 0, t0, t0)}, nil, nil, []string{"isc-0"}, false},
	}
	for _, tt := range tests {
		v := podView{Sandboxes: sandboxOK(), Containers: tt.view}
		v.sortView()
		p := computePlan(syncInput{Pod: tt.pod, View: v, Probes: tt.probes, BackoffBase: map[string]uint32{}, Now: t0})
		var starts, kills []string
		for _, s := range p.Start {
			starts = append(starts, s.Name)
		}
		for _, k := range p.Kill {
			kills = append(kills, k.ID)
		}
		if !slices.Equal(starts, tt.wantStart) || !slices.Equal(kills, tt.wantKill) || (len(p.BackOff) > 0) != tt.wantWait {
			t.Errorf("%s: start %v kill %v back-off %v; want start %v kill %v back-off %v", tt.name, starts, kills, p.BackOff, tt.wantStart, tt.wantKill, tt.wantWait)
		}
	}
}

func TestSidecarStatus(t *testing.T) {
	pod := sidecarPod(v1.RestartPolicyAlways, false)
	pod.Spec.InitContainers[0].ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}
	v := podView{Sandboxes: sandboxOK(), Containers: []containerInstance{
		inst("app", 0, running, 0, t0, time.Time{}), inst("isc", 0, running, 0, t0, time.Time{}), inst("i1", 0, exited, 0, t0, t0)}}
	v.sortView()
	for _, ready := range []bool{false, true} {
		st := computeStatus(statusInput{Pod: pod, View: v, Probes: map[string]probeState{"isc-0": {Ready: ready, Started: true}, "app-0": {Ready: true, Started: true}}, Now: t0})
		if st.Phase != v1.PodRunning {
			t.Errorf("ready=%v: phase %s, want Running", ready, st.Phase)
		}
		if c := findCondition(st.Conditions, v1.PodInitialized); c == nil || c.Status != v1.ConditionTrue {
			t.Errorf("ready=%v: Initialized = %+v, want True with the sidecar running", ready, c)
		}
		want := v1.ConditionFalse
		if ready {
			want = v1.ConditionTrue
		}
		if c := findCondition(st.Conditions, v1.PodReady); c == nil || c.Status != want {
			t.Errorf("ready=%v: Ready = %+v, want %s (the sidecar's readiness counts)", ready, c, want)
		}
		if cs := st.InitContainerStatuses[0]; cs.State.Running == nil || cs.Ready != ready || cs.Started == nil || !*cs.Started {
			t.Errorf("ready=%v: sidecar status %+v", ready, cs)
		}
	}
}
