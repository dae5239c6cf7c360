package placement

import (
	"errors"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

func zoned(name, zone string) *v1.Node {
	return node(name, "4", "8Gi", 110, map[string]string{LabelZone: zone})
}

func antiAffinity(key string, app string) *v1.Affinity {
	return &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, TopologyKey: key}}}}
}

func affinity(key string, app string) *v1.Affinity {
	return &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, TopologyKey: key}}}}
}

func with(p *v1.Pod, f func(*v1.Pod)) *v1.Pod { f(p); return p }

func TestFitErrorMessage(t *testing.T) {
	tests := []struct {
		e    FitError
		want string
	}{
		{FitError{NumNodes: 3, Reasons: map[string]int{ReasonInsufficientCPU: 1, "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }": 2}, Unresolvable: 2},
			"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."},
		{FitError{NumNodes: 3, Reasons: map[string]int{ReasonNodeAffinity: 3}, Unresolvable: 3},
			"0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."},
		{FitError{NumNodes: 17, Reasons: map[string]int{ReasonInsufficientMemory: 2, ReasonNodeAffinity: 15}, Unresolvable: 15},
			"0/17 nodes are available: 15 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory. preemption: 0/17 nodes are available: 15 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."},
		{FitError{}, "no nodes available to schedule pods"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("FitError(%v).Error() =\n%s\nwant\n%s", tt.e.Reasons, got, tt.want)
		}
	}
}

func TestDecideFailureMessage(t *testing.T) {
	cp := node("cp", "8", "8Gi", 110, nil)
	cp.Spec.Taints = []v1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: v1.TaintEffectNoSchedule}}
	cp2 := cp.DeepCopy()
	cp2.Name = "cp2"
	small := node("small", "1", "8Gi", 110, nil)
	s := snapshot([]*v1.Node{cp, cp2, small})
	_, err := NewDecider(1, 1).Decide(NewPodInfo(pod("p", "2", "", nil)), s)
	var fe *FitError
	if !errors.As(err, &fe) {
		t.Fatalf("Decide = %v, want a FitError", err)
	}
	want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
	if err.Error() != want {
		t.Errorf("Decide error =\n%s\nwant\n%s", err, want)
	}
}

func TestDecideInterPod(t *testing.T) {
	nodes := []*v1.Node{zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")}
	tests := []struct {
		name   string
		placed []*v1.Pod
		pod    *v1.Pod
		want   []string // any of these; nil means no fit
		reason string
	}{
		{"anti-affinity by host avoids occupied nodes",
			[]*v1.Pod{on(pod("w1", "", "", map[string]string{"app": "web"}), "a1"), on(pod("w2", "", "", map[string]string{"app": "web"}), "b1")},
			with(pod("w3", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = antiAffinity(LabelHostname, "web") }),
			[]string{"a2"}, ""},
		{"anti-affinity by zone",
			[]*v1.Pod{on(pod("w1", "", "", map[string]string{"app": "web"}), "a1")},
			with(pod("w2", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = antiAffinity(LabelZone, "web") }),
			[]string{"b1"}, ""},
		{"anti-affinity nowhere left",
			[]*v1.Pod{on(pod("w1", "", "", map[string]string{"app": "web"}), "a1"), on(pod("w2", "", "", map[string]string{"app": "web"}), "b1")},
			with(pod("w3", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = antiAffinity(LabelZone, "web") }),
			nil, ReasonPodAntiAffinity},
		{"existing pod's anti-affinity repels incoming",
			[]*v1.Pod{with(on(pod("db", "", "", map[string]string{"app": "db"}), "a1"), func(p *v1.Pod) { p.Spec.Affinity = antiAffinity(LabelZone, "web") })},
			pod("w1", "", "", map[string]string{"app": "web"}),
			[]string{"b1"}, ""},
		{"affinity follows the matching pod's zone",
			[]*v1.Pod{on(pod("db", "", "", map[string]string{"app": "db"}), "b1")},
			with(pod("w1", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = affinity(LabelZone, "db") }),
			[]string{"b1"}, ""},
		{"affinity with no match anywhere",
			nil,
			with(pod("w1", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = affinity(LabelZone, "db") }),
			nil, ReasonPodAffinity},
		{"self-affinity lets the first pod land",
			nil,
			with(pod("w1", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) { p.Spec.Affinity = affinity(LabelZone, "web") }),
			[]string{"a1", "a2", "b1"}, ""},
		{"anti-affinity ignores other namespaces",
			[]*v1.Pod{with(on(pod("w1", "", "", map[string]string{"app": "web"}), "a1"), func(p *v1.Pod) { p.Namespace = "other" })},
			with(pod("w2", "", "", map[string]string{"app": "web"}), func(p *v1.Pod) {
				p.Spec.Affinity = antiAffinity(LabelZone, "web")
				p.Spec.NodeName = ""
				p.Spec.NodeSelector = map[string]string{LabelHostname: "a2"}
			}),
			[]string{"a2"}, ""},
	}
	for _, tt := range tests {
		s := snapshot(nodes, tt.placed...)
		got, err := NewDecider(1, 1).Decide(NewPodInfo(tt.pod), s)
		if tt.want == nil {
			var fe *FitError
			if !errors.As(err, &fe) || fe.Reasons[tt.reason] == 0 {
				t.Errorf("%s: Decide = %q, %v; want FitError with %q", tt.name, got, err, tt.reason)
			}
			continue
		}
		if err != nil || !contains(tt.want, got) {
			t.Errorf("%s: Decide = %q, %v; want one of %v", tt.name, got, err, tt.want)
		}
	}
}

func spread(key string, skew int32, when v1.UnsatisfiableConstraintAction, app string) v1.TopologySpreadConstraint {
	return v1.TopologySpreadConstraint{MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: when,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}
}

func TestDecideTopologySpread(t *testing.T) {
	web := map[string]string{"app": "web"}
	nodes := []*v1.Node{zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b"), node("nolabel", "4", "8Gi", 110, nil)}
	tests := []struct {
		name   string
		placed []*v1.Pod
		c      v1.TopologySpreadConstraint
		minDom int32
		want   []string
	}{
		{"zone skew 1 goes to the empty zone", []*v1.Pod{on(pod("w1", "", "", web), "a1")},
			spread(LabelZone, 1, v1.DoNotSchedule, "web"), 0, []string{"b1"}},
		{"zones even, any zone node", []*v1.Pod{on(pod("w1", "", "", web), "a1"), on(pod("w2", "", "", web), "b1")},
			spread(LabelZone, 1, v1.DoNotSchedule, "web"), 0, []string{"a1", "a2", "b1"}},
		{"host skew 1", []*v1.Pod{on(pod("w1", "", "", web), "a1"), on(pod("w2", "", "", web), "b1")},
			spread(LabelHostname, 1, v1.DoNotSchedule, "web"), 0, []string{"a2", "nolabel"}},
		{"minDomains above domain count makes min 0", []*v1.Pod{on(pod("w1", "", "", web), "a1"), on(pod("w2", "", "", web), "b1")},
			spread(LabelZone, 1, v1.DoNotSchedule, "web"), 3, nil},
	}
	for _, tt := range tests {
		p := pod("new", "", "", web)
		c := tt.c
		if tt.minDom > 0 {
			c.MinDomains = ptrTo(tt.minDom)
		}
		p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{c}
		s := snapshot(nodes, tt.placed...)
		got, err := NewDecider(1, 1).Decide(NewPodInfo(p), s)
		if tt.want == nil {
			var fe *FitError
			if !errors.As(err, &fe) || fe.Reasons[ReasonSpread] == 0 {
				t.Errorf("%s: Decide = %q, %v; want FitError with %q", tt.name, got, err, ReasonSpread)
			}
			continue
		}
		if err != nil || !contains(tt.want, got) {
			t.Errorf("%s: Decide = %q, %v; want one of %v", tt.name, got, err, tt.want)
		}
	}
	// A node without the key fails with the missing-label reason.
	p := pod("new", "", "", web)
	p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{spread(LabelZone, 1, v1.DoNotSchedule, "web")}
	p.Spec.NodeSelector = map[string]string{LabelHostname: "nolabel"}
	nl := &cycle{pi: NewPodInfo(p), matcher: nodeMatcher{}}
	cs, _ := parseConstraints(p, v1.DoNotSchedule)
	nl.hard = newSpreadState(cs, p, snapshot(nodes), &nl.matcher)
	if code, r := nl.hard.filter(nodes[3]); code != Unresolvable || r != ReasonSpreadMissingLabel {
		t.Errorf("spread filter(nolabel) = %v %q, want Unresolvable %q", code, r, ReasonSpreadMissingLabel)
	}
}

func TestScores(t *testing.T) {
	big := node("big", "8", "16Gi", 110, nil)
	small := node("small", "2", "4Gi", 110, nil)
	s := snapshot([]*v1.Node{big, small})
	p := NewPodInfo(pod("p", "1", "1Gi", nil))
	if b, sm := LeastAllocatedScore(p.NonZero, s.Nodes[0]), LeastAllocatedScore(p.NonZero, s.Nodes[1]); b <= sm {
		t.Errorf("LeastAllocatedScore(big) = %d, (small) = %d, want big higher", b, sm)
	}
	if got := LeastAllocatedScore(p.NonZero, s.Nodes[0]); got != 90 {
		t.Errorf("LeastAllocatedScore(1 cpu 1Gi on 8/16Gi) = %d, want 90 (cpu 87, memory 93)", got)
	}
	// Balanced: a cpu-heavy pod on a node whose memory is already used
	// balances better than on an empty node.
	memUsed := snapshot([]*v1.Node{node("m", "4", "4Gi", 110, nil), node("e", "4", "4Gi", 110, nil)}, on(pod("x", "", "2Gi", nil), "m"))
	cpuPod := NewPodInfo(pod("c", "2", "", nil))
	if m, e := BalancedAllocationScore(cpuPod.Requests, memUsed.Nodes[0]), BalancedAllocationScore(cpuPod.Requests, memUsed.Nodes[1]); m != 100 || e != 75 {
		t.Errorf("BalancedAllocationScore = %d, %d; want 100, 75", m, e)
	}
	tainted := node("t", "1", "1Gi", 10, nil)
	tainted.Spec.Taints = []v1.Taint{{Key: "a", Effect: v1.TaintEffectPreferNoSchedule}, {Key: "b", Effect: v1.TaintEffectPreferNoSchedule}, {Key: "c", Effect: v1.TaintEffectNoSchedule}}
	if got := PreferNoScheduleCount([]v1.Toleration{{Key: "a", Operator: v1.TolerationOpExists}}, tainted); got != 1 {
		t.Errorf("PreferNoScheduleCount = %d, want 1", got)
	}
	raw := []int64{0, 2, 4}
	normalizeMax(raw, true)
	if raw[0] != 100 || raw[1] != 50 || raw[2] != 0 {
		t.Errorf("normalizeMax(reverse) = %v, want [100 50 0]", raw)
	}
	raw = []int64{-10, 0, 10}
	normalizeMinMax(raw)
	if raw[0] != 0 || raw[1] != 50 || raw[2] != 100 {
		t.Errorf("normalizeMinMax = %v, want [0 50 100]", raw)
	}
}

// TestDecidePreferences checks that each soft preference decides between
// otherwise equal nodes.
func TestDecidePreferences(t *testing.T) {
	web := map[string]string{"app": "web"}
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("rs-1"), Controller: ptrTo(true)}
	owned := func(name string) *v1.Pod {
		return with(pod(name, "100m", "100Mi", web), func(p *v1.Pod) { p.OwnerReferences = []metav1.OwnerReference{owner} })
	}
	prefTaint := zoned("a2", "a")
	prefTaint.Spec.Taints = []v1.Taint{{Key: "spot", Effect: v1.TaintEffectPreferNoSchedule}}
	tests := []struct {
		name     string
		nodes    []*v1.Node
		placed   []*v1.Pod
		pod      *v1.Pod
		services map[string][]labels.Selector
		want     string
	}{
		{"preferred node affinity", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")}, nil,
			with(pod("p", "", "", nil), func(p *v1.Pod) {
				p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{{
					Weight: 50, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: LabelZone, Operator: v1.NodeSelectorOpIn, Values: []string{"b"}}}}}}}}
			}), nil, "b1"},
		{"PreferNoSchedule taint avoided", []*v1.Node{zoned("a1", "a"), prefTaint}, nil, pod("p", "", "", nil), nil, "a1"},
		{"preferred pod affinity", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")}, []*v1.Pod{on(pod("db", "", "", map[string]string{"app": "db"}), "b1")},
			with(pod("p", "", "", nil), func(p *v1.Pod) {
				p.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 100,
					PodAffinityTerm: v1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, TopologyKey: LabelZone}}}}}
			}), nil, "b1"},
		{"preferred pod anti-affinity", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")}, []*v1.Pod{on(pod("w", "", "", web), "a1")},
			with(pod("p", "", "", web), func(p *v1.Pod) {
				p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 100,
					PodAffinityTerm: v1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: web}, TopologyKey: LabelHostname}}}}}
			}), nil, "b1"},
		{"ScheduleAnyway spread", []*v1.Node{zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")},
			[]*v1.Pod{on(pod("w1", "", "", web), "a1"), on(pod("w2", "", "", web), "a2")},
			with(pod("p", "", "", web), func(p *v1.Pod) {
				p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{spread(LabelZone, 1, v1.ScheduleAnyway, "web")}
			}), nil, "b1"},
		{"selector spread by owner", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")},
			[]*v1.Pod{on(owned("w1"), "a1"), on(pod("other", "100m", "100Mi", nil), "b1")},
			owned("p"), nil, "b1"},
		{"selector spread by service", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")},
			[]*v1.Pod{on(pod("w1", "100m", "100Mi", web), "a1"), on(pod("other", "100m", "100Mi", nil), "b1")},
			pod("p", "100m", "100Mi", web), map[string][]labels.Selector{"default": {labels.SelectorFromSet(web)}}, "b1"},
		{"least allocated", []*v1.Node{zoned("a1", "a"), zoned("b1", "b")},
			[]*v1.Pod{on(pod("x", "2", "4Gi", nil), "a1")}, pod("p", "1", "1Gi", nil), nil, "b1"},
	}
	for _, tt := range tests {
		s := snapshot(tt.nodes, tt.placed...)
		s.Services = tt.services
		for seed := uint64(0); seed < 5; seed++ {
			got, err := NewDecider(1, seed).Decide(NewPodInfo(tt.pod), s)
			if err != nil || got != tt.want {
				t.Errorf("%s (seed %d): Decide = %q, %v; want %q", tt.name, seed, got, err, tt.want)
				break
			}
		}
	}
}

func TestDecideParallelMatchesSerial(t *testing.T) {
	var nodes []*v1.Node
	for i := 0; i < 2000; i++ {
		n := zoned(nodeName(i), string(rune('a'+i%3)))
		if i%7 == 0 {
			n.Spec.Unschedulable = true
		}
		nodes = append(nodes, n)
	}
	s := snapshot(nodes)
	for i := 0; i < 20; i++ {
		p := NewPodInfo(pod("p", "100m", "100Mi", nil))
		a, err1 := NewDecider(1, uint64(i)).Decide(p, s)
		b, err2 := NewDecider(4, uint64(i)).Decide(p, s)
		if a != b || err1 != nil || err2 != nil {
			t.Fatalf("Decide serial = %q %v, parallel = %q %v; want equal", a, err1, b, err2)
		}
	}
}

func nodeName(i int) string {
	return "node-" + string(rune('0'+i/1000%10)) + string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}
