package nodelifecycle

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func node(ready v1.ConditionStatus, taints ...v1.Taint) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:       v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{
			{Type: v1.NodeReady, Status: ready, Reason: "KubeletReady"},
			{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse},
		}},
	}
}

func allUnknown(n *v1.Node) *v1.Node {
	n.Status.Conditions = nil
	for _, ty := range []v1.NodeConditionType{v1.NodeReady, v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
		n.Status.Conditions = append(n.Status.Conditions, v1.NodeCondition{Type: ty, Status: v1.ConditionUnknown})
	}
	return n
}

func taintKeys(ts []v1.Taint) map[string]bool {
	m := map[string]bool{}
	for _, t := range ts {
		m[t.Key+":"+string(t.Effect)] = true
	}
	return m
}

func TestAssess(t *testing.T) {
	grace := 40 * time.Second
	unreachableNoExec := v1.Taint{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: t0}}
	unreachableNoSched := v1.Taint{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule}
	custom := v1.Taint{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}
	tests := []struct {
		name        string
		node        *v1.Node
		sinceHeard  time.Duration
		wantReady   v1.ConditionStatus
		wantMarked  bool
		wantTaints  []string // nil: taints unchanged
		wantRecheck bool
	}{
		{"healthy", node(v1.ConditionTrue), 10 * time.Second, v1.ConditionTrue, false, nil, true},
		{"at the deadline still healthy", node(v1.ConditionTrue), grace, v1.ConditionTrue, false, nil, true},
		{"silent past grace", node(v1.ConditionTrue), grace + time.Second, v1.ConditionUnknown, true,
			[]string{"node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"}, false},
		{"already unknown and tainted", allUnknown(node(v1.ConditionUnknown, unreachableNoSched, unreachableNoExec)), time.Hour, v1.ConditionUnknown, false, nil, false},
		{"reports not ready", node(v1.ConditionFalse), time.Second, v1.ConditionFalse, false,
			[]string{"node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/not-ready:NoExecute"}, true},
		{"came back", node(v1.ConditionTrue, unreachableNoSched, unreachableNoExec, custom), time.Second, v1.ConditionTrue, false,
			[]string{"dedicated:NoSchedule"}, true},
	}
	for _, tt := range tests {
		now := t0.Add(time.Hour)
		d := Assess(tt.node, now.Add(-tt.sinceHeard), now, grace)
		if d.Ready != tt.wantReady || (d.Conditions != nil) != tt.wantMarked || (!d.Recheck.IsZero()) != tt.wantRecheck {
			t.Errorf("%s: Assess() = ready %v marked %v recheck %v, want %v %v %v", tt.name, d.Ready, d.Conditions != nil, d.Recheck, tt.wantReady, tt.wantMarked, tt.wantRecheck)
		}
		if tt.wantTaints == nil {
			if d.Taints != nil {
				t.Errorf("%s: Assess() taints = %v, want unchanged", tt.name, d.Taints)
			}
			continue
		}
		got := taintKeys(d.Taints)
		if len(got) != len(tt.wantTaints) {
			t.Errorf("%s: Assess() taints = %v, want %v", tt.name, got, tt.wantTaints)
		}
		for _, k := range tt.wantTaints {
			if !got[k] {
				t.Errorf("%s: Assess() taints = %v, want %v", tt.name, got, tt.wantTaints)
			}
		}
		for _, ta := range d.Taints {
			if ta.Effect == v1.TaintEffectNoExecute && (ta.TimeAdded == nil || !ta.TimeAdded.Time.Equal(now)) {
				t.Errorf("%s: NoExecute taint timeAdded = %v, want %v", tt.name, ta.TimeAdded, now)
			}
		}
	}
}

func TestAssessMarksConditionsUnknown(t *testing.T) {
	now := t0.Add(time.Hour)
	d := Assess(node(v1.ConditionTrue), t0, now, 40*time.Second)
	seen := map[v1.NodeConditionType]v1.NodeCondition{}
	for _, c := range d.Conditions {
		seen[c.Type] = c
	}
	for _, ty := range []v1.NodeConditionType{v1.NodeReady, v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
		c, ok := seen[ty]
		if !ok || c.Status != v1.ConditionUnknown {
			t.Errorf("condition %s = %+v, want Unknown", ty, c)
		}
	}
	if r := seen[v1.NodeReady]; r.Message != MessageStatusUnknown || r.Reason != ReasonStatusUnknown || !r.LastTransitionTime.Time.Equal(now) {
		t.Errorf("Ready = %+v, want reason %s message %q transition %v", r, ReasonStatusUnknown, MessageStatusUnknown, now)
	}
}

func secs(n int64) *int64 { return &n }

func TestEvictAt(t *testing.T) {
	added := t0
	now := t0.Add(10 * time.Second)
	unreachable := []v1.Taint{{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: added}}}
	schedOnly := []v1.Taint{{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule}}
	tol := func(key string, s *int64) v1.Toleration {
		return v1.Toleration{Key: key, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: s}
	}
	tests := []struct {
		name      string
		taints    []v1.Taint
		tols      []v1.Toleration
		wantEvict bool
		wantAt    time.Time
	}{
		{"no taints", nil, nil, false, time.Time{}},
		{"NoSchedule only", schedOnly, nil, false, time.Time{}},
		{"no toleration: at once", unreachable, nil, true, now},
		{"other key tolerated: at once", unreachable, []v1.Toleration{tol("other", nil)}, true, now},
		{"300s default", unreachable, []v1.Toleration{tol(v1.TaintNodeUnreachable, secs(300))}, true, added.Add(300 * time.Second)},
		{"shortest of two", unreachable, []v1.Toleration{tol(v1.TaintNodeUnreachable, secs(300)), tol("", secs(5))}, true, added.Add(5 * time.Second)},
		{"forever", unreachable, []v1.Toleration{tol(v1.TaintNodeUnreachable, nil)}, false, time.Time{}},
		{"forever and timed: timed wins", unreachable, []v1.Toleration{tol(v1.TaintNodeUnreachable, nil), tol(v1.TaintNodeUnreachable, secs(7))}, true, added.Add(7 * time.Second)},
		{"negative seconds: at taint time", unreachable, []v1.Toleration{tol(v1.TaintNodeUnreachable, secs(-1))}, true, added},
	}
	for _, tt := range tests {
		pod := &v1.Pod{Spec: v1.PodSpec{Tolerations: tt.tols}}
		at, evict := EvictAt(pod, tt.taints, now)
		if evict != tt.wantEvict || (evict && !at.Equal(tt.wantAt)) {
			t.Errorf("%s: EvictAt() = %v, %v, want %v, %v", tt.name, at, evict, tt.wantAt, tt.wantEvict)
		}
	}
}

func TestNotReady(t *testing.T) {
	ready := &v1.Pod{Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}}}
	got := NotReady(ready, t0)
	if got == nil || got.Status.Conditions[0].Status != v1.ConditionFalse || ready.Status.Conditions[0].Status != v1.ConditionTrue {
		t.Errorf("NotReady(ready) = %+v, want a copy with Ready=False", got)
	}
	if NotReady(got, t0) != nil {
		t.Errorf("NotReady(not ready) != nil, want nil")
	}
}
